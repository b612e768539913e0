/**
 * struct cgroup_bpf and what kernel/bpf/cgroup.c does with it: BPF_PROG_ATTACH, BPF_PROG_DETACH and
 * BPF_PROG_QUERY on cgroups, the attach half of cgroup links, and cgroup_bpf_release.
 *
 * Each cgroup has, per attach type, a list of attachments (legacy programs and links, in run order),
 * the mode they were made in (flags: NONE, BPF_F_ALLOW_OVERRIDE or BPF_F_ALLOW_MULTI), a revision
 * bumped by every change, and an effective array: what actually runs when the hook fires for that
 * cgroup (effective.ts). The rules and their errnos are spec sections 4.1-4.6, checked in the
 * kernel's order (__cgroup_bpf_attach, __cgroup_bpf_detach, __cgroup_bpf_query, newest kernels).
 *
 * State is kept per Kernel, so two Kernels over one hierarchy never see each other's programs. The
 * kernel gives every cgroup its state at mkdir (cgroup_bpf_inherit); here it is made on first use
 * (an attach, a fire, a query, or an update of an ancestor's arrays) by inheriting the parent's
 * effective arrays, which is what cgroup_bpf_inherit would have computed: a cgroup with nothing of its
 * own runs exactly what its parent runs.
 *
 * Lifetime: a legacy attachment holds a reference on its program, owned by the cgroup; a link entry
 * holds nothing (the link holds its program, and its holders hold the link). At rmdir the cgroup's
 * BPF state is released (cgroup_bpf_release, through KernfsNode.onBpfRelease): legacy programs are
 * put and links auto-detached. A removed cgroup runs nothing, and the attach, detach and query calls
 * give ENOENT for it, as cgroup_get_from_fd does for a removed cgroup's fd.
 */
import createDebug from 'debug';
import {
  BPF_F_AFTER,
  BPF_F_ALLOW_MULTI,
  BPF_F_ALLOW_OVERRIDE,
  BPF_F_BEFORE,
  BPF_F_ID,
  BPF_F_LINK,
  BPF_F_PREORDER,
  BPF_F_QUERY_EFFECTIVE,
  BPF_F_REPLACE,
  BpfAttachType,
  BpfError,
  bpfError,
} from '../../uapi';
import { KernfsNode } from '../../tags';
import { Handle, type BpfObject } from '../object';
import type { Kernel } from '../kernel';
import type { BpfProg } from '../prog/prog';
import { CgroupStorageMap, cgroupStorageFree, cgroupStoragesAlloc, type CgroupStorage } from '../maps/cgroup-storage';
import type { BpfCgroupLink } from '../link/cgroup-link';
import { BpfLink, progFromRef, type ProgRef } from '../link/link';
import {
  CGROUP_ATTACH_TYPES,
  NR_CGROUP_ATYPES,
  attachTypeToProgType,
  cgroupAtype,
  cgroupAttachType,
  checkProgAttachType,
} from './attach-type';
import { EMPTY_PROG_ARRAY, purgeEffectiveProgs, updateEffectiveProgs, type BpfProgArray } from './effective';

const debug = createDebug('vbpffs:cgroup');

/** BPF_CGROUP_MAX_PROGS: attachments per cgroup and attach type. */
export const BPF_CGROUP_MAX_PROGS = 64;

/** struct bpf_prog_list: one attachment. Exactly one of prog and link is set while it is live. */
export interface BpfProgList {
  prog: BpfProg | null;
  link: BpfCgroupLink | null;
  flags: number;
  /** The old CGROUP_STORAGE storages the program got at attach (pl->storage). */
  storages: readonly CgroupStorage[];
}

/** One attach type of one cgroup: cgrp->bpf.progs[atype], .flags[atype], .revisions[atype]. */
export interface CgroupBpfList {
  readonly progs: BpfProgList[];
  flags: number;
  /** Starts at 1, so an expected_revision of 1 matches an empty list (cgroup_mprog_opts selftest). */
  revision: number;
}

/** The program behind a live attachment, whether made by a link or directly (prog_list_prog). */
export function progListProg(pl: BpfProgList): BpfProg {
  return pl.prog ?? pl.link!.prog;
}

/** prog_list_length: live attachments (entries being detached have neither prog nor link). */
export function progListLength(list: CgroupBpfList | undefined): number {
  let cnt = 0;
  if (list !== undefined) for (const pl of list.progs) if (pl.prog !== null || pl.link !== null) cnt++;
  return cnt;
}

/** struct cgroup_bpf: one cgroup's BPF state in one Kernel. */
export class CgroupBpf {
  /** effective[atype]: the programs that run when the hook fires for this cgroup, in order. */
  readonly effective: BpfProgArray[];
  /** lists[atype], made on the first attach of that type. */
  readonly lists: (CgroupBpfList | undefined)[] = [];
  /** The array being computed by an update, activated once every cgroup's is ready. */
  inactive: BpfProgArray | undefined = undefined;
  /** Attachments over all types; the release hook is registered while there are any. */
  #entries = 0;
  #unhook: (() => void) | null = null;

  constructor(
    readonly table: CgroupBpfTable,
    readonly cgroup: KernfsNode,
    inherited: readonly BpfProgArray[] | null,
  ) {
    this.effective = inherited === null ? new Array<BpfProgArray>(NR_CGROUP_ATYPES).fill(EMPTY_PROG_ARRAY) : inherited.slice();
  }

  list(atype: number): CgroupBpfList {
    return (this.lists[atype] ??= { progs: [], flags: 0, revision: 1 });
  }

  /** An attachment was added: the first one registers cgroup_bpf_release at rmdir. */
  entryAdded(): void {
    if (this.#entries++ === 0) this.#unhook = this.cgroup.onBpfRelease(() => cgroupBpfRelease(this));
  }

  /** An attachment is gone: with none left, nothing needs releasing at rmdir. */
  entryRemoved(): void {
    if (--this.#entries > 0) return;
    this.#unhook?.();
    this.#unhook = null;
  }

  /** cgroup_bpf_release's bookkeeping: every entry is gone. */
  releaseEntries(): void {
    this.#entries = 0;
    this.#unhook = null;
  }
}

/**
 * The BPF state of every cgroup in one Kernel. `failAllocAfter` is fault injection for tests (the
 * kernel's failslab): when it reaches zero the next effective array allocation fails with ENOMEM.
 */
export class CgroupBpfTable {
  readonly #states = new WeakMap<KernfsNode, CgroupBpf>();
  failAllocAfter = -1;

  /** The cgroup's state if it has one. */
  peek(cgroup: KernfsNode): CgroupBpf | undefined {
    return this.#states.get(cgroup);
  }

  /** The cgroup's state, inherited from its parent's if it has none yet (cgroup_bpf_inherit). */
  of(cgroup: KernfsNode): CgroupBpf {
    let st = this.#states.get(cgroup);
    if (st === undefined) {
      const parent = cgroup.parent === null ? null : this.of(cgroup.parent);
      st = new CgroupBpf(this, cgroup, parent === null ? null : parent.effective);
      this.#states.set(cgroup, st);
    }
    return st;
  }

  forget(cgroup: KernfsNode): void {
    this.#states.delete(cgroup);
  }
}

const tables = new WeakMap<Kernel, CgroupBpfTable>();

/** The Kernel's cgroup BPF state. */
export function cgroupBpfTable(kernel: Kernel): CgroupBpfTable {
  let t = tables.get(kernel);
  if (t === undefined) tables.set(kernel, (t = new CgroupBpfTable()));
  return t;
}

/**
 * Makes the next `nth` effective array allocation of this Kernel fail with ENOMEM (1: the very next).
 * For tests of the rollback paths, as the kernel's fault injection is; 0 turns it off.
 */
export function failProgArrayAlloc(kernel: Kernel, nth: number): void {
  cgroupBpfTable(kernel).failAllocAfter = nth - 1;
}

/** A cgroup where the kernel takes a cgroup fd: the node, its id or its path. */
export type CgroupTarget = KernfsNode | number | string;

/**
 * cgroup_get_from_fd: the live cgroup. A removed cgroup is ENOENT (css_tryget_online fails), as is
 * an id or path that names none (the kernel would have failed earlier, opening the fd); anything
 * that is not a cgroup is EBADF.
 */
export function cgroupGetFromFd(kernel: Kernel, target: CgroupTarget): KernfsNode {
  let cgrp: unknown = target;
  if (typeof target === 'number' || typeof target === 'string') {
    cgrp = typeof target === 'number' ? kernel.cgroups?.cgroupById(target) : kernel.cgroups?.cgroupByPath(target);
    if (cgrp === undefined) throw bpfError('ENOENT', `no cgroup ${typeof target === 'number' ? 'with id ' : ''}${target}`);
  }
  if (!(cgrp instanceof KernfsNode)) throw bpfError('EBADF', 'not a cgroup');
  if (cgrp.dying) throw bpfError('ENOENT', `cgroup ${cgrp.path} (id ${cgrp.id}) has been removed`);
  return cgrp;
}

// ---------------------------------------------------------------------------------------------------
// Attach.

/** Where a new attachment goes in its list (BPF_F_BEFORE/AFTER, spec 4.6). */
export interface AttachAnchor {
  /** The anchor as an object (relative_fd): a program, or with BPF_F_LINK a link. */
  relativeFd?: ProgRef | BpfLink | Handle<BpfLink>;
  /** The anchor's id (relative_id), read with BPF_F_ID. */
  relativeId?: number;
}

/** BPF_PROG_ATTACH options. */
export interface CgroupAttachOpts extends AttachAnchor {
  /** attach_flags: BPF_F_ALLOW_OVERRIDE, _MULTI, _REPLACE, _PREORDER, _BEFORE, _AFTER, _ID, _LINK. */
  flags?: number;
  /** replace_bpf_fd: the program to replace, read only with BPF_F_ALLOW_MULTI | BPF_F_REPLACE. */
  replaceProg?: ProgRef;
  /** expected_revision: 0 (or absent) skips the check. */
  expectedRevision?: number;
}

/** BPF_F_ATTACH_MASK_BASE | BPF_F_ATTACH_MASK_MPROG: what BPF_PROG_ATTACH takes for cgroups. */
const ATTACH_FLAGS_MASK =
  BPF_F_ALLOW_OVERRIDE | BPF_F_ALLOW_MULTI | BPF_F_REPLACE | BPF_F_PREORDER | BPF_F_BEFORE | BPF_F_AFTER | BPF_F_ID | BPF_F_LINK;

/**
 * BPF_PROG_ATTACH (bpf_prog_attach + cgroup_bpf_prog_attach): attaches a program to a cgroup hook.
 * The cgroup takes its own reference on the program; the caller keeps its handle.
 */
export function cgroupBpfAttach(
  kernel: Kernel,
  target: CgroupTarget,
  type: BpfAttachType | string,
  progRef: ProgRef,
  opts: CgroupAttachOpts = {},
): void {
  const attachType = cgroupAttachType(type);
  const flags = opts.flags ?? 0;
  if (flags & ~ATTACH_FLAGS_MASK) throw bpfError('EINVAL', `attach flags 0x${flags.toString(16)}: unknown bits`);
  const prog = progFromRef(progRef);
  checkProgAttachType(prog, attachType);
  const cgrp = cgroupGetFromFd(kernel, target);
  let replaceProg: BpfProg | null = null;
  // The kernel reads replace_bpf_fd only for MULTI | REPLACE; __cgroup_bpf_attach refuses the rest.
  if (flags & BPF_F_ALLOW_MULTI && flags & BPF_F_REPLACE) {
    if (opts.replaceProg === undefined) throw bpfError('EBADF', 'BPF_F_REPLACE without the program to replace');
    replaceProg = progFromRef(opts.replaceProg);
    if (replaceProg.progType !== prog.progType) throw bpfError('EINVAL', 'the program to replace is of another type');
  }
  cgroupBpfAttachEntry(kernel, cgrp, prog, replaceProg, null, attachType, flags, opts, opts.expectedRevision ?? 0);
}

/**
 * __cgroup_bpf_attach: exactly one of prog and link. Throws with nothing changed on failure; on
 * success a legacy entry holds a reference on prog, and a replaced program's reference is dropped.
 */
export function cgroupBpfAttachEntry(
  kernel: Kernel,
  cgrp: KernfsNode,
  prog: BpfProg | null,
  replaceProg: BpfProg | null,
  link: BpfCgroupLink | null,
  type: BpfAttachType,
  flags: number,
  anchor: AttachAnchor,
  revision: number,
): void {
  const savedFlags = flags & (BPF_F_ALLOW_OVERRIDE | BPF_F_ALLOW_MULTI);
  const newProg = prog ?? link!.prog;
  if ((flags & BPF_F_ALLOW_OVERRIDE && flags & BPF_F_ALLOW_MULTI) || (flags & BPF_F_REPLACE && !(flags & BPF_F_ALLOW_MULTI))) {
    throw bpfError('EINVAL', 'attach flags: OVERRIDE and MULTI together, or REPLACE without MULTI');
  }
  if (flags & BPF_F_REPLACE && flags & (BPF_F_BEFORE | BPF_F_AFTER)) {
    throw bpfError('EINVAL', 'attach flags: BPF_F_REPLACE with BPF_F_BEFORE or BPF_F_AFTER');
  }
  if (link !== null && (prog !== null || replaceProg !== null)) throw bpfError('EINVAL', 'both a link and a program');
  if ((replaceProg !== null) !== ((flags & BPF_F_REPLACE) !== 0)) throw bpfError('EINVAL', 'BPF_F_REPLACE without a program to replace');

  const table = cgroupBpfTable(kernel);
  const atype = cgroupAtype(type);
  const st = table.of(cgrp);
  const list = st.list(atype);
  if (revision !== 0 && revision !== list.revision) {
    throw bpfError('ESTALE', `expected revision ${revision}, the list is at ${list.revision}`);
  }
  if (!hierarchyAllowsAttach(table, cgrp, atype)) {
    throw bpfError('EPERM', `an ancestor of ${cgrp.path} has a program attached without BPF_F_ALLOW_OVERRIDE or _MULTI`);
  }
  // "Disallow attaching non-overridable on top of existing overridable in this cgroup. Disallow
  // attaching multi-prog if overridable or none": a link (always MULTI) cannot join a NONE/OVERRIDE
  // program, nor the other way round.
  if (list.progs.length > 0 && list.flags !== savedFlags) {
    throw bpfError('EPERM', `${cgrp.path} has programs attached in another mode (flags 0x${list.flags.toString(16)})`);
  }
  // Checked before the entry is looked up, so a full list refuses even a replacement.
  if (progListLength(list) >= BPF_CGROUP_MAX_PROGS) {
    throw bpfError('E2BIG', `${cgrp.path} already has ${BPF_CGROUP_MAX_PROGS} programs of this attach type`);
  }
  let pl = findAttachEntry(list, prog, link, replaceProg, (flags & BPF_F_ALLOW_MULTI) !== 0);
  const { storages, created } = cgroupStoragesFor(newProg, cgrp, type);
  const oldProg = pl?.prog ?? null;
  const replaced = pl !== null;
  if (pl === null) {
    pl = { prog: null, link: null, flags: 0, storages: [] };
    try {
      insertProgList(kernel, list, pl, prog, link, flags, anchor);
    } catch (e) {
      for (const s of created) cgroupStorageFree(s);
      throw e;
    }
  }
  pl.prog = prog;
  pl.link = link;
  pl.flags = flags;
  pl.storages = storages;
  const oldFlags = list.flags;
  list.flags = savedFlags;
  try {
    updateEffectiveProgs(table, cgrp, atype);
  } catch (e) {
    if (replaced) {
      pl.prog = oldProg;
      pl.link = null;
    } else {
      list.progs.splice(list.progs.indexOf(pl), 1);
    }
    list.flags = oldFlags;
    for (const s of created) cgroupStorageFree(s);
    throw e;
  }
  list.revision++;
  prog?.get();
  // Only a legacy program is ever replaced in place (a link's entry is never found for replacing).
  if (replaced) oldProg!.put();
  else st.entryAdded();
  debug('attach %s prog %d to %s (%s)', link === null ? 'legacy' : `link ${link.id}`, newProg.id, cgrp.path, type);
}

/**
 * hierarchy_allows_attach: walking up from the parent, the first ancestor in MULTI mode allows, the
 * first with a program decides by its OVERRIDE flag (NONE forbids: "No further bpf programs allowed
 * in the subtree"), and no program above allows.
 */
function hierarchyAllowsAttach(table: CgroupBpfTable, cgrp: KernfsNode, atype: number): boolean {
  for (let p = cgrp.parent; p !== null; p = p.parent) {
    const list = table.peek(p)?.lists[atype];
    const flags = list?.flags ?? 0;
    if (flags & BPF_F_ALLOW_MULTI) return true;
    if (progListLength(list) === 1) return (flags & BPF_F_ALLOW_OVERRIDE) !== 0;
  }
  return true;
}

/**
 * find_attach_entry: in NONE/OVERRIDE mode the one existing entry, which the new program replaces;
 * in MULTI mode no entry (append) unless replacing, and the same program or link twice is EINVAL.
 * Replacing a program with itself is allowed.
 */
function findAttachEntry(
  list: CgroupBpfList,
  prog: BpfProg | null,
  link: BpfCgroupLink | null,
  replaceProg: BpfProg | null,
  allowMulti: boolean,
): BpfProgList | null {
  if (!allowMulti) return list.progs[0] ?? null;
  for (const pl of list.progs) {
    if (prog !== null && pl.prog === prog && prog !== replaceProg) throw bpfError('EINVAL', `prog ${prog.id} is already attached here`);
    if (link !== null && pl.link === link) throw bpfError('EINVAL', `link ${link.id} is already attached here`);
  }
  if (replaceProg === null) return null;
  const pl = list.progs.find((e) => e.prog === replaceProg);
  if (pl === undefined) throw bpfError('ENOENT', `prog ${replaceProg.id} to replace is not attached here`);
  return pl;
}

/**
 * bpf_cgroup_storages_alloc: the program's old CGROUP_STORAGE storage for this cgroup and attach
 * type, existing or new. `created` lists the new ones, freed again if the attach fails.
 */
function cgroupStoragesFor(
  prog: BpfProg,
  cgrp: KernfsNode,
  type: BpfAttachType,
): { storages: CgroupStorage[]; created: CgroupStorage[] } {
  const storages: CgroupStorage[] = [];
  const created: CgroupStorage[] = [];
  for (const map of prog.maps) {
    if (!(map instanceof CgroupStorageMap)) continue;
    const r = cgroupStoragesAlloc(map, cgrp, type);
    storages.push(r.storage);
    if (r.created) created.push(r.storage);
  }
  return { storages, created };
}

/**
 * insert_pl_to_hlist / get_prog_list: places a new entry by its anchor. With an anchor (BPF_F_ID,
 * BPF_F_LINK or relative_fd) exactly one of BEFORE and AFTER; a link entry takes only a link
 * anchor and a program entry only a program anchor; the anchor must be in this list with the same
 * BPF_F_PREORDER (EINVAL if not, ENOENT if absent). No anchor: BEFORE prepends, anything else
 * appends. Ordering is within this cgroup's list only; the effective array is not reordered.
 */
function insertProgList(
  kernel: Kernel,
  list: CgroupBpfList,
  pl: BpfProgList,
  prog: BpfProg | null,
  link: BpfCgroupLink | null,
  flags: number,
  anchor: AttachAnchor,
): void {
  const isLink = (flags & BPF_F_LINK) !== 0;
  const isId = (flags & BPF_F_ID) !== 0;
  const isBefore = (flags & BPF_F_BEFORE) !== 0;
  const isAfter = (flags & BPF_F_AFTER) !== 0;
  const idOrFd = anchor.relativeFd !== undefined || (anchor.relativeId ?? 0) !== 0;
  if (isLink || isId || idOrFd) {
    if (isBefore === isAfter) throw bpfError('EINVAL', 'an anchor needs exactly one of BPF_F_BEFORE and BPF_F_AFTER');
    if ((isLink && link === null) || (!isLink && prog === null)) {
      throw bpfError('EINVAL', 'a link is placed relative to a link, a program relative to a program');
    }
  } else if (list.progs.length > 0 && isBefore && isAfter) {
    throw bpfError('EINVAL', 'BPF_F_BEFORE and BPF_F_AFTER together');
  }
  let at: number;
  if (!isLink && !isId && !idOrFd) {
    at = isBefore ? 0 : list.progs.length;
  } else {
    const target = anchorObject(kernel, isLink, isId, anchor);
    const i = list.progs.findIndex((e) => (isLink ? e.link === target : e.prog === target));
    if (i < 0) throw bpfError('ENOENT', `the anchor ${target.kind} ${target.id} is not attached here`);
    if (((list.progs[i]!.flags & BPF_F_PREORDER) !== 0) !== ((flags & BPF_F_PREORDER) !== 0)) {
      throw bpfError('EINVAL', 'the anchor and the new entry differ in BPF_F_PREORDER');
    }
    at = isBefore ? i : i + 1;
  }
  list.progs.splice(at, 0, pl);
}

/** bpf_get_anchor_link / bpf_get_anchor_prog: by id (ENOENT if none) or by object. */
function anchorObject(kernel: Kernel, isLink: boolean, isId: boolean, anchor: AttachAnchor): BpfObject {
  const kind = isLink ? 'link' : 'prog';
  if (isId) {
    const h = kernel.getById(kind, anchor.relativeId ?? 0);
    const obj = h.object;
    h.close();
    return obj;
  }
  if (anchor.relativeFd === undefined) {
    // relative_id without BPF_F_ID is read as an fd, and vbpffs has no fds; no anchor at all is what
    // bpf_get_anchor_link gives for BPF_F_LINK alone.
    if ((anchor.relativeId ?? 0) !== 0) throw bpfError('EBADF', `relative_id ${anchor.relativeId} without BPF_F_ID`);
    throw bpfError('EINVAL', 'BPF_F_LINK without an anchor');
  }
  const obj: BpfObject = anchor.relativeFd instanceof Handle ? anchor.relativeFd.object : anchor.relativeFd;
  if (obj.kind !== kind) throw bpfError('EINVAL', `the anchor is a ${obj.kind}, not a ${kind}`);
  return obj;
}

// ---------------------------------------------------------------------------------------------------
// Detach.

/** BPF_PROG_DETACH options. */
export interface CgroupDetachOpts {
  expectedRevision?: number;
}

/**
 * BPF_PROG_DETACH (cgroup_bpf_prog_detach). In NONE/OVERRIDE mode the one program is detached
 * whatever is passed, even nothing ("to maintain backward compatibility NONE and OVERRIDE cgroups
 * allow detaching with invalid FD"); in MULTI mode the program is required (EINVAL without it) and
 * must be a legacy attachment here (ENOENT otherwise, also for a link's program). A program of the
 * wrong type counts as none, as bpf_prog_get_type failing does.
 */
export function cgroupBpfDetach(
  kernel: Kernel,
  target: CgroupTarget,
  type: BpfAttachType | string,
  progRef?: ProgRef | null,
  opts: CgroupDetachOpts = {},
): void {
  const attachType = cgroupAttachType(type);
  const cgrp = cgroupGetFromFd(kernel, target);
  let prog: BpfProg | null = null;
  if (progRef !== undefined && progRef !== null) {
    try {
      prog = progFromRef(progRef);
    } catch {
      prog = null;
    }
    if (prog !== null && prog.progType !== attachTypeToProgType(attachType)) prog = null;
  }
  cgroupBpfDetachEntry(kernel, cgrp, prog, null, attachType, opts.expectedRevision ?? 0);
}

/** __cgroup_bpf_detach: at most one of prog and link. Cannot fail once the entry is found. */
export function cgroupBpfDetachEntry(
  kernel: Kernel,
  cgrp: KernfsNode,
  prog: BpfProg | null,
  link: BpfCgroupLink | null,
  type: BpfAttachType,
  revision: number,
): void {
  const table = cgroupBpfTable(kernel);
  const atype = cgroupAtype(type);
  const st = table.of(cgrp);
  const list = st.list(atype);
  if (revision !== 0 && revision !== list.revision) {
    throw bpfError('ESTALE', `expected revision ${revision}, the list is at ${list.revision}`);
  }
  const pl = findDetachEntry(list, prog, link, (list.flags & BPF_F_ALLOW_MULTI) !== 0);
  // Marked deleted so the recomputation leaves it out.
  const oldProg = pl.prog;
  pl.prog = null;
  pl.link = null;
  try {
    updateEffectiveProgs(table, cgrp, atype);
  } catch {
    // No memory for new arrays: take the program out of the current ones in place instead, so a
    // detach never fails (purge_effective_progs).
    purgeEffectiveProgs(table, cgrp, pl, atype);
  }
  list.progs.splice(list.progs.indexOf(pl), 1);
  list.revision++;
  // The last program gone: the cgroup may be attached in another mode next.
  if (list.progs.length === 0) list.flags = 0;
  st.entryRemoved();
  oldProg?.put();
  debug('detach %s from %s (%s)', link === null ? `prog ${oldProg?.id}` : `link ${link.id}`, cgrp.path, type);
}

/** find_detach_entry */
function findDetachEntry(list: CgroupBpfList, prog: BpfProg | null, link: BpfCgroupLink | null, allowMulti: boolean): BpfProgList {
  if (!allowMulti) {
    const pl = list.progs[0];
    if (pl === undefined) throw bpfError('ENOENT', 'nothing is attached');
    return pl;
  }
  if (prog === null && link === null) throw bpfError('EINVAL', 'detaching from a MULTI cgroup needs the program');
  const pl = list.progs.find((e) => e.prog === prog && e.link === link);
  if (pl === undefined) throw bpfError('ENOENT', `${prog !== null ? `prog ${prog.id}` : `link ${link!.id}`} is not attached here`);
  return pl;
}

/**
 * cgroup_bpf_release, at rmdir: every legacy program is put and every link auto-detached (it stays
 * alive, defunct, for its holders); the cgroup runs nothing from now on.
 */
function cgroupBpfRelease(st: CgroupBpf): void {
  const links: BpfCgroupLink[] = [];
  for (const list of st.lists) {
    if (list === undefined) continue;
    for (const pl of list.progs.splice(0)) {
      pl.prog?.put();
      if (pl.link !== null) links.push(pl.link);
    }
    list.flags = 0;
  }
  st.effective.fill(EMPTY_PROG_ARRAY);
  st.releaseEntries();
  st.table.forget(st.cgroup);
  for (const link of links) link.autoDetach();
  debug('released the BPF state of %s', st.cgroup.path);
}

// ---------------------------------------------------------------------------------------------------
// Query.

/** BPF_PROG_QUERY options. */
export interface CgroupQueryOpts {
  /** query_flags: BPF_F_QUERY_EFFECTIVE lists the effective array instead of the cgroup's own. */
  queryFlags?: number;
  /** prog_cnt on input: room for this many ids. Absent: room for all. 0: the count only. */
  progCnt?: number;
  /** Ask for prog_attach_flags (each program's flags): not with BPF_F_QUERY_EFFECTIVE. */
  progAttachFlags?: boolean;
}

/** What BPF_PROG_QUERY writes back. */
export interface CgroupQuery {
  /** The cgroup's mode for this type; always 0 for an effective query. */
  attachFlags: number;
  /** The whole count, even when fewer ids fit. */
  progCnt: number;
  progIds: number[];
  /** With progAttachFlags: the mode of each listed program. */
  progAttachFlags?: number[];
  /** The list's revision, for a non-effective query (0 for an effective one). */
  revision: number;
}

/** ENOSPC from BPF_PROG_QUERY, carrying what was written anyway: the ids that fit and the count. */
export class CgroupQueryError extends BpfError {
  constructor(
    readonly result: CgroupQuery,
    message: string,
  ) {
    super('ENOSPC', message);
  }
}

/** BPF_PROG_QUERY for a cgroup (__cgroup_bpf_query). A short buffer is ENOSPC (CgroupQueryError). */
export function cgroupBpfQuery(
  kernel: Kernel,
  target: CgroupTarget,
  type: BpfAttachType | string,
  opts: CgroupQueryOpts = {},
): CgroupQuery {
  const queryFlags = opts.queryFlags ?? 0;
  if (queryFlags & ~BPF_F_QUERY_EFFECTIVE) throw bpfError('EINVAL', `query flags 0x${queryFlags.toString(16)}`);
  const attachType = cgroupAttachType(type);
  const cgrp = cgroupGetFromFd(kernel, target);
  const effectiveQuery = (queryFlags & BPF_F_QUERY_EFFECTIVE) !== 0;
  if (effectiveQuery && opts.progAttachFlags === true) {
    throw bpfError('EINVAL', 'prog_attach_flags are not given for an effective query');
  }
  const atype = cgroupAtype(attachType);
  const st = cgroupBpfTable(kernel).of(cgrp);
  const list = st.lists[atype];
  const all = effectiveQuery
    ? st.effective[atype]!.map((item) => item.prog.id)
    : (list?.progs ?? []).map((pl) => progListProg(pl).id);
  const flags = list?.flags ?? 0;
  const room = opts.progCnt ?? all.length;
  if (!Number.isSafeInteger(room) || room < 0) throw bpfError('EINVAL', `prog_cnt ${room} is not a count`);
  const progIds = all.slice(0, room);
  const result: CgroupQuery = {
    attachFlags: effectiveQuery ? 0 : flags,
    progCnt: all.length,
    progIds,
    revision: effectiveQuery ? 0 : (list?.revision ?? 1),
  };
  if (opts.progAttachFlags === true) result.progAttachFlags = progIds.map(() => flags);
  if (room > 0 && room < all.length) throw new CgroupQueryError(result, `room for ${room} of ${all.length} program ids`);
  return result;
}

/** The programs that run, in order, when the hook fires for this cgroup (empty once it is removed). */
export function effectiveProgs(kernel: Kernel, target: CgroupTarget, type: BpfAttachType | string): BpfProg[] {
  const atype = cgroupAtype(cgroupAttachType(type));
  const cgrp = target instanceof KernfsNode ? target : cgroupGetFromFd(kernel, target);
  if (cgrp.dying) return [];
  return cgroupBpfTable(kernel).of(cgrp).effective[atype]!.map((item) => item.prog);
}

/** Every attach type a cgroup has a program of its own for, with its list (for tools: `cgroup tree`). */
export function cgroupBpfAttached(kernel: Kernel, cgroup: KernfsNode): { type: BpfAttachType; flags: number; entries: BpfProgList[] }[] {
  const st = cgroupBpfTable(kernel).peek(cgroup);
  if (st === undefined || cgroup.dying) return [];
  const out: { type: BpfAttachType; flags: number; entries: BpfProgList[] }[] = [];
  st.lists.forEach((list, atype) => {
    if (list !== undefined && list.progs.length > 0) out.push({ type: CGROUP_ATTACH_TYPES[atype]!, flags: list.flags, entries: [...list.progs] });
  });
  return out;
}
