/**
 * The FUSE fuzzer's operations: what real processes do to a mount (file operations through the VFS,
 * `vbpffs` commands, cgroup mkdir and rmdir on the host), as actions both sides run.
 *
 * As in the library fuzzer, an operation is a kind and four random words, resolved against the
 * oracle's state when it runs (which directory, which pin, which cgroup), so any subsequence is still
 * a valid sequence and the minimiser can drop any step. Every action names paths in the fuzz area:
 * the fuzz cgroup's mirrored directory and an untagged directory /U beside it.
 */
import { BpfMapType } from '../../uapi';
import type { BpfMap, BpfProg } from '../../progs';
import { BpfIterLink } from '../../iter';
import type { LibWorld } from './fuse-oracle';
import { weightedOps } from './prng';
import { OBJECT_KINDS, type ObjectKind } from './objects';

export type AttachTypeName = 'egress' | 'ingress';

/** One thing a real process does, with paths in the mount and cgroups as hierarchy paths. */
export type Action =
  | { t: 'mkdir' | 'rmdir' | 'unlink' | 'cat'; p: string }
  | { t: 'rename' | 'link'; p: string; to: string }
  | { t: 'symlink'; p: string; target: string }
  | { t: 'chmod'; p: string; mode: number }
  | { t: 'cgMkdir' | 'cgRmdir'; cg: string }
  | { t: 'iterPin'; obj: ObjectKind | { pinned: string }; p: string; order?: string; cgroup?: string }
  | { t: 'progLoad'; obj: ObjectKind; p: string }
  | { t: 'objPin'; kind: 'prog' | 'map' | 'link'; ref: { id: number } | { pinned: string }; p: string }
  | { t: 'mapCreate'; p: string; type: 'hash' | 'cgrp_storage' }
  | { t: 'mapUpdate'; map: string; key: number | { cgroup: string }; value: number; flag: 'any' | 'noexist' | 'exist' }
  | { t: 'mapDelete'; map: string; key: number | { cgroup: string } }
  | { t: 'linkUpdate'; link: string; prog: string }
  | { t: 'linkDetach'; link: string }
  | { t: 'attach'; cg: string; type: AttachTypeName; prog: string; mode?: 'multi' | 'override' }
  | { t: 'detach'; cg: string; type: AttachTypeName; prog: string }
  | { t: 'run'; cg: string; type: AttachTypeName }
  | { t: 'show'; what: 'prog' | 'map' | 'link' }
  | { t: 'cgShow'; cg: string };

/** What an action gave: its errno (null: it succeeded) and what it printed or read. */
export interface Outcome {
  errno: string | null;
  out?: string;
}

export const FUSE_OP_WEIGHTS = {
  cgMkdir: 5,
  cgRmdir: 3,
  mkdir: 6,
  rmdir: 4,
  unlink: 4,
  rename: 4,
  link: 2,
  symlink: 2,
  chmod: 2,
  cat: 10,
  iterPin: 6,
  progLoad: 3,
  objPin: 4,
  mapCreate: 2,
  mapUpdate: 4,
  mapDelete: 2,
  linkUpdate: 2,
  linkDetach: 2,
  attach: 4,
  detach: 2,
  run: 2,
  show: 2,
  cgShow: 1,
} as const;

export type FuseOpKind = keyof typeof FUSE_OP_WEIGHTS;

export interface FuseOp {
  kind: FuseOpKind;
  r: [number, number, number, number];
}

/** The sequence of `n` operations seed `seed` gives (mulberry32, as the library fuzzer). */
export function generateFuse(seed: number, n: number): FuseOp[] {
  return weightedOps(seed, n, FUSE_OP_WEIGHTS);
}

const CGROUP_NAMES = ['a', 'b', 'c'];
const DIR_NAMES = ['a', 'b', 'd', 'x.y'];
const PIN_NAMES = ['v', 'w', 'm', 'a'];
const ORDERS = ['self_only', 'descendants_pre', 'descendants_post', 'ancestors_up', 'children'];
const TYPES: AttachTypeName[] = ['egress', 'ingress'];
const MAX_CGROUP_DEPTH = 2;

function pick<T>(arr: readonly T[], r: number): T | undefined {
  return arr.length === 0 ? undefined : arr[r % arr.length];
}

/** What the generator resolves against: the oracle, and where the fuzz area is. */
export interface FuseContext {
  lib: LibWorld;
  /** The fuzz cgroup ("/vbpffs-fuzz-..." or "/system.slice"); its directory in the mount has the same path. */
  fuzzCgroup: string;
  /** Host mode: cgroups are made and removed; a view is never pinned in an untagged directory (see below). */
  host: boolean;
  mnt: string;
}

/** The fuzz area's roots in the mount. */
export function areaRoots(ctx: FuseContext): string[] {
  return [ctx.fuzzCgroup, '/U'];
}

/**
 * Resolves an operation against the oracle's state; null when there is nothing to pick from.
 *
 * On the host, a cgroup_view pin in an untagged directory would tag it with the root cgroup and the
 * mirror would fill it with every cgroup of the host (other tests' among them), which the oracle
 * cannot know: such a pin goes to a tagged directory of the area instead.
 */
export function resolveFuse(ctx: FuseContext, op: FuseOp): Action | null {
  const { lib } = ctx;
  const r = op.r;
  const tree = lib.tree(areaRoots(ctx));
  const dirs = tree.filter((e) => e.type === 'd').map((e) => e.path);
  const leaves = tree.filter((e) => e.type !== 'd').map((e) => e.path);
  const roots = new Set(areaRoots(ctx));
  const fuzz = lib.source.hierarchy.cgroupByPath(ctx.fuzzCgroup);
  const cgroups = fuzz === undefined ? [] : [...lib.source.hierarchy.walk(fuzz)].filter((c) => !c.dying);
  const cgPaths = cgroups.map((c) => c.path);
  const ofKind = (kind: 'prog' | 'map' | 'link'): string[] => leaves.filter((p) => lib.objectAt(p)?.kind === kind);
  const mostly = (kind: 'prog' | 'map' | 'link', rr: number): string | undefined => (rr % 4 !== 0 ? pick(ofKind(kind), rr >>> 2) : undefined) ?? pick(leaves, rr >>> 2);
  const at = (rDir: number, rName: number, names = PIN_NAMES): string => `${pick(dirs, rDir)!}/${pick(names, rName)!}`;
  /** A pin of a cgroup_view object: on the host, only in a tagged directory. */
  const viewAt = (rDir: number, rName: number): string | null => {
    const tagged = ctx.host ? dirs.filter((d) => lib.tagOf(d) !== null) : dirs;
    const d = pick(tagged, rDir);
    return d === undefined ? null : `${d}/${pick(PIN_NAMES, rName)!}`;
  };
  const isView = (o: unknown): boolean => (o instanceof BpfIterLink && o.target === 'cgroup_view') || (o as BpfProg | null)?.section === 'cgroup_view';
  if (dirs.length === 0) return null;

  switch (op.kind) {
    case 'cgMkdir': {
      if (!ctx.host) return null;
      const parent = pick(
        cgroups.filter((c) => c.level < fuzz!.level + MAX_CGROUP_DEPTH),
        r[0],
      );
      return parent === undefined ? null : { t: 'cgMkdir', cg: `${parent.path}/${pick(CGROUP_NAMES, r[1])!}` };
    }
    case 'cgRmdir': {
      const c = pick(cgPaths.slice(1), r[0]);
      return !ctx.host || c === undefined ? null : { t: 'cgRmdir', cg: c };
    }
    case 'mkdir': {
      // Now and then under a file or a symlink (ENOTDIR, or through the link to its directory).
      const d = (r[3] % 8 === 0 ? pick(leaves, r[0]) : undefined) ?? pick(dirs, r[0])!;
      const tag = lib.tagOf(d);
      const kids = tag === null ? [] : (lib.source.hierarchy.cgroupByPath(tag)?.children.map((c) => c.name) ?? []);
      const names = kids.length > 0 && r[2] % 4 !== 0 ? kids : DIR_NAMES;
      return { t: 'mkdir', p: `${d}/${pick(names, r[1])!}` };
    }
    case 'rmdir': {
      const d = (r[1] % 8 === 0 ? pick(leaves, r[0]) : undefined) ?? pick(
        dirs.filter((x) => !roots.has(x)),
        r[0],
      );
      return d === undefined ? null : { t: 'rmdir', p: d };
    }
    case 'unlink': {
      const l = (r[1] % 8 === 0 ? pick(dirs.filter((x) => !roots.has(x)), r[0]) : undefined) ?? pick(leaves, r[0]);
      return l === undefined ? null : { t: 'unlink', p: l };
    }
    case 'rename': {
      const from = pick([...dirs.filter((x) => !roots.has(x)), ...leaves], r[0]);
      return from === undefined ? null : { t: 'rename', p: from, to: at(r[1], r[2], [...DIR_NAMES, ...PIN_NAMES]) };
    }
    case 'link': {
      const l = (r[3] % 8 === 0 ? pick(dirs, r[0]) : undefined) ?? pick(leaves, r[0]);
      return l === undefined ? null : { t: 'link', p: l, to: at(r[1], r[2]) };
    }
    case 'symlink': {
      const targets = [...leaves.map((l) => `${ctx.mnt}${l}`), ...dirs.map((d) => `${ctx.mnt}${d}`), 'nowhere', ...PIN_NAMES];
      return { t: 'symlink', p: at(r[1], r[2]), target: pick(targets, r[0])! };
    }
    case 'chmod': {
      // Not a symlink: chmod(2) follows it, and the library's chmod is the inode's own (fchmodat).
      const files = tree.filter((e) => e.type === 'f').map((e) => e.path);
      const p = pick([...dirs.filter((x) => !roots.has(x)), ...files], r[0]);
      return p === undefined ? null : { t: 'chmod', p, mode: pick([0o755, 0o700, 0, 0o1777, 0o644], r[1])! };
    }
    case 'cat': {
      const l = pick(leaves, r[0]);
      return l === undefined ? null : { t: 'cat', p: l };
    }
    case 'iterPin': {
      const how = r[2] % 4;
      if (how === 1) {
        // Never the host's root: a walk from it would list every cgroup of the host.
        const cgroup = pick(ctx.host ? cgPaths : [...cgPaths, '/'], r[3] >>> 3);
        return { t: 'iterPin', obj: 'iter', p: at(r[0], r[1]), order: pick(ORDERS, r[3])!, cgroup };
      }
      if (how === 2) {
        const prog = mostly('prog', r[3]);
        if (prog === undefined) return null;
        const p = isView(lib.objectAt(prog)) ? viewAt(r[0], r[1]) : at(r[0], r[1]);
        return p === null ? null : { t: 'iterPin', obj: { pinned: prog }, p, order: pick(ORDERS, r[3] >>> 8)!, cgroup: pick(cgPaths, r[3] >>> 16) };
      }
      const p = viewAt(r[0], r[1]);
      return p === null ? null : { t: 'iterPin', obj: 'view', p };
    }
    case 'progLoad':
      return { t: 'progLoad', obj: pick(OBJECT_KINDS, r[2])!, p: at(r[0], r[1]) };
    case 'objPin': {
      const kind = pick(['prog', 'map', 'link'] as const, r[2])!;
      let ref: { id: number } | { pinned: string };
      if (r[3] % 3 === 0 || ofKind(kind).length === 0) {
        const ids = lib.kernel.list(kind).map((o) => o.id);
        ref = { id: pick([...ids, ids.length + 90], r[3] >>> 2)! };
      } else {
        ref = { pinned: mostly(kind, r[3] >>> 2)! };
      }
      const obj = 'id' in ref ? (lib.kernel.list(kind).find((o) => o.id === (ref as { id: number }).id) ?? null) : lib.objectAt(ref.pinned);
      const p = isView(obj) && obj instanceof BpfIterLink ? viewAt(r[0], r[1]) : at(r[0], r[1]);
      return p === null ? null : { t: 'objPin', kind, ref, p };
    }
    case 'mapCreate':
      return { t: 'mapCreate', p: at(r[0], r[1]), type: r[2] % 2 === 0 ? 'hash' : 'cgrp_storage' };
    case 'mapUpdate':
    case 'mapDelete': {
      const map = mostly('map', r[0]);
      if (map === undefined) return null;
      const local = (lib.objectAt(map) as BpfMap | null)?.type === BpfMapType.CGRP_STORAGE;
      const byCgroup = local !== (r[1] % 8 === 0);
      const key = byCgroup ? { cgroup: pick([...cgPaths, '/'], r[1] >>> 3)! } : (r[1] >>> 3) % 6;
      if (op.kind === 'mapDelete') return { t: 'mapDelete', map, key };
      return { t: 'mapUpdate', map, key, value: r[2] % 100, flag: pick(['any', 'any', 'noexist', 'exist'] as const, r[3])! };
    }
    case 'linkUpdate': {
      const link = mostly('link', r[0]);
      const prog = mostly('prog', r[1]);
      return link === undefined || prog === undefined ? null : { t: 'linkUpdate', link, prog };
    }
    case 'linkDetach': {
      const link = mostly('link', r[0]);
      return link === undefined ? null : { t: 'linkDetach', link };
    }
    case 'attach':
    case 'detach': {
      const prog = mostly('prog', r[2]);
      const cg = pick(cgPaths, r[0]);
      if (prog === undefined || cg === undefined) return null;
      const type = pick(TYPES, r[1])!;
      if (op.kind === 'detach') return { t: 'detach', cg, type, prog };
      return { t: 'attach', cg, type, prog, mode: pick([undefined, 'multi', 'multi', 'override'] as const, r[3]) };
    }
    case 'run':
    case 'cgShow': {
      const cg = pick(cgPaths, r[0]);
      if (cg === undefined) return null;
      return op.kind === 'run' ? { t: 'run', cg, type: pick(TYPES, r[1])! } : { t: 'cgShow', cg };
    }
    case 'show':
      return { t: 'show', what: pick(['prog', 'map', 'link'] as const, r[0])! };
  }
}

/** The action as a line of the report: what a shell user would type (paths in the mount). */
export function describe(a: Action): string {
  const key = (k: number | { cgroup: string }): string => (typeof k === 'number' ? `key ${k}` : `key cgroup ${k.cgroup}`);
  switch (a.t) {
    case 'mkdir':
    case 'rmdir':
    case 'unlink':
    case 'cat':
      return `${a.t === 'unlink' ? 'rm' : a.t} ${a.p}`;
    case 'rename':
      return `mv ${a.p} ${a.to}`;
    case 'link':
      return `ln ${a.p} ${a.to}`;
    case 'symlink':
      return `ln -s ${a.target} ${a.p}`;
    case 'chmod':
      return `chmod ${a.mode.toString(8)} ${a.p}`;
    case 'cgMkdir':
    case 'cgRmdir':
      return `${a.t === 'cgMkdir' ? 'mkdir' : 'rmdir'} <cgroup2>${a.cg}`;
    case 'iterPin':
      return `vbpffs iter pin ${typeof a.obj === 'string' ? `fuzz-${a.obj}.ts` : `pinned ${a.obj.pinned}`} ${a.p}${a.order === undefined ? '' : ` order ${a.order}`}${a.cgroup === undefined ? '' : ` cgroup ${a.cgroup}`}`;
    case 'progLoad':
      return `vbpffs prog load fuzz-${a.obj}.ts ${a.p}`;
    case 'objPin':
      return `vbpffs ${a.kind} pin ${'id' in a.ref ? `id ${a.ref.id}` : `pinned ${a.ref.pinned}`} ${a.p}`;
    case 'mapCreate':
      return `vbpffs map create ${a.p} type ${a.type}`;
    case 'mapUpdate':
      return `vbpffs map update pinned ${a.map} ${key(a.key)} value ${a.value} ${a.flag}`;
    case 'mapDelete':
      return `vbpffs map delete pinned ${a.map} ${key(a.key)}`;
    case 'linkUpdate':
      return `vbpffs link update pinned ${a.link} pinned ${a.prog}`;
    case 'linkDetach':
      return `vbpffs link detach pinned ${a.link}`;
    case 'attach':
      return `vbpffs cgroup attach ${a.cg} ${a.type} pinned ${a.prog}${a.mode === undefined ? '' : ` ${a.mode}`}`;
    case 'detach':
      return `vbpffs cgroup detach ${a.cg} ${a.type} pinned ${a.prog}`;
    case 'run':
      return `vbpffs cgroup run ${a.cg} ${a.type}`;
    case 'show':
      return `vbpffs ${a.what} show`;
    case 'cgShow':
      return `vbpffs cgroup show ${a.cg}`;
  }
}
