/**
 * Where the iterator tests run: a simulated cgroupfs, or real cgroups under the host's cgroup2 mount
 * (test/harness/cgroup-tree.ts). Either way the test works below one cgroup of its own, `base`, as
 * the kernel selftests work below their cgroup work dir (whose "/" is that directory), and reads
 * interface files from the same source the tree comes from.
 */
import { Kernel } from '../../progs';
import { HostCgroupSource, SimCgroupSource, type CgroupSource, type KernfsNode } from '../../tags';
import { makeCgroupTree } from './cgroup-tree';

export interface IterEnv {
  readonly name: 'simulated' | 'host';
  readonly kernel: Kernel;
  readonly source: CgroupSource;
  /** The test's own cgroup: the selftests' "/". */
  readonly base: KernfsNode;
  /** mkdir of a cgroup below base ("parent/child1"), resolved once the hierarchy has it. */
  mkdir(rel: string): Promise<KernfsNode>;
  /** rmdir of a cgroup below base, resolved once the hierarchy has marked it dying. */
  rmdir(rel: string): Promise<void>;
}

interface Teardown {
  teardown(fn: () => void | Promise<void>): void;
}

const join = (base: string, rel: string): string => `${base === '/' ? '' : base}/${rel}`;

export async function simEnv(): Promise<IterEnv> {
  const source = new SimCgroupSource();
  await source.start();
  const base = await source.mkdir('/cgroup-test-work-dir');
  return {
    name: 'simulated',
    kernel: new Kernel({ cgroups: source.hierarchy, tasks: source }),
    source,
    base,
    mkdir: (rel) => source.mkdir(join(base.path, rel)),
    rmdir: (rel) => source.rmdir(join(base.path, rel)),
  };
}

/** Real cgroups; call only when cgroupSkipReason() said they can be made. */
export async function hostEnv(t: Teardown): Promise<IterEnv> {
  const tree = await makeCgroupTree(t, 'iter');
  const source = await HostCgroupSource.open({ reconcileIntervalMs: 0 });
  t.teardown(() => source.stop());
  await source.start();
  const base = source.hierarchy.cgroupByPath(tree.cg());
  if (base === undefined) throw new Error(`the host source does not have ${tree.cg()}`);
  return {
    name: 'host',
    kernel: new Kernel({ cgroups: source.hierarchy }),
    source,
    base,
    mkdir: (rel) => source.mkdir(tree.cg(rel)),
    rmdir: (rel) => source.rmdir(tree.cg(rel)),
  };
}
