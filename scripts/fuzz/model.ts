/**
 * The fuzzer's model: the world it runs operations against (a simulated cgroup source, a Kernel, a
 * bpffs mount), what it knows independently of the library (every object it made and who holds it,
 * every attachment in order, the storage it expects), and the invariants checked after every step.
 *
 * The model never asks the library what it should expect. Holders are counted from what the
 * operations did (handles, attachments, open files, sessions) and from the bpffs tree as it is
 * (pinned inodes, tags and their inherit lists); effective arrays are computed from the model's own
 * attachment lists with compute_effective_progs's rules; storage from the updates and reads made.
 * Each check compares that with the objects themselves (refs, released, Kernel.list, a query, a
 * map's element count, a cgroup's bpfStorage) and throws an InvariantError naming the invariant.
 */
import {
  BPF_F_ALLOW_MULTI,
  BPF_F_QUERY_EFFECTIVE,
  BpfAttachType,
} from '../../uapi';
import {
  BpfCgroupLink,
  CgroupStorageMap,
  CgrpStorageMap,
  Kernel,
  cgroupBpfQuery,
  cgroupStorages,
  type BpfLink,
  type BpfMap,
  type BpfObject,
  type BpfProg,
  type Collection,
  type Handle,
  type LocalStorage,
} from '../../progs';
import { SimCgroupSource, type InheritList, type KernfsNode } from '../../tags';
import { BpfIterLink } from '../../iter';
import { Bpffs, DirInode, ObjInode, type OpenFile } from '../../fs/bpffs';
import type { ObjectKind } from './objects';

/** The attach types the fuzzer uses. */
export const ATTACH_TYPES = [BpfAttachType.CGROUP_INET_EGRESS, BpfAttachType.CGROUP_INET_INGRESS] as const;

/** The invariants, by the name a failure reports. */
export type InvariantName = 'refs' | 'released' | 'storage' | 'tags' | 'effective' | 'cgroup-refs' | 'op';

export class InvariantError extends Error {
  constructor(
    readonly invariant: InvariantName,
    message: string,
  ) {
    super(`[${invariant}] ${message}`);
  }
}

function fail(invariant: InvariantName, message: string): never {
  throw new InvariantError(invariant, message);
}

/** One loaded object file: its collection, open until an unload closes it. */
export interface LoadedColl {
  readonly n: number;
  readonly kind: ObjectKind;
  readonly coll: Collection;
  /** Its programs and maps, kept past the unload that closes the collection's handles. */
  readonly progs: BpfProg[];
  readonly maps: BpfMap[];
  open: boolean;
}

/** One attachment as the model made it: a legacy program or a link, with BPF_F_PREORDER or not. */
export interface ModelEntry {
  prog: BpfProg | null;
  link: BpfCgroupLink | null;
  preorder: boolean;
}

/** One cgroup's list for one attach type: its mode (0, OVERRIDE or MULTI) and entries in order. */
export interface ModelList {
  mode: number;
  entries: ModelEntry[];
}

/** A file the model keeps open: the inode it holds and, for an iterator, its session's holds. */
export interface ModelFile {
  readonly n: number;
  readonly path: string;
  readonly file: OpenFile;
  readonly inode: ObjInode;
  /** An iterator session: the link and the program it opened with. */
  readonly link: BpfIterLink | null;
  readonly prog: BpfProg | null;
  /** A cgroup iterator session holds its start cgroup. */
  readonly start: KernfsNode | null;
  /** A cgroup_view session: the cgroup of the directory it was opened in, and what it printed. */
  readonly view: KernfsNode | null;
  out: string;
}

/** A handle the model holds (a link's creator handle, or one BPF_OBJ_GET gave). */
export interface ModelHandle {
  readonly handle: Handle<BpfObject>;
  readonly what: string;
}

export class Model {
  readonly source: SimCgroupSource;
  readonly kernel: Kernel;
  readonly fs: Bpffs;
  readonly colls: LoadedColl[] = [];
  /** Every object the fuzzer made (collections' programs and maps, links), released or not. */
  readonly objects = new Set<BpfObject>();
  readonly handles: ModelHandle[] = [];
  readonly files: ModelFile[] = [];
  /** Every cgroup made, to check that a removed one is released once nothing holds it. */
  readonly cgroups: KernfsNode[] = [];
  /** lists.get(cgroup)[atype index] */
  readonly lists = new Map<KernfsNode, ModelList[]>();
  /** The program each link runs, as the model created and updated it. */
  readonly linkProg = new Map<BpfLink, BpfProg>();
  /** The cgroup each cgroup link is attached to, null once detached or auto-detached. */
  readonly linkCgroup = new Map<BpfCgroupLink, KernfsNode | null>();
  /** The start cgroup of each cgroup iterator link. */
  readonly iterStart = new Map<BpfIterLink, KernfsNode>();
  /** CGRP_STORAGE: the cgroups each map has an element for. */
  readonly cgrpKeys = new Map<CgrpStorageMap, Set<KernfsNode>>();
  /** Old CGROUP_STORAGE: "cgroupId:attachType" of each storage a map has. */
  readonly oldKeys = new Map<CgroupStorageMap, Set<string>>();
  /** Directories moved by a rename (with their subtrees): their tags need not match their place. */
  readonly moved = new WeakSet<DirInode>();
  /** (directory, name) pairs whose mirrored entry the fuzzer removed: the mirror does not remake them. */
  readonly exempt = new WeakMap<DirInode, Set<string>>();
  #seq = 0;

  private constructor(source: SimCgroupSource, kernel: Kernel, fs: Bpffs) {
    this.source = source;
    this.kernel = kernel;
    this.fs = fs;
  }

  static async create(): Promise<Model> {
    const source = new SimCgroupSource();
    await source.start();
    const kernel = new Kernel({ cgroups: source.hierarchy, tasks: source });
    const fs = new Bpffs({ kernel, source, uid: 0, gid: 0 });
    const m = new Model(source, kernel, fs);
    m.cgroups.push(source.hierarchy.root);
    return m;
  }

  next(): number {
    return ++this.#seq;
  }

  /** Unmounts, closes what is open and drops every handle. */
  dispose(): void {
    for (const f of this.files.splice(0)) f.file.release();
    for (const h of this.handles.splice(0)) if (!h.handle.closed) h.handle.close();
    this.fs.dispose();
    for (const c of this.colls) if (c.open) c.coll.close();
  }

  list(cgroup: KernfsNode, atypeIdx: number): ModelList {
    let l = this.lists.get(cgroup);
    if (l === undefined) this.lists.set(cgroup, (l = ATTACH_TYPES.map(() => ({ mode: 0, entries: [] }))));
    return l[atypeIdx]!;
  }

  // -------------------------------------------------------------------------------------------------
  // The bpffs tree as it is.

  /** Every directory of the tree, parents first, with its path. */
  dirs(): { dir: DirInode; path: string }[] {
    const out: { dir: DirInode; path: string }[] = [];
    const walk = (dir: DirInode, path: string): void => {
      out.push({ dir, path });
      for (const [name, inode] of dir.entries) if (inode instanceof DirInode) walk(inode, `${path}/${name}`);
    };
    walk(this.fs.rootInode, '');
    return out;
  }

  /** Every non-directory entry of the tree with its path. */
  leaves(): { dir: DirInode; name: string; path: string; inode: ObjInode | null }[] {
    const out: { dir: DirInode; name: string; path: string; inode: ObjInode | null }[] = [];
    for (const { dir, path } of this.dirs()) {
      for (const [name, inode] of dir.entries) {
        if (inode instanceof DirInode) continue;
        out.push({ dir, name, path: `${path}/${name}`, inode: inode instanceof ObjInode ? inode : null });
      }
    }
    return out;
  }

  // -------------------------------------------------------------------------------------------------
  // Invariants.

  /** Every invariant, in the order a failure is easiest to read. */
  check(): void {
    const tree = this.#treeFacts();
    this.checkTags(tree);
    this.checkRefs(tree);
    this.checkCgroupRefs(tree);
    this.checkEffective();
    this.checkStorage();
  }

  #treeFacts(): TreeFacts {
    const pins = new Set<ObjInode>();
    const tagged: DirInode[] = [];
    const lists = new Set<InheritList<BpfLink>>();
    for (const { dir } of this.dirs()) {
      if (dir.tag !== null) {
        tagged.push(dir);
        lists.add(dir.tag.inherit);
      }
      for (const inode of dir.entries.values()) if (inode instanceof ObjInode) pins.add(inode);
    }
    // An unlinked pin lives on while a file holds it.
    for (const f of this.files) pins.add(f.inode);
    return { pins, tagged, lists };
  }

  /**
   * Tags and inherit lists against the tree: each tag is live and holds a live list and a cgroup
   * not released; a list is held once by each tagged directory sharing it; a directory made in a
   * tagged one (not moved since) carries the cgroup its name says, under its parent's cgroup; and
   * under auto-mirror every live child cgroup of a tagged directory's cgroup has its name there.
   */
  checkTags(tree: TreeFacts): void {
    const holders = new Map<InheritList<BpfLink>, number>();
    for (const dir of tree.tagged) {
      const tag = dir.tag!;
      if (tag.destroyed) fail('tags', `directory ino ${dir.ino} holds a destroyed tag`);
      if (tag.node.released) fail('tags', `directory ino ${dir.ino} is tagged with released cgroup ${tag.node.id}`);
      if (tag.inherit.freed) fail('tags', `directory ino ${dir.ino} shares a freed inherit list`);
      holders.set(tag.inherit, (holders.get(tag.inherit) ?? 0) + 1);
      const parent = dir.parent;
      // A leftover of a removed cgroup keeps its tag when its parent is taken over by a new cgroup of that name.
      if (parent !== null && parent.tag !== null && parent.tag.inherit === tag.inherit && !this.moved.has(dir) && !tag.node.dying) {
        if (tag.node.name !== dir.name || tag.node.parent !== parent.tag.node) {
          fail('tags', `directory ${dir.name} (ino ${dir.ino}) is tagged with cgroup ${tag.node.path} under ${parent.tag.node.path}`);
        }
      }
      if (!tag.node.dying) {
        for (const child of tag.node.children) {
          if (child.dying || dir.entries.has(child.name) || this.exempt.get(dir)?.has(child.name)) continue;
          fail('tags', `tagged directory ino ${dir.ino} (cgroup ${tag.node.path}) lacks live child cgroup ${child.name}`);
        }
      }
    }
    for (const [list, n] of holders) {
      if (list.refs !== n) fail('tags', `an inherit list has ${list.refs} references, ${n} tagged directories share it`);
    }
  }

  /** Who holds each object, counted from the model and the tree. */
  expectedRefs(tree: TreeFacts): Map<BpfObject, number> {
    const want = new Map<BpfObject, number>();
    const add = (o: BpfObject, n = 1): void => void want.set(o, (want.get(o) ?? 0) + n);
    for (const o of this.objects) want.set(o, 0);
    for (const c of this.colls) {
      if (!c.open) continue;
      for (const h of c.coll.programs.values()) add(h.object);
      for (const h of c.coll.maps.values()) add(h.object);
    }
    for (const h of this.handles) if (!h.handle.closed) add(h.handle.object);
    for (const inode of tree.pins) add(inode.obj);
    for (const list of tree.lists) for (const e of list.entries()) add(e.obj);
    for (const f of this.files) {
      if (f.link !== null) add(f.link);
      if (f.prog !== null) add(f.prog);
    }
    for (const l of this.lists.values()) for (const list of l) for (const e of list.entries) if (e.prog !== null) add(e.prog);
    // Holds of objects on objects: a link on its program, a program on its object's maps. Only a
    // live holder holds, and whether it lives depends on its own holders: resolve links, then progs.
    for (const o of this.objects) {
      if (o.kind !== 'link' || (want.get(o) ?? 0) === 0) continue;
      add(this.linkProg.get(o as BpfLink)!);
    }
    for (const o of this.objects) {
      if (o.kind !== 'prog' || (want.get(o) ?? 0) === 0) continue;
      for (const m of (o as BpfProg).maps) add(m);
    }
    return want;
  }

  /**
   * Reference counts balanced: each object the fuzzer made has exactly the references its holders
   * account for, is released exactly when it has none, and Kernel.list holds exactly the live ones.
   */
  checkRefs(tree: TreeFacts): void {
    const want = this.expectedRefs(tree);
    // Released first: a holder that should have gone makes the counts of what it holds wrong too.
    for (const [o, n] of want) {
      if (n === 0 && !o.released) fail('released', `${o.kind} ${o.id} has no holder but is not released (${o.refs} refs)`);
    }
    for (const [o, n] of want) {
      if (n > 0 && o.refs !== n) fail('refs', `${o.kind} ${o.id} has ${o.refs} references, its holders account for ${n}`);
    }
    for (const kind of ['prog', 'map', 'link'] as const) {
      for (const o of this.kernel.list(kind)) {
        if (!this.objects.has(o)) fail('released', `${kind} ${o.id} is live but nothing the fuzzer made`);
        if (o.released) fail('released', `${kind} ${o.id} is listed but released`);
      }
    }
  }

  /**
   * A cgroup's references: the hierarchy's while live, each child until released, each tag, each
   * attached cgroup link, each cgroup iterator link starting there and each open session of one. A
   * removed cgroup is released exactly when none is left.
   */
  checkCgroupRefs(tree: TreeFacts): void {
    const want = new Map<KernfsNode, number>();
    const add = (n: KernfsNode): void => void want.set(n, (want.get(n) ?? 0) + 1);
    for (const c of this.cgroups) {
      want.set(c, c.dying ? 0 : 1);
    }
    for (const c of this.cgroups) if (c.parent !== null && !c.released) add(c.parent);
    for (const d of tree.tagged) add(d.tag!.node);
    for (const cg of this.linkCgroup.values()) if (cg !== null) add(cg);
    for (const start of this.iterStart.values()) add(start);
    for (const f of this.files) if (f.start !== null) add(f.start);
    for (const [c, n] of want) {
      if (n === 0 && !c.released) fail('cgroup-refs', `removed cgroup ${c.id} has no holder but is not released (${c.refs} refs)`);
      if (n > 0 && c.refs !== n) fail('cgroup-refs', `cgroup ${c.id} (${c.state}) has ${c.refs} references, its holders account for ${n}`);
    }
  }

  /**
   * Effective arrays: every live cgroup's own list (query) equals the model's, and its effective
   * array (query with BPF_F_QUERY_EFFECTIVE) equals compute_effective_progs over the model's lists.
   */
  checkEffective(): void {
    for (const c of this.cgroups) {
      if (c.dying) continue;
      ATTACH_TYPES.forEach((type, i) => {
        const own = cgroupBpfQuery(this.kernel, c, type);
        const mine = this.lists.get(c)?.[i];
        const ids = (mine?.entries ?? []).map((e) => this.#entryProg(e).id);
        if (own.attachFlags !== (mine?.entries.length ? mine.mode : 0) || !sameIds(own.progIds, ids)) {
          fail('effective', `cgroup ${c.path} ${BpfAttachType[type]}: own list [${own.progIds}] flags ${own.attachFlags}, the model has [${ids}] flags ${mine?.mode ?? 0}`);
        }
        const eff = cgroupBpfQuery(this.kernel, c, type, { queryFlags: BPF_F_QUERY_EFFECTIVE }).progIds;
        const want = this.computeEffective(c, i).map((p) => p.id);
        if (!sameIds(eff, want)) fail('effective', `cgroup ${c.path} ${BpfAttachType[type]}: effective [${eff}], recomputed [${want}]`);
      });
    }
  }

  #entryProg(e: ModelEntry): BpfProg {
    return e.prog ?? this.linkProg.get(e.link!)!;
  }

  /**
   * compute_effective_progs from scratch: walking up from the cgroup, a level's programs count if
   * nothing below contributed yet or the level is in MULTI mode; BPF_F_PREORDER programs go first,
   * the outermost level's first, each level in its list order; the others follow, innermost first.
   */
  computeEffective(cgroup: KernfsNode, atypeIdx: number): BpfProg[] {
    const pre: BpfProg[][] = [];
    const post: BpfProg[] = [];
    let cnt = 0;
    for (let p: KernfsNode | null = cgroup; p !== null; p = p.parent) {
      const list = this.lists.get(p)?.[atypeIdx];
      if (list === undefined || (cnt > 0 && !(list.mode & BPF_F_ALLOW_MULTI))) continue;
      const level: BpfProg[] = [];
      for (const e of list.entries) {
        if (e.preorder) level.push(this.#entryProg(e));
        else post.push(this.#entryProg(e));
        cnt++;
      }
      pre.unshift(level);
    }
    return [...pre.flat(), ...post];
  }

  /**
   * No storage left on a removed cgroup or a freed map: a released cgroup has no local storage
   * left and a removed one no old cgroup storage; each CGRP_STORAGE map has exactly the elements
   * the model expects (none once freed), each on a cgroup not released; each old CGROUP_STORAGE map
   * exactly the storages its attachments made (none once freed).
   */
  checkStorage(): void {
    for (const c of this.cgroups) {
      const st = c.bpfStorage as LocalStorage | null;
      if (c.released && st !== null && st.list !== null) fail('storage', `released cgroup ${c.id} still has local storage`);
      if (c.dying && cgroupStorages(c).length > 0) fail('storage', `removed cgroup ${c.id} still has old cgroup storage`);
    }
    for (const o of this.objects) {
      if (o instanceof CgrpStorageMap) {
        const want = o.released ? 0 : (this.cgrpKeys.get(o)?.size ?? 0);
        if (o.nrElems !== want) fail('storage', `cgrp_storage map ${o.id}${o.released ? ' (freed)' : ''} has ${o.nrElems} elements, expected ${want}`);
        for (const c of this.cgrpKeys.get(o) ?? []) {
          if (c.released) fail('storage', `the model expects storage of map ${o.id} on released cgroup ${c.id}`);
          // A removed cgroup keeps its storage until released, but no key names it any more (ENOENT).
          if (!o.released && !c.dying && !hasElem(o, c)) fail('storage', `cgrp_storage map ${o.id} has no element for cgroup ${c.id}`);
        }
      } else if (o instanceof CgroupStorageMap) {
        const want = o.released ? new Set<string>() : (this.oldKeys.get(o) ?? new Set<string>());
        const have = new Set(o.storages().map((s) => `${s.cgroup.id}:${s.attachType}`));
        if (!sameSet(have, want)) fail('storage', `cgroup_storage map ${o.id}${o.released ? ' (freed)' : ''} has [${[...have]}], expected [${[...want]}]`);
      }
    }
  }

  // -------------------------------------------------------------------------------------------------
  // What the operations tell the model.

  /** A cgroup's rmdir succeeded: its BPF state is released (legacy programs put, links defunct). */
  cgroupRemoved(c: KernfsNode): void {
    this.lists.delete(c);
    for (const [link, cg] of this.linkCgroup) if (cg === c) this.linkCgroup.set(link, null);
    for (const keys of this.oldKeys.values()) for (const k of [...keys]) if (k.startsWith(`${c.id}:`)) keys.delete(k);
  }

  /** After each step: what released objects and cgroups take with them, as the kernel frees them. */
  settle(): void {
    for (const c of this.cgroups) if (c.released) for (const keys of this.cgrpKeys.values()) keys.delete(c);
    for (const o of this.objects) {
      if (!o.released) continue;
      if (o instanceof CgrpStorageMap) this.cgrpKeys.delete(o);
      if (o instanceof CgroupStorageMap) this.oldKeys.delete(o);
    }
  }

  /** A cgroup link's last holder is gone or it was detached: its entry leaves its cgroup's list. */
  linkGone(link: BpfCgroupLink): void {
    const cg = this.linkCgroup.get(link);
    if (cg === null || cg === undefined) return;
    this.linkCgroup.set(link, null);
    const idx = ATTACH_TYPES.indexOf(link.attachType as (typeof ATTACH_TYPES)[number]);
    const list = this.list(cg, idx);
    list.entries = list.entries.filter((e) => e.link !== link);
    if (list.entries.length === 0) list.mode = 0;
  }

  /**
   * Links whose holders are all gone are released at once: a cgroup link's entry leaves its list, a
   * cgroup iterator link drops its start cgroup.
   */
  dropUnheldLinks(): void {
    const want = this.expectedRefs(this.#treeFacts());
    for (const [link] of this.linkCgroup) if ((want.get(link) ?? 0) === 0) this.linkGone(link);
    for (const [link] of this.iterStart) if ((want.get(link) ?? 0) === 0) this.iterStart.delete(link);
  }
}

export interface TreeFacts {
  /** Pinned inodes alive: in the tree or held by an open file. */
  pins: Set<ObjInode>;
  tagged: DirInode[];
  lists: Set<InheritList<BpfLink>>;
}

function hasElem(map: CgrpStorageMap, c: KernfsNode): boolean {
  try {
    map.lookupElem(c);
    return true;
  } catch {
    return false;
  }
}

function sameIds(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function sameSet<T>(a: Set<T>, b: Set<T>): boolean {
  return a.size === b.size && [...a].every((x) => b.has(x));
}

