/**
 * The cgroup_view iterator target of Hao Luo's RFC v2 (patch 3/5, kernel/bpf/cgroup_view_iter.c;
 * spec 1.3 item 7): SEC("cgroup_view") programs render one cgroup, the cgroup of the bpffs directory
 * the file is read in (its tag's kernfs node, given at open).
 *
 * "Only one session is supported": the program runs exactly once per open, with that cgroup, and
 * there is no end-of-iteration call. No directory cgroup (an untagged directory), or one that can no
 * longer be referenced (released: cgroup_tryget fails), reads as empty without running the
 * program; a removed cgroup that is still referenced is shown. A non-zero return is
 * bpf_iter_run_prog's retry (-EAGAIN), so the first read fails with EAGAIN and, the position having
 * moved on, the next read is EOF.
 *
 * The RFC's stop() puts the cgroup only when it is given one, which the end of the iteration never
 * does, so each complete read leaked a cgroup reference; here the session drops it at stop()
 * whatever it is given.
 */
import { bpfError } from '../../uapi';
import type { KernfsNode } from '../../tags';
import type { BpfIterReg, BpfIterSeqOps } from '../bpf-iter';

/** The session's state: the directory's cgroup, and the reference start() took on it. */
export interface CgroupViewPriv {
  readonly dir: KernfsNode | null;
  held: KernfsNode | null;
}

function put(p: CgroupViewPriv): void {
  const held = p.held;
  p.held = null;
  held?.put();
}

const seqOps: BpfIterSeqOps<KernfsNode, CgroupViewPriv> = {
  start(it) {
    // "Only one session is supported."
    if (it.seq.index > 0) return null;
    const cgroup = it.priv.dir;
    // "Failure to get the cgroup's reference will not run the cgroup_view prog."
    if (cgroup === null || !cgroup.tryGet()) return null;
    it.priv.held = cgroup;
    it.seq.index++;
    return cgroup;
  },

  next(it) {
    it.seq.index++;
    return null;
  },

  stop(it) {
    put(it.priv);
  },

  show(it, v) {
    return it.showRetry({ cgroup: v });
  },

  prepare(it, v) {
    return it.prepareCgroupFiles(v);
  },
};

/**
 * The target as registered (cgroup_view_reg_info): no fdinfo of its own, and no link parameters.
 * The RFC registers no attach_target, so it ignores parameters; vbpffs refuses them (EINVAL) rather
 * than let a reader believe a cgroup given here picks the cgroup shown.
 */
export const cgroupViewIterReg: BpfIterReg<null, CgroupViewPriv, KernfsNode> = {
  target: 'cgroup_view',
  attachTarget(_kernel, params) {
    if (params !== undefined) throw bpfError('EINVAL', 'a cgroup_view link takes no parameters: it shows the cgroup of the directory it is read in');
    return null;
  },
  seqInfo: {
    seqOps,
    initSeqPrivate: (_aux, opts) => ({ dir: opts.cgroup ?? null, held: null }),
    finiSeqPrivate: put,
  },
};
