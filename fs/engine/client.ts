/**
 * The serving thread's side of the engine: starts the worker, forwards calls, watches it, and
 * restarts it when it dies. The serving thread never runs a program and never waits
 * synchronously: every call is a message and a promise. A call the engine has not answered after
 * WATCHDOG_MS is logged with what it was (a program past its deadline by far, a stuck read), so a
 * stall is visible.
 *
 * The worker runs under a V8 heap limit (ENGINE_HEAP_MB), so an engine that runs out of memory
 * ends its own thread (ERR_WORKER_OUT_OF_MEMORY) within a second or two, not the daemon after
 * minutes of collection. A worker that dies fails its calls in flight with EIO (they may or may not
 * have been made: the journal decides what the new engine has) and is started again, which replays
 * the journal exactly as a daemon start does; the FUSE mount and the control socket stay. Calls that
 * arrive meanwhile wait for the new engine, at most RESTART_WAIT_MS (then EAGAIN: try again); a
 * FUSE request is better held a few seconds than failed for a restart it cannot see. Files opened
 * before the restart are the old engine's: reading one is EIO (the new engine never opened it),
 * releasing it is a no-op. Deaths are spaced by a back-off, and past MAX_CRASHES in CRASH_WINDOW_MS
 * the client gives up (a journal that kills every engine replaying it would loop forever): every
 * call is then EIO, as before restarts existed, and the log says to remount.
 */
import { Worker } from 'node:worker_threads';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import createDebug from 'debug';
import { bpfError, type BpfError } from '../../uapi';
import type { VfsBackend, VfsStat, VfsStatfs } from '../fuse/backend';
import type { EngineOptions, EngineStatus, LinkShow, MapShow, ProgShow } from './engine';
import { replyError, type EngineMethod, type ReadyMessage, type ReplyMessage } from './rpc';

const debug = createDebug('vbpffs:fs');

/** Above every deadline a program may have: a reply later than this means something is wrong. */
export const WATCHDOG_MS = 2000;
/**
 * The engine thread's V8 old-generation limit. Maps' values are ArrayBuffers outside it, and
 * programs run in isolates with their own limits; what is left (the bpffs tree, the TypeScript
 * compiler, replies being built) needs far less. VBPFFS_ENGINE_HEAP_MB overrides it: the tests
 * lower it to kill the engine with a real request.
 */
export const ENGINE_HEAP_MB = 1024;
/** How long a call made while the engine restarts waits for it before EAGAIN. */
export const RESTART_WAIT_MS = 30_000;
/** Give up restarting after more deaths than this within CRASH_WINDOW_MS. */
export const MAX_CRASHES = 5;
export const CRASH_WINDOW_MS = 60_000;
/** The first restart's delay; each further death in the window doubles it, up to BACKOFF_MAX_MS. */
const BACKOFF_MS = 200;
const BACKOFF_MAX_MS = 5000;

export interface EngineClientOptions {
  /** The worker's heap limit, MiB (default VBPFFS_ENGINE_HEAP_MB, else ENGINE_HEAP_MB). */
  heapMb?: number;
  /** Where restarts are told (default: stderr, which a background daemon sends to its log). */
  log?: (line: string) => void;
  /** Deaths tolerated within CRASH_WINDOW_MS (default MAX_CRASHES). */
  maxCrashes?: number;
}

/** What `status` adds about the engine thread. */
export interface EngineThreadStatus {
  restarts: number;
  /** Deaths within the last CRASH_WINDOW_MS. */
  recentCrashes: number;
  lastCrash?: { at: string; reason: string };
  gaveUp: boolean;
}

interface Pending {
  resolve(v: unknown): void;
  reject(e: BpfError): void;
  what: string;
  since: number;
}

interface Deferred {
  promise: Promise<void>;
  resolve(): void;
  reject(e: BpfError): void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (e: BpfError) => void;
  const promise = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
  promise.catch(() => undefined); // nobody may be waiting when it fails
  return { promise, resolve, reject };
}

function heapLimit(opts: EngineClientOptions): number {
  const env = Number(process.env.VBPFFS_ENGINE_HEAP_MB);
  return opts.heapMb ?? (Number.isFinite(env) && env > 0 ? env : ENGINE_HEAP_MB);
}

/** Starts one engine thread; resolves once its engine is up (its journal replayed). */
function spawnEngine(opts: EngineOptions, heapMb: number): Promise<{ worker: Worker; ready: ReadyMessage }> {
  // From the sources (tests, via the TypeScript loader) or the build: the worker is the sibling file.
  const file = path.join(__dirname, `worker${path.extname(__filename)}`);
  const worker = new Worker(file, { workerData: opts, resourceLimits: { maxOldGenerationSizeMb: heapMb } });
  return new Promise((resolve, reject) => {
    let failure: Error | undefined;
    const onMessage = (m: ReadyMessage): void => {
      worker.off('message', onMessage).off('error', onError).off('exit', onExit);
      if (m.ready) resolve({ worker, ready: m });
      else {
        void worker.terminate();
        reject(replyError(m.error!));
      }
    };
    const onError = (e: Error): void => void (failure = e);
    // An engine that dies while starting (a replay that runs out of memory) says why only in 'error'.
    const onExit = (code: number): void => {
      worker.off('message', onMessage).off('error', onError);
      reject(bpfError('EIO', `the engine exited (${code}) while starting${failure === undefined ? '' : `: ${failure.message}`}`, failure));
    };
    worker.on('message', onMessage).on('error', onError).once('exit', onExit);
  });
}

export class EngineClient implements VfsBackend {
  readonly #opts: EngineOptions;
  readonly #heapMb: number;
  readonly #log: (line: string) => void;
  readonly #maxCrashes: number;
  /** The live engine thread; null while it restarts or after stop. */
  #worker: Worker | null;
  /** Bumped at every engine death: a file handle belongs to the generation that opened it. */
  #generation = 1;
  readonly #pending = new Map<number, Pending>();
  readonly #watchdog: NodeJS.Timeout;
  #nextId = 1;
  /** Final: the client gave up, or was stopped. */
  #dead: BpfError | null = null;
  /** Set while the engine restarts: resolved when it is back, rejected when the client gives up. */
  #restarting: Deferred | null = null;
  #restartLoop: Promise<void> | null = null;
  #stopping = false;
  /** The serving thread's file handles, each mapped to the engine's in the generation that opened it. */
  readonly #files = new Map<number, { generation: number; fh: number }>();
  #nextFh = 1;
  #crashes: number[] = [];
  #lastCrash: { at: string; reason: string } | undefined;
  /** Calls that took longer than WATCHDOG_MS. */
  slowCalls = 0;
  /** Engine threads started after the first. */
  restarts = 0;

  private constructor(opts: EngineOptions, client: EngineClientOptions, heapMb: number, worker: Worker) {
    this.#opts = opts;
    this.#heapMb = heapMb;
    this.#log = client.log ?? ((line) => process.stderr.write(`${line}\n`));
    this.#maxCrashes = client.maxCrashes ?? MAX_CRASHES;
    this.#worker = worker;
    this.#attach(worker);
    this.#watchdog = setInterval(() => this.#watch(), WATCHDOG_MS / 2);
    this.#watchdog.unref();
  }

  /** Starts the engine thread; rejects with the engine's own error when it cannot start. */
  static async start(opts: EngineOptions, client: EngineClientOptions = {}): Promise<EngineClient> {
    const heapMb = heapLimit(client);
    const { worker } = await spawnEngine(opts, heapMb);
    return new EngineClient(opts, client, heapMb, worker);
  }

  #attach(worker: Worker): void {
    let failure: Error | undefined;
    worker.on('message', (m: ReplyMessage) => this.#reply(m));
    // 'error' (an uncaught exception, ERR_WORKER_OUT_OF_MEMORY) comes before 'exit' and says why.
    worker.on('error', (e) => void (failure = e));
    worker.on('exit', (code) => this.#exited(worker, failure?.message ?? `exit code ${code}`));
  }

  async call<T>(method: EngineMethod, ...args: unknown[]): Promise<T> {
    return (await this.#call<T>(method, args)).value;
  }

  /** A call, with the generation of the engine that answered it. */
  async #call<T>(method: EngineMethod, args: unknown[]): Promise<{ value: T; generation: number }> {
    if (this.#dead !== null) throw this.#dead;
    if (this.#worker === null) await this.#waitForEngine(method);
    const worker = this.#worker!;
    const generation = this.#generation;
    const id = this.#nextId++;
    const value = await new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject, what: `${method} ${String(args[0] ?? '')}`, since: Date.now() });
      worker.postMessage({ id, method, args });
    });
    return { value, generation };
  }

  async #waitForEngine(method: string): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(bpfError('EAGAIN', `the engine is restarting and was not back within ${RESTART_WAIT_MS} ms (${method}); try again`)), RESTART_WAIT_MS);
    });
    try {
      await Promise.race([this.#restarting!.promise, timeout]);
    } finally {
      clearTimeout(timer);
    }
    // Back, but it may have died again before this call's turn came: wait for that restart too.
    if (this.#worker === null) return this.#waitForEngine(method);
  }

  /** Stops the engine (drops every pin, stops tracking) and ends its thread. */
  async stop(): Promise<void> {
    clearInterval(this.#watchdog);
    this.#stopping = true;
    const stopped = bpfError('EIO', 'the engine is stopped');
    // Calls from now on fail at once; those in flight still get their answers.
    this.#dead = stopped;
    this.#restarting?.reject(stopped);
    await this.#restartLoop;
    const worker = this.#worker;
    this.#worker = null;
    if (worker !== null) {
      await new Promise<void>((resolve) => {
        // A worker that dies while stopping says so only by exiting.
        worker.once('exit', () => resolve());
        worker.on('message', (m: { stopped?: boolean }) => void (m.stopped === true && resolve()));
        worker.postMessage({ stop: true });
      });
      await worker.terminate();
    }
    this.#failPending(stopped);
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

  #failPending(e: BpfError): void {
    for (const p of this.#pending.values()) p.reject(e);
    this.#pending.clear();
  }

  /** The engine thread ended without stop(): fail what it held, and start another. */
  #exited(worker: Worker, reason: string): void {
    if (worker !== this.#worker || this.#stopping) return;
    this.#worker = null;
    // Now, not once the new engine is up: a read made meanwhile waits for that engine, and must not
    // reach it with a handle number the dead one gave out (the new one may have given it to another).
    this.#generation++;
    this.#failPending(bpfError('EIO', `the engine died (${reason}) before answering; it is being restarted`));
    this.#restarting = deferred();
    this.#restartLoop = this.#restart(reason);
  }

  async #restart(reason: string): Promise<void> {
    for (;;) {
      const now = Date.now();
      this.#crashes = [...this.#crashes.filter((at) => now - at < CRASH_WINDOW_MS), now];
      this.#lastCrash = { at: new Date(now).toISOString(), reason };
      const n = this.#crashes.length;
      if (n > this.#maxCrashes) {
        this.#dead = bpfError('EIO', `the engine died ${n} times within ${CRASH_WINDOW_MS / 1000} s (last: ${reason}); vbpffs gave up restarting it: unmount and mount again`);
        this.#log(`vbpffs: ${this.#dead.message}`);
        this.#restarting!.reject(this.#dead);
        this.#restarting = null;
        return;
      }
      const delay = Math.min(BACKOFF_MS * 2 ** (n - 1), BACKOFF_MAX_MS);
      this.#log(`vbpffs: the engine thread died (${reason}); restarting it from the journal in ${delay} ms (death ${n} of at most ${this.#maxCrashes} within ${CRASH_WINDOW_MS / 1000} s)`);
      await sleep(delay);
      const t0 = Date.now();
      try {
        const { worker, ready } = await spawnEngine(this.#opts, this.#heapMb);
        // stop() came while it started (or slept): it never serves.
        if (this.#stopping) {
          await worker.terminate();
          return;
        }
        this.restarts++;
        this.#worker = worker;
        this.#attach(worker);
        const replay = ready.replay;
        this.#log(
          `vbpffs: the engine is back after ${Date.now() - t0} ms` +
            (replay === undefined ? '' : `, ${replay.records} journal records replayed, ${replay.failed} failed`),
        );
        this.#restarting!.resolve();
        this.#restarting = null;
        return;
      } catch (e) {
        if (this.#stopping) return;
        reason = `the restarted engine failed: ${(e as Error).message}`;
      }
    }
  }

  /** What `status` shows of the engine thread. */
  threadStatus(): EngineThreadStatus {
    const now = Date.now();
    return {
      restarts: this.restarts,
      recentCrashes: this.#crashes.filter((at) => now - at < CRASH_WINDOW_MS).length,
      ...(this.#lastCrash === undefined ? {} : { lastCrash: this.#lastCrash }),
      gaveUp: this.#dead !== null && !this.#stopping,
    };
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
  open = async (p: string, flags: number): Promise<number> => {
    const { value, generation } = await this.#call<number>('open', [p, flags]);
    const fh = this.#nextFh++;
    this.#files.set(fh, { generation, fh: value });
    return fh;
  };
  read = async (fh: number, size: number): Promise<Uint8Array> => {
    const f = this.#files.get(fh);
    if (f === undefined) throw bpfError('EBADF', `no open file ${fh}`);
    if (f.generation !== this.#generation) throw bpfError('EIO', 'the file was opened before the engine restarted: open it again');
    return this.call('read', f.fh, size);
  };
  release = async (fh: number): Promise<void> => {
    const f = this.#files.get(fh);
    this.#files.delete(fh);
    // The engine that opened it is gone, and its open files with it.
    if (f !== undefined && f.generation === this.#generation) await this.call('release', f.fh);
  };
  statfs = (): Promise<VfsStatfs> => this.call('statfs');

  // --- control ------------------------------------------------------------------------------------
  progLoadAll = (obj: string, dir: string): Promise<{ name: string; id: number; path: string }[]> => this.call('progLoadAll', obj, dir);
  iterPin = (obj: string, pinPath: string, opts: { order?: string; cgroup?: string }): Promise<{ linkId: number; progId: number; target: string }> =>
    this.call('iterPin', obj, pinPath, opts);
  progShow = (): Promise<ProgShow[]> => this.call('progShow');
  mapShow = (): Promise<MapShow[]> => this.call('mapShow');
  linkShow = (): Promise<LinkShow[]> => this.call('linkShow');
  mapDump = (id: number): Promise<unknown> => this.call('mapDump', id);
  status = async (): Promise<EngineStatus & { engine: EngineThreadStatus }> => ({ ...(await this.call<EngineStatus>('status')), engine: this.threadStatus() });
}
