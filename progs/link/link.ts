/**
 * struct bpf_link: what attaches a program to a hook, as an object with its own id and references.
 *
 * Lifetime (kernel/bpf/syscall.c): the creator's handle is the first reference; every handle
 * (bpf_link_get_fd_by_id, BPF_OBJ_GET) and every pin adds one. The link holds a reference on its
 * program. When the last reference goes, bpf_link_free runs the kind's release (which detaches the
 * program from its hook) and then drops the program. BPF_LINK_DETACH detaches early: the link stays,
 * defunct (the program is no longer run, the link still holds it, its info reports no target), until
 * its last holder goes.
 *
 * A kind (cgroup, tracepoint, iterator) subclasses BpfLink and supplies struct bpf_link_ops: release,
 * detach, update_prog, fill_link_info and show_fdinfo. A kind without a detach op gives EOPNOTSUPP
 * for BPF_LINK_DETACH (link_detach); one without an update_prog op gives EINVAL for BPF_LINK_UPDATE
 * (link_update). The flag checks of BPF_LINK_UPDATE are here, before any kind is asked.
 */
import { BPF_F_REPLACE, BpfAttachType, BpfLinkType, LINK_TYPE_NAME, bpfError } from '../../uapi';
import { BpfObject, Handle } from '../object';
import type { Kernel } from '../kernel';
import type { BpfProg } from '../prog/prog';

/** A program as the syscalls take it: the object, or a handle on it (its fd). */
export type ProgRef = BpfProg | Handle<BpfProg>;

/** A link as the syscalls take it. */
export type LinkRef<L extends BpfLink = BpfLink> = L | Handle<L>;

/**
 * The program behind a ProgRef, as bpf_prog_get(fd) finds it: EBADF for a closed handle or a released
 * program (an fd that no longer names one).
 */
export function progFromRef(ref: ProgRef): BpfProg {
  const obj: unknown = ref instanceof Handle ? ref.object : ref;
  if (!isProg(obj)) throw bpfError('EINVAL', 'not a BPF program');
  if (obj.released) throw bpfError('EBADF', `prog ${obj.id} is released`);
  return obj;
}

/** The link behind a LinkRef (bpf_link_get_from_fd): EINVAL for another kind of object. */
export function linkFromRef<L extends BpfLink>(ref: LinkRef<L>): L {
  const obj: unknown = ref instanceof Handle ? ref.object : ref;
  if (!(obj instanceof BpfLink)) throw bpfError('EINVAL', 'not a BPF link');
  if (obj.released) throw bpfError('EBADF', `link ${obj.id} is released`);
  return obj as L;
}

function isProg(x: unknown): x is BpfProg {
  return x instanceof BpfObject && x.kind === 'prog';
}

/** BPF_LINK_UPDATE options: `flags` may only hold BPF_F_REPLACE, which requires `oldProg`. */
export interface LinkUpdateOpts {
  flags?: number;
  oldProg?: ProgRef;
}

/** bpf_link_info: the common part, then the kind's own fields (fill_link_info). */
export interface BpfLinkInfo {
  type: BpfLinkType;
  id: number;
  progId: number;
  [field: string]: unknown;
}

export abstract class BpfLink extends BpfObject {
  readonly kind = 'link' as const;
  abstract readonly type: BpfLinkType;
  /** The attach type the link was created with (link->attach_type). */
  readonly attachType: BpfAttachType;
  #prog: BpfProg;

  /** Takes a reference on prog; the creator owns the link's first reference (wrap it in a Handle). */
  protected constructor(kernel: Kernel, prog: BpfProg, attachType: BpfAttachType) {
    super(kernel.linkIdr);
    this.#prog = prog.get();
    this.attachType = attachType;
  }

  /** The program the link runs (link->prog); a defunct link still holds it. */
  get prog(): BpfProg {
    return this.#prog;
  }

  /**
   * Swaps the program (xchg(&link->prog, new_prog)): takes a reference on the new one, drops the
   * old one's. Kinds call it from their updateProg once the hook runs the new program.
   */
  protected swapProg(newProg: BpfProg): void {
    const old = this.#prog;
    this.#prog = newProg.get();
    old.put();
  }

  /**
   * BPF_LINK_UPDATE: replaces the link's program. With BPF_F_REPLACE the update happens only if the
   * link still runs `oldProg` (EPERM otherwise), a compare-and-exchange for concurrent updaters.
   */
  update(newProg: ProgRef, opts: LinkUpdateOpts = {}): void {
    const flags = opts.flags ?? 0;
    if (flags & ~BPF_F_REPLACE) throw bpfError('EINVAL', `link update flags 0x${flags.toString(16)}: only BPF_F_REPLACE`);
    if (this.released) throw bpfError('EBADF', `link ${this.id} is released`);
    const prog = progFromRef(newProg);
    let old: BpfProg | null = null;
    if (flags & BPF_F_REPLACE) {
      // bpf_prog_get(old_prog_fd): no old program is no fd.
      if (opts.oldProg === undefined) throw bpfError('EBADF', 'BPF_F_REPLACE without the expected old program');
      old = progFromRef(opts.oldProg);
    } else if (opts.oldProg !== undefined) {
      throw bpfError('EINVAL', 'an expected old program needs BPF_F_REPLACE');
    }
    this.updateProg(prog, old);
  }

  /** BPF_LINK_DETACH: detaches now; the link lives on, defunct, while it has holders. */
  detach(): void {
    if (this.released) throw bpfError('EBADF', `link ${this.id} is released`);
    this.linkDetach();
  }

  /** BPF_OBJ_GET_INFO_BY_FD for a link. */
  info(): BpfLinkInfo {
    return { ...this.fillLinkInfo(), type: this.type, id: this.id, progId: this.#prog.id };
  }

  /** /proc/<pid>/fdinfo of a link fd: bpf_link_show_fdinfo's common lines, then the kind's. */
  showFdinfo(): string {
    const p = this.#prog;
    return (
      `link_type:\t${LINK_TYPE_NAME[this.type]}\nlink_id:\t${this.id}\n` +
      `prog_tag:\t${p.tag}\nprog_id:\t${p.id}\n` +
      this.fdinfo()
    );
  }

  /** Whether the link is still attached to its hook (a detached or auto-detached link is defunct). */
  abstract get attached(): boolean;

  /** ops->update_prog. Kinds without one: EINVAL, as link_update says. */
  protected updateProg(_newProg: BpfProg, _oldProg: BpfProg | null): void {
    throw bpfError('EINVAL', `${LINK_TYPE_NAME[this.type]} links cannot be updated`);
  }

  /** ops->detach. Kinds without one: EOPNOTSUPP, as link_detach says. */
  protected linkDetach(): void {
    throw bpfError('EOPNOTSUPP', `${LINK_TYPE_NAME[this.type]} links cannot be detached`);
  }

  /** ops->fill_link_info: the kind's fields of bpf_link_info. */
  protected fillLinkInfo(): Record<string, unknown> {
    return {};
  }

  /** ops->show_fdinfo: the kind's fdinfo lines, each ending in a newline. */
  protected fdinfo(): string {
    return '';
  }

  /** ops->release: detach from the hook if still attached. Runs once, at the last put. */
  protected abstract linkRelease(): void;

  /** bpf_link_free: the kind's release, then the program reference. */
  protected release(): void {
    try {
      this.linkRelease();
    } finally {
      this.#prog.put();
    }
  }
}

/** BPF_LINK_DETACH on a link or a handle on one. */
export function bpfLinkDetach(link: LinkRef): void {
  linkFromRef(link).detach();
}

/** BPF_LINK_UPDATE on a link or a handle on one. */
export function bpfLinkUpdate(link: LinkRef, newProg: ProgRef, opts: LinkUpdateOpts = {}): void {
  linkFromRef(link).update(newProg, opts);
}

/** BPF_OBJ_GET_INFO_BY_FD on a link or a handle on one. */
export function bpfLinkGetInfo(link: LinkRef): BpfLinkInfo {
  return linkFromRef(link).info();
}
