/**
 * The serving thread's side of the engine: starts the worker, forwards calls, and watches it. The
 * serving thread never runs a program and never waits synchronously: every call is a message and a
 * promise. A call the engine has not answered after WATCHDOG_MS is logged with what it was (a
 * program past its deadline by far, a stuck read), so a stall is visible; a worker that dies fails
 * every pending and later call with EIO instead of hanging FUSE.
 */
import { Worker } from 'node:worker_threads';
import path from 'node:path';
import createDebug from 'debug';
import { bpfError, type BpfError } from '../../uapi';
import type { VfsBackend, VfsStat, VfsStatfs } from '../fuse/backend';
import type { EngineOptions, EngineStatus, LinkShow, MapShow, ProgShow } from './engine';
import { replyError, type EngineMethod, type ReplyMessage } from './rpc';

const debug = createDebug('vbpffs:fs');

/** Above every deadline a program may have: a reply later than this means something is wrong. */
export const WATCHDOG_MS = 2000;

interface Pending {
  resolve(v: unknown): void;
  reject(e: BpfError): void;
  what: string;
  since: number;
}

export class EngineClient implements VfsBackend {
  readonly #worker: Worker;
  readonly #pending = new Map<number, Pending>();
  readonly #watchdog: NodeJS.Timeout;
  #nextId = 1;
  #dead: BpfError | null = null;
  /** Calls that took longer than WATCHDOG_MS. */
  slowCalls = 0;

  private constructor(worker: Worker) {
    this.#worker = worker;
    worker.on('message', (m: ReplyMessage) => this.#reply(m));
    worker.on('error', (e) => this.#die(bpfError('EIO', `the engine failed: ${e.message}`)));
    worker.on('exit', (code) => this.#die(bpfError('EIO', `the engine exited (${code})`)));
    this.#watchdog = setInterval(() => this.#watch(), WATCHDOG_MS / 2);
    this.#watchdog.unref();
  }

  /** Starts the engine thread; rejects with the engine's own error when it cannot start. */
  static start(opts: EngineOptions): Promise<EngineClient> {
    // From the sources (tests, via the TypeScript loader) or the build: the worker is the sibling file.
    const file = path.join(__dirname, `worker${path.extname(__filename)}`);
    const worker = new Worker(file, { workerData: opts });
    return new Promise((resolve, reject) => {
      const onMessage = (m: { ready: boolean; error?: { code: string; message: string } }): void => {
        worker.off('message', onMessage);
        if (m.ready) resolve(new EngineClient(worker));
        else {
          void worker.terminate();
          reject(replyError(m.error!));
        }
      };
      worker.on('message', onMessage);
      worker.once('error', reject);
    });
  }

  call<T>(method: EngineMethod, ...args: unknown[]): Promise<T> {
    if (this.#dead !== null) return Promise.reject(this.#dead);
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject, what: `${method} ${String(args[0] ?? '')}`, since: Date.now() });
      this.#worker.postMessage({ id, method, args });
    });
  }

  /** Stops the engine (drops every pin, stops tracking) and ends its thread. */
  async stop(): Promise<void> {
    clearInterval(this.#watchdog);
    if (this.#dead === null) {
      await new Promise<void>((resolve) => {
        const done = (m: { stopped?: boolean }): void => {
          if (m.stopped) resolve();
        };
        this.#worker.on('message', done);
        this.#worker.postMessage({ stop: true });
      });
    }
    this.#dead = bpfError('EIO', 'the engine is stopped');
    await this.#worker.terminate();
  }

  #reply(m: ReplyMessage): void {
    const p = this.#pending.get(m.id);
    if (p === undefined) return;
    this.#pending.delete(m.id);
    if ('error' in m) p.reject(replyError(m.error));
    else p.resolve(m.value);
  }

  #watch(): void {
    const now = Date.now();
    for (const p of this.#pending.values()) {
      if (now - p.since > WATCHDOG_MS && p.since > 0) {
        this.slowCalls++;
        debug('engine slow: %s has waited %d ms', p.what, now - p.since);
        p.since = -1; // report once
      }
    }
  }

  #die(e: BpfError): void {
    if (this.#dead !== null) return;
    this.#dead = e;
    for (const p of this.#pending.values()) p.reject(e);
    this.#pending.clear();
  }

  // --- VfsBackend ---------------------------------------------------------------------------------
  getattr = (p: string): Promise<VfsStat> => this.call('getattr', p);
  readdir = (p: string): Promise<string[]> => this.call('readdir', p);
  readlink = (p: string): Promise<string> => this.call('readlink', p);
  mkdir = (p: string, mode: number): Promise<void> => this.call('mkdir', p, mode);
  rmdir = (p: string): Promise<void> => this.call('rmdir', p);
  unlink = (p: string): Promise<void> => this.call('unlink', p);
  rename = (from: string, to: string, flags: number): Promise<void> => this.call('rename', from, to, flags);
  link = (existing: string, p: string): Promise<void> => this.call('link', existing, p);
  symlink = (target: string, p: string): Promise<void> => this.call('symlink', target, p);
  create = (p: string, mode: number): Promise<void> => this.call('create', p, mode);
  mknod = (p: string, mode: number): Promise<void> => this.call('mknod', p, mode);
  chmod = (p: string, mode: number): Promise<void> => this.call('chmod', p, mode);
  chown = (p: string, uid: number, gid: number): Promise<void> => this.call('chown', p, uid, gid);
  utimens = (p: string, atime: Date, mtime: Date): Promise<void> => this.call('utimens', p, atime, mtime);
  open = (p: string, flags: number): Promise<number> => this.call('open', p, flags);
  read = (fh: number, size: number): Promise<Uint8Array> => this.call('read', fh, size);
  release = (fh: number): Promise<void> => this.call('release', fh);
  statfs = (): Promise<VfsStatfs> => this.call('statfs');

  // --- control ------------------------------------------------------------------------------------
  progLoadAll = (obj: string, dir: string): Promise<{ name: string; id: number; path: string }[]> => this.call('progLoadAll', obj, dir);
  iterPin = (obj: string, pinPath: string, opts: { order?: string; cgroup?: string }): Promise<{ linkId: number; progId: number; target: string }> =>
    this.call('iterPin', obj, pinPath, opts);
  progShow = (): Promise<ProgShow[]> => this.call('progShow');
  mapShow = (): Promise<MapShow[]> => this.call('mapShow');
  linkShow = (): Promise<LinkShow[]> => this.call('linkShow');
  mapDump = (id: number): Promise<unknown> => this.call('mapDump', id);
  status = (): Promise<EngineStatus> => this.call('status');
}
