/**
 * progs/cgroup: programs attached to cgroups (kernel/bpf/cgroup.c). Per-cgroup state with the
 * attach modes, detach and query; effective arrays and their recomputation; firing a hook.
 */
export {
  BPF_CGROUP_MAX_PROGS,
  CgroupBpf,
  CgroupBpfTable,
  CgroupQueryError,
  cgroupBpfAttach,
  cgroupBpfAttached,
  cgroupBpfDetach,
  cgroupBpfQuery,
  cgroupBpfTable,
  cgroupGetFromFd,
  effectiveProgs,
  progListProg,
  type AttachAnchor,
  type BpfProgList,
  type CgroupAttachOpts,
  type CgroupBpfList,
  type CgroupDetachOpts,
  type CgroupQuery,
  type CgroupQueryOpts,
  type CgroupTarget,
} from './cgroup-bpf';
export { EMPTY_PROG_ARRAY, computeEffectiveProgs, type BpfProgArray, type BpfProgArrayItem } from './effective';
export { CGROUP_ATTACH_TYPES, attachTypeToProgType, cgroupAttachType, checkProgAttachType, collectsRetFlags } from './attach-type';
export { bpfCgRunCtx, cgroupBpfRunFilter, cgroupBpfRunFilterAsync, type BpfCgRunCtx, type CgroupRunResult } from './run';
