/**
 * iter/: seq_file reads and iterator targets. Iterator links (BPF_LINK_CREATE with BPF_TRACE_ITER)
 * for the cgroup iterator and the cgroup_view target, and the sessions opening one gives, read with
 * the kernel's bpf_seq_read rules. The only file the layer above (fs/) imports.
 */
export { BpfIterLink, bpfIterLinkCreate, type BpfIterLinkParams, type IterLinkOpts, type IterTarget } from './iter-link';
export { IterSession, MAX_ITER_OBJECTS, type IterOpenOpts } from './bpf-iter';
export { CGROUP_ITER_ORDER_NAME, parseCgroupIterOrder, type CgroupIterOrderName, type CgroupIterParams } from './targets/cgroup';
