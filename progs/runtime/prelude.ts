/**
 * The 'vbpffs/bpf' module as programs see it, and the per-run entry point: this function's source is
 * evaluated inside each object file's isolate (isolate.ts sends isolatePrelude.toString()), never in
 * the host. It must therefore be self-contained: it may use only its parameters and ECMAScript's
 * globals, no imports, nothing of this module's scope.
 *
 * Its parameters are the host's callbacks (one per helper that needs the host, taking and returning
 * primitives), the object's description, the value schemas' code (progs/maps/schema.ts, evaluated in
 * the isolate so views behave exactly as on the host) and a scratch buffer shared with the host for
 * keys and values a program passes to map helpers.
 *
 * What programs can reach is only what this function hands out: the frozen module object, frozen
 * ctx objects, and opaque handles (cgroups, tasks, sockets, the seq_file) whose meaning lives in a
 * registry here and, on the host, in the slots of the run they were made for: nothing reachable
 * makes one, a copy is nothing, and one kept past its run names nothing. Before the program's module
 * is evaluated the prelude closes every path to code from strings (eval, the function constructors)
 * and freezes the intrinsics it relies on (lockdown), so a program can neither compile code nor
 * replace a method the helpers call. The verifier's name rules are a second line in front of this.
 *
 * Coverage cannot see this code (it runs in the isolate); the runtime tests exercise it through
 * programs.
 */
/* c8 ignore start */

/** The host side, one isolated-vm Callback each; arguments and results are primitives. */
export interface PreludeHost {
  // Owners are named by their slot in the current run (RunRecord), never by a kernel id: the host
  // resolves a slot only against the run it was handed out for.
  storage_get(map: number, owner: string, slot: number, flags: number): number;
  storage_delete(map: number, owner: string, slot: number): number;
  map_lookup(map: number): number;
  map_update(map: number, flags: number): number;
  map_delete(map: number): number;
  slab(map: number, buffer: number): SharedArrayBuffer;
  ktime(): bigint;
  cgroup_info(slot: number): [number, string] | null;
  cgroup_ancestor(slot: number, level: number): bigint;
}

export interface PreludeInit {
  /** The object file's name, as its script is named in stacks. */
  filename: string;
  constants: Record<string, number>;
  helpers: string[];
  maps: { name: string; type: number; key: unknown; value: unknown; keySize: number; valueSize: number }[];
  programs: { name: string; section: string }[];
  errno: { EINVAL: number; ENOENT: number };
  localStorageTypes: Record<string, number>;
}

/** What the prelude returns to the host. */
export interface PreludeApi {
  /** Evaluates the object's module (its CommonJS wrapper) and binds its maps and programs. */
  load(wrapper: (exports: object, require: (name: string) => unknown, module: object, gc: undefined) => void): void;
  /** Exercises the prelude's own hot code (formatting), so that runs do not pay to compile it. */
  warm(): void;
  /** Runs program `prog` with a ctx built from `rec`: its return value and what it wrote to its seq_file. */
  run(prog: number, rec: RunRecord): RunResult;
}

/**
 * A run's outcome. `ret` is the program's return value (or the typeof of anything else); `out` the
 * bytes its bpf_seq_printf/bpf_seq_write calls kept, in order, and `overflowed` whether a write did
 * not fit: the host writes `out` to the seq_file as one write, which fits since each write fitted
 * the room the seq_file had at the run's start, and then marks the overflow.
 */
export interface RunResult {
  ret: unknown;
  out?: Uint8Array;
  overflowed?: boolean;
}

/** A run's ctx as the host sends it: owners by id, the rest as values. */
export interface RunRecord {
  /** The run's number: handles made for it are dead in every other run. */
  gen: number;
  cgroup?: { slot: number; id: number; level: number; name: string } | null;
  /** The run's cgroup's interface files the object names, parsed (null: the file is absent). */
  files?: Record<string, Record<string, number | bigint | string> | null>;
  task?: { slot: number; pid: number; tgid: number; comm: string; cgroup: number } | null;
  sk?: { slot: number; family: number; type: number; protocol: number } | null;
  /** cgroup/sock programs: the ctx is the socket itself (struct bpf_sock *). */
  ctx_is_sk?: boolean;
  meta?: { session_id: bigint; seq_num: bigint };
  /** An iterator run: the room its seq_file has (SeqSink.room()); its output is made in the isolate. */
  room?: number;
  current_cgroup_id?: bigint;
  fields: Record<string, unknown>;
}

/** What the prelude uses of progs/helpers/seq.ts, evaluated in the isolate with its shims. */
export interface SeqSinkLike {
  room(): number;
  write(bytes: Uint8Array): boolean;
  contents(): Uint8Array;
  readonly overflowed: boolean;
}
export interface SeqModule {
  BufferSeqSink: new (capacity: number) => SeqSinkLike;
  bpf_seq_printf(seq: SeqSinkLike, fmt: string, ...args: (number | bigint | string)[]): number;
  bpf_seq_write(seq: SeqSinkLike, data: ArrayBufferView): number;
  TextEncoder: new () => { encode(s: string): Uint8Array };
}

/** What the prelude uses of ValueSchema. */
export interface SchemaLike {
  readonly size: number;
  view(bytes: Uint8Array): unknown;
  fromJson(value: unknown, into?: Uint8Array): Uint8Array;
}

export function isolatePrelude(
  host: PreludeHost,
  init: PreludeInit,
  schemaModule: { ValueSchema: { define(desc: unknown): SchemaLike } },
  seqModule: SeqModule,
  scratch: SharedArrayBuffer,
): PreludeApi {
  'use strict';
  const { EINVAL, ENOENT } = init.errno;
  const freeze = Object.freeze;
  const LOC_SPLIT = 2 ** 32;

  // --- handles -------------------------------------------------------------------------------------
  // A handle (a cgroup, a task, a socket) is an empty frozen object whose meaning is kept out of the
  // program's reach: here, in a registry keyed by the object's identity, and on the host, as a slot
  // of the run it was made for. Nothing a program can reach makes one: a handle's prototype holds
  // only its tag (its constructor is Object), a copy or a look-alike is not in the registry, and a
  // handle kept in a global from an earlier run names a slot of that run, which the host no longer
  // resolves (the kernel's verifier keeps such pointers from outliving the run; here the runtime does).
  type HandleKind = 'cgroup' | 'task' | 'sk';
  interface HandleRec {
    kind: HandleKind;
    gen: number;
    slot: number;
    id: number;
    info: [number, string] | null | undefined;
  }
  const handles = new WeakMap<object, HandleRec>();
  const protos: Record<HandleKind, object> = {
    cgroup: freeze({ [Symbol.toStringTag]: 'Cgroup' }),
    task: freeze({ [Symbol.toStringTag]: 'Task' }),
    sk: freeze({ [Symbol.toStringTag]: 'Sock' }),
  };
  let curGen = -1;
  const mint = (kind: HandleKind, slot: number, id: number, fields: Record<string, unknown>, info?: [number, string]): object => {
    const h = Object.create(protos[kind]) as Record<string, unknown>;
    for (const k of Object.keys(fields)) h[k] = fields[k];
    freeze(h);
    handles.set(h, { kind, gen: curGen, slot, id, info });
    return h;
  };
  /** The handle's record when x is a live handle of this kind in the current run. */
  const handleOf = (kind: HandleKind, x: unknown): HandleRec | undefined => {
    if (typeof x !== 'object' || x === null) return undefined;
    const r = handles.get(x);
    return r !== undefined && r.kind === kind && r.gen === curGen && curGen >= 0 ? r : undefined;
  };
  // The seq_file of the current iterator run: a token made for the run (one kept from an earlier run
  // writes nowhere) and the run's own buffer, sized to the room the host's seq_file had at its start.
  let curSeq: object | null = null;
  let curSink: SeqSinkLike | null = null;
  const cgroupInfo = (r: HandleRec): [number, string] | null => {
    if (r.info === undefined) r.info = host.cgroup_info(r.slot);
    return r.info;
  };

  // --- maps ------------------------------------------------------------------------------------------
  interface MapRt {
    idx: number;
    type: number;
    key: SchemaLike | undefined;
    value: SchemaLike;
    buffers: SharedArrayBuffer[];
  }
  const maps: MapRt[] = init.maps.map((m, idx) => ({
    idx,
    type: m.type,
    key: m.key === undefined ? undefined : schemaModule.ValueSchema.define(m.key),
    value: schemaModule.ValueSchema.define(m.value),
    buffers: [],
  }));
  const mapTokens = new WeakMap<object, MapRt>();
  let declared = 0;

  const mapOf = (token: unknown): MapRt | undefined =>
    typeof token === 'object' && token !== null ? mapTokens.get(token) : undefined;

  /** The live value at a location the host returned: a view over the shared slab. */
  const valueAt = (m: MapRt, loc: number): unknown => {
    const b = Math.floor(loc / LOC_SPLIT);
    let buf = m.buffers[b];
    if (buf === undefined) buf = m.buffers[b] = host.slab(m.idx, b);
    return m.value.view(new Uint8Array(buf, loc % LOC_SPLIT, m.value.size));
  };

  /** A key (and value) written into the scratch buffer for the host to read. */
  const putScratch = (schema: SchemaLike, v: unknown, at: number): void => {
    const bytes = new Uint8Array(scratch, at, schema.size);
    bytes.fill(0);
    if (v instanceof Uint8Array && v.length === schema.size) bytes.set(v);
    else schema.fromJson(v, bytes);
  };
  const valueAtScratch = (m: MapRt): number => Math.ceil((m.key?.size ?? 0) / 8) * 8;

  // --- the current run --------------------------------------------------------------------------------
  let curTask: object | null = null;
  /** The run's interface files, and the slot of the cgroup they are of. */
  let curFiles: NonNullable<RunRecord['files']> | null = null;
  let curFilesSlot = -1;
  let curCgroupId = 0n;

  const storageGet = (kind: HandleKind, type: number, map: unknown, owner: unknown, value: unknown, flags: unknown): unknown => {
    const m = mapOf(map);
    const h = handleOf(kind, owner);
    if (m === undefined || m.type !== type || h === undefined || typeof flags !== 'number') return null;
    const r = host.storage_get(m.idx, kind, h.slot, flags);
    if (r === -1) return null;
    const created = r < -1;
    const view = valueAt(m, created ? -r - 2 : r);
    if (created && value !== null && value !== undefined) {
      const b = Math.floor((-r - 2) / LOC_SPLIT);
      m.value.fromJson(value, new Uint8Array(m.buffers[b]!, (-r - 2) % LOC_SPLIT, m.value.size));
    }
    return view;
  };
  const storageDelete = (kind: HandleKind, type: number, map: unknown, owner: unknown): number => {
    const m = mapOf(map);
    const h = handleOf(kind, owner);
    if (m === undefined || m.type !== type || h === undefined) return -EINVAL;
    return host.storage_delete(m.idx, kind, h.slot);
  };
  const LS = init.localStorageTypes;

  const printable = (a: unknown): a is number | bigint | string =>
    typeof a === 'number' || typeof a === 'bigint' || typeof a === 'string';

  const utf8 = new seqModule.TextEncoder();
  const WARM_CALLS = 300;
  const helpers: Record<string, (...a: any[]) => unknown> = {
    bpf_seq_printf(seq: unknown, fmt: unknown, ...args: unknown[]) {
      if (seq !== curSeq || curSink === null || typeof fmt !== 'string' || !args.every(printable)) return -EINVAL;
      return seqModule.bpf_seq_printf(curSink, fmt, ...(args as (number | bigint | string)[]));
    },
    bpf_seq_write(seq: unknown, data: unknown) {
      if (seq !== curSeq || curSink === null) return -EINVAL;
      if (typeof data !== 'string' && !ArrayBuffer.isView(data)) return -EINVAL;
      // A string whose length alone exceeds the room cannot fit (its UTF-8 is at least as long):
      // it overflows the buffer without being encoded, so 10 MB costs nothing.
      if (typeof data === 'string' && data.length >= curSink.room()) return seqModule.bpf_seq_write(curSink, new Uint8Array(curSink.room()));
      const bytes = typeof data === 'string' ? utf8.encode(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      return seqModule.bpf_seq_write(curSink, bytes);
    },
    bpf_cgrp_storage_get: (map, cg, value, flags) => storageGet('cgroup', LS.cgroup!, map, cg, value, flags),
    bpf_cgrp_storage_delete: (map, cg) => storageDelete('cgroup', LS.cgroup!, map, cg),
    bpf_task_storage_get: (map, t, value, flags) => storageGet('task', LS.task!, map, t, value, flags),
    bpf_task_storage_delete: (map, t) => storageDelete('task', LS.task!, map, t),
    bpf_sk_storage_get: (map, sk, value, flags) => storageGet('sk', LS.sk!, map, sk, value, flags),
    bpf_sk_storage_delete: (map, sk) => storageDelete('sk', LS.sk!, map, sk),
    bpf_map_lookup_elem(map: unknown, key: unknown) {
      const m = mapOf(map);
      if (m === undefined || m.key === undefined) return null;
      putScratch(m.key, key, 0);
      const r = host.map_lookup(m.idx);
      return r < 0 ? null : valueAt(m, r);
    },
    bpf_map_update_elem(map: unknown, key: unknown, value: unknown, flags: unknown) {
      const m = mapOf(map);
      if (m === undefined || m.key === undefined || typeof flags !== 'number') return -EINVAL;
      putScratch(m.key, key, 0);
      putScratch(m.value, value, valueAtScratch(m));
      return host.map_update(m.idx, flags);
    },
    bpf_map_delete_elem(map: unknown, key: unknown) {
      const m = mapOf(map);
      if (m === undefined || m.key === undefined) return -EINVAL;
      putScratch(m.key, key, 0);
      return host.map_delete(m.idx);
    },
    bpf_ktime_get_ns: () => host.ktime(),
    bpf_get_current_task: () => curTask,
    bpf_get_current_cgroup_id: () => curCgroupId,
    vbpffs_cgroup_id(cg: unknown) {
      const h = handleOf('cgroup', cg);
      return h === undefined ? 0n : BigInt(h.id);
    },
    vbpffs_cgroup_level(cg: unknown) {
      const h = handleOf('cgroup', cg);
      return h === undefined ? -EINVAL : (cgroupInfo(h)?.[0] ?? -ENOENT);
    },
    vbpffs_cgroup_name(cg: unknown) {
      const h = handleOf('cgroup', cg);
      return h === undefined ? '' : (cgroupInfo(h)?.[1] ?? '');
    },
    vbpffs_cgroup_ancestor_id(cg: unknown, level: unknown) {
      const h = handleOf('cgroup', cg);
      if (h === undefined || typeof level !== 'number') return 0n;
      return host.cgroup_ancestor(h.slot, level);
    },
    vbpffs_cgroup_read(cg: unknown, file: unknown) {
      const h = handleOf('cgroup', cg);
      if (h === undefined || h.slot !== curFilesSlot || typeof file !== 'string' || curFiles === null) return null;
      const rec = Object.prototype.hasOwnProperty.call(curFiles, file) ? curFiles[file] : null;
      return rec === null || rec === undefined ? null : freeze(rec);
    },
  };

  // --- the module object ------------------------------------------------------------------------------
  const programs: { name: string; fn: ((ctx: unknown) => unknown) | undefined }[] = init.programs.map((p) => ({ name: p.name, fn: undefined }));
  const programTokens = new WeakMap<object, (ctx: unknown) => unknown>();
  const bpf: Record<string, unknown> = { ...init.constants };
  for (const name of init.helpers) bpf[name] = freeze(helpers[name]);
  bpf.map = (def: unknown): object => {
    const m = maps[declared++];
    if (m === undefined || typeof def !== 'object' || def === null) throw new TypeError('map() outside the declarations the loader parsed');
    const token = freeze({});
    mapTokens.set(token, m);
    return token;
  };
  bpf.SEC = (section: unknown, fn: unknown): object => {
    if (typeof section !== 'string' || typeof fn !== 'function') throw new TypeError('SEC(section, fn)');
    const token = freeze({});
    programTokens.set(token, fn as (ctx: unknown) => unknown);
    return token;
  };
  freeze(bpf.map);
  freeze(bpf.SEC);
  freeze(bpf);

  // --- lockdown: freeze what helpers and views rely on before any program code runs -------------------
  // No program needs to compile WebAssembly (code outside the isolate's heap accounting) or to wait
  // on shared memory: both go before the program's module is evaluated. (V8 also gives isolates a
  // non-configurable `gc` when the host runs --expose-gc, as `npm run bench` does; the module's
  // wrapper shadows it, and at worst it collects the isolate's own heap.)
  delete (globalThis as { WebAssembly?: unknown }).WebAssembly;
  delete (globalThis as { Atomics?: unknown }).Atomics;
  // Code from strings: eval goes, and every function's constructor (Function, and the generator,
  // async and async generator function constructors, each reachable as `fn.constructor` from a
  // function of its kind) becomes one that refuses. An arrow function cannot be called with `new`
  // and has no prototype to climb. Done before the freezing below, which then keeps it so.
  const refuse = (): never => {
    throw new EvalError('code generation from strings is disabled for programs');
  };
  freeze(refuse);
  delete (globalThis as { eval?: unknown }).eval;
  const functionPrototypes = [
    Function.prototype,
    Object.getPrototypeOf(function* () {}),
    Object.getPrototypeOf(async function () {}),
    Object.getPrototypeOf(async function* () {}),
  ];
  for (const proto of functionPrototypes) {
    Object.defineProperty(proto, 'constructor', { value: refuse, writable: false, enumerable: false, configurable: false });
  }
  Object.defineProperty(globalThis, 'Function', { value: refuse, writable: false, enumerable: false, configurable: false });
  const intrinsics: unknown[] = [
    Object, Array, String, Number, Boolean, BigInt, Symbol, Math, JSON, Date, RegExp, Map, Set, WeakMap, WeakSet,
    Error, TypeError, RangeError, SyntaxError, ReferenceError, EvalError, URIError, Promise, ArrayBuffer, SharedArrayBuffer,
    DataView, Uint8Array, Uint8ClampedArray, Int8Array, Uint16Array, Int16Array, Uint32Array, Int32Array, Float32Array,
    Float64Array, BigInt64Array, BigUint64Array, Reflect, Object.getPrototypeOf(Uint8Array),
    Object.getPrototypeOf([][Symbol.iterator]()), Object.getPrototypeOf(Object.getPrototypeOf([][Symbol.iterator]())),
    Object.getPrototypeOf(new Map()[Symbol.iterator]()), Object.getPrototypeOf(new Set()[Symbol.iterator]()),
    Object.getPrototypeOf(''[Symbol.iterator]()), ...functionPrototypes,
  ];
  for (const x of intrinsics) {
    freeze(x);
    const proto = (x as { prototype?: unknown }).prototype;
    if (typeof proto === 'object' && proto !== null) freeze(proto);
  }
  // The global bindings too: `Uint8Array = ...` in a program must not change what helpers call.
  for (const name of Object.getOwnPropertyNames(globalThis)) {
    const d = Object.getOwnPropertyDescriptor(globalThis, name);
    if (d !== undefined && d.configurable === true && 'value' in d) Object.defineProperty(globalThis, name, { writable: false, configurable: false });
  }

  /**
   * What a program threw, as one line for the host: its message and, from the isolate's own stack
   * (the host formats stacks its own way), the first position in the object file as ` @line:col`.
   */
  const describe = (e: unknown): string => {
    let msg: string;
    let stack = '';
    try {
      msg = e instanceof Error ? `${e.name}: ${e.message}` : `uncaught ${typeof e} ${String(e)}`;
      if (e instanceof Error && typeof e.stack === 'string') stack = e.stack;
    } catch {
      msg = 'an exception that cannot be described';
    }
    const at = stack.split('\n').map((l) => l.lastIndexOf(init.filename + ':')).findIndex((i) => i >= 0);
    if (at < 0) return msg;
    const line = stack.split('\n')[at]!;
    const pos = /:(\d+):(\d+)\)?$/.exec(line);
    return pos === null ? msg : `${msg} @${pos[1]}:${pos[2]}`;
  };

  const api: PreludeApi = {
    load(wrapper) {
      const exports: Record<string, unknown> = {};
      const module = { exports };
      try {
        wrapper(exports, (name: string) => {
          if (name !== 'vbpffs/bpf') throw new TypeError(`cannot require '${name}'`);
          return bpf;
        }, module, undefined);
      } catch (e) {
        throw new Error(describe(e));
      }
      const out = module.exports as Record<string, unknown>;
      init.maps.forEach((d, i) => {
        const token = out[d.name];
        if (typeof token !== 'object' || token === null || mapTokens.get(token) !== maps[i]) {
          throw new TypeError(`map '${d.name}' is not the export the loader parsed`);
        }
      });
      init.programs.forEach((d, i) => {
        const token = out[d.name];
        const fn = typeof token === 'object' && token !== null ? programTokens.get(token) : undefined;
        if (fn === undefined) throw new TypeError(`program '${d.name}' is not the export the loader parsed`);
        programs[i]!.fn = fn;
      });
    },
    warm() {
      // V8 compiles a function at its first call and runs it in its interpreter until it is hot,
      // several times slower: a few hundred calls here, before any run, keep a 300-line view's
      // first run from spending its deadline there (it took 50 ms without this).
      for (let i = 0; i < WARM_CALLS; i++) {
        const warm = new seqModule.BufferSeqSink(256);
        seqModule.bpf_seq_printf(warm, '%d %5u %-4s %llx %lld %c %%\n', i, 2, 'x', 3n, -4n, 65);
        seqModule.bpf_seq_printf(warm, 'line %03d of %s %llu\n', i, 'name', BigInt(i));
        seqModule.bpf_seq_write(warm, utf8.encode('warm'));
      }
    },
    run(prog, rec) {
      const p = programs[prog];
      if (p?.fn === undefined) throw new TypeError(`no program ${prog}`);
      curGen = rec.gen;
      curSeq = freeze({});
      curSink = null;
      if (rec.room !== undefined) {
        curSink = new seqModule.BufferSeqSink(Math.max(1, rec.room));
        // No room at all: the seq_file is full, and even an empty write overflows it (count + 0 < size fails).
        if (rec.room === 0) curSink.write(new Uint8Array(1));
      }
      const ctx: Record<string, unknown> = {};
      if (rec.meta !== undefined) ctx.meta = freeze({ seq: curSeq, session_id: rec.meta.session_id, seq_num: rec.meta.seq_num });
      const c = rec.cgroup;
      if (c !== undefined) ctx.cgroup = c === null ? null : mint('cgroup', c.slot, c.id, {}, [c.level, c.name]);
      curFiles = c !== undefined && c !== null && rec.files !== undefined ? rec.files : null;
      curFilesSlot = c !== undefined && c !== null ? c.slot : -1;
      const t = rec.task;
      curTask = t === undefined || t === null ? null : mint('task', t.slot, t.pid, { pid: t.pid, tgid: t.tgid, comm: t.comm });
      if (t !== undefined) ctx.task = curTask;
      const s = rec.sk;
      if (s !== undefined) ctx.sk = s === null ? null : mint('sk', s.slot, 0, { family: s.family, type: s.type, protocol: s.protocol });
      curCgroupId = rec.current_cgroup_id ?? (t === undefined || t === null ? 0n : BigInt(t.cgroup));
      for (const k of Object.keys(rec.fields)) ctx[k] = rec.fields[k];
      let r: unknown;
      try {
        r = p.fn(rec.ctx_is_sk === true && ctx.sk !== null && ctx.sk !== undefined ? ctx.sk : freeze(ctx));
      } catch (e) {
        throw new Error(describe(e));
      } finally {
        curTask = null;
        curGen = -1;
        curSeq = null;
        curFiles = null;
      }
      const sink = curSink;
      curSink = null;
      const ret = typeof r === 'number' || typeof r === 'bigint' ? r : typeof r;
      return sink === null ? { ret } : { ret, out: sink.contents(), overflowed: sink.overflowed };
    },
  };
  return freeze(api);
}
/* c8 ignore stop */
