/**
 * CgroupSource: where the cgroup tree comes from. Two implementations pass one conformance suite
 * (test/harness/cgroup-source-suite.ts): the host's cgroup2 mount, tracked live, and a simulated
 * cgroupfs held in memfs for tests and users without root.
 */
import type { CgroupHierarchy } from './hierarchy';
import type { KernfsNode } from './kernfs-node';

/** The interface files vbpffs reads (those a cgroup2 directory has; memory.* only with the controller). */
export type InterfaceFile =
  | 'cgroup.procs'
  | 'cgroup.threads'
  | 'cgroup.events'
  | 'cgroup.stat'
  | 'cgroup.controllers'
  | 'cgroup.subtree_control'
  | 'cgroup.type'
  | 'cgroup.freeze'
  | 'cgroup.max.depth'
  | 'cgroup.max.descendants'
  | 'cpu.stat'
  | 'cpu.pressure'
  | 'io.pressure'
  | 'memory.pressure'
  | 'memory.current'
  | 'memory.stat'
  | 'memory.events'
  | 'memory.max'
  | 'memory.peak';

/**
 * Names that are files, not child cgroups, in every cgroup2 directory: the core files of
 * kernel/cgroup/cgroup.c (cgroup_base_files, cgroup_psi_files) whatever the controllers. A bpffs
 * mkdir of one of these names in a tagged directory finds a kernfs node that is not a directory.
 */
export const INTERFACE_FILES: ReadonlySet<string> = new Set([
  'cgroup.type',
  'cgroup.procs',
  'cgroup.threads',
  'cgroup.controllers',
  'cgroup.subtree_control',
  'cgroup.events',
  'cgroup.max.descendants',
  'cgroup.max.depth',
  'cgroup.stat',
  'cgroup.stat.local',
  'cgroup.freeze',
  'cgroup.kill',
  'cgroup.pressure',
  'cpu.stat',
  'cpu.stat.local',
  'cpu.pressure',
  'io.pressure',
  'memory.pressure',
  'irq.pressure',
]);

/**
 * The controllers whose interface files a cgroup2 directory may hold (`<controller>.<knob>`), plus the
 * core prefixes: `cgroup` (cgroup_base_files) and `irq` (irq.pressure, a core PSI file). perf_event
 * and freezer are left out: on cgroup2 they have no files of their own (freezing is cgroup.freeze).
 */
export const CGROUPFS_FILE_PREFIXES: ReadonlySet<string> = new Set([
  'cgroup',
  'irq',
  'cpu',
  'cpuset',
  'io',
  'memory',
  'pids',
  'rdma',
  'hugetlb',
  'misc',
  'dmem',
]);

const CGROUPFS_FILE_NAME = /^([a-z_]+)\.[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*$/;

/**
 * Whether a name has the shape of a cgroupfs interface file: `<controller>.<knob>` for a known
 * controller (memory.current, cpu.max, io.stat, pids.max, hugetlb.2MB.max, memory.swap.max, ...) or a
 * core file. It says nothing of whether this host has the file (its controller may not be enabled
 * here): tags use it only for names that are not a live child cgroup, where a kernfs lookup would
 * find a file or nothing, and both refuse a bpffs mkdir.
 */
export function isCgroupfsFileName(name: string): boolean {
  if (INTERFACE_FILES.has(name)) return true;
  const m = CGROUPFS_FILE_NAME.exec(name);
  return m !== null && CGROUPFS_FILE_PREFIXES.has(m[1]!);
}

export interface ReconcileResult {
  /** cgroups found on the source that the hierarchy did not have. */
  added: number;
  /** cgroups the hierarchy had that are gone from the source. */
  removed: number;
}

export interface CgroupSource {
  readonly kind: 'host' | 'simulated';
  /** Where the hierarchy lives: the cgroup2 mount point, or the memfs root. */
  readonly mountPoint: string;
  readonly hierarchy: CgroupHierarchy;
  /** Loads the tree and begins tracking mkdir/rmdir. Idempotent. */
  start(): Promise<void>;
  /** Stops tracking; the hierarchy stays as it was. */
  stop(): Promise<void>;
  /** Creates a cgroup (parents must exist) and resolves with its node once the hierarchy has it. */
  mkdir(path: string): Promise<KernfsNode>;
  /** Removes an empty cgroup and resolves once the hierarchy has marked it dying. */
  rmdir(path: string): Promise<void>;
  /** Reads an interface file of a live cgroup. ENOENT if the cgroup or file is gone. */
  readFile(cgroup: KernfsNode, file: InterfaceFile): Promise<string>;
  /** Walks the source and repairs the hierarchy (the slow path behind live tracking). */
  reconcile(): Promise<ReconcileResult>;
}
