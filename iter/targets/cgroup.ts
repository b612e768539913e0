/**
 * The cgroup iterator target, "cgroup" (kernel/bpf/cgroup_iter.c, spec 5.3): SEC("iter/cgroup")
 * and SEC("iter.s/cgroup") programs walk the cgroups from a start cgroup in one of five orders:
 *
 *   SELF_ONLY         the start cgroup only;
 *   DESCENDANTS_PRE   the start cgroup, then its descendants, parents before children;
 *   DESCENDANTS_POST  the descendants, children before parents, the start cgroup last;
 *   ANCESTORS_UP      the start cgroup, then each parent up to the root;
 *   CHILDREN          the start cgroup's children, not the start cgroup itself (new in 2026, after
 *                     the 6.18 kernels we run on).
 *
 * Children come in creation order, as the css walkers visit them. A dead cgroup (removed, still
 * referenced) is skipped: its program does not run, but it takes a seq_num. A non-zero return ends
 * the walk after that cgroup; the end-of-iteration call with a NULL cgroup is still made. The link
 * holds the start cgroup from attach to release; each session holds it too.
 *
 * Across reads: the kernel holds cgroup_mutex from start() to stop() and, since the tree may change
 * once it drops it, fails with EOPNOTSUPP a read that would continue a walk an earlier read left
 * (the read after the first read's bytes are drained). vbpffs continues it instead
 * (docs/DIFFERENCES.md): the session keeps a reference on the cgroup it stopped at, which keeps that
 * cgroup and its ancestors in the tree (a removed cgroup stays in its parent's children until it is
 * released), so the next read resumes there, as the kernel's css walkers resume from a position.
 */
import { BpfCgroupIterOrder, bpfError } from '../../uapi';
import { cgroupGetFromFd, type Kernel } from '../../progs';
import { KernfsNode } from '../../tags';
import type { BpfIterReg, BpfIterSeqOps, IterSession } from '../bpf-iter';

/** The orders' names, as fdinfo prints them ("order: descendants_pre"). */
export const CGROUP_ITER_ORDER_NAME: Readonly<Record<number, string>> = {
  [BpfCgroupIterOrder.SELF_ONLY]: 'self_only',
  [BpfCgroupIterOrder.DESCENDANTS_PRE]: 'descendants_pre',
  [BpfCgroupIterOrder.DESCENDANTS_POST]: 'descendants_post',
  [BpfCgroupIterOrder.ANCESTORS_UP]: 'ancestors_up',
  [BpfCgroupIterOrder.CHILDREN]: 'children',
};

export type CgroupIterOrderName = 'self_only' | 'descendants_pre' | 'descendants_post' | 'ancestors_up' | 'children';

/**
 * union bpf_iter_link_info.cgroup: the order, and the start cgroup given at most one way: as the
 * cgroup itself (cgroup_fd), its path (what opening it for that fd names) or its id (cgroup_id).
 * None of them: the root of the hierarchy.
 */
export interface CgroupIterParams {
  order: BpfCgroupIterOrder | CgroupIterOrderName;
  cgroup?: KernfsNode;
  path?: string;
  /** 0, as in the kernel, means none. */
  id?: number;
}

/** The link's aux info (bpf_iter_aux_info.cgroup): the start cgroup, referenced, and the order. */
export interface CgroupIterAux {
  readonly order: BpfCgroupIterOrder;
  readonly start: KernfsNode;
}

/** An order as a number or a name: undefined for anything else, UNSPEC included. */
export function parseCgroupIterOrder(order: unknown): BpfCgroupIterOrder | undefined {
  if (typeof order === 'string') {
    const hit = Object.entries(CGROUP_ITER_ORDER_NAME).find(([, name]) => name === order);
    return hit === undefined ? undefined : (Number(hit[0]) as BpfCgroupIterOrder);
  }
  return typeof order === 'number' && order in CGROUP_ITER_ORDER_NAME ? (order as BpfCgroupIterOrder) : undefined;
}

/**
 * bpf_iter_attach_cgroup: EINVAL for an order other than the five (UNSPEC, what no parameters
 * give, included) or for a cgroup given two ways; EBADF for a cgroup that is not one; ENOENT for
 * a path or id naming no live cgroup, or a removed cgroup. Takes the reference the link holds.
 */
function attachTarget(kernel: Kernel, params: unknown): CgroupIterAux {
  const p = (params ?? {}) as Partial<CgroupIterParams>;
  const order = parseCgroupIterOrder(p.order ?? BpfCgroupIterOrder.UNSPEC);
  if (order === undefined) throw bpfError('EINVAL', `cgroup iterator order ${String(p.order ?? 'unspec')}: expected ${Object.values(CGROUP_ITER_ORDER_NAME).join(', ')}`);
  const hasId = p.id !== undefined && p.id !== 0;
  if (p.cgroup !== undefined && p.path !== undefined) throw bpfError('EINVAL', 'the start cgroup is given both as a cgroup and as a path');
  if ((p.cgroup !== undefined || p.path !== undefined) && hasId) throw bpfError('EINVAL', 'the start cgroup is given both as a cgroup and as an id');
  let start: KernfsNode;
  if (p.cgroup !== undefined) {
    if (!(p.cgroup instanceof KernfsNode)) throw bpfError('EBADF', 'the start cgroup is not a cgroup');
    start = cgroupGetFromFd(kernel, p.cgroup);
  } else if (p.path !== undefined) {
    if (typeof p.path !== 'string') throw bpfError('EINVAL', 'the start cgroup\'s path is not a string');
    start = cgroupGetFromFd(kernel, p.path);
  } else if (hasId) {
    if (typeof p.id !== 'number') throw bpfError('EINVAL', 'the start cgroup\'s id is not a number');
    start = cgroupGetFromFd(kernel, p.id);
  } else {
    // "walk the entire hierarchy by default": cgroup_get_from_path("/")
    const root = kernel.cgroups?.cgroupByPath('/');
    if (!(root instanceof KernfsNode)) throw bpfError('ENOENT', 'this kernel has no cgroup hierarchy');
    start = root;
  }
  return { order, start: start.get() };
}

/** One step down a walk: a cgroup and its index among its parent's children when it was reached. */
interface Frame {
  node: KernfsNode;
  idx: number;
}

/**
 * The index of node among parent's children. Children are only appended, or removed at release,
 * so the index it was reached at is right unless an earlier sibling was released meanwhile.
 */
function childIndex(parent: KernfsNode, f: Frame): number {
  return parent.children[f.idx] === f.node ? f.idx : parent.children.indexOf(f.node);
}

/** struct cgroup_iter_priv, plus the walk's position (vbpffs resumes a walk across reads). */
export class CgroupIterPriv {
  readonly start: KernfsNode;
  readonly order: BpfCgroupIterOrder;
  visitedAll = false;
  terminate = false;
  /** The cgroup the walk stands on (the last start()/next() gave), referenced. */
  #cur: KernfsNode | null = null;
  /** From the start cgroup down to #cur, for the orders that walk down. */
  #stack: Frame[] = [];

  /** cgroup_iter_seq_init: the session's own reference on the start cgroup (css_get). */
  constructor(aux: CgroupIterAux) {
    this.start = aux.start.get();
    this.order = aux.order;
  }

  get cur(): KernfsNode | null {
    return this.#cur;
  }

  /** Moves the walk's reference to node (the old cgroup's put may release it; nothing reads it after). */
  #setCur(node: KernfsNode | null): KernfsNode | null {
    const old = this.#cur;
    this.#cur = node?.get() ?? null;
    old?.put();
    return node;
  }

  #push(node: KernfsNode, idx: number): KernfsNode {
    this.#stack.push({ node, idx });
    return node;
  }

  #top(): Frame {
    return this.#stack[this.#stack.length - 1]!;
  }

  /** css_leftmost_descendant of the top of the walk. */
  #leftmost(): KernfsNode {
    for (let n = this.#top().node; n.children.length > 0; n = this.#top().node) this.#push(n.children[0]!, 0);
    return this.#top().node;
  }

  /** The next sibling of the top of the walk, which replaces it; null (and popped) when it has none. */
  #nextSibling(): KernfsNode | null {
    const f = this.#stack.pop()!;
    const parent = this.#top().node;
    const i = childIndex(parent, f) + 1;
    return i > 0 && i < parent.children.length ? this.#push(parent.children[i]!, i) : null;
  }

  /** The first element of a walk. */
  first(): KernfsNode | null {
    this.#stack = [{ node: this.start, idx: -1 }];
    switch (this.order) {
      case BpfCgroupIterOrder.DESCENDANTS_POST:
        return this.#setCur(this.#leftmost());
      case BpfCgroupIterOrder.CHILDREN:
        return this.#setCur(this.start.children.length > 0 ? this.#push(this.start.children[0]!, 0) : null);
      default: // SELF_ONLY, DESCENDANTS_PRE, ANCESTORS_UP
        return this.#setCur(this.start);
    }
  }

  /** The element after the current one (css_next_descendant_pre/_post, parent, css_next_child). */
  next(): KernfsNode | null {
    const cur = this.#cur!;
    switch (this.order) {
      case BpfCgroupIterOrder.DESCENDANTS_PRE: {
        if (cur.children.length > 0) return this.#setCur(this.#push(cur.children[0]!, 0));
        while (this.#stack.length > 1) {
          const sib = this.#nextSibling();
          if (sib !== null) return this.#setCur(sib);
        }
        return this.#setCur(null);
      }
      case BpfCgroupIterOrder.DESCENDANTS_POST: {
        if (this.#stack.length === 1) return this.#setCur(null);
        return this.#setCur(this.#nextSibling() === null ? this.#top().node : this.#leftmost());
      }
      case BpfCgroupIterOrder.ANCESTORS_UP:
        return this.#setCur(cur.parent);
      case BpfCgroupIterOrder.CHILDREN:
        return this.#setCur(this.#nextSibling());
      default: // SELF_ONLY
        return this.#setCur(null);
    }
  }

  /** Drops the walk's position (the walk is over). */
  end(): void {
    this.#setCur(null);
    this.#stack = [];
  }

  /** cgroup_iter_seq_fini */
  fini(): void {
    this.end();
    this.start.put();
  }
}

const seqOps: BpfIterSeqOps<KernfsNode, CgroupIterPriv> = {
  start(it) {
    const p = it.priv;
    if (it.seq.index > 0) {
      if (p.visitedAll) return null;
      // The kernel returns -EOPNOTSUPP here ("cgroup_mutex has dropped"); vbpffs resumes at the
      // cgroup the last read stopped at, which that read did not show (or rolled back).
      p.terminate = false;
      return p.cur;
    }
    it.seq.index++;
    p.terminate = false;
    p.visitedAll = false;
    return p.first();
  },

  next(it, _v) {
    it.seq.index++;
    const p = it.priv;
    if (p.terminate) {
      p.end();
      return null;
    }
    return p.next();
  },

  async stop(it, v) {
    if (v !== null) return;
    // pass NULL to the prog for post-processing
    it.priv.end();
    try {
      await it.runProg({ cgroup: null }, true);
    } finally {
      it.priv.visitedAll = true;
    }
  },

  async show(it, v) {
    // "cgroup is dead, skip this element": nothing runs, and show() says it showed it, so the
    // element keeps its seq_num.
    if (v.dying) return 0;
    // "if prog returns > 0, terminate after this element"
    if ((await it.runProg({ cgroup: v })) !== 0) it.priv.terminate = true;
    return 0;
  },

  prepare(it, v) {
    return v.dying ? undefined : it.prepareCgroupFiles(v);
  },
};

/** bpf_iter_cgroup_show_fdinfo: the start cgroup's path, then the order. */
function showFdinfo(aux: CgroupIterAux): string {
  return `cgroup_path:\t${aux.start.path}\norder: ${CGROUP_ITER_ORDER_NAME[aux.order]}\n`;
}

/** The target as registered (bpf_cgroup_reg_info). */
export const cgroupIterReg: BpfIterReg<CgroupIterAux, CgroupIterPriv, KernfsNode> = {
  target: 'cgroup',
  attachTarget,
  detachTarget: (aux) => aux.start.put(),
  showFdinfo,
  fillLinkInfo: (aux) => ({ cgroup: { order: aux.order, cgroupId: aux.start.id } }),
  seqInfo: {
    seqOps,
    initSeqPrivate: (aux) => new CgroupIterPriv(aux),
    finiSeqPrivate: (priv) => priv.fini(),
  },
};

/** For tests: the session type of a cgroup iterator. */
export type CgroupIterSession = IterSession<CgroupIterPriv>;
