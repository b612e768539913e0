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
import ivm from 'isolated-vm';
import createDebug from 'debug';
import { BpfMapType, ERRNO, bpfError } from '../../uapi';
import type { KernfsNode } from '../../tags';
import type { Kernel } from '../kernel';
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
import { bpf_seq_printf, bpf_seq_write, type SeqSink } from '../helpers/seq';
import { helpersFor, returnAllowed, returnRange } from '../helpers/func-proto';
import { BPF_CONSTANTS } from '../prog/verifier/constants';
import type { ObjectFileSpec } from '../prog/object-file';
import { originalPosition } from '../prog/transpile';
import type { BpfProg, ProgCtx, ProgRunner } from '../prog/prog';
import { isolatePrelude, type PreludeApi, type PreludeHost, type PreludeInit, type RunRecord } from './prelude';
import { schemaModuleSource } from './schema-source';
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

/** Bytes of the scratch buffer keys and values cross in: the largest key plus value a program passes. */
const SCRATCH_BYTES = 1 << 16;

const EINVAL = -ERRNO.EINVAL;
const ENOENT = -ERRNO.ENOENT;
const EOPNOTSUPP = -ERRNO.EOPNOTSUPP;

/** The facts of a cgroup the helpers give: tags' KernfsNode has them. */
type CgroupNode = CgroupOwner & Pick<KernfsNode, 'level' | 'name'> & { readonly parent: CgroupNode | null };

/** The run in progress: what the helpers act on. */
interface Run {
  prog: BpfProg;
  sink: SeqSink | null;
  cgroup: CgroupNode | null;
  task: (TaskOwner & { cgroup?: CgroupNode }) | null;
  sk: SockOwner | null;
  files: CgroupFiles | undefined;
  deadline: number;
  expired: boolean;
  /** The isolate's CPU time when the run began. */
  cpu0: bigint;
}

class DeadlineExceeded extends Error {}

export class ObjectIsolate implements ProgRunner {
  readonly #kernel: Kernel;
  readonly #spec: ObjectFileSpec;
  readonly #maps: readonly BpfMap[];
  readonly #limits: RuntimeLimits;
  readonly #progIndex = new Map<string, number>();
  #iso: ivm.Isolate | null = null;
  #ctx: ivm.Context | null = null;
  #run: ivm.Reference<PreludeApi['run']> | null = null;
  #scratch = new SharedArrayBuffer(SCRATCH_BYTES);
  #cur: Run | null = null;
  #live: number;
  /** Isolates built: 1 after load, one more after each memory fault. */
  builds = 0;

  /** Builds the isolate and evaluates the object's module; EINVAL when its top-level code fails. */
  constructor(kernel: Kernel, spec: ObjectFileSpec, maps: readonly BpfMap[], limits: RuntimeLimits = DEFAULT_LIMITS) {
    if (!(limits.memoryMiB >= 8) || !(limits.deadlineMs > 0)) throw bpfError('EINVAL', 'runtime limits: memoryMiB >= 8, deadlineMs > 0');
    this.#kernel = kernel;
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

  run(prog: BpfProg, ctx: ProgCtx): number {
    const index = this.#progIndex.get(prog.name);
    if (index === undefined) throw bpfError('EINVAL', `prog ${prog.name} is not of ${this.#spec.filename}`);
    if (this.#cur !== null) {
      // bpf_prog_active: a program never runs inside another's helper.
      throw this.#fault(prog, 'EBUSY', `prog ${prog.name}: another program of this object is running (nested run refused)`);
    }
    if (this.#iso === null) this.#build();
    const rec = this.#record(ctx);
    if (prog.type === 'cgroup_sock') rec.ctx_is_sk = true;
    const run: Run = {
      prog,
      sink: (ctx.meta as { seq?: SeqSink } | undefined)?.seq ?? null,
      cgroup: (ctx.cgroup as CgroupNode | null | undefined) ?? null,
      task: (ctx.task as Run['task']) ?? null,
      sk: (ctx.sk as SockOwner | undefined) ?? null,
      files: ctx.files as CgroupFiles | undefined,
      deadline: performance.now() + this.#limits.deadlineMs,
      expired: false,
      cpu0: this.#iso!.cpuTime,
    };
    const iso = this.#iso!;
    const cpu0 = run.cpu0;
    this.#cur = run;
    let r: unknown;
    try {
      r = this.#run!.applySync(undefined, [index, rec], { arguments: { copy: true }, timeout: this.#limits.deadlineMs });
    } catch (e) {
      throw this.#programError(prog, run, e);
    } finally {
      this.#cur = null;
      prog.stats.runCnt++;
      if (!iso.isDisposed) prog.stats.runTimeNs += Number(iso.cpuTime - cpu0);
    }
    return this.#checkReturn(prog, r);
  }

  /** A program of the object is released; the last one disposes the isolate. */
  release(_prog: BpfProg): void {
    if (--this.#live > 0) return;
    this.#dispose();
  }

  // --- building --------------------------------------------------------------------------------------

  #build(): void {
    const iso = new ivm.Isolate({ memoryLimit: this.#limits.memoryMiB });
    try {
      const ctx = iso.createContextSync();
      const g = ctx.global;
      g.setSync('__vbpffs_host', new ivm.ExternalCopy(this.#hostCallbacks()).copyInto());
      const host = g.getSync('__vbpffs_host', { reference: true }) as ivm.Reference<Record<string, unknown>>;
      for (const [name, cb] of Object.entries(this.#callbacks())) host.setSync(name, cb);
      host.release();
      g.setSync('__vbpffs_init', new ivm.ExternalCopy(this.#init()).copyInto());
      g.setSync('__vbpffs_scratch', new ivm.ExternalCopy(this.#scratch).copyInto({ release: true }));
      const prelude = iso.compileScriptSync(
        `(function () { 'use strict';
          const host = globalThis.__vbpffs_host, init = globalThis.__vbpffs_init, scratch = globalThis.__vbpffs_scratch;
          delete globalThis.__vbpffs_host; delete globalThis.__vbpffs_init; delete globalThis.__vbpffs_scratch;
          const schema = (function () {
            const module = { exports: {} };
            (function (exports, require, module) { ${schemaModuleSource()}
            })(module.exports, () => ({ bpfError: (code, msg) => new Error(code + ': ' + msg) }), module);
            return module.exports;
          })();
          return (${isolatePrelude.toString()})(host, init, schema, scratch);
        })()`,
        { filename: 'vbpffs:prelude' },
      );
      const api = prelude.runSync(ctx, { reference: true }) as ivm.Reference<PreludeApi>;
      prelude.release();
      const script = iso.compileScriptSync(`(function (exports, require, module, gc) {${this.#spec.js}\n})`, { filename: this.#spec.filename });
      const wrapper = script.runSync(ctx, { reference: true });
      script.release();
      const load = api.getSync('load', { reference: true });
      try {
        load.applySync(api.derefInto(), [wrapper.derefInto()], { timeout: this.#limits.deadlineMs * 10 });
      } catch (e) {
        throw bpfError('EINVAL', `${this.#spec.filename}: the module's top-level code failed: ${this.#describe(e)}`);
      } finally {
        load.release();
        wrapper.release();
      }
      this.#run = api.getSync('run', { reference: true }) as ivm.Reference<PreludeApi['run']>;
      api.release();
      this.#ctx = ctx;
      this.#iso = iso;
      this.builds++;
      debug('isolate for %s built (%d)', this.#spec.filename, this.builds);
    } catch (e) {
      if (!iso.isDisposed) iso.dispose();
      throw e;
    }
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

  #callbacks(): Record<keyof PreludeHost, ivm.Callback> {
    const cb = (f: (...a: never[]) => unknown): ivm.Callback => new ivm.Callback(f);
    return {
      storage_get: cb((map: number, kind: string, id: number, flags: number) => this.#storageGet(map, kind, id, flags)),
      storage_delete: cb((map: number, kind: string, id: number) => this.#storageDelete(map, kind, id)),
      map_lookup: cb((map: number) => this.#mapLookup(map)),
      map_update: cb((map: number, flags: number) => this.#mapUpdate(map, flags)),
      map_delete: cb((map: number) => this.#mapDelete(map)),
      slab: cb((map: number, buffer: number) => {
        const buf = this.#maps[map]?.slab.buffers[buffer];
        if (buf === undefined) throw new RangeError(`no buffer ${buffer} in map ${map}`);
        return new ivm.ExternalCopy(buf).copyInto({ release: true });
      }),
      seq_printf: cb((fmt: string, ...args: (number | bigint | string)[]) => {
        const run = this.#guard();
        return run.sink === null ? EINVAL : bpf_seq_printf(run.sink, fmt, ...args);
      }),
      seq_write: cb((data: string, bytes: boolean) => {
        const run = this.#guard();
        if (run.sink === null) return EINVAL;
        return bpf_seq_write(run.sink, bytes ? Uint8Array.from(data, (c) => c.charCodeAt(0)) : new TextEncoder().encode(data));
      }),
      seq_reserve: cb((len: number) => {
        const run = this.#guard();
        if (run.sink === null) return EINVAL;
        const room = run.sink.room();
        // seq_write keeps a write only while count + len < size. One that cannot fit overflows the
        // seq_file and keeps nothing, whatever its bytes: a write of `room` bytes does exactly that.
        return len < room ? 0 : bpf_seq_write(run.sink, new Uint8Array(room));
      }),
      ktime: cb(() => {
        this.#guard();
        return process.hrtime.bigint();
      }),
      cgroup_info: cb((id: number) => {
        this.#guard();
        const cg = this.#cgroup(id);
        return cg === undefined ? null : [cg.level, cg.name];
      }),
      cgroup_ancestor: cb((id: number, level: number) => {
        this.#guard();
        let cg = this.#cgroup(id) ?? null;
        if (cg === null || !Number.isInteger(level) || level < 0 || level > cg.level) return 0n;
        while (cg !== null && cg.level > level) cg = cg.parent;
        return cg === null ? 0n : BigInt(cg.id);
      }),
      cgroup_read: cb((id: number, file: string) => {
        const run = this.#guard();
        const text = run.cgroup?.id === id ? run.files?.get(file) : undefined;
        return text === undefined || text === null ? null : new ivm.ExternalCopy(parseInterfaceFile(text)).copyInto();
      }),
    };
  }

  // --- helpers' host side ----------------------------------------------------------------------------

  /** The run in progress; past its deadline every helper fails the run (a program may catch it once). */
  #guard(): Run {
    const run = this.#cur;
    if (run === null) throw new Error('helper called outside a run');
    if (run.expired || performance.now() > run.deadline) {
      run.expired = true;
      throw new DeadlineExceeded(`deadline of ${this.#limits.deadlineMs} ms exceeded`);
    }
    return run;
  }

  #cgroup(id: number): CgroupNode | undefined {
    const cur = this.#cur;
    if (cur?.cgroup?.id === id) return cur.cgroup;
    if (cur?.task?.cgroup?.id === id) return cur.task.cgroup;
    return this.#kernel.cgroups?.cgroupById(id) as CgroupNode | undefined;
  }

  /** The owner a storage helper names. Inode storage has no program type that may use it (LSM only). */
  #owner(kind: string, id: number | bigint): CgroupOwner | TaskOwner | SockOwner | null {
    const cur = this.#cur!;
    switch (kind) {
      case 'cgroup':
        return this.#cgroup(id as number) ?? null;
      case 'task':
        return cur.task?.pid === id ? cur.task : (this.#kernel.tasks?.taskByPid(id as number) ?? null);
      default: // 'sk': only the run's socket, which has no id a program could name
        return cur.sk;
    }
  }

  /** The value's location in its map's slab: -1 for NULL, -loc-2 when this call created it. */
  #storageGet(mapIdx: number, kind: string, id: number | bigint, flags: number): number {
    this.#guard();
    const map = this.#maps[mapIdx]!;
    const owner = this.#owner(kind, id);
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

  #storageDelete(mapIdx: number, kind: string, id: number | bigint): number {
    this.#guard();
    const map = this.#maps[mapIdx]!;
    const owner = this.#owner(kind, id);
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

  #mapLookup(mapIdx: number): number {
    this.#guard();
    const map = this.#maps[mapIdx]!;
    if (!hasProgMapAccess(map)) return -1;
    const v = map.bpfMapLookupElem(this.#scratchKey(map));
    return v === null ? -1 : map.slab.locate(v);
  }

  #mapUpdate(mapIdx: number, flags: number): number {
    this.#guard();
    const map = this.#maps[mapIdx]!;
    if (!hasProgMapAccess(map)) return EOPNOTSUPP;
    // The map keeps copies: the scratch bytes are overwritten by the next call.
    return map.bpfMapUpdateElem(this.#scratchKey(map), this.#scratchValue(map), flags);
  }

  #mapDelete(mapIdx: number): number {
    this.#guard();
    const map = this.#maps[mapIdx]!;
    if (!hasProgMapAccess(map)) return EOPNOTSUPP;
    return map.bpfMapDeleteElem(this.#scratchKey(map));
  }

  // --- a run's context and outcome ------------------------------------------------------------------

  /** The ctx as primitives: owners by id, the iterator's seq_file by the prelude's token. */
  #record(ctx: ProgCtx): RunRecord {
    const rec: RunRecord = { fields: {} };
    for (const [k, v] of Object.entries(ctx)) {
      switch (k) {
        case 'cgroup':
          rec.cgroup = v === null ? null : (v as CgroupOwner).id;
          break;
        case 'task': {
          const t = v as (TaskOwner & { comm?: string; tgid?: number; cgroup?: CgroupOwner }) | null;
          rec.task = t === null ? null : { pid: t.pid, tgid: t.tgid ?? t.pid, comm: t.comm ?? '', cgroup: t.cgroup?.id ?? 0 };
          break;
        }
        case 'sk': {
          const s = v as (SockOwner & { family?: number; type?: number; protocol?: number }) | null;
          rec.sk = s === null ? null : { id: 1, family: s.family ?? 0, type: s.type ?? 0, protocol: s.protocol ?? 0 };
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
