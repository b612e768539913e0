/**
 * progs/runtime: where programs run. One isolated-vm isolate per loaded object file, the
 * 'vbpffs/bpf' module inside it (prelude.ts), helpers as callbacks into the host, and the
 * interface-file snapshots a run reads (cgroup-files.ts).
 */
export { ABANDON_MARGIN_MS, DEFAULT_LIMITS, ObjectIsolate, abandonedRunsEnded, type RuntimeLimits } from './isolate';
export { parseInterfaceFile, readCgroupFiles, type CgroupFiles, type InterfaceRecord } from './cgroup-files';
