/**
 * The libfuse3 backend: our own N-API binding (native/fuse3) over the low-level API. The kernel
 * names files by node id there; VfsBackend names them by path, so this file keeps the table between
 * the two (lookup adds, forget drops, rename moves, unlink and rmdir detach). Only requests that
 * need the engine reach this file: reads already rendered, the EOF read, flush, write, directory
 * continuations and release's reply are the binding's own (see its header).
 *
 * A read asks the backend for exactly the reader's size and nothing ahead: an iterator's walk is
 * lazy (a read runs the program for the next object only when the bytes buffered are taken), so
 * reading ahead would run programs the reader has not asked for yet, which the fault tests see.
 * The EOF read is answered by the binding when the backend says it is at EOF (readEof).
 */
import { mkdir, stat, writeFile } from 'node:fs/promises';
import { existsSync, realpathSync } from 'node:fs';
import path from 'node:path';
import createDebug from 'debug';
import { ERRNO, bpfError } from '../../uapi';
import type { VfsBackend, VfsStat, VfsStatfs } from './backend';
import { fuseErrno } from './ops';

const debug = createDebug('vbpffs:fs');

const ROOT_ID = 1;

type Req = bigint;
type Ext = object;

export interface Addon {
  mount(mountPoint: string, options: string, handler: Handler, autoUnmount: boolean): Ext;
  unmount(session: Ext): void;
  destroy(session: Ext): void;
  replyErr(req: Req, errno: number): void;
  replyEntry(req: Req, node: number, st: number[], timeout: number): void;
  replyAttr(req: Req, st: number[], timeout: number): void;
  replyReadlink(req: Req, target: string): void;
  replyStatfs(req: Req, s: number[]): void;
  replyOpen(req: Req, id: number, node?: number, st?: number[], timeout?: number): Ext | null;
  replyDir(req: Req, dir: Ext, names: string[], size: number, off: number): void;
  feed(file: Ext, bytes: Uint8Array | null, status: number): void;
  fileClose(file: Ext): void;
}

/** The caller of a request, as the kernel gives it (fuse_req_ctx). */
export interface RequestContext {
  uid: number;
  gid: number;
  pid: number;
}

export type Handler = (op: number, req: Req | undefined, ino: number, v: number[], name: string | undefined, name2: string | undefined, ptr: Ext | undefined, uid: number, gid: number, pid: number) => void;

export const OP = { LOOKUP: 1, FORGET: 2, GETATTR: 3, SETATTR: 4, READLINK: 5, MKNOD: 6, MKDIR: 7, UNLINK: 8, RMDIR: 9, SYMLINK: 10, RENAME: 11, LINK: 12, OPEN: 13, READ: 14, RELEASE: 15, READDIR: 16, STATFS: 17, CREATE: 18, EXIT: 19 } as const;
const SET = { MODE: 1, UID: 2, GID: 4, SIZE: 8, ATIME: 16, MTIME: 32, ATIME_NOW: 128, MTIME_NOW: 256 } as const;
const RENAME_EXCHANGE = 2;
/** feed()'s status after the bytes: the next read asks again, or is answered as EOF. */
const FEED = { DONE: 1, EOF: 2 } as const;

let loaded: { addon: Addon } | { why: string } | undefined;

/**
 * Where the addon may be: beside the sources (fs/fuse), beside the build (dist/fs/fuse), or, for a
 * build elsewhere that links this checkout's node_modules (test/harness/build-js.ts), beside those.
 */
export function addonPaths(): string[] {
  const rel = path.join('native', 'fuse3', 'build', 'Release', 'vbpffs_fuse3.node');
  return [path.join(__dirname, '..', '..'), path.join(__dirname, '..', '..', '..')].flatMap((root) => {
    const modules = path.join(root, 'node_modules');
    const linked = existsSync(modules) ? path.dirname(realpathSync(modules)) : root;
    return [path.join(root, rel), path.join(linked, rel)];
  });
}

/** The addon from the first of `paths` that exists, or why there is none. */
export function loadAddon(paths: string[]): { addon: Addon } | { why: string } {
  const found = paths.find((p) => existsSync(p));
  if (found === undefined) return { why: 'the libfuse3 addon is not built (scripts/setup.sh builds it with libfuse3-dev and a C compiler; native/fuse3/build.log says why it did not)' };
  try {
    return { addon: require(found) as Addon };
  } catch (e) {
    return { why: `the libfuse3 addon does not load: ${(e as Error).message}` };
  }
}

function load(): { addon: Addon } | { why: string } {
  return (loaded ??= loadAddon(addonPaths()));
}

/** Why the libfuse3 backend cannot be used here, or null when it can. */
export function libfuse3Unavailable(): string | null {
  const l = load();
  return 'why' in l ? l.why : null;
}

interface Node {
  id: number;
  parent: Node | null;
  name: string;
  lookups: number;
  children: Map<string, Node> | null;
  /** Unlinked, removed or replaced: its path is gone. */
  gone: boolean;
  /** Its last stat, what fstat of a file still open after its unlink gets (nlink 0). */
  stat?: number[];
}

/** The node id <-> path table. Ids are never reused, so the kernel never confuses two files. */
export class NodeTable {
  readonly root: Node = { id: ROOT_ID, parent: null, name: '', lookups: 1, children: null, gone: false };
  readonly #ids = new Map<number, Node>([[ROOT_ID, this.root]]);
  #next = ROOT_ID + 1;

  get size(): number {
    return this.#ids.size;
  }

  node(id: number): Node | undefined {
    return this.#ids.get(id);
  }

  pathOf(n: Node): string | null {
    if (n === this.root) return '/';
    const parts: string[] = [];
    for (let c: Node | null = n; c !== null && c !== this.root; c = c.parent) {
      if (c.gone) return null;
      parts.push(c.name);
    }
    return '/' + parts.reverse().join('/');
  }

  /** The child named `name`, made if it has no node yet; counted as one lookup by the kernel. */
  remember(parent: Node, name: string): Node {
    parent.children ??= new Map();
    let n = parent.children.get(name);
    if (n === undefined) {
      n = { id: this.#next++, parent, name, lookups: 0, children: null, gone: false };
      parent.children.set(name, n);
    }
    if (n.lookups++ === 0) this.#ids.set(n.id, n);
    return n;
  }

  forget(id: number, count: number): void {
    const n = this.#ids.get(id);
    if (n === undefined || n === this.root) return;
    n.lookups -= count;
    if (n.lookups > 0) return;
    this.#ids.delete(id);
    this.#prune(n);
  }

  /** Drops a forgotten node from its parent once nothing below it is known either. */
  #prune(n: Node): void {
    for (let c: Node | null = n; c !== null && c !== this.root && c.lookups <= 0 && (c.children === null || c.children.size === 0); c = c.parent) {
      if (c.parent?.children?.get(c.name) === c) c.parent.children.delete(c.name);
    }
  }

  detach(parent: Node, name: string): void {
    const n = parent.children?.get(name);
    if (n === undefined) return;
    parent.children!.delete(name);
    n.gone = true;
  }

  move(parent: Node, name: string, to: Node, toName: string, exchange: boolean): void {
    const n = parent.children?.get(name);
    const there = to.children?.get(toName);
    parent.children?.delete(name);
    if (exchange) {
      to.children?.delete(toName);
      if (there !== undefined) {
        there.parent = parent;
        there.name = name;
        parent.children!.set(name, there);
      }
    } else if (there !== undefined) {
      this.detach(to, toName);
    }
    if (n !== undefined) {
      n.parent = to;
      n.name = toName;
      to.children ??= new Map();
      to.children.set(toName, n);
    }
  }
}

const statArray = (s: VfsStat): number[] => [s.ino, s.mode, s.nlink, s.uid, s.gid, s.size, s.atime.getTime(), s.mtime.getTime(), s.ctime.getTime(), 0];

interface OpenFile {
  fh: number;
  ext: Ext;
  fetching: boolean;
  released: boolean;
  path: string;
}

export interface Libfuse3Options {
  allowOther?: boolean;
  cacheSeconds?: number;
}

export interface Libfuse3Mount {
  readonly mountPoint: string;
  unmount(): Promise<void>;
}

export async function mountLibfuse3(mountPoint: string, backend: VfsBackend, opts: Libfuse3Options = {}): Promise<Libfuse3Mount> {
  const l = load();
  if ('why' in l) throw bpfError('ENODEV', l.why);
  return serve(l.addon, mountPoint, backend, opts);
}

/** The JS half over any addon of this shape (the tests drive it with a recording one too). */
export async function serve(addon: Addon, mountPoint: string, backend: VfsBackend, opts: Libfuse3Options = {}): Promise<Libfuse3Mount> {
  const timeout = opts.cacheSeconds ?? 1;
  const table = new NodeTable();
  const files = new Map<number, OpenFile>();
  let nextFile = 1;
  let live = true;
  let exited: () => void = () => {};
  const exit = new Promise<void>((r) => (exited = r));

  await mkdir(mountPoint, { recursive: true });
  if (!(await stat(mountPoint)).isDirectory()) throw bpfError('ENOTDIR', `${mountPoint} is not a directory`);

  /** `f`, run only while the session lives: after unmount its requests are gone with it. */
  const whenLive =
    <A extends unknown[]>(f: (...a: A) => void) =>
    (...a: A): void => {
      /* c8 ignore next -- a backend answering after unmount */
      if (!live) return;
      f(...a);
    };
  const fail = (req: Req, op: string, p: string): ((e: unknown) => void) => whenLive((e: unknown) => addon.replyErr(req, -fuseErrno(e, op, p)));
  const err = (req: Req, errno: number): void => addon.replyErr(req, errno);

  const finish = (id: number, f: OpenFile): void => {
    files.delete(id);
    addon.fileClose(f.ext);
    backend.release(f.fh).catch((e: unknown) => debug('release %s: %O', f.path, e));
  };

  /** One read of the reader's size; the binding answers the waiting read from what it is fed. */
  async function fetch(id: number, f: OpenFile, size: number): Promise<void> {
    f.fetching = true;
    try {
      const { bytes, eof } = backend.readEof !== undefined ? await backend.readEof(f.fh, size) : { bytes: await backend.read(f.fh, size), eof: false };
      // The addon drops what comes for a file already released.
      whenLive(() => addon.feed(f.ext, bytes, eof ? FEED.EOF : FEED.DONE))();
    } catch (e) {
      whenLive(() => addon.feed(f.ext, null, fuseErrno(e, 'read', f.path)))();
    } finally {
      f.fetching = false;
      if (f.released) whenLive(finish)(id, f);
    }
  }

  /** Answers an entry (lookup, mknod, mkdir, symlink, link) for `name` in `parent`. */
  const entry = (req: Req, parent: Node, name: string, p: string, op: string): Promise<void> =>
    backend.getattr(p).then(whenLive((st: VfsStat) => {
      const n = table.remember(parent, name);
      n.stat = statArray(st);
      addon.replyEntry(req, n.id, n.stat, timeout);
    }), fail(req, op, p));

  const join = (dir: string, name: string): string => (dir === '/' ? `/${name}` : `${dir}/${name}`);

  const handler: Handler = (op, req, ino, v, name, name2, ptr, uid, gid, pid) => {
    /* c8 ignore next -- nothing comes after OP.EXIT, the last message */
    if (!live) return;
    if (op === OP.EXIT) return exited();
    if (op === OP.FORGET) return table.forget(ino, v[0]!);
    if (op === OP.RELEASE) {
      const f = files.get(v[0]!);
      if (f === undefined) return;
      f.released = true;
      if (!f.fetching) finish(v[0]!, f);
      return;
    }
    if (op === OP.READ) {
      const f = files.get(v[1]!);
      if (f !== undefined) void fetch(v[1]!, f, v[0]!);
      return;
    }
    const r = req!;
    const ctx: RequestContext = { uid, gid, pid };
    void ctx; // Not used yet: entries made through the mount belong to the daemon, as with fuse-native.
    const node = table.node(ino);
    const p = node === undefined ? null : table.pathOf(node);
    if (op === OP.GETATTR && p === null && node?.stat !== undefined) {
      const st = node.stat.slice();
      st[2] = 0;
      return addon.replyAttr(r, st, timeout);
    }
    if (node === undefined || p === null) return err(r, ERRNO.ENOENT);
    const child = name === undefined ? '' : join(p, name);
    switch (op) {
      case OP.LOOKUP:
        return void entry(r, node, name!, child, 'lookup');
      case OP.GETATTR:
        return void backend.getattr(p).then(whenLive((st: VfsStat) => {
          node.stat = statArray(st);
          addon.replyAttr(r, node.stat, timeout);
        }), fail(r, 'getattr', p));
      case OP.SETATTR:
        return void setattr(r, p, v);
      case OP.READLINK:
        return void backend.readlink(p).then(whenLive((t: string) => addon.replyReadlink(r, t)), fail(r, 'readlink', p));
      case OP.MKNOD:
        return void backend.mknod(child, v[0]!).then(() => entry(r, node, name!, child, 'mknod'), fail(r, 'mknod', child));
      case OP.MKDIR:
        return void backend.mkdir(child, v[0]!).then(() => entry(r, node, name!, child, 'mkdir'), fail(r, 'mkdir', child));
      case OP.SYMLINK:
        return void backend.symlink(name2!, child).then(() => entry(r, node, name!, child, 'symlink'), fail(r, 'symlink', child));
      case OP.UNLINK:
      case OP.RMDIR: {
        const what = op === OP.UNLINK ? 'unlink' : 'rmdir';
        return void (op === OP.UNLINK ? backend.unlink(child) : backend.rmdir(child)).then(() => {
          table.detach(node, name!);
          whenLive(err)(r, 0);
        }, fail(r, what, child));
      }
      case OP.RENAME: {
        const to = table.node(v[0]!);
        const toDir = to === undefined ? null : table.pathOf(to);
        if (to === undefined || toDir === null) return err(r, ERRNO.ENOENT);
        const dest = join(toDir, name2!);
        return void backend.rename(child, dest, v[1]!).then(() => {
          table.move(node, name!, to, name2!, (v[1]! & RENAME_EXCHANGE) !== 0);
          whenLive(err)(r, 0);
        }, fail(r, 'rename', child));
      }
      case OP.LINK: {
        const to = table.node(v[0]!);
        const toDir = to === undefined ? null : table.pathOf(to);
        if (to === undefined || toDir === null) return err(r, ERRNO.ENOENT);
        const dest = join(toDir, name!);
        return void backend.link(p, dest).then(() => entry(r, to, name!, dest, 'link'), fail(r, 'link', dest));
      }
      case OP.OPEN:
        return void backend.open(p, v[0]!).then(whenLive((fh: number) => opened(r, fh, p)), fail(r, 'open', p));
      case OP.CREATE:
        return void backend
          .create(child, v[0]!)
          .then(() => backend.getattr(child))
          .then(whenLive((st: VfsStat) => {
            const n = table.remember(node, name!);
            opened(r, 0, child, n.id, statArray(st));
          }), fail(r, 'create', child));
      case OP.READDIR:
        return void backend.readdir(p).then(whenLive((names: string[]) => addon.replyDir(r, ptr!, names, v[0]!, v[1]!)), fail(r, 'readdir', p));
      case OP.STATFS:
        return void backend.statfs().then(whenLive((s: VfsStatfs) => addon.replyStatfs(r, [s.bsize, s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.namemax])), fail(r, 'statfs', p));
      /* c8 ignore next 2 -- the addon sends no other operation */
      default:
        return err(r, ERRNO.ENOSYS);
    }
  };

  function opened(req: Req, fh: number, p: string, node?: number, st?: number[]): void {
    const id = nextFile++;
    const ext = node === undefined ? addon.replyOpen(req, id) : addon.replyOpen(req, id, node, st, timeout);
    /* c8 ignore next 4 -- the opener was interrupted before the reply: the kernel sends no release */
    if (ext === null) {
      backend.release(fh).catch((e: unknown) => debug('release %s: %O', p, e));
      return;
    }
    files.set(id, { fh, ext, fetching: false, released: false, path: p });
  }

  async function setattr(req: Req, p: string, v: number[]): Promise<void> {
    const [set, mode, uid, gid, atime, mtime] = v as [number, number, number, number, number, number];
    try {
      // Nothing is written through files in bpffs, as with fuse-native's truncate.
      if (set & SET.SIZE) throw bpfError('EINVAL', `${p}: bpffs files cannot be truncated`);
      if (set & SET.MODE) await backend.chmod(p, mode);
      if (set & (SET.UID | SET.GID)) await backend.chown(p, set & SET.UID ? uid : -1, set & SET.GID ? gid : -1);
      if (set & (SET.ATIME | SET.MTIME | SET.ATIME_NOW | SET.MTIME_NOW)) {
        const now = Date.now();
        const old = (set & (SET.ATIME | SET.ATIME_NOW)) === 0 || (set & (SET.MTIME | SET.MTIME_NOW)) === 0 ? await backend.getattr(p) : null;
        const a = set & SET.ATIME_NOW ? now : set & SET.ATIME ? atime : old!.atime.getTime();
        const m = set & SET.MTIME_NOW ? now : set & SET.MTIME ? mtime : old!.mtime.getTime();
        await backend.utimens(p, new Date(a), new Date(m));
      }
      const st = await backend.getattr(p);
      whenLive(() => addon.replyAttr(req, statArray(st), timeout))();
    } catch (e) {
      fail(req, 'setattr', p)(e);
    }
  }

  const options = ['fsname=vbpffs', 'subtype=vbpffs', ...(opts.allowOther === true ? ['allow_other', 'default_permissions'] : [])].join(',');
  let session: Ext;
  try {
    session = addon.mount(mountPoint, options, handler, true);
    /* c8 ignore next 3 -- mount(2) refused: without root (the tests skip), or out of resources */
  } catch (e) {
    throw bpfError('EIO', `cannot mount ${mountPoint}: ${(e as Error).message}`, e as Error);
  }
  let unmounting: Promise<void> | null = null;
  return {
    mountPoint,
    unmount: () =>
      (unmounting ??= (async () => {
        const dev = await stat(mountPoint).then((s) => s.dev, () => null);
        addon.unmount(session);
        // A lazy unmount leaves the connection up while a process holds a file in it: abort it then
        // (where fusectl is mounted; elsewhere the loop ends when the last such file is closed).
        const abort = setTimeout(() => {
          /* c8 ignore next -- the mount point was stat-able a moment before */
          if (dev === null) return;
          const minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
          writeFile(`/sys/fs/fuse/connections/${minor}/abort`, '1').catch((e: unknown) => debug('abort %s: %O', mountPoint, e));
        }, 2000);
        await exit;
        clearTimeout(abort);
        live = false;
        addon.destroy(session);
        for (const [, f] of files) {
          addon.fileClose(f.ext);
          backend.release(f.fh).catch(() => undefined);
        }
        files.clear();
      })()),
  };
}
