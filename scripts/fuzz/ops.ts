/**
 * The operations the fuzzer draws, each with its precondition and what it tells the model.
 *
 * An operation is a kind and four random words. The words are resolved against the state when the
 * operation runs (which directory, which object, which flags), so a sequence is valid whatever was
 * removed from it: the minimiser can drop any operation and re-run the rest from scratch. An
 * operation whose precondition does not hold (nothing to pick from) is skipped. A library call that
 * fails with a BpfError is an outcome, not a failure: the model changes only when a call succeeds;
 * anything else thrown (a TypeError, a put twice) is a failure.
 */
import {
  BPF_F_ALLOW_MULTI,
  BPF_F_ALLOW_OVERRIDE,
  BPF_F_PREORDER,
  BPF_F_REPLACE,
  BpfCgroupIterOrder,
  RENAME_EXCHANGE,
  RENAME_NOREPLACE,
  isBpfError,
} from '../../uapi';
import {
  BpfCgroupLink,
  CgroupStorageMap,
  CgrpStorageMap,
  HashMap,
  cgroupBpfAttach,
  cgroupBpfDetach,
  cgroupBpfLinkAttach,
  cgroupBpfRunFilter,
  newCollection,
  type BpfLink,
  type BpfMap,
  type BpfObject,
  type BpfProg,
} from '../../progs';
import type { KernfsNode } from '../../tags';
import { BpfIterLink, bpfIterLinkCreate } from '../../iter';
import { DirInode, ObjInode } from '../../fs/bpffs';
import { ATTACH_TYPES, InvariantError, type Model, type ModelFile } from './model';
import { OBJECT_KINDS, fuzzObjects } from './objects';

/** An operation: its kind and the random words that pick its arguments. */
export interface Op {
  kind: OpKind;
  r: [number, number, number, number];
}

export const OP_WEIGHTS = {
  cgMkdir: 8,
  cgRmdir: 5,
  load: 3,
  unload: 2,
  mkdir: 7,
  rmdir: 4,
  pin: 9,
  unlink: 4,
  rename: 4,
  link: 2,
  symlink: 2,
  open: 4,
  read: 4,
  close: 4,
  readAll: 6,
  mapUpdate: 4,
  mapDelete: 3,
  attach: 6,
  detach: 4,
  linkCreate: 7,
  linkUpdate: 3,
  linkDetach: 3,
  closeHandle: 4,
  objGet: 3,
  run: 3,
} as const;

export type OpKind = keyof typeof OP_WEIGHTS;

/** What an operation did, for the report. */
export type OpResult = string;

const CGROUP_NAMES = ['a', 'b', 'c'];
const DIR_NAMES = ['a', 'b', 'd', 'x.y'];
const PIN_NAMES = ['v', 'w', 'm', 'a'];
const MAX_COLLS = 6;
const MAX_FILES = 6;
const MAX_CGROUP_LEVEL = 3;

function pick<T>(arr: readonly T[], r: number): T | undefined {
  return arr.length === 0 ? undefined : arr[r % arr.length];
}

function u64(v: number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(v), true);
  return b;
}

const join = (dir: string, name: string): string => `${dir}/${name}`;

/** Runs a library call: a BpfError is its outcome (unless it says a reference was put twice). */
async function attempt(what: string, call: () => unknown): Promise<{ ok: boolean; desc: string }> {
  try {
    await call();
    return { ok: true, desc: `${what}: ok` };
  } catch (e) {
    if (isBpfError(e) && !/twice/.test(e.message)) return { ok: false, desc: `${what}: ${e.code}` };
    throw e;
  }
}

function objName(o: BpfObject): string {
  return `${o.kind}${o.id}`;
}

function progs(m: Model, open = true): BpfProg[] {
  return m.colls.filter((c) => c.open || !open).flatMap((c) => c.progs);
}

function maps(m: Model): BpfMap[] {
  return m.colls.filter((c) => c.open).flatMap((c) => c.maps);
}

function links(m: Model): BpfLink[] {
  return [...m.objects].filter((o): o is BpfLink => o.kind === 'link');
}

function liveCgroups(m: Model): KernfsNode[] {
  return m.cgroups.filter((c) => !c.dying);
}

/** A program that attaches to cgroups (not a cgroup_view or cgroup iterator). */
function isSkb(p: BpfProg): boolean {
  return p.section.startsWith('cgroup_skb/') || p.section === 'cgroup/skb';
}

/** Mostly a live cgroup; now and then any cgroup made, removed or released ones included. */
function someCgroup(m: Model, r: number): KernfsNode {
  return (r % 8 === 0 ? pick(m.cgroups, r >>> 3) : pick(liveCgroups(m), r >>> 3))!;
}

function markMoved(m: Model, dir: DirInode): void {
  m.moved.add(dir);
  for (const e of dir.entries.values()) if (e instanceof DirInode) markMoved(m, e);
}

function exempt(m: Model, dir: DirInode, name: string): void {
  let s = m.exempt.get(dir);
  if (s === undefined) m.exempt.set(dir, (s = new Set()));
  s.add(name);
}

/** What reading a view printed: "<cgroup id> <count>" lines tell the model which cgroup has storage now. */
function viewOutput(m: Model, f: ModelFile, text: string): void {
  if (f.link?.target !== 'cgroup_view') return;
  f.out += text;
  const seen = f.prog!.maps.find((x): x is CgrpStorageMap => x instanceof CgrpStorageMap)!;
  // Any output means the program ran, and its first statement made the storage.
  if (text.length > 0 && f.view !== null && !seen.released) m.cgrpKeys.get(seen)?.add(f.view);
  for (const line of f.out.split('\n').slice(0, -1)) {
    const id = Number(line.split(' ')[0]);
    if (f.view === null || id !== f.view.id) {
      throw new InvariantError('op', `a view opened in a directory tagged with cgroup ${f.view?.id} printed "${line}"`);
    }
  }
}

/** bpffs_open through the model: which holds the open file takes. */
function openFile(m: Model, path: string, dir: DirInode, inode: ObjInode): ModelFile {
  const file = m.fs.open(path, 0);
  const obj = inode.obj;
  let link: BpfIterLink | null = null;
  let view: KernfsNode | null = null;
  if (obj instanceof BpfIterLink) {
    // A view opened where there is no live cgroup reads as empty and opens no session.
    const node = dir.tag?.node;
    if (obj.target !== 'cgroup_view' || (node !== undefined && !node.dying)) link = obj;
    if (obj.target === 'cgroup_view' && node !== undefined && !node.dying) view = node;
  }
  const f: ModelFile = {
    n: m.next(),
    path,
    file,
    inode,
    link,
    prog: link === null ? null : m.linkProg.get(link)!,
    start: link === null ? null : (m.iterStart.get(link) ?? null),
    view,
    out: '',
  };
  return f;
}

/** Reads until the end (a cgroup walk is never left half-read between steps: its position holds a cgroup). */
async function readToEnd(m: Model, f: ModelFile, size: number): Promise<string> {
  let text = '';
  for (let i = 0; i < 10_000; i++) {
    const chunk = Buffer.from(await f.file.read(size)).toString();
    if (chunk.length === 0) break;
    text += chunk;
  }
  viewOutput(m, f, text);
  return text;
}

type Exec = (m: Model, r: Op['r']) => Promise<OpResult | null>;

const OPS: Record<OpKind, Exec> = {
  async cgMkdir(m, r) {
    const parent = pick(liveCgroups(m).filter((c) => c.level < MAX_CGROUP_LEVEL), r[0]);
    if (parent === undefined) return null;
    const path = parent.parent === null ? `/${pick(CGROUP_NAMES, r[1])}` : `${parent.path}/${pick(CGROUP_NAMES, r[1])}`;
    let node: KernfsNode | undefined;
    const res = await attempt(`cgroup mkdir ${path}`, async () => (node = await m.source.mkdir(path)));
    if (res.ok) m.cgroups.push(node!);
    return res.desc;
  },

  async cgRmdir(m, r) {
    const c = pick(liveCgroups(m).filter((x) => x.parent !== null), r[0]);
    if (c === undefined) return null;
    // Directories the user moved stand under names that are not their cgroup's: when the mirror takes
    // one away with its cgroup, the name it held stays free (the mirror fills only at tag and mkdir).
    const movedDirs = m.dirs().filter((d) => m.moved.has(d.dir) && d.dir.parent !== null).map((d) => d.dir);
    const res = await attempt(`cgroup rmdir ${c.path}`, () => m.source.rmdir(c.path));
    if (res.ok) m.cgroupRemoved(c);
    for (const d of movedDirs) if (d.parent!.entries.get(d.name) !== d) exempt(m, d.parent!, d.name);
    return res.desc;
  },

  async load(m, r) {
    if (m.colls.filter((c) => c.open).length >= MAX_COLLS) return null;
    const kind = pick(OBJECT_KINDS, r[0])!;
    const coll = newCollection(m.kernel, fuzzObjects()[kind], { limits: { deadlineMs: 5000 } });
    const n = m.next();
    const progs = [...coll.programs.values()].map((h) => h.object);
    const maps = [...coll.maps.values()].map((h) => h.object);
    m.colls.push({ n, kind, coll, progs, maps, open: true });
    for (const h of [...coll.programs.values(), ...coll.maps.values()]) m.objects.add(h.object);
    for (const h of coll.maps.values()) {
      if (h.object instanceof CgrpStorageMap) m.cgrpKeys.set(h.object, new Set());
      if (h.object instanceof CgroupStorageMap) m.oldKeys.set(h.object, new Set());
    }
    return `load ${kind} as coll${n}: ${[...coll.programs.values(), ...coll.maps.values()].map((h) => objName(h.object)).join(' ')}`;
  },

  async unload(m, r) {
    const c = pick(
      m.colls.filter((x) => x.open),
      r[0],
    );
    if (c === undefined) return null;
    c.coll.close();
    c.open = false;
    return `unload coll${c.n}`;
  },

  async mkdir(m, r) {
    const { dir, path } = pick(m.dirs(), r[0])!;
    // In a tagged directory mostly the names of its cgroup's children, which are the ones it takes.
    const names = dir.tag !== null && r[2] % 4 !== 0 ? dir.tag.node.children.map((c) => c.name) : DIR_NAMES;
    const name = pick(names, r[1]) ?? 'a';
    const res = await attempt(`mkdir ${join(path, name)}`, () => m.fs.mkdir(join(path, name), 0o755));
    return res.desc;
  },

  async rmdir(m, r) {
    const d = pick(
      m.dirs().filter((x) => x.dir.parent !== null),
      r[0],
    );
    if (d === undefined) return null;
    const parent = d.dir.parent!;
    const before = [...d.dir.entries.keys()];
    const res = await attempt(`rmdir ${d.path}`, () => m.fs.rmdir(d.path));
    if (res.ok) exempt(m, parent, d.dir.name);
    // A refused rmdir has still unlinked the inherited files (as in the RFC); the mirror does not remake them.
    for (const name of before) if (!d.dir.entries.has(name)) exempt(m, d.dir, name);
    return res.desc;
  },

  async pin(m, r) {
    const objs: BpfObject[] = [...progs(m), ...maps(m), ...m.handles.filter((h) => !h.handle.closed).map((h) => h.handle.object)];
    // Now and then something released: BPF_OBJ_PIN must refuse it.
    const obj = r[3] % 16 === 0 ? pick([...m.objects].filter((o) => o.released), r[2]) : pick(objs, r[2]);
    if (obj === undefined) return null;
    const { path } = pick(m.dirs(), r[0])!;
    const to = join(path, pick(PIN_NAMES, r[1])!);
    return (await attempt(`pin ${objName(obj)} at ${to}`, () => m.fs.pin(to, obj))).desc;
  },

  async unlink(m, r) {
    const l = pick(m.leaves(), r[0]);
    if (l === undefined) return null;
    const res = await attempt(`unlink ${l.path}`, () => m.fs.unlink(l.path));
    if (res.ok) exempt(m, l.dir, l.name);
    return res.desc;
  },

  async rename(m, r) {
    const dirs = m.dirs();
    const from = pick([...dirs.filter((d) => d.dir.parent !== null).map((d) => ({ path: d.path, parent: d.dir.parent!, name: d.dir.name })), ...m.leaves().map((l) => ({ path: l.path, parent: l.dir, name: l.name }))], r[0]);
    if (from === undefined) return null;
    const to = pick(dirs, r[1])!;
    const name = pick([...DIR_NAMES, ...PIN_NAMES], r[2])!;
    const flags = pick([0, 0, RENAME_NOREPLACE, RENAME_EXCHANGE], r[3])!;
    const moving = from.parent.entries.get(from.name);
    const there = to.dir.entries.get(name);
    const res = await attempt(`rename ${from.path} ${join(to.path, name)} flags ${flags}`, () => m.fs.rename(from.path, join(to.path, name), flags));
    if (res.ok) {
      if (moving instanceof DirInode) markMoved(m, moving);
      if (flags === RENAME_EXCHANGE && there instanceof DirInode) markMoved(m, there);
      if (flags !== RENAME_EXCHANGE) exempt(m, from.parent, from.name);
    }
    return res.desc;
  },

  async link(m, r) {
    const l = pick(m.leaves(), r[0]);
    if (l === undefined) return null;
    const { path } = pick(m.dirs(), r[1])!;
    const to = join(path, pick(PIN_NAMES, r[2])!);
    return (await attempt(`link ${l.path} ${to}`, () => m.fs.link(l.path, to))).desc;
  },

  async symlink(m, r) {
    const target = pick([...m.leaves().map((l) => l.path), ...m.dirs().map((d) => d.path || '/'), 'nowhere'], r[0])!;
    const { path } = pick(m.dirs(), r[1])!;
    const at = join(path, pick(PIN_NAMES, r[2])!);
    return (await attempt(`symlink ${target} ${at}`, () => m.fs.symlink(target, at))).desc;
  },

  async open(m, r) {
    if (m.files.length >= MAX_FILES) return null;
    const l = pick(
      m.leaves().filter((x) => x.inode !== null),
      r[0],
    );
    if (l === undefined) return null;
    let f: ModelFile | undefined;
    const res = await attempt(`open ${l.path}`, () => (f = openFile(m, l.path, l.dir, l.inode!)));
    if (res.ok) m.files.push(f!);
    return res.ok ? `${res.desc} as file${f!.n}` : res.desc;
  },

  async read(m, r) {
    const f = pick(m.files, r[0]);
    if (f === undefined) return null;
    const size = pick([1, 7, 64, 4096], r[1])!;
    let text = '';
    const res = await attempt(`read file${f.n} (${size})`, async () => {
      if (f.start !== null) text = await readToEnd(m, f, size);
      else {
        text = Buffer.from(await f.file.read(size)).toString();
        viewOutput(m, f, text);
      }
    });
    return `${res.desc} ${JSON.stringify(text.slice(0, 40))}`;
  },

  async close(m, r) {
    const f = pick(m.files, r[0]);
    if (f === undefined) return null;
    m.files.splice(m.files.indexOf(f), 1);
    f.file.release();
    return `close file${f.n}`;
  },

  async readAll(m, r) {
    const l = pick(
      m.leaves().filter((x) => x.inode !== null),
      r[0],
    );
    if (l === undefined) return null;
    let text = '';
    const res = await attempt(`read all of ${l.path}`, async () => {
      const f = openFile(m, l.path, l.dir, l.inode!);
      try {
        text = await readToEnd(m, f, pick([3, 64, 4096], r[1])!);
      } finally {
        f.file.release();
      }
    });
    return `${res.desc} ${JSON.stringify(text.slice(0, 40))}`;
  },

  async mapUpdate(m, r) {
    const map = pick(maps(m), r[0]);
    if (map === undefined) return null;
    if (map instanceof CgrpStorageMap) {
      const c = pick(m.cgroups, r[1])!;
      const res = await attempt(`update ${objName(map)} cgroup ${c.id}`, () => map.updateElem(c, u64(r[2] % 100)));
      if (res.ok) m.cgrpKeys.get(map)!.add(c);
      return res.desc;
    }
    if (map instanceof HashMap) return (await attempt(`update ${objName(map)} key ${r[1] % 6}`, () => map.updateElem(r[1] % 6, u64(r[2] % 100)))).desc;
    return null;
  },

  async mapDelete(m, r) {
    const map = pick(maps(m), r[0]);
    if (map === undefined) return null;
    if (map instanceof CgrpStorageMap) {
      const c = pick(m.cgroups, r[1])!;
      const res = await attempt(`delete ${objName(map)} cgroup ${c.id}`, () => map.deleteElem(c));
      if (res.ok) m.cgrpKeys.get(map)!.delete(c);
      return res.desc;
    }
    if (map instanceof HashMap) return (await attempt(`delete ${objName(map)} key ${r[1] % 6}`, () => map.deleteElem(r[1] % 6))).desc;
    return null;
  },

  async attach(m, r) {
    const prog = pick(
      progs(m).filter((p) => isSkb(p)),
      r[0],
    );
    if (prog === undefined) return null;
    const cg = someCgroup(m, r[1]);
    const idx = r[2] % ATTACH_TYPES.length;
    const type = ATTACH_TYPES[idx]!;
    const flags = pick([0, BPF_F_ALLOW_OVERRIDE, BPF_F_ALLOW_MULTI, BPF_F_ALLOW_MULTI, BPF_F_ALLOW_MULTI | BPF_F_PREORDER], r[3])!;
    const res = await attempt(`attach ${objName(prog)} to ${cg.path} type ${type} flags ${flags}`, () => cgroupBpfAttach(m.kernel, cg, type, prog, { flags }));
    if (res.ok) {
      const list = m.list(cg, idx);
      if (flags & BPF_F_ALLOW_MULTI) list.entries.push({ prog, link: null, preorder: (flags & BPF_F_PREORDER) !== 0 });
      else list.entries = [{ prog, link: null, preorder: false }];
      list.mode = flags & (BPF_F_ALLOW_MULTI | BPF_F_ALLOW_OVERRIDE);
      oldStorage(m, prog, cg, type);
    }
    return res.desc;
  },

  async detach(m, r) {
    // Mostly a list the model knows has programs.
    const attached = [...m.lists].flatMap(([c, l]) => l.map((x, i) => ({ c, i, n: x.entries.length }))).filter((x) => x.n > 0);
    const at = r[0] % 4 !== 0 ? pick(attached, r[1]) : undefined;
    const cg = at?.c ?? someCgroup(m, r[0]);
    const idx = at?.i ?? r[1] % ATTACH_TYPES.length;
    const type = ATTACH_TYPES[idx]!;
    const mine = m.lists.get(cg)?.[idx];
    const prog = r[3] % 8 === 0 ? null : (pick(mine?.entries.filter((e) => e.prog !== null).map((e) => e.prog!) ?? [], r[2]) ?? pick(progs(m, false), r[2]) ?? null);
    const res = await attempt(`detach ${prog === null ? 'nothing' : objName(prog)} from ${cg.path} type ${type}`, () => cgroupBpfDetach(m.kernel, cg, type, prog));
    if (res.ok) {
      const list = m.list(cg, idx);
      if (list.mode & BPF_F_ALLOW_MULTI) list.entries.splice(list.entries.findIndex((e) => e.prog === prog && e.link === null), 1);
      else list.entries = [];
      if (list.entries.length === 0) list.mode = 0;
    }
    return res.desc;
  },

  async linkCreate(m, r) {
    const prog = pick(progs(m), r[0]);
    if (prog === undefined) return null;
    const cg = someCgroup(m, r[1]);
    if (isSkb(prog)) {
      const idx = r[2] % ATTACH_TYPES.length;
      const type = ATTACH_TYPES[idx]!;
      const flags = r[3] % 3 === 0 ? BPF_F_PREORDER : 0;
      let link: BpfCgroupLink | undefined;
      const res = await attempt(`link ${objName(prog)} to ${cg.path} type ${type} flags ${flags}`, () => {
        const h = cgroupBpfLinkAttach(m.kernel, cg, type, prog, { flags });
        link = h.object;
        m.handles.push({ handle: h, what: 'creator' });
      });
      if (!res.ok) return res.desc;
      m.objects.add(link!);
      m.linkProg.set(link!, prog);
      m.linkCgroup.set(link!, cg);
      const list = m.list(cg, idx);
      list.entries.push({ prog: null, link: link!, preorder: flags !== 0 });
      list.mode = BPF_F_ALLOW_MULTI;
      oldStorage(m, prog, cg, type);
      return `${res.desc} as ${objName(link!)}`;
    }
    const order = pick([BpfCgroupIterOrder.SELF_ONLY, BpfCgroupIterOrder.DESCENDANTS_PRE, BpfCgroupIterOrder.DESCENDANTS_POST, BpfCgroupIterOrder.ANCESTORS_UP, BpfCgroupIterOrder.CHILDREN], r[3])!;
    const opts = prog.section === 'cgroup_view' ? {} : { cgroup: { order, cgroup: cg } };
    let link: BpfIterLink | undefined;
    const res = await attempt(`iter link ${objName(prog)}${opts.cgroup ? ` order ${order} at ${cg.path}` : ''}`, () => {
      const h = bpfIterLinkCreate(m.kernel, prog, opts);
      link = h.object;
      m.handles.push({ handle: h, what: 'creator' });
    });
    if (!res.ok) return res.desc;
    m.objects.add(link!);
    m.linkProg.set(link!, prog);
    if (link!.target === 'cgroup') m.iterStart.set(link!, cg);
    return `${res.desc} as ${objName(link!)}`;
  },

  async linkUpdate(m, r) {
    const link = pick(
      links(m).filter((l) => !l.released || r[3] % 8 === 0),
      r[0],
    );
    // Mostly a program of the link's own section, which the update may take.
    const same = progs(m, false).filter((p) => link !== undefined && p.section === m.linkProg.get(link)?.section);
    const prog = r[3] % 4 !== 0 && same.length > 0 ? pick(same, r[1]) : pick(progs(m, false), r[1]);
    if (link === undefined || prog === undefined) return null;
    const replace = r[2] % 3 === 0;
    const opts = replace ? { flags: BPF_F_REPLACE, oldProg: m.linkProg.get(link)! } : {};
    const res = await attempt(`update ${objName(link)} to ${objName(prog)}${replace ? ' replacing' : ''}`, () => link.update(prog, opts));
    if (res.ok) m.linkProg.set(link, prog);
    return res.desc;
  },

  async linkDetach(m, r) {
    const link = pick(links(m), r[0]);
    if (link === undefined) return null;
    const res = await attempt(`detach ${objName(link)}`, () => link.detach());
    if (res.ok && link instanceof BpfCgroupLink) m.linkGone(link);
    return res.desc;
  },

  async closeHandle(m, r) {
    const h = pick(m.handles, r[0]);
    if (h === undefined) return null;
    m.handles.splice(m.handles.indexOf(h), 1);
    const what = `close ${h.what} handle of ${objName(h.handle.object)}`;
    h.handle.close();
    return what;
  },

  async objGet(m, r) {
    const paths = [...m.leaves().map((l) => l.path), ...m.dirs().map((d) => d.path)];
    const path = pick(paths, r[0]) || '/';
    const res = await attempt(`get ${path}`, () => m.handles.push({ handle: m.fs.get(path), what: `get ${path}` }));
    return res.desc;
  },

  async run(m, r) {
    const cg = someCgroup(m, r[0]);
    const idx = r[1] % ATTACH_TYPES.length;
    const type = ATTACH_TYPES[idx]!;
    let ran = 0;
    const res = await attempt(`run ${cg.path} type ${type}`, () => {
      const out = cgroupBpfRunFilter(m.kernel, cg, type, { len: 84, protocol: 8 });
      ran = out.runs;
      const want = cg.dying ? 0 : m.computeEffective(cg, idx).length;
      if (out.runs !== want || out.faults !== 0) {
        throw new InvariantError('op', `firing ${cg.path} ran ${out.runs} programs (${out.faults} faults), the model's effective array has ${want}`);
      }
    });
    return `${res.desc} (${ran} ran)`;
  },
};

/** An attach made the old cgroup storage of each CGROUP_STORAGE map of the program for (cgroup, type). */
function oldStorage(m: Model, prog: BpfProg, cg: KernfsNode, type: number): void {
  for (const map of prog.maps) if (map instanceof CgroupStorageMap) m.oldKeys.get(map)?.add(`${cg.id}:${type}`);
}

/** Runs one operation; null when its precondition does not hold (skipped). */
export function execOp(m: Model, op: Op): Promise<OpResult | null> {
  return OPS[op.kind](m, op.r);
}
