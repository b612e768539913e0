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
import path from 'node:path';
import createDebug from 'debug';
import { bpfError, BpfCgroupIterOrder } from '../../uapi';
import { HostCgroupSource, SimCgroupSource, type CgroupSource, type KernfsNode } from '../../tags';
import { Kernel, loadCollection, mapDumpJson, verify, type BpfMap, type BpfObject, type BpfProg, type Collection } from '../../progs';
import { bpfIterLinkCreate, type BpfIterLink } from '../../iter';
import { Bpffs, type OpenFile } from '../bpffs';
import type { VfsBackend, VfsStat, VfsStatfs } from '../fuse/backend';
import { simPreset } from './sim-preset';
import { Journal, type JournalRecord } from '../state/journal';

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
  readonly #files = new Map<number, OpenFile>();
  readonly #startedAt = new Date();
  readonly #stop: (() => Promise<void>)[] = [];
  readonly #journal: Journal | null;
  /** What the last start restored from the journal, for status. */
  replay = { records: 0, failed: [] as string[], damaged: undefined as string | undefined };
  #nextFh = 1;

  private constructor(source: CgroupSource, opts: EngineOptions) {
    this.source = source;
    this.#opts = opts;
    this.kernel = new Kernel({ cgroups: source.hierarchy });
    this.bpffs = new Bpffs({ kernel: this.kernel, source, mirror: opts.mirror ?? 'auto', mountPoint: opts.mountPoint });
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
      source = await HostCgroupSource.open({ mountPoint: opts.cgroupRoot });
      await source.start();
    }
    const engine = new Engine(source, opts);
    engine.#stop.push(...stops);
    await engine.#restore();
    debug('engine up: %s source at %s, %d cgroups', source.kind, source.mountPoint, source.hierarchy.size);
    return engine;
  }

  async stop(): Promise<void> {
    await this.#journal?.close();
    for (const f of this.#files.values()) f.release();
    this.#files.clear();
    this.bpffs.dispose();
    for (const s of this.#stop.splice(0)) await s();
    await this.source.stop();
  }

  // --- VfsBackend -------------------------------------------------------------------------------

  async getattr(p: string): Promise<VfsStat> {
    return this.bpffs.getattr(p);
  }
  async readdir(p: string): Promise<string[]> {
    return this.bpffs.readdir(p);
  }
  async readlink(p: string): Promise<string> {
    return this.bpffs.readlink(p);
  }
  async mkdir(p: string, mode: number): Promise<void> {
    await this.#apply({ op: 'mkdir', path: p, mode });
  }
  async rmdir(p: string): Promise<void> {
    await this.#apply({ op: 'rmdir', path: p });
  }
  async unlink(p: string): Promise<void> {
    await this.#apply({ op: 'unlink', path: p });
  }
  async rename(from: string, to: string, flags: number): Promise<void> {
    await this.#apply({ op: 'rename', from, to, flags });
  }
  async link(existing: string, p: string): Promise<void> {
    await this.#apply({ op: 'link', existing, path: p });
  }
  async symlink(target: string, p: string): Promise<void> {
    await this.#apply({ op: 'symlink', target, path: p });
  }
  async create(p: string, mode: number): Promise<void> {
    this.bpffs.create(p, mode);
  }
  async mknod(p: string, mode: number): Promise<void> {
    this.bpffs.mknod(p, mode);
  }
  async chmod(p: string, mode: number): Promise<void> {
    await this.#apply({ op: 'chmod', path: p, mode });
  }
  async chown(p: string, uid: number, gid: number): Promise<void> {
    this.bpffs.chown(p, uid, gid);
  }
  async utimens(p: string, atime: Date, mtime: Date): Promise<void> {
    this.bpffs.utimens(p, atime, mtime);
  }
  async open(p: string, flags: number): Promise<number> {
    const file = this.bpffs.open(p, flags);
    const fh = this.#nextFh++;
    this.#files.set(fh, file);
    return fh;
  }
  async read(fh: number, size: number): Promise<Uint8Array> {
    const file = this.#files.get(fh);
    if (file === undefined) throw bpfError('EBADF', `no open file ${fh}`);
    return file.read(size);
  }
  async release(fh: number): Promise<void> {
    this.#files.get(fh)?.release();
    this.#files.delete(fh);
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
    await this.#journal?.append({ op: 'progLoadAll', filename: objectFile, source, dir });
    return this.#progLoadAll(objectFile, source, dir);
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
  async iterPin(objectFile: string, pinPath: string, opts: { order?: string; cgroup?: string } = {}): Promise<{ linkId: number; progId: number; target: string }> {
    const source = await readObjectFile(objectFile);
    verify({ source, filename: objectFile });
    await this.#journal?.append({ op: 'iterPin', filename: objectFile, source, pinPath, opts });
    return this.#iterPin(objectFile, source, pinPath, opts);
  }

  async #iterPin(filename: string, source: string, pinPath: string, opts: { order?: string; cgroup?: string }): Promise<{ linkId: number; progId: number; target: string }> {
    const coll = await this.#load(filename, source);
    try {
      const prog = [...coll.programs.values()].map((h) => h.object).find((p) => p.sec.family === 'iter');
      if (prog === undefined) throw bpfError('EINVAL', `${filename} has no iterator program (cgroup_view or iter/cgroup)`);
      const params = prog.sec.iterTarget === 'cgroup' ? { cgroup: this.#iterParams(opts) } : undefined;
      const link = bpfIterLinkCreate(this.kernel, prog, params);
      try {
        this.bpffs.pin(pinPath, link.object);
        return { linkId: link.object.id, progId: prog.id, target: (link.object as BpfIterLink).target };
      } finally {
        link.close();
      }
    } finally {
      coll.close();
    }
  }

  /** Records an operation, then makes it (see state/journal.ts for why in that order). */
  async #apply(rec: JournalRecord): Promise<void> {
    await this.#journal?.append(rec);
    await this.#make(rec);
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
      case 'iterPin':
        return void (await this.#iterPin(rec.filename, rec.source, rec.pinPath, rec.opts));
      case 'progLoadAll':
        return void (await this.#progLoadAll(rec.filename, rec.source, rec.dir));
    }
  }

  /** Replays the journal of a previous run on this state directory. */
  async #restore(): Promise<void> {
    if (this.#journal === null) return;
    const { records, damaged } = await this.#journal.load();
    this.replay = { records: records.length, failed: [], damaged };
    if (damaged !== undefined) debug('journal damaged: %s', damaged);
    for (const rec of records) {
      try {
        await this.#make(rec);
      } catch (e) {
        // It failed when it was first made too, or the host changed (a cgroup gone): report, go on.
        this.replay.failed.push(`${rec.op}: ${(e as Error).message}`);
      }
    }
    debug('journal replayed: %d records, %d failed', records.length, this.replay.failed.length);
  }

  progShow(): ProgShow[] {
    return this.kernel.list<BpfProg>('prog').map((p) => ({
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

  mapShow(): MapShow[] {
    return this.kernel.list<BpfMap>('map').map((m) => ({
      id: m.id,
      type: m.typeName,
      name: m.name,
      key: m.keySize,
      value: m.valueSize,
      max_entries: m.maxEntries,
      flags: m.flags,
    }));
  }

  linkShow(): LinkShow[] {
    return this.kernel.list<BpfObject & { prog?: BpfProg; fdinfo?: () => string }>('link').map((l) => ({
      id: l.id,
      type: l.constructor.name,
      prog_id: l.prog?.id ?? 0,
      info: typeof l.fdinfo === 'function' ? l.fdinfo() : '',
    }));
  }

  /** `vbpffs map dump id N`: bpftool's JSON dump. */
  mapDump(id: number): unknown {
    const h = this.kernel.getById<BpfMap>('map', id);
    try {
      return mapDumpJson(h.object);
    } finally {
      h.close();
    }
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
    return loadCollection(this.kernel, { source, filename }, { pins: this.bpffs.mapPins('/') });
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

/** The object file's text, read by the daemon (the CLI resolves the path). */
async function readObjectFile(objectFile: string): Promise<string> {
  if (!path.isAbsolute(objectFile)) throw bpfError('EINVAL', `${objectFile}: the object file's path must be absolute (the CLI resolves it)`);
  try {
    return await readFile(objectFile, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'ENOENT' : 'EACCES';
    throw bpfError(code, `${objectFile}: cannot read the object file`, e);
  }
}

export type { KernfsNode };
