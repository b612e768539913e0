/**
 * One isolated-vm isolate per loaded object file: its programs share its globals and maps, as a BPF
 * ELF's programs do, and a program that exhausts the isolate's memory takes down only its own
 * object's isolate (docs/DECISIONS.md has the measurements behind the choice).
 *
 * A run is synchronous (applySync) on the thread that owns the Kernel, bounded three ways: the
 * isolate's own timeout (isolated-vm interrupts the run), the helpers refusing to work once the
 * deadline has passed (a loop over helpers is stopped at the next call instead of overshooting), and
 * the isolate's memory limit (the isolate is disposed; the next run builds it again, with fresh
 * globals). The daemon runs the Kernel on a worker thread, not on the thread that answers FUSE, so a
 * run that overshoots its deadline delays other runs, never the filesystem's other replies.
 *
 * Helpers are isolated-vm Callbacks: called synchronously from the program, on this thread, with
 * primitives only. Values are never copied: a helper returns the value's location in its map's slab
 * (maps/slab.ts) and the prelude builds the program's view over the shared memory.
 */
import { randomInt } from 'node:crypto';
import ivm from 'isolated-vm';
import createDebug from 'debug';
import { BpfMapType, ERRNO, bpfError } from '../../uapi';
import type { KernfsNode } from '../../tags';
import type { BpfMap } from '../maps/map';
import { hasProgMapAccess } from '../maps/map';
import type { CgroupOwner, SockOwner, TaskOwner } from '../maps/owners';
import {
  bpf_cgrp_storage_delete,
  bpf_cgrp_storage_get,
  bpf_sk_storage_delete,
  bpf_sk_storage_get,
  bpf_task_storage_delete,
  bpf_task_storage_get,
  type CgrpStorageMap,
  type SkStorageMap,
  type TaskStorageMap,
} from '../maps/local-storage';
import type { SeqSink } from '../helpers/seq';
import { helpersFor, returnAllowed, returnRange } from '../helpers/func-proto';
import { BPF_CONSTANTS } from '../prog/verifier/constants';
import type { ObjectFileSpec } from '../prog/object-file';
import { originalPosition } from '../prog/transpile';
import type { BpfProg, ProgCtx, ProgRunner } from '../prog/prog';
import { isolatePrelude, type PreludeApi, type PreludeHost, type PreludeInit, type RunRecord, type RunResult } from './prelude';
import { bprintfModuleSource, isolateShims, schemaModuleSource, seqModuleSource } from './module-source';
import { parseInterfaceFile, type CgroupFiles } from './cgroup-files';

const debug = createDebug('vbpffs:progs');

export interface RuntimeLimits {
  /** A run's deadline, ms (wall clock). */
  deadlineMs: number;
  /** The isolate's heap limit, MiB (isolated-vm's memoryLimit, at least 8). */
  memoryMiB: number;
}

/** 50 ms: far above a view's run (tens of µs), and above a cold first run on a loaded 2-core machine. */
export const DEFAULT_LIMITS: RuntimeLimits = { deadlineMs: 50, memoryMiB: 64 };

/**
 * How long past its deadline an asynchronous run may go before it is ended from outside. The
 * isolate's own timeout stops most programs at the deadline; this catches the rest (builtins V8 does
 * not interrupt) and a pool thread that did not get a CPU in time on a loaded machine, whose cost is
 * only the object's globals starting over.
 */
export const ABANDON_MARGIN_MS = 100;

/** Abandoned calls still executing on isolated-vm's threads, in every object of the process. */
const abandoned = new Set<Promise<unknown>>();

/**
 * Resolves true once every abandoned run has really ended, false after timeoutMs if some have not.
 * A process must not exit while one still executes: V8 tearing down under a running isolate crashes
 * the process (a segmentation fault, seen with isolated-vm 5.0.4), so whoever ends one waits here.
 */
export async function abandonedRunsEnded(timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (abandoned.size > 0) {
    const left = deadline - performance.now();
    if (left <= 0) return false;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...abandoned]),
      new Promise((resolve) => {
        timer = setTimeout(resolve, left);
      }),
    ]);
    clearTimeout(timer);
  }
  return true;
}

/**
 * The room a run's output may use: the seq_file's. A sink that reports none that is finite gets a
 * bound of 1 MiB, the isolate making the run's output in a buffer of that size.
 */
function seqRoom(sink: SeqSink): number {
  const room = sink.room();
  return Number.isFinite(room) ? Math.max(0, Math.min(room, 1 << 20)) : 1 << 20;
}

/** The most a new isolate spends warming its formatting code (PreludeApi.warm). */
const WARM_TIMEOUT_MS = 500;

/** Bytes of the scratch buffer keys and values cross in: the largest key plus value a program passes. */
const SCRATCH_BYTES = 1 << 16;

const ENOENT = -ERRNO.ENOENT;
const EOPNOTSUPP = -ERRNO.EOPNOTSUPP;

/** The facts of a cgroup the helpers give: tags' KernfsNode has them. */
type CgroupNode = CgroupOwner & Pick<KernfsNode, 'level' | 'name'> & { readonly parent: CgroupNode | null };

type OwnerKind = 'cgroup' | 'task' | 'sk';

/** The run in progress: what the helpers act on. */
interface Run {
  /** The isolate it runs in: callbacks of any other build (an abandoned one) refuse to act. */
  iso: ivm.Isolate;
  /**
   * The owners the run was handed, by slot: the only ones its helpers can name. A program sees a
   * slot only inside an opaque handle, so what a slot means lives here, for this run alone.
   */
  owners: { kind: OwnerKind; owner: object }[];
  prog: BpfProg;
  sink: SeqSink | null;
  cgroup: CgroupNode | null;
  task: (TaskOwner & { cgroup?: CgroupNode }) | null;
  sk: SockOwner | null;
  files: CgroupFiles | undefined;
  deadline: number;
  expired: boolean;
  /** Ended from outside (the deadline plus ABANDON_MARGIN_MS passed). */
  abandoned: boolean;
  /** The isolate's CPU time when the run began. */
  cpu0: bigint;
}

class DeadlineExceeded extends Error {}

export class ObjectIsolate implements ProgRunner {
  readonly #spec: ObjectFileSpec;
  readonly #maps: readonly BpfMap[];
  readonly #limits: RuntimeLimits;
  readonly #progIndex = new Map<string, number>();
  #iso: ivm.Isolate | null = null;
  #ctx: ivm.Context | null = null;
  #run: ivm.Reference<PreludeApi['run']> | null = null;
  #scratch = new SharedArrayBuffer(SCRATCH_BYTES);
  /** bprintf's pointer-hashing key inside this object's isolates (%p), drawn once per object. */
  readonly #ptrKey = [randomInt(2 ** 32), randomInt(2 ** 32)];
  #cur: Run | null = null;
  #gen = 0;
  /** Runs of runAsync, one at a time: the host's #cur is the isolate's one run. */
  #queue: Promise<unknown> = Promise.resolve();
  /** An abandoned run still executing on a pool thread, until V8 lets it go; none is started meanwhile. */
  #zombie: { since: number; reason: string } | null = null;
  #building = false;
  /** Asynchronous runs asked for and not yet over: a synchronous run does not jump their queue. */
  #queued = 0;
  #live: number;
  /** Isolates built: 1 after load, one more after each memory fault. */
  builds = 0;

  /** Builds the isolate and evaluates the object's module; EINVAL when its top-level code fails. */
  constructor(spec: ObjectFileSpec, maps: readonly BpfMap[], limits: RuntimeLimits = DEFAULT_LIMITS) {
    if (!(limits.memoryMiB >= 8) || !(limits.deadlineMs > 0)) throw bpfError('EINVAL', 'runtime limits: memoryMiB >= 8, deadlineMs > 0');
    this.#spec = spec;
    this.#maps = maps;
    this.#limits = limits;
    spec.programs.forEach((p, i) => this.#progIndex.set(p.name, i));
    this.#live = spec.programs.length;
    this.#build();
  }

  get disposed(): boolean {
    return this.#iso === null;
  }

  /** Heap in use by the isolate, bytes (0 while it is disposed). */
  heapBytes(): number {
    if (this.#iso === null) return 0;
    const s = this.#iso.getHeapStatisticsSync();
    return s.used_heap_size + s.externally_allocated_size;
  }

  /**
   * bpf_prog_run on the calling thread: the isolate's timeout stops the program at its deadline
   * wherever V8 checks for termination, but not inside a builtin that does not (BigInt arithmetic,
   * a typed array's sort), which holds the caller until it returns. The daemon uses runAsync.
   */
  run(prog: BpfProg, ctx: ProgCtx): number {
    const index = this.#index(prog);
    if (this.#cur !== null || this.#queued > 0 || this.#building || this.#zombie !== null) {
      // bpf_prog_active: a program never runs inside another's helper, nor beside a run under way.
      throw this.#fault(prog, 'EBUSY', `prog ${prog.name}: another program of this object is running (nested run refused)`);
    }
    if (this.#iso === null) this.#build();
    const { run, rec } = this.#start(prog, ctx);
    let r: RunResult;
    try {
      r = this.#run!.applySync(undefined, [index, rec], { arguments: { copy: true }, result: { copy: true }, timeout: this.#limits.deadlineMs }) as RunResult;
    } catch (e) {
      throw this.#programError(prog, run, e);
    } finally {
      this.#finish(prog, run);
    }
    return this.#checkReturn(prog, this.#output(run, r));
  }

  /**
   * bpf_prog_run off the calling thread: the program runs on isolated-vm's thread pool while the
   * caller's thread goes on serving, and a run still going at its deadline plus ABANDON_MARGIN_MS
   * is ended from outside: the read fails with EIO now, the isolate is disposed (V8 lets its thread
   * go when the builtin returns) and the object's next run gets a fresh one. Runs of one object go
   * one at a time, in order; until an abandoned run has really ended, the object's runs fail at
   * once rather than pile up threads burning a CPU each.
   */
  runAsync(prog: BpfProg, ctx: ProgCtx): Promise<number> {
    let index: number;
    try {
      index = this.#index(prog);
    } catch (e) {
      return Promise.reject(e);
    }
    this.#queued++;
    const turn = this.#queue.then(() => this.#runQueued(prog, index, ctx)).finally(() => this.#queued--);
    this.#queue = turn.catch(() => undefined);
    return turn;
  }

  async #runQueued(prog: BpfProg, index: number, ctx: ProgCtx): Promise<number> {
    if (this.#zombie !== null) {
      const ms = (performance.now() - this.#zombie.since).toFixed(0);
      throw this.#fault(prog, 'EIO', `prog ${prog.name} not run: its object's abandoned run (${this.#zombie.reason}) has not ended yet, ${ms} ms on`);
    }
    if (this.#iso === null) await this.#buildAsync(prog);
    const { run, rec } = this.#start(prog, ctx);
    let r: RunResult;
    try {
      const work = this.#run!.apply(undefined, [index, rec], { arguments: { copy: true }, result: { copy: true }, timeout: this.#limits.deadlineMs }) as Promise<RunResult>;
      r = await this.#bounded(work, () => {
        run.expired = true;
        run.abandoned = true;
        this.#abandon(`prog ${prog.name}`, work);
      });
    } catch (e) {
      throw this.#programError(prog, run, e);
    } finally {
      this.#finish(prog, run);
    }
    return this.#checkReturn(prog, this.#output(run, r));
  }

  #index(prog: BpfProg): number {
    const index = this.#progIndex.get(prog.name);
    if (index === undefined) throw bpfError('EINVAL', `prog ${prog.name} is not of ${this.#spec.filename}`);
    return index;
  }

  #start(prog: BpfProg, ctx: ProgCtx): { run: Run; rec: RunRecord } {
    const iso = this.#iso!;
    const owners: Run['owners'] = [];
    const rec = this.#record(ctx, owners);
    if (prog.type === 'cgroup_sock') rec.ctx_is_sk = true;
    const sink = (ctx.meta as { seq?: SeqSink } | undefined)?.seq ?? null;
    if (sink !== null) rec.room = seqRoom(sink);
    const run: Run = {
      iso,
      owners,
      prog,
      sink,
      cgroup: (ctx.cgroup as CgroupNode | null | undefined) ?? null,
      task: (ctx.task as Run['task']) ?? null,
      sk: (ctx.sk as SockOwner | undefined) ?? null,
      files: ctx.files as CgroupFiles | undefined,
      deadline: performance.now() + this.#limits.deadlineMs,
      expired: false,
      abandoned: false,
      cpu0: iso.cpuTime,
    };
    this.#cur = run;
    return { run, rec };
  }

  #finish(prog: BpfProg, run: Run): void {
    if (this.#cur === run) this.#cur = null;
    prog.stats.runCnt++;
    if (!run.iso.isDisposed) prog.stats.runTimeNs += Number(run.iso.cpuTime - run.cpu0);
  }

  /**
   * work, unless it is still going ABANDON_MARGIN_MS past the deadline: then abandon() runs and the
   * result is a DeadlineExceeded. The late outcome of abandoned work is dropped.
   */
  #bounded<T>(work: Promise<T>, abandon: () => void, deadlineMs = this.#limits.deadlineMs): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        abandon();
        reject(new DeadlineExceeded(`deadline of ${deadlineMs} ms exceeded; ended from outside after ${deadlineMs + ABANDON_MARGIN_MS} ms`));
      }, deadlineMs + ABANDON_MARGIN_MS);
      work.then(
        (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        (e: unknown) => {
          clearTimeout(timer);
          reject(e);
        },
      );
    });
  }

  /**
   * Ends the isolate from outside: disposed now (isolated-vm terminates it and frees it once V8
   * returns to a point that checks), its references dropped, and the object marked as having a run
   * in flight until `work`, the abandoned call, settles: that is when its pool thread is free.
   */
  #abandon(what: string, work: Promise<unknown>): void {
    this.#dispose();
    const zombie = { since: performance.now(), reason: `${what} past its deadline` };
    this.#zombie = zombie;
    debug('%s of %s abandoned past its deadline; its isolate is disposed, a fresh one serves the next run', what, this.#spec.filename);
    abandoned.add(work);
    const ended = (): void => {
      abandoned.delete(work);
      if (this.#zombie === zombie) this.#zombie = null;
      debug('the abandoned run of %s ended after %d ms', this.#spec.filename, Math.round(performance.now() - zombie.since));
    };
    work.then(ended, ended);
  }

  /** A program of the object is released; the last one disposes the isolate. */
  release(_prog: BpfProg): void {
    if (--this.#live > 0) return;
    this.#dispose();
  }

  // --- building --------------------------------------------------------------------------------------

  /** Builds the isolate and runs the module's top-level code on this thread (at load). */
  #build(): void {
    const { iso, ctx, api, load, wrapper } = this.#prepare();
    try {
      load.applySync(api.derefInto(), [wrapper.derefInto()], { timeout: this.#limits.deadlineMs * 10 });
    } catch (e) {
      this.#discard(iso, api, load, wrapper);
      throw bpfError('EINVAL', `${this.#spec.filename}: the module's top-level code failed: ${this.#describe(e)}`);
    }
    const warm = api.getSync('warm', { reference: true });
    try {
      warm.applySync(api.derefInto(), [], { timeout: WARM_TIMEOUT_MS });
    } catch (e) {
      this.#warmStopped(e);
    } finally {
      warm.release();
    }
    this.#installed(iso, ctx, api, load, wrapper);
  }

  /**
   * The same for a rebuild after a fault, off this thread and bounded from outside as a run is: the
   * module's top-level code is the object author's, and may hold a thread as long as a run can.
   */
  async #buildAsync(prog: BpfProg): Promise<void> {
    this.#building = true;
    try {
      const { iso, ctx, api, load, wrapper } = this.#prepare();
      const deadlineMs = this.#limits.deadlineMs * 10;
      try {
        const work = load.apply(api.derefInto(), [wrapper.derefInto()], { timeout: deadlineMs });
        await this.#bounded(work, () => {
          this.#iso = iso;
          this.#abandon('the module\'s top-level code', work);
        }, deadlineMs);
      } catch (e) {
        this.#discard(iso, api, load, wrapper);
        throw this.#fault(prog, 'EIO', `prog ${prog.name} not run: rebuilding ${this.#spec.filename}'s isolate failed: ${this.#describe(e)}`);
      }
      // Off this thread as well: a rebuild after every fault of a hostile object must not cost the
      // other readers the warm-up each time.
      const warm = api.getSync('warm', { reference: true });
      await warm.apply(api.derefInto(), [], { timeout: WARM_TIMEOUT_MS }).catch((e: unknown) => this.#warmStopped(e));
      warm.release();
      this.#installed(iso, ctx, api, load, wrapper);
    } finally {
      this.#building = false;
    }
  }

  /** A new isolate with the prelude evaluated and the module compiled, its top-level code not yet run. */
  #prepare(): { iso: ivm.Isolate; ctx: ivm.Context; api: ivm.Reference<PreludeApi>; load: ivm.Reference<(wrapper: unknown) => void>; wrapper: ivm.Reference<unknown> } {
    const iso = new ivm.Isolate({ memoryLimit: this.#limits.memoryMiB });
    try {
      const ctx = iso.createContextSync();
      const g = ctx.global;
      g.setSync('__vbpffs_host', new ivm.ExternalCopy(this.#hostCallbacks()).copyInto());
      const host = g.getSync('__vbpffs_host', { reference: true }) as ivm.Reference<Record<string, unknown>>;
      for (const [name, cb] of Object.entries(this.#callbacks(iso))) host.setSync(name, cb);
      host.release();
      g.setSync('__vbpffs_init', new ivm.ExternalCopy(this.#init()).copyInto());
      g.setSync('__vbpffs_scratch', new ivm.ExternalCopy(this.#scratch).copyInto({ release: true }));
      const prelude = iso.compileScriptSync(
        `(function () { 'use strict';
          const host = globalThis.__vbpffs_host, init = globalThis.__vbpffs_init, scratch = globalThis.__vbpffs_scratch;
          delete globalThis.__vbpffs_host; delete globalThis.__vbpffs_init; delete globalThis.__vbpffs_scratch;
          const uapi = { bpfError: (code, msg) => new Error(code + ': ' + msg) };
          const schema = (function () {
            const module = { exports: {} };
            (function (exports, require, module) { ${schemaModuleSource()}
            })(module.exports, () => uapi, module);
            return module.exports;
          })();
          const seq = (function () {
            ${isolateShims(this.#ptrKey)}
            const bprintf = { exports: {} };
            (function (exports, require, module, globalThis) { ${bprintfModuleSource()}
            })(bprintf.exports, () => uapi, bprintf, { crypto });
            const module = { exports: {} };
            (function (exports, require, module) { ${seqModuleSource()}
            })(module.exports, (name) => (name === './bprintf' ? bprintf.exports : uapi), module);
            return Object.assign({}, module.exports, { TextEncoder });
          })();
          return (${isolatePrelude.toString()})(host, init, schema, seq, scratch);
        })()`,
        { filename: 'vbpffs:prelude' },
      );
      const api = prelude.runSync(ctx, { reference: true }) as ivm.Reference<PreludeApi>;
      prelude.release();
      const script = iso.compileScriptSync(`(function (exports, require, module, gc) {${this.#spec.js}\n})`, { filename: this.#spec.filename });
      const wrapper = script.runSync(ctx, { reference: true });
      script.release();
      const load = api.getSync('load', { reference: true }) as unknown as ivm.Reference<(wrapper: unknown) => void>;
      return { iso, ctx, api, load, wrapper };
    } catch (e) {
      if (!iso.isDisposed) iso.dispose();
      throw e;
    }
  }

  /** Warming is our own code with its own limit: a machine too busy to finish it only makes the first runs slower. */
  /* c8 ignore next 3 -- only a machine that cannot run the warm-up within 500 ms gets here */
  #warmStopped(e: unknown): void {
    debug('warming %s\'s isolate stopped: %s', this.#spec.filename, this.#describe(e));
  }

  #discard(iso: ivm.Isolate, ...refs: ivm.Reference<unknown>[]): void {
    if (iso.isDisposed) return;
    for (const r of refs) r.release();
    iso.dispose();
  }

  #installed(iso: ivm.Isolate, ctx: ivm.Context, api: ivm.Reference<PreludeApi>, load: ivm.Reference<unknown>, wrapper: ivm.Reference<unknown>): void {
    load.release();
    wrapper.release();
    this.#run = api.getSync('run', { reference: true }) as ivm.Reference<PreludeApi['run']>;
    api.release();
    this.#ctx = ctx;
    this.#iso = iso;
    this.builds++;
    debug('isolate for %s built (%d)', this.#spec.filename, this.builds);
  }

  /**
   * References into the isolate are released before it goes: left to the garbage collector, their
   * finalizers could run while the process exits, after the isolate is gone.
   */
  #dispose(): void {
    const iso = this.#iso;
    this.#iso = null;
    if (iso !== null && !iso.isDisposed) {
      this.#run?.release();
      this.#ctx?.release();
      iso.dispose();
    }
    this.#run = null;
    this.#ctx = null;
  }

  #init(): PreludeInit {
    const used = new Set<string>();
    for (const p of this.#spec.programs) for (const h of helpersFor(p.sec)) used.add(h);
    return {
      filename: this.#spec.filename,
      constants: { ...BPF_CONSTANTS },
      helpers: [...used].sort(),
      maps: this.#spec.maps.map((m) => ({ name: m.name, type: m.type, key: m.key, value: m.value, keySize: m.keySize, valueSize: m.valueSize })),
      programs: this.#spec.programs.map((p) => ({ name: p.name, section: p.section })),
      errno: { EINVAL: ERRNO.EINVAL, ENOENT: ERRNO.ENOENT },
      localStorageTypes: {
        cgroup: BpfMapType.CGRP_STORAGE,
        task: BpfMapType.TASK_STORAGE,
        sk: BpfMapType.SK_STORAGE,
      },
    };
  }

  /** A placeholder object the callbacks are set on (ExternalCopy cannot carry functions). */
  #hostCallbacks(): Record<string, never> {
    return {};
  }

  /** The helpers' host side for the isolate `built`: each acts only within a run of that isolate. */
  #callbacks(built: ivm.Isolate): Record<keyof PreludeHost, ivm.Callback> {
    const guard = (): Run => this.#guard(built);
    const cb = (f: (...a: never[]) => unknown): ivm.Callback => new ivm.Callback(f);
    return {
      storage_get: cb((map: number, kind: OwnerKind, slot: number, flags: number) => this.#storageGet(guard(), map, kind, slot, flags)),
      storage_delete: cb((map: number, kind: OwnerKind, slot: number) => this.#storageDelete(guard(), map, kind, slot)),
      map_lookup: cb((map: number) => this.#mapLookup(guard(), map)),
      map_update: cb((map: number, flags: number) => this.#mapUpdate(guard(), map, flags)),
      map_delete: cb((map: number) => this.#mapDelete(guard(), map)),
      slab: cb((map: number, buffer: number) => {
        guard();
        const buf = this.#maps[map]?.slab.buffers[buffer];
        if (buf === undefined) throw new RangeError(`no buffer ${buffer} in map ${map}`);
        return new ivm.ExternalCopy(buf).copyInto({ release: true });
      }),
      ktime: cb(() => {
        guard();
        return process.hrtime.bigint();
      }),
      cgroup_info: cb((slot: number) => {
        const cg = this.#owner(guard(), 'cgroup', slot) as CgroupNode | null;
        return cg === null ? null : [cg.level, cg.name];
      }),
      cgroup_ancestor: cb((slot: number, level: number) => {
        let cg = this.#owner(guard(), 'cgroup', slot) as CgroupNode | null;
        if (cg === null || !Number.isInteger(level) || level < 0 || level > cg.level) return 0n;
        while (cg !== null && cg.level > level) cg = cg.parent;
        return cg === null ? 0n : BigInt(cg.id);
      }),
    };
  }

  // --- helpers' host side ----------------------------------------------------------------------------

  /**
   * The run in progress in the isolate `built`; past its deadline every helper fails the run (a
   * program may catch it once). A call from an isolate that is not running (an abandoned one
   * finishing its builtin) acts on nothing.
   */
  #guard(built: ivm.Isolate): Run {
    const run = this.#cur;
    if (run === null || run.iso !== built || run.abandoned) throw new Error('helper called outside a run');
    if (run.expired || performance.now() > run.deadline) {
      run.expired = true;
      throw new DeadlineExceeded(`deadline of ${this.#limits.deadlineMs} ms exceeded`);
    }
    return run;
  }

  /** The owner in the run's slot, when it is of this kind. Inode storage has no program type that may use it (LSM only). */
  #owner(run: Run, kind: OwnerKind, slot: number): object | null {
    const o = Number.isInteger(slot) ? run.owners[slot] : undefined;
    return o !== undefined && o.kind === kind ? o.owner : null;
  }

  /** The value's location in its map's slab: -1 for NULL, -loc-2 when this call created it. */
  #storageGet(run: Run, mapIdx: number, kind: OwnerKind, slot: number, flags: number): number {
    const map = this.#maps[mapIdx]!;
    const owner = this.#owner(run, kind, slot);
    if (owner === null) return -1;
    let v = this.#storageCall(map, kind, owner, 0);
    let created = false;
    if (v === null && flags !== 0) {
      v = this.#storageCall(map, kind, owner, flags);
      created = v !== null;
    }
    if (v === null) return -1;
    const loc = map.slab.locate(v);
    return created ? -loc - 2 : loc;
  }

  #storageCall(map: BpfMap, kind: string, owner: object, flags: number): Uint8Array | null {
    switch (kind) {
      case 'cgroup':
        return bpf_cgrp_storage_get(map as CgrpStorageMap, owner as CgroupOwner, null, flags);
      case 'task':
        return bpf_task_storage_get(map as TaskStorageMap, owner as TaskOwner, null, flags);
      default:
        return bpf_sk_storage_get(map as SkStorageMap, owner as SockOwner, null, flags);
    }
  }

  #storageDelete(run: Run, mapIdx: number, kind: OwnerKind, slot: number): number {
    const map = this.#maps[mapIdx]!;
    const owner = this.#owner(run, kind, slot);
    if (owner === null) return ENOENT;
    switch (kind) {
      case 'cgroup':
        return bpf_cgrp_storage_delete(map as CgrpStorageMap, owner as CgroupOwner);
      case 'task':
        return bpf_task_storage_delete(map as TaskStorageMap, owner as TaskOwner);
      default:
        return bpf_sk_storage_delete(map as SkStorageMap, owner as SockOwner);
    }
  }

  #scratchKey(map: BpfMap): Uint8Array {
    return new Uint8Array(this.#scratch, 0, map.keySize);
  }

  #scratchValue(map: BpfMap): Uint8Array {
    return new Uint8Array(this.#scratch, Math.ceil(map.keySize / 8) * 8, map.valueSize);
  }

  #mapLookup(_run: Run, mapIdx: number): number {
    const map = this.#maps[mapIdx]!;
    if (!hasProgMapAccess(map)) return -1;
    const v = map.bpfMapLookupElem(this.#scratchKey(map));
    return v === null ? -1 : map.slab.locate(v);
  }

  #mapUpdate(_run: Run, mapIdx: number, flags: number): number {
    const map = this.#maps[mapIdx]!;
    if (!hasProgMapAccess(map)) return EOPNOTSUPP;
    // The map keeps copies: the scratch bytes are overwritten by the next call.
    return map.bpfMapUpdateElem(this.#scratchKey(map), this.#scratchValue(map), flags);
  }

  #mapDelete(_run: Run, mapIdx: number): number {
    const map = this.#maps[mapIdx]!;
    if (!hasProgMapAccess(map)) return EOPNOTSUPP;
    return map.bpfMapDeleteElem(this.#scratchKey(map));
  }

  // --- a run's context and outcome ------------------------------------------------------------------

  /** The ctx as primitives: owners by their slot in `owners`, the iterator's seq_file by the prelude's token. */
  #record(ctx: ProgCtx, owners: Run['owners']): RunRecord {
    const rec: RunRecord = { gen: ++this.#gen, fields: {} };
    const slot = (kind: OwnerKind, owner: object): number => owners.push({ kind, owner }) - 1;
    for (const [k, v] of Object.entries(ctx)) {
      switch (k) {
        case 'cgroup': {
          // The facts and interface files of the run's cgroup go with the run, parsed, so reading
          // them costs the program no crossing back to this thread.
          const cg = v as CgroupNode | null;
          rec.cgroup = cg === null ? null : { slot: slot('cgroup', cg), id: cg.id, level: cg.level, name: cg.name };
          const files = ctx.files as CgroupFiles | undefined;
          if (cg !== null && files !== undefined) {
            rec.files = {};
            for (const [name, text] of files) rec.files[name] = text === null ? null : parseInterfaceFile(text);
          }
          break;
        }
        case 'task': {
          const t = v as (TaskOwner & { comm?: string; tgid?: number; cgroup?: CgroupOwner }) | null;
          rec.task = t === null ? null : { slot: slot('task', t), pid: t.pid, tgid: t.tgid ?? t.pid, comm: t.comm ?? '', cgroup: t.cgroup?.id ?? 0 };
          break;
        }
        case 'sk': {
          const s = v as (SockOwner & { family?: number; type?: number; protocol?: number }) | null;
          rec.sk = s === null ? null : { slot: slot('sk', s), family: s.family ?? 0, type: s.type ?? 0, protocol: s.protocol ?? 0 };
          break;
        }
        case 'meta': {
          const m = v as { sessionId?: bigint; seqNum?: bigint };
          rec.meta = { session_id: BigInt(m.sessionId ?? 0n), seq_num: BigInt(m.seqNum ?? 0n) };
          break;
        }
        case 'files':
          break;
        case 'currentCgroupId':
          rec.current_cgroup_id = BigInt(v as number | bigint);
          break;
        default:
          if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'string' || typeof v === 'boolean') rec.fields[k] = v;
          else throw bpfError('EINVAL', `ctx field '${k}' must be a number, bigint, string or boolean`);
      }
    }
    return rec;
  }

  /**
   * What the run wrote, written to its seq_file: one write, which fits (each of the run's writes
   * fitted the room the seq_file had at its start), then the overflow a write that did not fit
   * left. A faulting run's output is dropped; the read rolls the seq_file back over it anyway.
   */
  #output(run: Run, r: RunResult): unknown {
    const sink = run.sink;
    if (sink !== null && r.out !== undefined) {
      if (r.out.length > 0) sink.write(r.out);
      if (r.overflowed === true) sink.write(new Uint8Array(Math.max(1, sink.room())));
    }
    return r.ret;
  }

  #checkReturn(prog: BpfProg, r: unknown): number {
    const value = typeof r === 'bigint' ? Number(BigInt.asIntN(64, r)) : r;
    if (typeof value !== 'number' || !Number.isInteger(value)) {
      throw this.#fault(prog, 'EIO', `prog ${prog.name} returned ${typeof r === 'string' ? `a value of type ${r}` : String(r)}: programs return an integer`);
    }
    if (!returnAllowed(prog.sec, value)) {
      const range = returnRange(prog.sec)!;
      throw this.#fault(prog, 'EIO', `prog ${prog.name} returned ${value}: ${prog.sec.section} programs return ${range.min}..${range.max}`);
    }
    return value;
  }

  #programError(prog: BpfProg, run: Run, e: unknown): Error {
    const msg = this.#describe(e);
    if (run.abandoned) {
      return this.#fault(prog, 'EIO', `prog ${prog.name} exceeded its deadline of ${this.#limits.deadlineMs} ms and was ended from outside ` +
        `${ABANDON_MARGIN_MS} ms later: it was in code V8 does not interrupt (BigInt arithmetic, garbage collection near its memory ` +
        `limit of ${this.#limits.memoryMiB} MiB, a typed array's sort) or got no CPU; its object's isolate is replaced, its globals start over`);
    }
    if (this.#iso?.isDisposed === true || /memory limit/i.test(msg)) {
      this.#dispose();
      return this.#fault(prog, 'EIO', `prog ${prog.name} exceeded its memory limit of ${this.#limits.memoryMiB} MiB (its object's globals start over)`);
    }
    if (run.expired || /timed out/i.test(msg)) {
      // The deadline is wall-clock: say how much of it was the program's own CPU time, so a run
      // descheduled on a busy machine is told apart from a program that loops.
      const cpuMs = this.#iso === null ? NaN : Number(this.#iso.cpuTime - run.cpu0) / 1e6;
      return this.#fault(prog, 'EIO', `prog ${prog.name} exceeded its deadline of ${this.#limits.deadlineMs} ms (${cpuMs.toFixed(1)} ms of it on a CPU)`);
    }
    return this.#fault(prog, 'EIO', `prog ${prog.name} threw: ${msg}`);
  }

  #fault(prog: BpfProg, code: 'EIO' | 'EBUSY', reason: string): Error {
    prog.stats.faults++;
    prog.stats.lastFault = reason;
    debug('fault: %s', reason);
    return bpfError(code, reason);
  }

  /** An error from the isolate (the prelude's one-line description), its position mapped to the source. */
  #describe(e: unknown): string {
    const message = (e as { message?: string })?.message ?? String(e);
    const at = / @(\d+):(\d+)$/.exec(message);
    if (at === null) return message;
    // The wrapper adds no line before the module's first: generated line numbers are the module's.
    const pos = originalPosition(this.#spec.transpiled, Number(at[1]), Number(at[2]));
    const text = message.slice(0, at.index);
    return pos === undefined ? text : `${text} (${this.#spec.filename}:${pos.line}:${pos.column})`;
  }
}
