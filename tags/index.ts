/**
 * tags/: the kernfs side of vbpffs. Cgroups as KernfsNodes in a CgroupHierarchy, fed by a
 * CgroupSource (the host's cgroup2 mount, or a simulated one in memfs with a workload simulator),
 * tasks, and the directory tags with their shared inherit list. The only file layers above import.
 */
export { KernfsNode, type CgroupState } from './kernfs-node';
export { CgroupHierarchy, type HierarchyEvents } from './hierarchy';
export {
  CGROUPFS_FILE_PREFIXES,
  INTERFACE_FILES,
  isCgroupfsFileName,
  type CgroupSource,
  type InterfaceFile,
  type ReconcileResult,
} from './source';
export { Task, type TaskResolver } from './task';
export { DirTag, InheritList, type InheritEntry, type InheritOps, type TagType } from './dir-tag';
export { SimCgroupSource, type SimSourceOptions } from './sim/source';
export { SimCgroupfs, type ScannedCgroup } from './sim/cgroupfs';
export {
  DEFAULT_SLICE_NS,
  Workload,
  type SchedStat,
  type SpawnOptions,
  type TaskRates,
  type WorkloadChange,
} from './sim/workload';
export { PSI_PERIOD_NS, PsiGroup, type PsiResource } from './sim/psi';
export { HostCgroupSource, findCgroup2Mount, type HostSourceOptions, type HostSourceStatus } from './host';
