/**
 * struct bpf_iter_link (kernel/bpf/bpf_iter.c, spec 5.1): an iterator program attached to its
 * target with the target's parameters. It runs nothing by itself: each open() (bpf_iter_new_fd, or
 * opening the link's pin) is a new session that runs the program as the session is read.
 *
 * The target comes from the program's section ("iter/cgroup", "iter.s/cgroup": the cgroup
 * iterator; "cgroup_view": the RFC's view). The link has no detach (EOPNOTSUPP, the BpfLink
 * default); BPF_LINK_UPDATE swaps the program for one of the same type and target, and only later
 * opens run it, since a session holds the program it opened with.
 */
import { BpfAttachType, BpfCgroupIterOrder, BpfLinkType, bpfError } from '../uapi';
import { BpfLink, Handle, progFromRef, type BpfProg, type Kernel, type ProgRef } from '../progs';
import type { KernfsNode } from '../tags';
import { IterSession, type BpfIterReg, type IterOpenOpts } from './bpf-iter';
import { cgroupIterReg, type CgroupIterAux, type CgroupIterParams } from './targets/cgroup';
import { cgroupViewIterReg } from './targets/cgroup-view';

/** The iterator targets vbpffs registers. */
export type IterTarget = 'cgroup' | 'cgroup_view';

/** bpf_iter_reg_target's list. */
const TARGETS: ReadonlyMap<string, BpfIterReg<unknown>> = new Map<string, BpfIterReg<unknown>>([
  ['cgroup', cgroupIterReg as BpfIterReg<unknown>],
  ['cgroup_view', cgroupViewIterReg as BpfIterReg<unknown>],
]);

/** BPF_LINK_CREATE's union bpf_iter_link_info: the cgroup iterator's parameters. */
export interface IterLinkOpts {
  cgroup?: CgroupIterParams;
}

/** The link's parameters as the target took them (bpf_iter_aux_info). */
export interface BpfIterLinkParams {
  cgroup?: { readonly order: BpfCgroupIterOrder; readonly start: KernfsNode };
}

export class BpfIterLink extends BpfLink {
  readonly type = BpfLinkType.ITER;
  readonly target: IterTarget;
  readonly #kernel: Kernel;
  readonly #reg: BpfIterReg<unknown>;
  #aux: unknown = null;
  #attached = false;

  /** @internal Made by bpfIterLinkCreate, which attaches the target next. */
  constructor(kernel: Kernel, prog: BpfProg, reg: BpfIterReg<unknown>) {
    super(kernel, prog, BpfAttachType.TRACE_ITER);
    this.#kernel = kernel;
    this.#reg = reg;
    this.target = reg.target as IterTarget;
  }

  /** @internal The target's attach_target, whose aux info the link then holds. */
  attachTarget(params: unknown): void {
    this.#aux = this.#reg.attachTarget(this.#kernel, params);
    this.#attached = true;
  }

  /** The target's parameters: the cgroup iterator's order and start cgroup (referenced by the link). */
  get params(): BpfIterLinkParams {
    return this.target === 'cgroup' ? { cgroup: this.#aux as CgroupIterAux } : {};
  }

  /** An iterator link is attached from creation until its release: it has no detach. */
  get attached(): boolean {
    return !this.released;
  }

  /**
   * bpf_iter_new_fd: a new session over the link's target, running the link's current program.
   * The session holds the link and that program until it is closed. EBADF once the link is released.
   */
  open(opts: IterOpenOpts = {}): IterSession {
    if (this.released) throw bpfError('EBADF', `link ${this.id} is released`);
    return new IterSession(this.#kernel, this.#reg.seqInfo, this.#aux, this.prog, opts, this);
  }

  /**
   * bpf_iter_link_replace: EPERM if the link no longer runs oldProg; EINVAL for a program of another
   * type, attach type or target (attach_btf_id: iter.s/cgroup and iter/cgroup share a target).
   */
  protected override updateProg(newProg: BpfProg, oldProg: BpfProg | null): void {
    if (oldProg !== null && this.prog !== oldProg) {
      throw bpfError('EPERM', `link ${this.id} runs prog ${this.prog.id}, not the expected ${oldProg.id}`);
    }
    const cur = this.prog;
    if (newProg.progType !== cur.progType || newProg.expectedAttachType !== cur.expectedAttachType || newProg.sec.iterTarget !== cur.sec.iterTarget) {
      throw bpfError('EINVAL', `prog ${newProg.id} (${newProg.section}) is not a ${this.target} iterator program`);
    }
    this.swapProg(newProg);
  }

  /** bpf_iter_link_release: the target's detach_target (the cgroup iterator drops its cgroup); nothing for a refused link. */
  protected linkRelease(): void {
    if (!this.#attached) return;
    this.#attached = false;
    this.#reg.detachTarget?.(this.#aux);
  }

  /** bpf_iter_link_fill_link_info: the target's name, then its own fields. */
  protected override fillLinkInfo(): Record<string, unknown> {
    return { iter: { targetName: this.target, ...this.#reg.fillLinkInfo?.(this.#aux) } };
  }

  /** bpf_iter_link_show_fdinfo: "target_name:\t<target>", then the target's lines. */
  override fdinfo(): string {
    return `target_name:\t${this.target}\n${this.#reg.showFdinfo?.(this.#aux) ?? ''}`;
  }
}

/**
 * BPF_LINK_CREATE with BPF_TRACE_ITER (bpf_iter_link_attach): attaches an iterator program to the
 * target its section names, with that target's parameters, and returns the creator's handle.
 *
 * EINVAL for a program that is not an iterator program; ENOENT for a target vbpffs does not have;
 * then the target's own checks. For the cgroup iterator (spec 5.3): `cgroup.order` must be one of
 * the five orders (no parameters is UNSPEC: EINVAL), the start cgroup is given at most one way
 * (EINVAL), a cgroup that is not one is EBADF, a path or id naming no live cgroup ENOENT, and no
 * start cgroup means the root. cgroup_view takes no parameters (EINVAL). As bpf_link_prime does,
 * the link's id is allocated before the target checks its parameters, so a refused one uses an id.
 */
export function bpfIterLinkCreate(kernel: Kernel, progRef: ProgRef, opts: IterLinkOpts = {}): Handle<BpfIterLink> {
  const prog = progFromRef(progRef);
  if (prog.sec.family !== 'iter' || prog.expectedAttachType !== BpfAttachType.TRACE_ITER) {
    throw bpfError('EINVAL', `prog ${prog.id} (${prog.section}) is not an iterator program`);
  }
  /* c8 ignore next 2 -- every iterator section names a registered target; ENOENT as the kernel would say */
  const reg = TARGETS.get(prog.sec.iterTarget ?? '');
  if (reg === undefined) throw bpfError('ENOENT', `no iterator target '${prog.sec.iterTarget}'`);
  const link = new BpfIterLink(kernel, prog, reg);
  try {
    link.attachTarget(opts.cgroup);
  } catch (e) {
    // bpf_link_cleanup: nothing was attached, so the release only drops the program.
    link.put();
    throw e;
  }
  return new Handle(link);
}
