/**
 * SimCgroupfs: the kernel's side of a simulated cgroup2 mount, held in a memfs volume. mkdir and
 * rmdir here are what mkdir(2)/rmdir(2) on cgroupfs do (checks, errnos, interface files appearing and
 * vanishing with the directory); the 'mkdir'/'rmdir' events are what an inotify watch would report.
 *
 * Ids. A cgroup's id is its directory's inode number, as kernfs makes it: one counter for every
 * node, increasing and never reused. memfs wraps its inode numbers at 2^32 and hands freed ones out
 * again, so the volume gets this allocator instead (the one place we reach into memfs's superblock).
 * It starts at `firstId`, which a test may put above 2^32.
 *
 * A directory made in the volume behind our back (fs.mkdirSync) has no interface files and no event;
 * scan() finds it and gives it its files, as the kernel would have at mkdir. Such out-of-band changes
 * skip the kernel's checks: removing a populated directory that way is not refused.
 *
 * Events are emitted after the change is complete, each listener isolated: one that throws is reported
 * (debug) and cannot make mkdir()/rmdir() fail once the volume has changed, as inotify's readers cannot
 * fail the mkdir(2) they report.
 */
import { EventEmitter } from 'node:events';
import path from 'node:path';
import createDebug from 'debug';
import { Volume, createFsFromVolume, type IFs } from 'memfs';
import { bpfError } from '../../uapi';
import { filesOf, freshFigures, render, type CgroupFigures, type SimFile } from './files';

export interface CgroupfsEvents {
  mkdir: [cgroupPath: string, id: number];
  rmdir: [cgroupPath: string, id: number];
}

/** One cgroup directory found by scan(). */
export interface ScannedCgroup {
  path: string;
  name: string;
  id: number;
  parentPath: string | null;
}

const debug = createDebug('vbpffs:tags');

const NAME_MAX = 255;

/** "/", "/a/b": the canonical form of a path below the cgroup2 root. */
export function cgroupPath(p: string): string {
  const parts = p.split('/').filter((s) => s !== '');
  for (const s of parts) {
    if (s === '.' || s === '..') throw bpfError('EINVAL', `cgroup path ${JSON.stringify(p)} has a ${s} component`);
  }
  return `/${parts.join('/')}`;
}

export function parentPath(p: string): string {
  return path.posix.dirname(p);
}

export class SimCgroupfs extends EventEmitter<CgroupfsEvents> {
  readonly vol: Volume;
  readonly fs: IFs;
  readonly mountPoint: string;
  #nextId: number;

  constructor(opts: { mountPoint: string; firstId: number }) {
    super();
    if (!Number.isSafeInteger(opts.firstId) || opts.firstId < 1) throw bpfError('EINVAL', `bad first id ${opts.firstId}`);
    this.mountPoint = path.posix.resolve('/', opts.mountPoint);
    this.vol = new Volume();
    this.fs = createFsFromVolume(this.vol);
    this.fs.mkdirSync(path.posix.dirname(this.mountPoint), { recursive: true });
    this.#nextId = opts.firstId;
    const core = this.vol._core as unknown as { newInoNumber(): number };
    core.newInoNumber = () => {
      if (!Number.isSafeInteger(this.#nextId)) throw bpfError('EOVERFLOW', 'simulated inode numbers exhausted');
      return this.#nextId++;
    };
    this.fs.mkdirSync(this.mountPoint);
    this.#populate(this.mountPoint, true);
  }

  /** Where a cgroup's directory is in the volume. */
  dirOf(p: string): string {
    const c = cgroupPath(p);
    return c === '/' ? this.mountPoint : this.mountPoint + c;
  }

  /** The id of the cgroup directory at p, or undefined when there is none. */
  idOf(p: string): number | undefined {
    const st = this.fs.statSync(this.dirOf(p), { throwIfNoEntry: false });
    return st?.isDirectory() ? Number(st.ino) : undefined;
  }

  /** mkdir(2) on cgroupfs: the directory and its interface files; returns the new cgroup's id. */
  mkdir(p: string): number {
    const c = cgroupPath(p);
    if (c === '/') throw bpfError('EEXIST', 'the cgroup2 root exists');
    const name = path.posix.basename(c);
    if (name.includes('\n')) throw bpfError('EINVAL', `cgroup name ${JSON.stringify(name)} has a newline`);
    if (Buffer.byteLength(name) > NAME_MAX) throw bpfError('ENAMETOOLONG', `cgroup name is longer than ${NAME_MAX} bytes`);
    const parent = this.fs.statSync(this.dirOf(parentPath(c)), { throwIfNoEntry: false });
    if (parent === undefined) throw bpfError('ENOENT', `no cgroup ${parentPath(c)} to make ${c} in`);
    if (!parent.isDirectory()) throw bpfError('ENOTDIR', `${parentPath(c)} is not a cgroup`);
    const dir = this.dirOf(c);
    if (this.fs.existsSync(dir)) throw bpfError('EEXIST', `cgroup ${c} exists`);
    this.fs.mkdirSync(dir);
    const id = Number(this.fs.statSync(dir).ino);
    this.#populate(dir, false);
    this.#notify('mkdir', c, id);
    return id;
  }

  /**
   * rmdir(2) on cgroupfs: EBUSY while the cgroup has child cgroups or tasks (cgroup_destroy_locked),
   * EBUSY for the root (it is the mount point). Returns the removed cgroup's id.
   */
  rmdir(p: string): number {
    const c = cgroupPath(p);
    if (c === '/') throw bpfError('EBUSY', 'the cgroup2 root is a mount point');
    const dir = this.dirOf(c);
    const st = this.fs.statSync(dir, { throwIfNoEntry: false });
    if (st === undefined) throw bpfError('ENOENT', `no cgroup ${c}`);
    if (!st.isDirectory()) throw bpfError('ENOTDIR', `${c} is not a cgroup`);
    if (this.#childDirs(dir).length > 0) throw bpfError('EBUSY', `cgroup ${c} has child cgroups`);
    const procs = this.fs.readFileSync(`${dir}/cgroup.procs`, 'utf8') as string;
    if (procs !== '') throw bpfError('EBUSY', `cgroup ${c} has tasks`);
    const id = Number(st.ino);
    this.fs.rmSync(dir, { recursive: true });
    this.#notify('rmdir', c, id);
    return id;
  }

  /**
   * Every cgroup directory in pre-order, children in creation (id) order, giving directories made
   * behind our back their interface files first.
   */
  scan(): ScannedCgroup[] {
    const out: ScannedCgroup[] = [];
    const walk = (c: string, parent: string | null): void => {
      const dir = this.dirOf(c);
      if (!this.fs.existsSync(`${dir}/cgroup.procs`)) this.#populate(dir, c === '/');
      out.push({ path: c, name: c === '/' ? '' : path.posix.basename(c), id: Number(this.fs.statSync(dir).ino), parentPath: parent });
      for (const name of this.#childDirs(dir)) walk(c === '/' ? `/${name}` : `${c}/${name}`, c);
    };
    walk('/', null);
    return out;
  }

  /**
   * Rewrites interface files of the cgroup with this id at p. A directory that is gone or now holds
   * another cgroup (removed and made again behind our back) is left alone.
   */
  writeFiles(p: string, id: number, figures: CgroupFigures, files: readonly SimFile[]): void {
    if (this.idOf(p) !== id) return;
    const dir = this.dirOf(p);
    for (const f of files) this.fs.writeFileSync(`${dir}/${f}`, render(f, figures));
  }

  /** emit(), with each listener's failure caught and reported. */
  #notify(event: keyof CgroupfsEvents, c: string, id: number): void {
    for (const listener of this.rawListeners(event) as ((p: string, id: number) => void)[]) {
      try {
        listener.call(this, c, id);
      } catch (e) {
        debug('cgroupfs %s listener for %s failed: %O', event, c, e);
      }
    }
  }

  #populate(dir: string, isRoot: boolean): void {
    const figures = freshFigures(isRoot);
    for (const f of filesOf(isRoot)) this.fs.writeFileSync(`${dir}/${f}`, render(f, figures));
  }

  /** Names of the subdirectories of dir, oldest first. */
  #childDirs(dir: string): string[] {
    const entries = this.fs.readdirSync(dir, { withFileTypes: true }) as unknown as { name: string; isDirectory(): boolean }[];
    return entries
      .filter((d) => d.isDirectory())
      .map((d) => ({ name: String(d.name), ino: Number(this.fs.statSync(`${dir}/${d.name}`).ino) }))
      .sort((a, b) => a.ino - b.ino)
      .map((d) => d.name);
  }
}
