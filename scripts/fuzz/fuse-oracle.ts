/**
 * The FUSE fuzzer's oracle: the library alone (a SimCgroupSource, a Kernel, a Bpffs in auto-mirror
 * mode, as the engine builds them) fed the same actions as the real mount, each as the kernel call
 * the `vbpffs` command or the file operation stands for. It is the differential half: the mount
 * must show what the library shows. Its tree also gives the generator its choices.
 *
 * Where the CLI's semantics are the engine's own (an object named by a pin must be of the kind the
 * command takes; a local storage key is a cgroup), they are written here again from README's CLI
 * reference, not imported from fs/engine, so a mistake there shows as a difference.
 */
import {
  BPF_ANY,
  BPF_EXIST,
  BPF_F_ALLOW_MULTI,
  BPF_F_ALLOW_OVERRIDE,
  BPF_F_NO_PREALLOC,
  BPF_NOEXIST,
  BpfCgroupIterOrder,
  BpfMapType,
  ERRNO,
  O_RDONLY,
  S_IFDIR,
  S_IFLNK,
  S_IFMT,
  bpfError,
  cgroupAttachTypeName,
  errnoName,
  isBpfError,
} from '../../uapi';
import {
  CGROUP_ATTACH_TYPES,
  Kernel,
  ValueSchema,
  bpfLinkDetach,
  bpfLinkUpdate,
  cgroupAttachType,
  cgroupBpfAttach,
  cgroupBpfDetach,
  cgroupBpfQuery,
  cgroupBpfRunFilter,
  cgroupGetFromFd,
  checkProgAttachType,
  createMap,
  loadCollection,
  type BpfMap,
  type BpfObject,
  type BpfProg,
  type Handle,
  type ObjectKind as BpfObjectKind,
} from '../../progs';
import { SimCgroupSource } from '../../tags';
import { bpfIterLinkCreate, BpfIterLink } from '../../iter';
import { Bpffs, DirInode } from '../../fs/bpffs';
import { simPreset } from '../../fs/engine/sim-preset';
import { FUZZ_SOURCES, type ObjectKind } from './objects';
import type { Action, Outcome } from './fuse-ops';

const ORDERS: Record<string, BpfCgroupIterOrder> = {
  self_only: BpfCgroupIterOrder.SELF_ONLY,
  descendants_pre: BpfCgroupIterOrder.DESCENDANTS_PRE,
  descendants_post: BpfCgroupIterOrder.DESCENDANTS_POST,
  ancestors_up: BpfCgroupIterOrder.ANCESTORS_UP,
  children: BpfCgroupIterOrder.CHILDREN,
};

/** A u32 key or u64 value as the little-endian bytes the CLI sends. */
export function leBytes(v: number, size: number): Uint8Array {
  const b = new Uint8Array(size);
  new DataView(b.buffer).setUint32(0, v, true);
  return b;
}

export interface TreeEntry {
  /** find's %y: d, f or l. */
  type: string;
  mode: number;
  nlink: number;
  ino: number;
  path: string;
  target: string;
}

export class LibWorld {
  readonly kernel: Kernel;
  readonly fs: Bpffs;
  readonly #stops: (() => Promise<void>)[] = [];

  private constructor(
    readonly source: SimCgroupSource,
    readonly mnt: string,
    readonly objects: Record<ObjectKind, string>,
  ) {
    this.kernel = new Kernel({ cgroups: source.hierarchy });
    this.fs = new Bpffs({ kernel: this.kernel, source, mirror: 'auto', mountPoint: mnt });
  }

  /** The same starting tree as the real side: the `demo` preset, or the root and the fuzz cgroup. */
  static async create(opts: { sim: boolean; fuzzCgroup: string; mnt: string; objects: Record<ObjectKind, string> }): Promise<LibWorld> {
    const source = new SimCgroupSource();
    await source.start();
    const w = new LibWorld(source, opts.mnt, opts.objects);
    if (opts.sim) w.#stops.push(await simPreset(source, 'demo'));
    else await source.mkdir(opts.fuzzCgroup);
    return w;
  }

  async dispose(): Promise<void> {
    this.fs.dispose();
    for (const s of this.#stops) await s();
    await this.source.stop();
  }

  /** Cgroup id -> path, of every cgroup this side has made. */
  idPaths(): Map<number, string> {
    const out = new Map<number, string>();
    for (const n of this.source.hierarchy.walk()) out.set(n.id, n.path);
    return out;
  }

  /** The tree under `roots` (paths in the mount) as find lists it: each entry's type, mode, links and symlink target. */
  tree(roots: string[]): TreeEntry[] {
    const out: TreeEntry[] = [];
    const visit = (p: string): void => {
      let st;
      try {
        st = this.fs.getattr(p);
      } catch {
        return;
      }
      const fmt = st.mode & S_IFMT;
      const type = fmt === S_IFDIR ? 'd' : fmt === S_IFLNK ? 'l' : 'f';
      out.push({ type, mode: st.mode & 0o7777, nlink: st.nlink, ino: st.ino, path: p, target: type === 'l' ? this.fs.readlink(p) : '' });
      if (type === 'd') for (const name of this.fs.readdir(p)) visit(`${p}/${name}`);
    };
    for (const r of roots) visit(r);
    return out;
  }

  /** The cgroup a directory is tagged with (its path), or null: untagged, or no such directory. */
  tagOf(p: string): string | null {
    let dir: DirInode = this.fs.rootInode;
    for (const name of p.split('/').filter(Boolean)) {
      const next = dir.entries.get(name);
      if (!(next instanceof DirInode)) return null;
      dir = next;
    }
    return dir.tag?.node.path ?? null;
  }

  /** The object a path names (following symlinks), or null. */
  objectAt(p: string): BpfObject | null {
    try {
      return this.#with(this.fs.get(p), (o) => o);
    } catch {
      return null;
    }
  }

  /** A handle on the object a pin names, of the kind a command takes (EINVAL for another kind). */
  #object<T extends BpfObject>(kind: BpfObjectKind, ref: { id: number } | { pinned: string }): Handle<T> {
    if ('id' in ref) return this.kernel.getById<T>(kind, ref.id);
    const h = this.fs.get(ref.pinned);
    const found = h.object.kind;
    if (found !== kind) {
      h.close();
      throw bpfError('EINVAL', `${ref.pinned} is a pinned ${found}, not a ${kind}`);
    }
    return h as Handle<T>;
  }

  #with<T extends BpfObject, R>(h: Handle<T>, fn: (o: T) => R): R {
    try {
      return fn(h.object);
    } finally {
      h.close();
    }
  }

  #cgroup(cg: string): ReturnType<typeof cgroupGetFromFd> {
    return cgroupGetFromFd(this.kernel, cg);
  }

  async #load(kind: ObjectKind): Promise<Awaited<ReturnType<typeof loadCollection>>> {
    return loadCollection(this.kernel, { source: FUZZ_SOURCES[kind], filename: this.objects[kind] }, { pins: this.fs.mapPins('/') });
  }

  #iterPin(prog: BpfProg, p: string, order: string | undefined, cgroup: string | undefined): void {
    if (prog.sec.family !== 'iter') throw bpfError('EINVAL', `prog ${prog.id} is not an iterator program`);
    const params = prog.sec.iterTarget === 'cgroup' ? { cgroup: { order: ORDERS[order ?? 'descendants_pre']!, path: cgroup ?? '/' } } : undefined;
    this.#with(bpfIterLinkCreate(this.kernel, prog, params), (link) => this.fs.pin(p, link));
  }

  #key(map: BpfMap, key: number | { cgroup: string }): unknown {
    const local = map.type === BpfMapType.CGRP_STORAGE;
    if (typeof key === 'object') {
      if (!local) throw bpfError('EINVAL', `map ${map.id} is not keyed by cgroup`);
      return this.#cgroup(key.cgroup);
    }
    if (local) throw bpfError('EINVAL', `map ${map.id} is keyed by cgroup`);
    if (map.keySize !== 4) throw bpfError('EINVAL', `map ${map.id}: the key is ${map.keySize} bytes, got 4`);
    return leBytes(key, 4);
  }

  /** Whether what `p` names is an iterator link or an old cgroup storage map (its text names cgroups by id). */
  namesCgroups(p: string): boolean {
    const o = this.objectAt(p);
    return o instanceof BpfIterLink || (o?.kind === 'map' && (o as BpfMap).type === BpfMapType.CGROUP_STORAGE);
  }

  async #make(a: Action): Promise<string | void> {
    switch (a.t) {
      case 'mkdir':
        return void this.fs.mkdir(a.p, 0o755);
      case 'rmdir':
        return void this.fs.rmdir(a.p);
      case 'unlink':
        return void this.fs.unlink(a.p);
      case 'rename':
        return void this.fs.rename(a.p, a.to, 0);
      case 'link':
        return void this.fs.link(a.p, a.to);
      case 'symlink':
        return void this.fs.symlink(a.target, a.p);
      case 'chmod':
        return void this.fs.chmod(a.p, a.mode);
      case 'cat': {
        const f = this.fs.open(a.p, O_RDONLY);
        try {
          let text = '';
          for (let chunk = await f.read(65536); chunk.length > 0; chunk = await f.read(65536)) text += Buffer.from(chunk).toString();
          return text;
        } finally {
          f.release();
        }
      }
      case 'cgMkdir':
        return void (await this.source.mkdir(a.cg));
      case 'cgRmdir':
        return void (await this.source.rmdir(a.cg));
      case 'iterPin': {
        if (typeof a.obj === 'object') {
          return this.#with(this.#object<BpfProg>('prog', a.obj), (prog) => this.#iterPin(prog, a.p, a.order, a.cgroup));
        }
        const coll = await this.#load(a.obj);
        try {
          const prog = [...coll.programs.values()].map((h) => h.object).find((x) => x.sec.family === 'iter')!;
          return this.#iterPin(prog, a.p, a.order, a.cgroup);
        } finally {
          coll.close();
        }
      }
      case 'progLoad': {
        const coll = await this.#load(a.obj);
        try {
          return this.fs.pin(a.p, [...coll.programs.values()][0]!.object);
        } finally {
          coll.close();
        }
      }
      case 'objPin':
        return this.#with(this.#object(a.kind, a.ref), (o) => this.fs.pin(a.p, o));
      case 'mapCreate': {
        const u32 = ValueSchema.define('u32');
        const u64 = ValueSchema.define('u64');
        const spec =
          a.type === 'hash'
            ? { type: BpfMapType.HASH, name: 'h', keySize: 4, valueSize: 8, maxEntries: 4, flags: 0, btf: { key: u32, value: u64 } }
            : { type: BpfMapType.CGRP_STORAGE, name: 'c', keySize: 4, valueSize: 8, maxEntries: 0, flags: BPF_F_NO_PREALLOC, btf: { key: u32, value: u64 } };
        return this.#with(createMap(this.kernel, spec), (m) => this.fs.pin(a.p, m));
      }
      case 'mapUpdate': {
        const flags = { any: BPF_ANY, noexist: BPF_NOEXIST, exist: BPF_EXIST }[a.flag];
        return this.#with(this.#object<BpfMap>('map', { pinned: a.map }), (m) => {
          const key = this.#key(m, a.key);
          if (m.valueSize !== 8) throw bpfError('EINVAL', `map ${m.id}: the value is ${m.valueSize} bytes, got 8`);
          m.updateElem(key, leBytes(a.value, 8), flags);
        });
      }
      case 'mapDelete':
        return this.#with(this.#object<BpfMap>('map', { pinned: a.map }), (m) => void m.deleteElem(this.#key(m, a.key)));
      case 'linkUpdate':
        return this.#with(this.#object('link', { pinned: a.link }), (l) => this.#with(this.#object<BpfProg>('prog', { pinned: a.prog }), (p) => bpfLinkUpdate(l as never, p)));
      case 'linkDetach':
        return this.#with(this.#object('link', { pinned: a.link }), (l) => bpfLinkDetach(l as never));
      case 'attach': {
        const cg = this.#cgroup(a.cg);
        const type = cgroupAttachType(a.type);
        const flags = a.mode === 'multi' ? BPF_F_ALLOW_MULTI : a.mode === 'override' ? BPF_F_ALLOW_OVERRIDE : 0;
        return this.#with(this.#object<BpfProg>('prog', { pinned: a.prog }), (p) => {
          checkProgAttachType(p, type);
          cgroupBpfAttach(this.kernel, cg, type, p, { flags });
        });
      }
      case 'detach': {
        const cg = this.#cgroup(a.cg);
        const type = cgroupAttachType(a.type);
        // cgroup_bpf_prog_detach gets the program with bpf_prog_get_type: the wrong type is EINVAL.
        return this.#with(this.#object<BpfProg>('prog', { pinned: a.prog }), (p) => {
          checkProgAttachType(p, type);
          cgroupBpfDetach(this.kernel, cg, type, p);
        });
      }
      case 'run': {
        const cg = this.#cgroup(a.cg);
        const progs: { id: number; name: string; ret: number; fault?: string }[] = [];
        const r = cgroupBpfRunFilter(this.kernel, cg, a.type, {}, (p, ret, fault) => {
          progs.push({ id: p.id, name: p.name, ret, ...(fault === undefined ? {} : { fault: fault.message }) });
        });
        const verdict = r.retval === 0 ? 'allow' : r.retval === -ERRNO.EPERM ? 'deny' : `error ${errnoName(r.retval) ?? r.retval}`;
        return JSON.stringify({ progs, retval: r.retval, verdict, flags: r.flags });
      }
      case 'show':
        return JSON.stringify(this.#show(a.what));
      case 'cgShow': {
        const cg = this.#cgroup(a.cg);
        const rows: { id: number; attach_type: string; attach_flags: string; name: string }[] = [];
        for (const type of CGROUP_ATTACH_TYPES) {
          const q = cgroupBpfQuery(this.kernel, cg, type);
          const flags = q.attachFlags === 0 ? '' : q.attachFlags === BPF_F_ALLOW_MULTI ? 'multi' : 'override';
          for (const id of q.progIds) rows.push({ id, attach_type: cgroupAttachTypeName(type), attach_flags: flags, name: this.#with(this.kernel.getById<BpfProg>('prog', id), (p) => p.name) });
        }
        return JSON.stringify(rows);
      }
    }
  }

  /** `vbpffs -j prog|map|link show`, the fields both sides must agree on. */
  #show(what: 'prog' | 'map' | 'link'): unknown[] {
    if (what === 'prog') {
      return this.kernel.list<BpfProg>('prog').map((p) => ({ id: p.id, type: p.type, name: p.name, section: p.section, run_cnt: p.stats.runCnt, faults: p.stats.faults, map_ids: p.maps.map((m) => m.id) }));
    }
    if (what === 'map') {
      return this.kernel.list<BpfMap>('map').map((m) => ({ id: m.id, type: m.typeName, name: m.name, key: m.keySize, value: m.valueSize, max_entries: m.maxEntries, flags: m.flags }));
    }
    return this.kernel.list<BpfObject & { prog: BpfProg }>('link').map((l) => ({ id: l.id, type: l.constructor.name, prog_id: l.prog.id }));
  }

  /** Runs one action: its errno (null when it succeeded) and what it printed or read. */
  async exec(a: Action): Promise<Outcome> {
    try {
      return { errno: null, out: (await this.#make(a)) ?? undefined };
    } catch (e) {
      if (isBpfError(e)) return { errno: e.code };
      throw e;
    }
  }
}
