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
