/**
 * Effective program arrays (kernel/bpf/cgroup.c compute_effective_progs, update_effective_progs,
 * replace_effective_prog, purge_effective_progs): what runs, in order, when a hook fires for a
 * cgroup.
 *
 * Order (spec 4.1, 4.3): starting at the cgroup and walking up, a level's programs are included if
 * nothing has been included yet or the level is in MULTI mode; within a level, list order. So a
 * cgroup's own programs run first, then its MULTI ancestors' nearest first, and a NONE/OVERRIDE
 * ancestor only when nothing below it contributed. BPF_F_PREORDER programs go to the front, top of
 * the hierarchy first, each level's in list order.
 *
 * An attach or detach recomputes the arrays of the cgroup and every live descendant, all into
 * `inactive` first and then activated together, so a failure (ENOMEM) leaves every cgroup as it was.
 *
 * Sharing: a cgroup with no programs of its own for a type runs exactly what its parent runs (the
 * walk contributes nothing at its level and continues as the parent's did), so it is given its
 * parent's array instead of a copy. The arrays are then computed once per cgroup that has programs,
 * which is what keeps an attach at the root of a 10,000-cgroup tree fast. The in-place edits
 * (replace, purge) visit each distinct array once.
 */
import type { KernfsNode } from '../../tags';
import { BPF_F_ALLOW_MULTI, BPF_F_PREORDER, bpfError } from '../../uapi';
import type { BpfProg } from '../prog/prog';
import type { CgroupStorage } from '../maps/cgroup-storage';
import type { BpfCgroupLink } from '../link/cgroup-link';
import type { BpfProgList, CgroupBpf, CgroupBpfTable } from './cgroup-bpf';

/**
 * struct bpf_prog_array_item: a program and the old cgroup storages it got where it was attached;
 * `pl` is the attachment it came from, so a link update or a purge finds it.
 */
export interface BpfProgArrayItem {
  prog: BpfProg;
  readonly storages: readonly CgroupStorage[];
  readonly pl: BpfProgList;
}

/** struct bpf_prog_array. Arrays are replaced, not edited, except by replace and purge below. */
export type BpfProgArray = BpfProgArrayItem[];

/** bpf_empty_prog_array: shared by every cgroup that runs nothing. */
export const EMPTY_PROG_ARRAY: BpfProgArray = Object.freeze([]) as unknown as BpfProgArray;

function live(pl: BpfProgList): boolean {
  return pl.prog !== null || pl.link !== null;
}

function hasLive(progs: readonly BpfProgList[] | undefined): boolean {
  return progs !== undefined && progs.some(live);
}

/** bpf_prog_array_alloc, where the fault injection of CgroupBpfTable.failAllocAfter strikes. */
function progArrayAlloc(table: CgroupBpfTable, cnt: number): BpfProgArray {
  if (table.failAllocAfter >= 0 && table.failAllocAfter-- === 0) {
    throw bpfError('ENOMEM', `cannot allocate an effective array of ${cnt} programs (injected)`);
  }
  return new Array<BpfProgArrayItem>(cnt);
}

/** compute_effective_progs: the array for one cgroup and attach type, from the current lists. */
export function computeEffectiveProgs(table: CgroupBpfTable, cgrp: KernfsNode, atype: number): BpfProgArray {
  let cnt = 0;
  let preorderCnt = 0;
  for (let p: KernfsNode | null = cgrp; p !== null; p = p.parent) {
    const list = table.peek(p)?.lists[atype];
    if (list === undefined || (cnt > 0 && !(list.flags & BPF_F_ALLOW_MULTI))) continue;
    for (const pl of list.progs) {
      if (!live(pl)) continue;
      cnt++;
      if (pl.flags & BPF_F_PREORDER) preorderCnt++;
    }
  }
  if (cnt === 0) return EMPTY_PROG_ARRAY;
  const items = progArrayAlloc(table, cnt);
  // Non-preorder programs fill forwards from preorderCnt; preorder ones backwards from just before
  // it, so higher levels end up in front, and each level's run is reversed back to list order.
  let fstart = preorderCnt;
  let bstart = preorderCnt - 1;
  cnt = 0;
  for (let p: KernfsNode | null = cgrp; p !== null; p = p.parent) {
    const list = table.peek(p)?.lists[atype];
    if (list === undefined || (cnt > 0 && !(list.flags & BPF_F_ALLOW_MULTI))) continue;
    const initBstart = bstart;
    for (const pl of list.progs) {
      if (!live(pl)) continue;
      const item: BpfProgArrayItem = { prog: pl.prog ?? pl.link!.prog, storages: pl.storages, pl };
      if (pl.flags & BPF_F_PREORDER) items[bstart--] = item;
      else items[fstart++] = item;
      cnt++;
    }
    for (let i = bstart + 1, j = initBstart; i < j; i++, j--) [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

/** The cgroup's own array, or its parent's when it has no programs of its own for the type. */
function effectiveFor(table: CgroupBpfTable, st: CgroupBpf, atype: number, parentArray: BpfProgArray): BpfProgArray {
  return hasLive(st.lists[atype]?.progs) ? computeEffectiveProgs(table, st.cgroup, atype) : parentArray;
}

/**
 * update_effective_progs: recomputes the arrays of cgrp and of every live descendant (removed ones
 * run nothing and are skipped), then activates them all; on failure none is activated.
 */
export function updateEffectiveProgs(table: CgroupBpfTable, cgrp: KernfsNode, atype: number): void {
  const staged: CgroupBpf[] = [];
  const stage = (node: KernfsNode, parentArray: BpfProgArray): void => {
    const st = table.of(node);
    st.inactive = effectiveFor(table, st, atype, parentArray);
    staged.push(st);
    for (const child of node.children) if (!child.dying) stage(child, st.inactive);
  };
  try {
    const parent = cgrp.parent === null ? null : table.of(cgrp.parent);
    stage(cgrp, parent === null ? EMPTY_PROG_ARRAY : parent.effective[atype]!);
  } catch (e) {
    for (const st of staged) st.inactive = undefined;
    throw e;
  }
  for (const st of staged) {
    st.effective[atype] = st.inactive!;
    st.inactive = undefined;
  }
}

/**
 * The distinct arrays of cgrp and its live descendants that have state, each once. A cgroup without
 * state has no programs and no descendant with state (state is made parent first), and inherits
 * whatever its parent has once it is asked, so it needs no visit.
 */
function descendantArrays(table: CgroupBpfTable, cgrp: KernfsNode, atype: number): Set<BpfProgArray> {
  const arrays = new Set<BpfProgArray>();
  const visit = (node: KernfsNode): void => {
    const st = table.peek(node);
    if (st === undefined) return;
    arrays.add(st.effective[atype]!);
    for (const child of node.children) if (!child.dying) visit(child);
  };
  visit(cgrp);
  return arrays;
}

/**
 * replace_effective_prog (BPF_LINK_UPDATE): swaps the link's new program into every array the link
 * is in, in place, at the same position; allocates nothing and cannot fail. Items are found by their
 * entry: the kernel recounts the position from the lists, which ignores BPF_F_PREORDER's reordering
 * (docs/DIFFERENCES.md).
 */
export function replaceEffectiveProg(table: CgroupBpfTable, cgrp: KernfsNode, atype: number, link: BpfCgroupLink): void {
  for (const array of descendantArrays(table, cgrp, atype)) {
    for (const item of array) if (item.pl.link === link) item.prog = link.prog;
  }
}

/**
 * purge_effective_progs: when a detach cannot allocate new arrays, the detached entry is taken out of
 * the current ones in place (bpf_prog_array_delete_safe_at), so a detach never fails.
 */
export function purgeEffectiveProgs(table: CgroupBpfTable, cgrp: KernfsNode, pl: BpfProgList, atype: number): void {
  for (const array of descendantArrays(table, cgrp, atype)) {
    const pos = array.findIndex((item) => item.pl === pl);
    if (pos >= 0) array.splice(pos, 1);
  }
}
