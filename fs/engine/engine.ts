/**
 * The engine: everything a mount holds (the cgroup source, the Kernel and its programs, the bpffs
 * tree) on one thread, behind asynchronous methods that take and return plain data. The daemon runs
 * it on a worker thread (worker.ts), so a program's run, however long its deadline lets it be, never
 * holds the thread that answers FUSE; tests and the library may run it in-process.
 *
 * Two faces: the VfsBackend the FUSE adapter serves from, and the control operations the CLI sends
 * over the control socket (load and pin programs and iterators, show objects, dump maps, status).
 */
import { readFile } from 'node:fs/promises';
import { totalmem } from 'node:os';
import path from 'node:path';
import createDebug from 'debug';
import { bpfError, isBpfError, S_IFDIR, S_IFLNK, S_IFMT, BpfCgroupIterOrder, BpfMapType, BPF_F_ALLOW_MULTI, BPF_F_QUERY_EFFECTIVE, BPF_EXIST, BPF_NOEXIST, ERRNO, cgroupAttachTypeName, errnoName } from '../../uapi';
import { HostCgroupSource, SimCgroupSource, type CgroupSource, type KernfsNode, type ReconcileResult } from '../../tags';
import {
  CGROUP_ATTACH_TYPES,
  Handle,
  Kernel,
  bpfLinkDetach,
  bpfLinkUpdate,
  cgroupAttachType,
  cgroupBpfAttach,
  cgroupBpfDetach,
  cgroupBpfQuery,
  cgroupBpfRunFilterAsync,
  cgroupGetFromFd,
  checkProgAttachType,
  createMap,
  loadCollection,
  mapDumpJson,
  jsonEntrySize,
  ReplyBudget,
  verify,
  type BpfMap,
  type BpfObject,
  type BpfProg,
  type Collection,
  type JsonMapEntry,
  type ObjectKind,
} from '../../progs';
import { bpfIterLinkCreate, type BpfIterLink } from '../../iter';
import { Bpffs, type OpenFile } from '../bpffs';
import type { VfsBackend, VfsStat, VfsStatfs } from '../fuse/backend';
import { simPreset } from './sim-preset';
import { Journal, recordPaths, type IdCursors, type JournalRecord } from '../state/journal';
import { prune, type Entry, type Footprint } from '../state/compact';
import { attachMode, cgroupPath, dataBytes, hexBytes, mapSpec, mountPath, objRef, pathText, toHex, updateFlags, type ObjRef } from './requests';
import { MAX_REPLY_BYTES } from './rpc';

const debug = createDebug('vbpffs:fs');

export interface EngineOptions {
  /** The host's cgroup2 mount to mirror (found in mountinfo when absent), or a simulated preset. */
  cgroupRoot?: string;
  sim?: string;
  mirror?: 'auto' | 'manual';
  /** Where the daemon keeps its state (the journal). */
  stateDir?: string;
  /** Where the mount is, so absolute symlink targets inside it resolve. */
  mountPoint?: string;
  /** The host source's periodic reconcile walk, ms (0: none); the source's default when absent. */
  reconcileIntervalMs?: number;
  /** The bpffs root's mode (bpffs's mode= option); default 01777, as bpf_fill_super makes it. */
  rootMode?: number;
  /**
   * When the journal is compacted: once the records (or bytes) since the last compaction reach
   * these, or the last snapshot's size if that is larger. Default VBPFFS_JOURNAL_COMPACT
   * (`RECORDS,BYTES`), else 10,000 records or 64 MiB.
   */
  compact?: { records: number; bytes: number };
  /** The memory the mount's maps may hold, bytes (default MAP_MEM_LIMIT). */
  mapMemLimit?: number;
}

/**
 * The maps of one mount hold at most this much, as a memory cgroup's limit bounds what the kernel
 * charges maps to: 2 GiB, or a quarter of the host's memory on a smaller one. Map values live in
 * the daemon's memory (outside the engine's heap limit), so without it `map create` could take the
 * host's memory one array of 1 GiB at a time.
 */
export const MAP_MEM_LIMIT = Math.min(2 ** 31, Math.floor(totalmem() / 4));

/** VBPFFS_JOURNAL_COMPACT=RECORDS,BYTES, or the defaults. */
function compactLimits(): { records: number; bytes: number } {
  const [records, bytes] = (process.env.VBPFFS_JOURNAL_COMPACT ?? '').split(',').map(Number);
  const ok = (n: number | undefined): n is number => Number.isSafeInteger(n) && n! > 0;
  return { records: ok(records) ? records : 10_000, bytes: ok(bytes) ? bytes : 64 << 20 };
}

export interface ProgShow {
  id: number;
  type: string;
  name: string;
  tag: string;
  section: string;
  loaded_at: string;
  run_cnt: number;
  run_time_ns: number;
  faults: number;
  last_fault?: string;
  map_ids: number[];
}

export interface MapShow {
  id: number;
  type: string;
  name: string;
  key: number;
  value: number;
  max_entries: number;
  flags: number;
}

export interface LinkShow {
  id: number;
  type: string;
  prog_id: number;
  info: string;
}

/** `cgroup show`: one attached program (bpftool's columns). */
export interface CgroupShow {
  id: number;
  attach_type: string;
  attach_flags?: string;
  name: string;
}

/** `cgroup run`: each program's return (or fault) in run order, and what the hook decided. */
export interface CgroupRun {
  progs: { id: number; name: string; ret: number; fault?: string }[];
  retval: number;
  verdict: string;
  flags: number;
}

/** A key as the engine resolved it: bytes, or the cgroup that owns a local storage value. */
type Key = { bytes: Uint8Array; rec: { hex: string } } | { cgroup: KernfsNode; rec: { cgroup: string } };

const LOCAL_STORAGE = new Set<BpfMapType>([BpfMapType.CGRP_STORAGE]);

export interface EngineStatus {
  source: { kind: string; mountPoint: string; cgroups: number };
  mirror: 'auto' | 'manual';
  objects: { progs: number; maps: number; links: number };
  startedAt: string;
  /** What the start restored from the state directory's journal (null: no state directory). */
  journal: { file: string; records: number; failed: string[]; damaged?: string } | null;
}

export class Engine implements VfsBackend {
  readonly kernel: Kernel;
  readonly source: CgroupSource;
  readonly bpffs: Bpffs;
  readonly #opts: EngineOptions;
  /** Open files by handle, with the path each was opened through. */
  readonly #files = new Map<number, { file: OpenFile; path: string }>();
  readonly #startedAt = new Date();
  readonly #stop: (() => Promise<void>)[] = [];
  readonly #journal: Journal | null;
  /** What the last start restored from the journal, for status. */
  replay = { records: 0, failed: [] as string[], damaged: undefined as string | undefined };
  #nextFh = 1;
  /** The last operation that creates objects (see #create): the next waits for it. */
  #creating: Promise<unknown> = Promise.resolve();
  /** Each record made (replayed or since), by the order it was journalled, with its footprint: what compaction keeps or drops. */
  #entries = new Map<number, Entry>();
  #seq = 0;
  /** Operations journalled whose outcome is not known yet: a compaction waits until there are none. */
  #inFlight = 0;
  #compacting: Promise<void> | null = null;
  /** Where a collection being loaded notes the maps it reused (by_name pins): its footprint's. */
  #loadTouches: { from: number; into: string[] } | null = null;

  private constructor(source: CgroupSource, opts: EngineOptions) {
    this.source = source;
    this.#opts = opts;
    this.kernel = new Kernel({ cgroups: source.hierarchy, mapMemLimit: opts.mapMemLimit ?? MAP_MEM_LIMIT });
    this.bpffs = new Bpffs({ kernel: this.kernel, source, mirror: opts.mirror ?? 'auto', mountPoint: opts.mountPoint, rootMode: opts.rootMode });
    this.#journal = opts.stateDir === undefined ? null : new Journal(opts.stateDir);
  }

  static async start(opts: EngineOptions = {}): Promise<Engine> {
    let source: CgroupSource;
    const stops: (() => Promise<void>)[] = [];
    if (opts.sim !== undefined) {
      const sim = new SimCgroupSource();
      await sim.start();
      stops.push(await simPreset(sim, opts.sim));
      source = sim;
    } else {
      source = await HostCgroupSource.open({ mountPoint: opts.cgroupRoot, reconcileIntervalMs: opts.reconcileIntervalMs });
      await source.start();
    }
    const engine = new Engine(source, opts);
    engine.#stop.push(...stops);
    await engine.#restore();
    await engine.#compactSoon();
    debug('engine up: %s source at %s, %d cgroups', source.kind, source.mountPoint, source.hierarchy.size);
    return engine;
  }

  async stop(): Promise<void> {
    await this.#compacting;
    await this.#journal?.close();
    for (const f of this.#files.values()) f.file.release();
    this.#files.clear();
    this.bpffs.dispose();
    for (const s of this.#stop.splice(0)) await s();
    await this.source.stop();
  }

  // --- VfsBackend -------------------------------------------------------------------------------

  /**
   * lstat, and fstat of an open file whose name is gone: FUSE's GETATTR names a node, which libfuse
   * turns into the path it was last known by, so a file opened there (a view whose directory the
   * mirror removed, a pin unlinked elsewhere) is stat'ed by that path. It still exists for its
   * holder, as an unlinked file does; without this `cat` fails its fstat with ENOENT before reading.
   */
  async getattr(p: string): Promise<VfsStat> {
    try {
      return this.bpffs.getattr(p);
    } catch (e) {
      // libfuse picks a hidden name by getattr answering ENOENT; bpffs's lookup of a dotted name is EPERM.
      const hidden = isFuseHidden(p);
      const open = isBpfError(e) && (e.code === 'ENOENT' || hidden) ? this.#openedAt(p) : undefined;
      if (open !== undefined) return this.bpffs.fstat(open);
      throw hidden ? bpfError('ENOENT', `${p}: no such hidden file`) : e;
    }
  }
  async readdir(p: string): Promise<string[]> {
    return this.bpffs.readdir(p);
  }
  async readlink(p: string): Promise<string> {
    return this.bpffs.readlink(p);
  }
  async mkdir(p: string, mode: number): Promise<void> {
    await this.#apply({ op: 'mkdir', path: p, mode }, true);
  }
  async rmdir(p: string): Promise<void> {
    await this.#apply({ op: 'rmdir', path: p }, true);
  }
  async unlink(p: string): Promise<void> {
    // libfuse's hidden name of a file already unlinked (see rename): nothing of it is left here.
    if (isFuseHidden(p)) return;
    await this.#apply({ op: 'unlink', path: p }, true);
  }
  /**
   * libfuse hides a file some process has open before unlinking it (or renaming another over it):
   * it renames it to .fuse_hiddenNNN and unlinks that name once the file is released. bpffs refuses
   * the dotted name, which failed such an `rm` with EBUSY, where the kernel's bpffs unlinks an open
   * pin as any other (the open file keeps the object). So that rename is the unlink, and the hidden
   * name is only the open files', which getattr still answers for.
   */
  async rename(from: string, to: string, flags: number): Promise<void> {
    if (!isFuseHidden(to)) return this.#apply({ op: 'rename', from, to, flags }, true);
    await this.#apply({ op: 'unlink', path: from }, true);
    for (const open of this.#files.values()) if (open.path === from) open.path = to;
  }
  async link(existing: string, p: string): Promise<void> {
    await this.#apply({ op: 'link', existing, path: p }, true);
  }
  async symlink(target: string, p: string): Promise<void> {
    await this.#apply({ op: 'symlink', target, path: p }, true);
  }
  async create(p: string, mode: number): Promise<void> {
    this.bpffs.create(p, mode);
  }
  async mknod(p: string, mode: number): Promise<void> {
    this.bpffs.mknod(p, mode);
  }
  async chmod(p: string, mode: number): Promise<void> {
    await this.#apply({ op: 'chmod', path: p, mode }, true);
  }
  async chown(p: string, uid: number, gid: number): Promise<void> {
    await this.#apply({ op: 'chown', path: p, uid, gid }, true);
  }
  async utimens(p: string, atime: Date, mtime: Date): Promise<void> {
    // fuse-native passes ms since the epoch as numbers, whatever VfsBackend's type says.
    await this.#apply({ op: 'utimens', path: p, atime: Math.trunc(Number(atime)), mtime: Math.trunc(Number(mtime)) }, true);
  }
  async open(p: string, flags: number): Promise<number> {
    const file = this.bpffs.open(p, flags);
    const fh = this.#nextFh++;
    this.#files.set(fh, { file, path: p });
    return fh;
  }
  async read(fh: number, size: number): Promise<Uint8Array> {
    const open = this.#files.get(fh);
    if (open === undefined) throw bpfError('EBADF', `no open file ${fh}`);
    return open.file.read(size);
  }
  async release(fh: number): Promise<void> {
    this.#files.get(fh)?.file.release();
    this.#files.delete(fh);
  }
  /** A file open through the path p, if any. */
  #openedAt(p: string): OpenFile | undefined {
    for (const open of this.#files.values()) if (open.path === p) return open.file;
    return undefined;
  }
  async statfs(): Promise<VfsStatfs> {
    return this.bpffs.statfs();
  }

  // --- control ------------------------------------------------------------------------------------

  /**
   * `vbpffs prog loadall OBJ DIR` (bpftool's): loads an object file and pins every program under DIR
   * (created when missing) by its name. Maps declared `pinning: 'by_name'` are pinned at the mount's
   * root, as libbpf pins them under its pin root. Returns the pinned programs' ids.
   */
  async progLoadAll(objectFile: string, dir: string): Promise<{ name: string; id: number; path: string }[]> {
    const source = await readObjectFile(objectFile);
    verify({ source, filename: objectFile }); // a file the verifier refuses is not recorded
    mountPath(dir, 'DIR');
    return this.#create(async (ids) => {
      let pinned: { name: string; id: number; path: string }[] = [];
      // Not atomic: the directories and pins made before a failure stay, so its record does too.
      await this.#apply({ op: 'progLoadAll', filename: objectFile, source, dir, ids }, false, async () => void (pinned = await this.#progLoadAll(objectFile, source, dir)));
      return pinned;
    });
  }

  async #progLoadAll(filename: string, source: string, dir: string): Promise<{ name: string; id: number; path: string }[]> {
    const coll = await this.#load(filename, source);
    try {
      this.#mkdirp(dir);
      return [...coll.programs].map(([name, h]) => {
        const pinPath = path.posix.join(dir, name);
        this.bpffs.pin(pinPath, h.object);
        return { name, id: h.object.id, path: pinPath };
      });
    } finally {
      coll.close();
    }
  }

  /**
   * `vbpffs iter pin OBJ PATH [order ORDER] [cgroup CGROUP]`: loads an object file, makes an
   * iterator link of its first iterator program (cgroup_view or iter/cgroup) and pins it at PATH.
   */
  async iterPin(obj: unknown, pinPath: string, opts: { order?: string; cgroup?: string } = {}): Promise<{ linkId: number; progId: number; target: string }> {
    mountPath(pinPath);
    pathText(opts.cgroup, 'cgroup');
    pathText(opts.order, 'order');
    if (typeof obj !== 'string') {
      // `iter pin pinned PATH`: an iterator link of a program already loaded.
      const prog = objRef(obj, 'prog');
      this.#with(this.#object<BpfProg>('prog', prog), (p) => this.#iterProg(p, opts));
      await this.#create((ids) => this.#apply({ op: 'iterPinProg', prog, pinPath, opts, ids }, true));
    } else {
      const source = await readObjectFile(obj);
      verify({ source, filename: obj });
      // Atomic (a pin that fails closes what it loaded), so a failed one is marked and never replayed.
      await this.#create((ids) => this.#apply({ op: 'iterPin', filename: obj, source, pinPath, opts, ids }, true));
    }
    return this.#with(this.bpffs.get(pinPath), (l) => ({ linkId: l.id, progId: (l as BpfIterLink).prog.id, target: (l as BpfIterLink).target }));
  }

  /** The iterator link parameters for a program: EINVAL for a program that is no iterator. */
  #iterProg(prog: BpfProg, opts: { order?: string; cgroup?: string }): { cgroup: { order: BpfCgroupIterOrder; path?: string } } | undefined {
    if (prog.sec.family !== 'iter') throw bpfError('EINVAL', `prog ${prog.id} (${prog.section}) is not an iterator program (cgroup_view or iter/cgroup)`);
    return prog.sec.iterTarget === 'cgroup' ? { cgroup: this.#iterParams(opts) } : undefined;
  }

  #iterPinProg(prog: BpfProg, pinPath: string, opts: { order?: string; cgroup?: string }): void {
    const link = bpfIterLinkCreate(this.kernel, prog, this.#iterProg(prog, opts));
    try {
      this.bpffs.pin(pinPath, link.object);
    } finally {
      link.close();
    }
  }

  async #iterPin(filename: string, source: string, pinPath: string, opts: { order?: string; cgroup?: string }): Promise<void> {
    const coll = await this.#load(filename, source);
    try {
      const prog = [...coll.programs.values()].map((h) => h.object).find((p) => p.sec.family === 'iter');
      if (prog === undefined) throw bpfError('EINVAL', `${filename} has no iterator program (cgroup_view or iter/cgroup)`);
      this.#iterPinProg(prog, pinPath, opts);
    } finally {
      coll.close();
    }
  }

  /**
   * Records an operation, then makes it (see state/journal.ts for why in that order). An atomic one
   * that fails (it changed nothing) is marked failed in the journal, so replay skips it and the
   * journal holds only what happened; a refused rmdir that unlinked a tagged directory's inherited
   * files is recorded as those unlinks. A non-atomic one that fails (prog loadall, part made) stays.
   */
  async #apply(rec: JournalRecord, atomic: boolean, make: () => Promise<unknown> = () => this.#make(rec)): Promise<void> {
    if (this.#journal === null) return void (await make());
    const seq = this.#seq++;
    this.#inFlight++;
    try {
      const index = await this.#journal.append(rec);
      const { entry, error, unlinked } = await this.#track(rec, make);
      if (error === undefined || !atomic) this.#entries.set(seq, entry);
      if (error !== undefined) {
        if (atomic) await this.#refused(index, unlinked ?? []);
        throw error;
      }
    } finally {
      this.#inFlight--;
    }
    void this.#compactSoon();
  }

  /**
   * Marks record `index` failed, then records the unlinks a refused rmdir made. Best effort:
   * unmarked (the disk filled meanwhile), replay makes it again and it fails again the same way,
   * and the user is told why it failed, not that the marker could not be written.
   */
  async #refused(index: number, unlinked: Entry[]): Promise<void> {
    try {
      await this.#journal!.append({ op: 'failed', index });
      for (const u of unlinked) {
        await this.#journal!.append(u.rec);
        this.#entries.set(this.#seq++, u);
      }
    } catch (m) {
      debug('journal: %s', (m as Error).message);
    }
  }

  /**
   * Makes a record and takes its footprint (state/compact.ts): what it walked through, acted on and
   * created, and the record as replay may make it again (objects named by pin resolved to their ids,
   * which replay gives back, so it no longer needs the pin's path).
   */
  async #track(rec: JournalRecord, make: () => Promise<unknown>): Promise<{ entry: Entry; error?: unknown; unlinked?: Entry[] }> {
    const fp: Footprint = { creates: [], touches: [], walks: [] };
    const ino = (p: string): string | undefined => {
      try {
        return `i${this.bpffs.getattr(p).ino}`;
      } catch {
        return undefined;
      }
    };
    const walk = (p: string): void => {
      let cur = '';
      for (const part of p.split('/').filter(Boolean).slice(0, -1)) {
        cur += `/${part}`;
        let st: VfsStat;
        try {
          st = this.bpffs.getattr(cur);
        } catch {
          return;
        }
        // Through a symlink the footprint cannot tell which directory the record reached.
        if ((st.mode & S_IFMT) === S_IFLNK) return void (fp.barrier = true);
        fp.walks.push(`i${st.ino}`);
      }
    };
    const touch = (p: string): void => void fp.touches.push(...[ino(p)].filter((k): k is string => k !== undefined));
    const obj = (kind: ObjectKind, ref: ObjRef): ObjRef => {
      try {
        const id = 'id' in ref ? ref.id : this.#with(this.#object(kind, ref), (o) => o.id);
        fp.touches.push(`o${kind}${id}`);
        return { id };
      } catch {
        return ref; // it fails to make too
      }
    };
    const ids = this.#ids();
    const rootBefore = new Set(this.#subtreeOf('/', 1));
    const newObjects = (): void => {
      const now = this.#ids();
      for (const kind of ['prog', 'map', 'link'] as const) {
        if (now[kind] < ids[kind]) fp.barrier = true; // the table wrapped past INT_MAX
        for (let id = ids[kind]; id < now[kind]; id++) fp.creates.push(`o${kind}${id}`);
      }
      // Maps pinned by name at the root by a collection's load.
      for (const k of this.#subtreeOf('/', 1)) if (!rootBefore.has(k)) fp.creates.push(k);
    };
    const created = (p: string): (() => void) => () => {
      walk(p);
      fp.creates.push(...this.#subtreeOf(p));
      newObjects();
    };
    let r: JournalRecord = rec;
    let after: (() => void) | undefined;
    let children: { dir: string; names: Map<string, string> } | undefined;
    switch (rec.op) {
      case 'mkdir':
      case 'symlink':
      case 'mapCreate':
        after = created(rec.path);
        break;
      case 'rmdir':
        walk(rec.path);
        fp.touches.push(...this.#subtreeOf(rec.path));
        children = { dir: rec.path, names: this.#children(rec.path) };
        break;
      case 'unlink':
      case 'chmod':
      case 'chown':
      case 'utimens':
        walk(rec.path);
        touch(rec.path);
        break;
      case 'rename':
        for (const p of [rec.from, rec.to]) walk(p), touch(p);
        break;
      case 'link':
        walk(rec.existing);
        walk(rec.path);
        touch(rec.existing);
        break;
      case 'iterPin':
      case 'progLoad':
      case 'progLoadAll': {
        const at = rec.op === 'iterPin' ? rec.pinPath : rec.op === 'progLoad' ? rec.path : rec.dir;
        const before = new Set(this.#subtreeOf(at));
        this.#loadTouches = { from: ids.map, into: fp.touches };
        after = () => {
          walk(at);
          fp.creates.push(...this.#subtreeOf(at).filter((k) => !before.has(k)));
          newObjects();
        };
        break;
      }
      case 'iterPinProg':
        r = { ...rec, prog: obj('prog', rec.prog) };
        after = created(rec.pinPath);
        break;
      case 'objPin':
        r = { ...rec, ref: obj(rec.kind, rec.ref) };
        after = created(rec.path);
        break;
      case 'mapUpdate':
      case 'mapDelete': {
        const map = obj('map', rec.map);
        r = { ...rec, map };
        if ('id' in map) fp.element = `${map.id}:${JSON.stringify(rec.key)}`;
        break;
      }
      case 'linkUpdate':
        r = { ...rec, link: obj('link', rec.link), prog: obj('prog', rec.prog) };
        break;
      case 'linkDetach':
        r = { ...rec, link: obj('link', rec.link) };
        break;
      case 'cgroupAttach':
      case 'cgroupDetach':
        r = { ...rec, prog: obj('prog', rec.prog) };
        break;
    }
    let error: unknown;
    try {
      await make();
    } catch (e) {
      error = e;
    } finally {
      this.#loadTouches = null;
    }
    after?.();
    if (error === undefined || children === undefined) return { entry: { rec: r, fp }, error };
    // A refused rmdir of a tagged directory has unlinked its inherited files (unpopulate_dir).
    const left = this.#children(children.dir);
    const dir = ino(children.dir);
    const unlinked = [...children.names].flatMap(([name, k]): Entry[] =>
      left.has(name) ? [] : [{ rec: { op: 'unlink', path: `${children.dir}/${name}` }, fp: { creates: [], touches: [k], walks: [...fp.walks, ...(dir === undefined ? [] : [dir])] } }],
    );
    return { entry: { rec: r, fp }, error, unlinked };
  }

  /** The inode keys of p and everything under it (depth levels down), symlinks not followed. */
  #subtreeOf(p: string, depth = Infinity): string[] {
    const out: string[] = [];
    const visit = (q: string, d: number): void => {
      let st: VfsStat;
      try {
        st = this.bpffs.getattr(q);
      } catch {
        return;
      }
      out.push(`i${st.ino}`);
      if (d > 0 && (st.mode & S_IFMT) === S_IFDIR) for (const n of this.bpffs.readdir(q)) visit(q === '/' ? `/${n}` : `${q}/${n}`, d - 1);
    };
    visit(p, depth);
    return out;
  }

  /** A directory's entries and their inode keys (none if it is not one). */
  #children(p: string): Map<string, string> {
    const out = new Map<string, string>();
    try {
      for (const n of this.bpffs.readdir(p)) out.set(n, `i${this.bpffs.getattr(`${p}/${n}`).ino}`);
    } catch {
      // not a directory (the rmdir fails before touching anything)
    }
    return out;
  }

  /**
   * Compacts the journal once the records or bytes since the last compaction reach the limits (or
   * the last snapshot's size, if larger, so each compaction's cost is paid for by as many records
   * as it rewrites), one at a time. At start this is awaited; after an operation it runs behind it.
   */
  #compactSoon(): Promise<void> {
    const j = this.#journal;
    if (j === null || this.#compacting !== null) return this.#compacting ?? Promise.resolve();
    const lim = this.#opts.compact ?? compactLimits();
    if (j.tail.records < Math.max(lim.records, j.snapshot.records) && j.tail.bytes < Math.max(lim.bytes, j.snapshot.bytes)) return Promise.resolve();
    this.#compacting = this.compact()
      .then(() => undefined, (e: unknown) => debug('journal: compaction failed, the journal goes on as it was: %s', (e as Error).message))
      .finally(() => {
        this.#compacting = null;
      });
    return this.#compacting;
  }

  /**
   * Rewrites the journal as the records needed to rebuild the state as it is (state/compact.ts),
   * in one atomic replace. Skipped (false) while an operation is between its record and its outcome.
   */
  async compact(): Promise<boolean> {
    if (this.#journal === null) return false;
    const before = this.#entries.size;
    const done = await this.#journal.compact(() => {
      if (this.#inFlight > 0) return null;
      const entries = [...this.#entries].sort((a, b) => a[0] - b[0]).map(([, e]) => e);
      const live = new Set(this.#subtreeOf('/'));
      const kept = prune(entries, (k) => (k.startsWith('i') ? live.has(k) : this.#objectAlive(k)));
      // Later operations take later sequence numbers, so these stay before them.
      this.#entries = new Map(kept.map((e, i) => [i, e]));
      return kept.map((e) => e.rec);
    });
    if (done) debug('journal compacted: %d records of %d kept', this.#entries.size, before);
    return done;
  }

  #objectAlive(key: string): boolean {
    const m = /^o(prog|map|link)(\d+)$/.exec(key);
    if (m === null) return false;
    try {
      this.kernel.getById(m[1] as ObjectKind, Number(m[2])).close();
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Runs an operation that creates objects once those before it are done, with the id tables'
   * cursors as it starts, which its journal record carries. Replay seeks to them, so each replayed
   * object gets the id it had, and `prog pin id N` later in the journal names the same program.
   * Run side by side, two loads could each record the cursor before either allocated, and on replay
   * the second would take an id the first freed (a program its collection released): another id
   * than it had, or even the one a later record names for another object.
   */
  #create<R>(fn: (ids: IdCursors) => Promise<R>): Promise<R> {
    const done = this.#creating.then(() => fn(this.#ids()));
    this.#creating = done.catch(() => undefined);
    return done;
  }

  /** Where the id tables allocate next: recorded with operations that create objects. */
  #ids(): IdCursors {
    return { prog: this.kernel.progIdr.cursor, map: this.kernel.mapIdr.cursor, link: this.kernel.linkIdr.cursor };
  }

  #seek(ids: IdCursors): void {
    this.kernel.progIdr.cursor = ids.prog;
    this.kernel.mapIdr.cursor = ids.map;
    this.kernel.linkIdr.cursor = ids.link;
  }

  async #make(rec: JournalRecord): Promise<void> {
    switch (rec.op) {
      case 'mkdir':
        return this.bpffs.mkdir(rec.path, rec.mode);
      case 'rmdir':
        return this.bpffs.rmdir(rec.path);
      case 'unlink':
        return this.bpffs.unlink(rec.path);
      case 'rename':
        return this.bpffs.rename(rec.from, rec.to, rec.flags);
      case 'link':
        return this.bpffs.link(rec.existing, rec.path);
      case 'symlink':
        return this.bpffs.symlink(rec.target, rec.path);
      case 'chmod':
        return this.bpffs.chmod(rec.path, rec.mode);
      case 'chown':
        return this.bpffs.chown(rec.path, rec.uid, rec.gid);
      case 'utimens':
        return this.bpffs.utimens(rec.path, new Date(rec.atime), new Date(rec.mtime));
      case 'iterPin':
        return this.#iterPin(rec.filename, rec.source, rec.pinPath, rec.opts);
      case 'progLoadAll':
        return void (await this.#progLoadAll(rec.filename, rec.source, rec.dir));
      case 'iterPinProg':
        return this.#with(this.#object<BpfProg>('prog', rec.prog), (p) => this.#iterPinProg(p, rec.pinPath, rec.opts));
      case 'progLoad':
        return void (await this.#progLoad(rec.filename, rec.source, rec.path));
      case 'mapCreate':
        return this.#with(createMap(this.kernel, mapSpec(rec.spec)), (m) => this.bpffs.pin(rec.path, m));
      case 'objPin':
        return this.#with(this.#object(rec.kind, rec.ref), (o) => this.bpffs.pin(rec.path, o));
      case 'mapUpdate':
        return this.#with(this.#object<BpfMap>('map', rec.map), (m) => m.updateElem(this.#recKey(rec.key), hexBytes(rec.value), rec.flags));
      case 'mapDelete':
        return this.#with(this.#object<BpfMap>('map', rec.map), (m) => m.deleteElem(this.#recKey(rec.key)));
      case 'linkUpdate':
        return this.#with(this.#object('link', rec.link), (l) => this.#with(this.#object<BpfProg>('prog', rec.prog), (p) => bpfLinkUpdate(l as never, p)));
      case 'linkDetach':
        return this.#with(this.#object('link', rec.link), (l) => bpfLinkDetach(l as never));
      case 'cgroupAttach':
        return this.#with(this.#object<BpfProg>('prog', rec.prog), (p) => cgroupBpfAttach(this.kernel, rec.cgroup, rec.attachType, p, { flags: rec.flags }));
      case 'cgroupDetach':
        return this.#with(this.#object<BpfProg>('prog', rec.prog), (p) => cgroupBpfDetach(this.kernel, rec.cgroup, rec.attachType, p));
      case 'failed':
        return;
    }
  }

  /** Runs fn on a handle's object and closes the handle, whatever happens. */
  #with<T extends BpfObject, R>(h: Handle<T>, fn: (o: T) => R): R {
    try {
      return fn(h.object);
    } finally {
      h.close();
    }
  }

  /** PROG, MAP or LINK: a new handle on the object by id or by its pin; EINVAL for another kind. */
  #object<T extends BpfObject = BpfObject>(kind: ObjectKind, ref: ObjRef): Handle<T> {
    if ('id' in ref) return this.kernel.getById<T>(kind, ref.id);
    const h = this.bpffs.get(ref.pinned);
    const found = h.object.kind;
    if (found !== kind) {
      h.close();
      throw bpfError('EINVAL', `${ref.pinned} is a pinned ${found}, not a ${kind}`);
    }
    return h as Handle<T>;
  }

  #recKey(key: { hex: string } | { cgroup: string }): unknown {
    return 'hex' in key ? hexBytes(key.hex) : cgroupGetFromFd(this.kernel, key.cgroup);
  }

  /** A key from the CLI: bytes of the map's key size, JSON by its key type, or a cgroup (local storage). */
  #key(map: BpfMap, arg: unknown): Key {
    if (typeof arg === 'object' && arg !== null && 'cgroup' in arg) {
      if (!LOCAL_STORAGE.has(map.type)) throw bpfError('EINVAL', `map ${map.id} (${map.typeName}) is not keyed by cgroup`);
      const cgroup = cgroupGetFromFd(this.kernel, cgroupPath(arg.cgroup, this.source.mountPoint));
      return { cgroup, rec: { cgroup: cgroup.path } };
    }
    if (LOCAL_STORAGE.has(map.type)) throw bpfError('EINVAL', `map ${map.id} (${map.typeName}) is keyed by cgroup: give the key as 'cgroup PATH'`);
    const bytes = dataBytes(arg, map.keySchema, 'key', map.id);
    if (bytes.length !== map.keySize) throw bpfError('EINVAL', `map ${map.id}: the key is ${map.keySize} bytes, got ${bytes.length}`);
    return { bytes, rec: { hex: toHex(bytes) } };
  }

  #keyValue(k: Key): unknown {
    return 'bytes' in k ? k.bytes : k.cgroup;
  }

  /** Replays the journal of a previous run on this state directory. */
  async #restore(): Promise<void> {
    if (this.#journal === null) return;
    const { records, damaged } = await this.#journal.load();
    this.replay = { records: records.length, failed: [], damaged };
    if (damaged !== undefined) debug('journal damaged: %s', damaged);
    const failed = new Set(records.flatMap((r) => (r.op === 'failed' ? [r.index] : [])));
    for (const [i, rec] of records.entries()) {
      if (failed.has(i) || rec.op === 'failed') continue;
      if (rec.ids !== undefined) this.#seek(rec.ids);
      let error: unknown;
      try {
        // A journal written before paths were checked (or by hand) may name what no file name holds.
        for (const p of recordPaths(rec)) pathText(p, `${rec.op}: the path`);
        const t = await this.#track(rec, () => this.#make(rec));
        error = t.error;
        for (const e of error === undefined ? [t.entry] : (t.unlinked ?? [])) this.#entries.set(this.#seq++, e);
      } catch (e) {
        error = e;
      }
      if (error !== undefined) {
        // The host changed (a cgroup gone), or it failed when first made (a journal from before
        // refusals were marked): report it; the next compaction leaves it out, as it changed nothing.
        this.replay.failed.push(`${rec.op}: ${(error as Error).message}`);
        debug('journal: record %d (%s) failed on replay: %s', i + 1, rec.op, (error as Error).message);
      }
    }
    debug('journal replayed: %d records, %d failed', records.length, this.replay.failed.length);
  }

  /**
   * `vbpffs prog load OBJ PATH` (bpftool's): loads an object file and pins its first program at
   * PATH; by_name maps are pinned at the mount's root as for loadall.
   */
  async progLoad(objectFile: string, pinPath: string): Promise<{ id: number; name: string }> {
    const source = await readObjectFile(objectFile);
    verify({ source, filename: objectFile });
    mountPath(pinPath);
    await this.#create((ids) => this.#apply({ op: 'progLoad', filename: objectFile, source, path: pinPath, ids }, true));
    return this.#with(this.bpffs.get(pinPath), (p) => ({ id: p.id, name: (p as BpfProg).name }));
  }

  async #progLoad(filename: string, source: string, pinPath: string): Promise<void> {
    const coll = await this.#load(filename, source);
    try {
      const first = [...coll.programs.values()][0];
      if (first === undefined) throw bpfError('EINVAL', `${filename} declares no program`);
      this.bpffs.pin(pinPath, first.object);
    } finally {
      coll.close();
    }
  }

  /**
   * `vbpffs map create PATH type TYPE key N value N entries N name NAME [flags F]`: creates a map and
   * pins it. The spec is tried first (createMap's checks), so a refused one is never journalled.
   */
  async mapCreate(pinPath: string, args: unknown): Promise<{ id: number }> {
    mountPath(pinPath);
    const spec = mapSpec(args);
    await this.#create((ids) => {
      createMap(this.kernel, spec).close();
      this.#seek(ids); // the trial's id is free again: the real map takes it, as replay will
      return this.#apply({ op: 'mapCreate', path: pinPath, spec: args as Record<string, unknown>, ids }, true);
    });
    return this.#with(this.bpffs.get(pinPath), (m) => ({ id: m.id }));
  }

  /** `vbpffs prog|map|link pin REF PATH`: BPF_OBJ_PIN of an object found by id or by another pin. */
  async objPin(kind: 'prog' | 'map' | 'link', ref: unknown, pinPath: string): Promise<null> {
    if (kind !== 'prog' && kind !== 'map' && kind !== 'link') throw bpfError('EINVAL', `cannot pin a '${String(kind)}'`);
    const r = objRef(ref, kind);
    this.#object(kind, r).close();
    await this.#apply({ op: 'objPin', kind, ref: r, path: mountPath(pinPath) }, true);
    return null;
  }

  /** `vbpffs map lookup MAP key KEY`: the value, with its JSON when the map has a value type. */
  mapLookup(ref: unknown, key: unknown): JsonMapEntry & { cgroup?: string } {
    return this.#with(this.#object<BpfMap>('map', objRef(ref, 'map')), (m) => {
      const k = this.#key(m, key);
      // Before the value is copied: one value may be as large as an array may be (1 GiB).
      if (jsonEntrySize(m.keySize, m.valueSize) > MAX_REPLY_BYTES) throw bpfError('E2BIG', `map ${m.id}'s ${m.valueSize}-byte value is over the ${MAX_REPLY_BYTES} bytes a reply may hold`);
      return this.#entry(m, k, m.lookupElem(this.#keyValue(k)));
    });
  }

  #entry(m: BpfMap, k: Key, value: Uint8Array): JsonMapEntry & { cgroup?: string } {
    const hex = (b: Uint8Array): string[] => Array.from(b, (x) => `0x${x.toString(16).padStart(2, '0')}`);
    const out: JsonMapEntry & { cgroup?: string } = 'bytes' in k ? { key: hex(k.bytes), value: hex(value) } : { key: [], cgroup: k.rec.cgroup, value: hex(value) };
    if (m.valueSchema !== undefined) {
      out.formatted = { value: m.valueSchema.toJson(value) };
      if (m.keySchema !== undefined && 'bytes' in k) out.formatted = { key: m.keySchema.toJson(k.bytes), ...out.formatted };
    }
    return out;
  }

  /**
   * `vbpffs map update MAP key KEY value VALUE [any|noexist|exist]`. Checked before it is journalled:
   * the map, the key and value and their sizes, the flag and whether the key exists as it requires.
   */
  async mapUpdate(ref: unknown, key: unknown, value: unknown, flags?: unknown): Promise<null> {
    const r = objRef(ref, 'map');
    const f = updateFlags(flags);
    const rec = this.#with(this.#object<BpfMap>('map', r), (m): JournalRecord => {
      const k = this.#key(m, key);
      const v = dataBytes(value, m.valueSchema, 'value', m.id);
      if (v.length !== m.valueSize) throw bpfError('EINVAL', `map ${m.id}: the value is ${m.valueSize} bytes, got ${v.length}`);
      const exists = this.#exists(m, k);
      if (f === BPF_NOEXIST && exists) throw bpfError('EEXIST', `map ${m.id} has this key already (noexist)`);
      if (f === BPF_EXIST && !exists) throw bpfError('ENOENT', `map ${m.id} has no such key (exist)`);
      return { op: 'mapUpdate', map: r, key: k.rec, value: toHex(v), flags: f };
    });
    await this.#apply(rec, true);
    return null;
  }

  #exists(m: BpfMap, k: Key): boolean {
    try {
      m.lookupElem(this.#keyValue(k));
      return true;
    } catch (e) {
      if (isBpfError(e, 'ENOENT')) return false;
      throw e;
    }
  }

  /** `vbpffs map delete MAP key KEY`: ENOENT for a key that is not there, before anything is journalled. */
  async mapDelete(ref: unknown, key: unknown): Promise<null> {
    const r = objRef(ref, 'map');
    const rec = this.#with(this.#object<BpfMap>('map', r), (m): JournalRecord => {
      const k = this.#key(m, key);
      if (m.type === BpfMapType.ARRAY) throw bpfError('EINVAL', `map ${m.id}: array elements cannot be deleted`);
      if (!this.#exists(m, k)) throw bpfError('ENOENT', `map ${m.id} has no such key`);
      return { op: 'mapDelete', map: r, key: k.rec };
    });
    await this.#apply(rec, true);
    return null;
  }

  /** `vbpffs map getnext MAP [key KEY]`: the key after KEY (the first without one). */
  mapGetNext(ref: unknown, key?: unknown): { key: string[] | null; next_key: string[] } {
    return this.#with(this.#object<BpfMap>('map', objRef(ref, 'map')), (m) => {
      const hex = (b: Uint8Array): string[] => Array.from(b, (x) => `0x${x.toString(16).padStart(2, '0')}`);
      const k = key === undefined || key === null ? null : this.#key(m, key);
      const next = m.getNextKey(k === null ? null : this.#keyValue(k)) as Uint8Array;
      return { key: k !== null && 'bytes' in k ? hex(k.bytes) : null, next_key: hex(next) };
    });
  }

  /** `vbpffs link update LINK PROG`: BPF_LINK_UPDATE. */
  async linkUpdate(link: unknown, prog: unknown): Promise<null> {
    const [l, p] = [objRef(link, 'link'), objRef(prog, 'prog')];
    this.#object('link', l).close();
    this.#object('prog', p).close();
    await this.#apply({ op: 'linkUpdate', link: l, prog: p }, true);
    return null;
  }

  /** `vbpffs link detach LINK`: BPF_LINK_DETACH. */
  async linkDetach(link: unknown): Promise<null> {
    const l = objRef(link, 'link');
    this.#object('link', l).close();
    await this.#apply({ op: 'linkDetach', link: l }, true);
    return null;
  }

  /** `vbpffs cgroup attach CGROUP ATTACH_TYPE PROG [multi|override]`: BPF_PROG_ATTACH. */
  async cgroupAttach(cgroup: unknown, attachType: unknown, prog: unknown, mode?: unknown): Promise<null> {
    const cg = cgroupGetFromFd(this.kernel, cgroupPath(cgroup, this.source.mountPoint));
    const type = cgroupAttachType(String(attachType));
    const p = objRef(prog, 'prog');
    const flags = attachMode(mode);
    this.#with(this.#object<BpfProg>('prog', p), (pr) => checkProgAttachType(pr, type));
    await this.#apply({ op: 'cgroupAttach', cgroup: cg.path, attachType: cgroupAttachTypeName(type), prog: p, flags }, true);
    return null;
  }

  /** `vbpffs cgroup detach CGROUP ATTACH_TYPE PROG`: BPF_PROG_DETACH. */
  async cgroupDetach(cgroup: unknown, attachType: unknown, prog: unknown): Promise<null> {
    const cg = cgroupGetFromFd(this.kernel, cgroupPath(cgroup, this.source.mountPoint));
    const type = cgroupAttachType(String(attachType));
    const p = objRef(prog, 'prog');
    this.#with(this.#object<BpfProg>('prog', p), (pr) => {
      checkProgAttachType(pr, type); // bpf_prog_get_type: the wrong type is EINVAL, before "not attached"
      // find_detach_entry: without BPF_F_ALLOW_MULTI the one attached program goes, whichever is named.
      const q = cgroupBpfQuery(this.kernel, cg, type);
      const found = (q.attachFlags & BPF_F_ALLOW_MULTI) === 0 ? q.progIds.length > 0 : q.progIds.includes(pr.id);
      if (!found) throw bpfError('ENOENT', `prog ${pr.id} is not attached to ${cg.path} at ${cgroupAttachTypeName(type)}`);
    });
    await this.#apply({ op: 'cgroupDetach', cgroup: cg.path, attachType: cgroupAttachTypeName(type), prog: p }, true);
    return null;
  }

  /** `vbpffs cgroup show CGROUP [effective]`: bpftool's listing, one row per program and attach type. */
  cgroupShow(cgroup: unknown, effective?: unknown): CgroupShow[] {
    const cg = cgroupGetFromFd(this.kernel, cgroupPath(cgroup, this.source.mountPoint));
    const out: CgroupShow[] = [];
    for (const type of CGROUP_ATTACH_TYPES) {
      const q = cgroupBpfQuery(this.kernel, cg, type, { queryFlags: effective === true ? BPF_F_QUERY_EFFECTIVE : 0 });
      for (const id of q.progIds) {
        const name = this.#with(this.kernel.getById<BpfProg>('prog', id), (p) => p.name);
        const row: CgroupShow = { id, attach_type: cgroupAttachTypeName(type), name };
        if (effective !== true) row.attach_flags = attachFlagsName(q.attachFlags);
        out.push(row);
      }
    }
    return out;
  }

  /**
   * `vbpffs cgroup reconcile`: walks the cgroup tree now and repairs the hierarchy, and so the
   * mirror, from what it finds: what the periodic walk does, for when events were lost.
   */
  async cgroupReconcile(): Promise<ReconcileResult> {
    const r = await this.source.reconcile();
    debug('reconcile asked for: %d cgroups added, %d removed', r.added, r.removed);
    return r;
  }

  /** `vbpffs cgroup run CGROUP ATTACH_TYPE [ctx JSON]`: fires the hook once, as an event would. */
  async cgroupRun(cgroup: unknown, attachType: unknown, ctx?: unknown): Promise<CgroupRun> {
    const cg = cgroupGetFromFd(this.kernel, cgroupPath(cgroup, this.source.mountPoint));
    const type = cgroupAttachType(String(attachType));
    if (ctx !== undefined && (typeof ctx !== 'object' || ctx === null || Array.isArray(ctx))) throw bpfError('EINVAL', 'ctx is a JSON object');
    const progs: CgroupRun['progs'] = [];
    // Off this thread: a program V8 cannot interrupt fails at its deadline and holds no reader.
    const r = await cgroupBpfRunFilterAsync(this.kernel, cg, type, (ctx ?? {}) as Record<string, unknown>, (p, ret, fault) => {
      progs.push({ id: p.id, name: p.name, ret, ...(fault === undefined ? {} : { fault: fault.message }) });
    });
    const verdict = r.retval === 0 ? 'allow' : r.retval === -ERRNO.EPERM ? 'deny' : `error ${errnoName(r.retval) ?? r.retval}`;
    return { progs, retval: r.retval, verdict, flags: r.flags };
  }

  progShow(ref?: unknown): ProgShow[] {
    return this.#shown<BpfProg>('prog', ref).map((p) => ({
      id: p.id,
      type: p.type,
      name: p.name,
      tag: p.tag,
      section: p.section,
      loaded_at: p.loadTime.toISOString(),
      run_cnt: p.stats.runCnt,
      run_time_ns: p.stats.runTimeNs,
      faults: p.stats.faults,
      ...(p.stats.lastFault === undefined ? {} : { last_fault: p.stats.lastFault }),
      map_ids: p.maps.map((m) => m.id),
    }));
  }

  mapShow(ref?: unknown): MapShow[] {
    return this.#shown<BpfMap>('map', ref).map((m) => ({
      id: m.id,
      type: m.typeName,
      name: m.name,
      key: m.keySize,
      value: m.valueSize,
      max_entries: m.maxEntries,
      flags: m.flags,
    }));
  }

  linkShow(ref?: unknown): LinkShow[] {
    return this.#shown<BpfObject & { prog?: BpfProg; fdinfo?: () => string }>('link', ref).map((l) => ({
      id: l.id,
      type: l.constructor.name,
      prog_id: l.prog?.id ?? 0,
      info: typeof l.fdinfo === 'function' ? l.fdinfo() : '',
    }));
  }

  /** Every live object of a kind, or the one a reference names. */
  #shown<T extends BpfObject>(kind: ObjectKind, ref: unknown): T[] {
    if (ref === undefined || ref === null) return this.kernel.list<T>(kind);
    return this.#with(this.#object<T>(kind, objRef(ref, kind)), (o) => [o]);
  }

  /**
   * `vbpffs map dump MAP`: bpftool's JSON dump, E2BIG past MAX_REPLY_BYTES (bpftool streams its
   * dump; the control protocol's one reply line cannot, and building it unbounded killed the engine).
   */
  mapDump(ref: unknown): unknown {
    return this.#with(this.#object<BpfMap>('map', typeof ref === 'number' ? { id: ref } : objRef(ref, 'map')), (m) =>
      mapDumpJson(m, new ReplyBudget(MAX_REPLY_BYTES, `map ${m.id}'s dump (${m.typeName}, ${m.maxEntries} entries of ${m.keySize}+${m.valueSize} bytes)`)),
    );
  }

  status(): EngineStatus {
    return {
      source: { kind: this.source.kind, mountPoint: this.source.mountPoint, cgroups: this.source.hierarchy.size },
      mirror: this.#opts.mirror ?? 'auto',
      objects: { progs: this.kernel.list('prog').length, maps: this.kernel.list('map').length, links: this.kernel.list('link').length },
      startedAt: this.#startedAt.toISOString(),
      journal: this.#journal === null ? null : { file: this.#journal.file, ...this.replay },
    };
  }

  async #load(filename: string, source: string): Promise<Collection> {
    // libbpf pins `pinning: 'by_name'` maps under its pin root: here, the mount's root.
    const coll = await loadCollection(this.kernel, { source, filename }, { pins: this.bpffs.mapPins('/') });
    // A by_name map it reused (made before it started) is one its record needs.
    const t = this.#loadTouches;
    if (t !== null) for (const h of coll.maps.values()) if (h.object.id < t.from) t.into.push(`omap${h.object.id}`);
    return coll;
  }

  #mkdirp(dir: string): void {
    let cur = '';
    for (const part of dir.split('/').filter(Boolean)) {
      cur += `/${part}`;
      try {
        this.bpffs.getattr(cur);
      } catch {
        this.bpffs.mkdir(cur, 0o755);
      }
    }
  }

  #iterParams(opts: { order?: string; cgroup?: string }): { order: BpfCgroupIterOrder; path?: string } {
    const orders: Record<string, BpfCgroupIterOrder> = {
      self_only: BpfCgroupIterOrder.SELF_ONLY,
      descendants_pre: BpfCgroupIterOrder.DESCENDANTS_PRE,
      descendants_post: BpfCgroupIterOrder.DESCENDANTS_POST,
      ancestors_up: BpfCgroupIterOrder.ANCESTORS_UP,
      children: BpfCgroupIterOrder.CHILDREN,
    };
    const order = orders[opts.order ?? 'descendants_pre'];
    if (order === undefined) throw bpfError('EINVAL', `unknown order '${opts.order}' (${Object.keys(orders).join(', ')})`);
    return { order, path: opts.cgroup ?? '/' };
  }
}

/** bpftool's attach_flags column: the cgroup's mode for the attach type. */
function attachFlagsName(flags: number): string {
  return flags === 0 ? '' : flags === 2 ? 'multi' : flags === 1 ? 'override' : `0x${flags.toString(16)}`;
}

/** A name libfuse gives a file it hides (".fuse_hidden" and hex digits). */
function isFuseHidden(p: string): boolean {
  return /^\.fuse_hidden[0-9a-f]+$/.test(path.posix.basename(p));
}

/** The object file's text, read by the daemon (the CLI resolves the path). */
async function readObjectFile(objectFile: string): Promise<string> {
  pathText(objectFile, 'the object file');
  if (!path.isAbsolute(objectFile)) throw bpfError('EINVAL', `${objectFile}: the object file's path must be absolute (the CLI resolves it)`);
  try {
    return await readFile(objectFile, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'ENOENT' : 'EACCES';
    throw bpfError(code, `${objectFile}: cannot read the object file`, e);
  }
}

export type { KernfsNode };
