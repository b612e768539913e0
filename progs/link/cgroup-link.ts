/**
 * struct bpf_cgroup_link (spec 4.7; "Add support for cgroup bpf_link", kernel/bpf/cgroup.c).
 *
 * A cgroup link always attaches in BPF_F_ALLOW_MULTI mode, so it sits beside legacy MULTI
 * attachments and is refused (EPERM) where a NONE or OVERRIDE program is attached. It holds a
 * reference on its cgroup but does not keep the cgroup's BPF state alive ("cgroup itself doesn't
 * 'own' bpf_link"): at rmdir the link is auto-detached and stays, defunct, while handles or pins hold
 * it. Detached or auto-detached, it reports cgroup id 0 and an update is ENOLINK.
 */
import { BPF_F_AFTER, BPF_F_ALLOW_MULTI, BPF_F_BEFORE, BPF_F_ID, BPF_F_LINK, BPF_F_PREORDER, BpfAttachType, BpfLinkType, bpfError } from '../../uapi';
import type { KernfsNode } from '../../tags';
import { Handle } from '../object';
import type { Kernel } from '../kernel';
import type { BpfProg } from '../prog/prog';
import {
  cgroupBpfAttachEntry,
  cgroupBpfDetachEntry,
  cgroupBpfTable,
  cgroupGetFromFd,
  type AttachAnchor,
  type CgroupTarget,
} from '../cgroup/cgroup-bpf';
import { cgroupAtype, cgroupAttachType, checkProgAttachType } from '../cgroup/attach-type';
import { replaceEffectiveProg } from '../cgroup/effective';
import { BpfLink, progFromRef, type ProgRef } from './link';

/** BPF_F_LINK_ATTACH_MASK: what BPF_LINK_CREATE takes for a cgroup. */
const LINK_ATTACH_MASK = BPF_F_ID | BPF_F_BEFORE | BPF_F_AFTER | BPF_F_PREORDER | BPF_F_LINK;

/** BPF_LINK_CREATE options for a cgroup (link_create.flags and link_create.cgroup). */
export interface CgroupLinkOpts extends AttachAnchor {
  flags?: number;
  expectedRevision?: number;
}

export class BpfCgroupLink extends BpfLink {
  readonly type = BpfLinkType.CGROUP;
  #cgroup: KernfsNode | null;
  readonly #kernel: Kernel;

  /** @internal Made by cgroupBpfLinkAttach; takes a reference on the cgroup. */
  constructor(kernel: Kernel, prog: BpfProg, attachType: BpfAttachType, cgroup: KernfsNode) {
    super(kernel, prog, attachType);
    this.#kernel = kernel;
    this.#cgroup = cgroup.get();
  }

  /** The cgroup the link is attached to; null once detached or auto-detached. */
  get cgroup(): KernfsNode | null {
    return this.#cgroup;
  }

  get attached(): boolean {
    return this.#cgroup !== null;
  }

  /**
   * bpf_cgroup_link_auto_detach, from cgroup_bpf_release: the cgroup's BPF state is gone with the
   * link's entry; the link only drops its cgroup.
   */
  autoDetach(): void {
    const cgrp = this.#cgroup;
    this.#cgroup = null;
    cgrp?.put();
  }

  /** cgroup_bpf_replace: in place, in every effective array the link is in. */
  protected override updateProg(newProg: BpfProg, oldProg: BpfProg | null): void {
    const cgrp = this.#cgroup;
    // "link might have been auto-released by dying cgroup, so fail"
    if (cgrp === null) throw bpfError('ENOLINK', `link ${this.id} is detached`);
    if (oldProg !== null && this.prog !== oldProg) {
      throw bpfError('EPERM', `link ${this.id} runs prog ${this.prog.id}, not the expected ${oldProg.id}`);
    }
    if (newProg.progType !== this.prog.progType) throw bpfError('EINVAL', `prog ${newProg.id} is of another type`);
    const table = cgroupBpfTable(this.#kernel);
    const atype = cgroupAtype(this.attachType);
    const list = table.peek(cgrp)?.lists[atype];
    /* c8 ignore next -- an attached link is in its cgroup's list; ENOENT as the kernel would say */
    if (list === undefined || !list.progs.some((pl) => pl.link === this)) throw bpfError('ENOENT', `link ${this.id} is not in its cgroup`);
    list.revision++;
    this.swapProg(newProg);
    replaceEffectiveProg(table, cgrp, atype, this);
  }

  /** bpf_cgroup_link_detach: detaches now; 0 also for a link already defunct. */
  protected override linkDetach(): void {
    this.linkRelease();
  }

  /** bpf_cgroup_link_release */
  protected linkRelease(): void {
    const cgrp = this.#cgroup;
    if (cgrp === null) return;
    cgroupBpfDetachEntry(this.#kernel, cgrp, null, this, this.attachType, 0);
    this.autoDetach();
  }

  protected override fillLinkInfo(): Record<string, unknown> {
    return { cgroup: { cgroupId: this.#cgroup?.id ?? 0, attachType: this.attachType } };
  }

  protected override fdinfo(): string {
    return `cgroup_id:\t${this.#cgroup?.id ?? 0}\nattach_type:\t${this.attachType}\n`;
  }
}

/**
 * BPF_LINK_CREATE for a cgroup attach type (cgroup_bpf_link_attach): attaches prog through a new
 * link in MULTI mode and returns the creator's handle. The link takes its own reference on prog.
 * The link's id is allocated before the attach, as bpf_link_prime does, so a refused attach still
 * uses one up.
 */
export function cgroupBpfLinkAttach(
  kernel: Kernel,
  target: CgroupTarget,
  type: BpfAttachType | string,
  progRef: ProgRef,
  opts: CgroupLinkOpts = {},
): Handle<BpfCgroupLink> {
  const attachType = cgroupAttachType(type);
  const prog = progFromRef(progRef);
  checkProgAttachType(prog, attachType);
  const flags = opts.flags ?? 0;
  if (flags & ~LINK_ATTACH_MASK) throw bpfError('EINVAL', `link flags 0x${flags.toString(16)}: unknown bits`);
  const cgrp = cgroupGetFromFd(kernel, target);
  const link = new BpfCgroupLink(kernel, prog, attachType, cgrp);
  try {
    cgroupBpfAttachEntry(kernel, cgrp, null, null, link, attachType, BPF_F_ALLOW_MULTI | flags, opts, opts.expectedRevision ?? 0);
  } catch (e) {
    // bpf_link_cleanup: the link was never attached, so its release has nothing to detach.
    link.autoDetach();
    link.put();
    throw e;
  }
  return new Handle(link);
}
