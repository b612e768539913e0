/**
 * A stand-in for the cgroup iterator until iter/ lands (iter/ will replace it): runs an iter/cgroup
 * program over a subtree in pre-order (BPF_CGROUP_ITER_DESCENDANTS_PRE), once per live cgroup with
 * meta.seq_num counting up from 0, then once with a NULL cgroup (the epilogue), printing into one
 * seq buffer. Each cgroup's interface files are read before its run, as a run never reads them.
 * Dying cgroups are skipped. Nothing else of cgroup_iter and bpf_seq_read is modelled (a non-zero
 * return ending the walk, buffer sizes, overflow, retries): the examples need none of it.
 */
import { BufferSeqSink, readCgroupFiles, type BpfProg } from '../../progs';
import type { CgroupSource, KernfsNode } from '../../tags';

export async function walkCgroups(prog: BpfProg, source: CgroupSource, start: KernfsNode = source.hierarchy.root, sessionId = 1n): Promise<string> {
  const seq = new BufferSeqSink();
  let seqNum = 0n;
  for (const cgroup of source.hierarchy.walk(start)) {
    if (cgroup.dying) continue;
    const files = await readCgroupFiles(source, cgroup, prog.cgroupFiles);
    prog.run({ meta: { seq, sessionId, seqNum: seqNum++ }, cgroup, files });
  }
  prog.run({ meta: { seq, sessionId, seqNum }, cgroup: null });
  return Buffer.from(seq.contents()).toString('utf8');
}
