/**
 * Loading test programs: a Kernel over a simulated cgroup tree, object files from text, the ctx of an
 * iterator run, and (for the runtime's own defences) loading without the verifier.
 */
import { Kernel, BufferSeqSink, newCollection, parseObjectFile, verify, type Collection, type CollectionOptions } from '../../progs';
import { CgroupHierarchy, type KernfsNode } from '../../tags';
import './ivm-exit';

export interface World {
  kernel: Kernel;
  hierarchy: CgroupHierarchy;
  root: KernfsNode;
  /** Adds a child cgroup with the next id. */
  mkdir(parent: KernfsNode, name: string): KernfsNode;
}

export function world(): World {
  const hierarchy = new CgroupHierarchy(1);
  let next = 2;
  return {
    kernel: new Kernel({ cgroups: hierarchy }),
    hierarchy,
    root: hierarchy.root,
    mkdir: (parent, name) => hierarchy.add(parent, name, next++),
  };
}

/**
 * Tests run under coverage on a loaded machine, where a cold run can take longer than the runtime's
 * 50 ms default: a test that is not about the deadline gets a generous one.
 */
const TEST_LIMITS = { deadlineMs: 2000 };

/** Verifies and loads an object file given as text. */
export function load(kernel: Kernel, source: string, opts: CollectionOptions = {}, filename = 'obj.ts'): Collection {
  return newCollection(kernel, verify({ source, filename }), { ...opts, limits: { ...TEST_LIMITS, ...opts.limits } });
}

/**
 * Loads an object file the verifier has NOT checked: what the runtime must withstand on its own
 * (the verifier is a linter with early errors; the isolate is the boundary).
 */
export function loadUnverified(kernel: Kernel, source: string, opts: CollectionOptions = {}, filename = 'obj.ts'): Collection {
  return newCollection(kernel, { spec: parseObjectFile(source, filename).spec, log: [] }, { ...opts, limits: { ...TEST_LIMITS, ...opts.limits } });
}

/** A cgroup_view / iter ctx printing into a fresh 32 KiB seq buffer. */
export function iterCtx(cgroup: KernfsNode | null, extra: Record<string, unknown> = {}): { ctx: Record<string, unknown>; sink: BufferSeqSink } {
  const sink = new BufferSeqSink();
  return { ctx: { meta: { seq: sink, sessionId: 1n, seqNum: 0n }, cgroup, ...extra }, sink };
}
