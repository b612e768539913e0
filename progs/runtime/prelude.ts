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
 * ctx objects, and handles (cgroups, tasks, sockets, the seq_file) branded with private fields,
 * so a program cannot forge one from a plain object and helpers tell them apart by brand, not by
 * shape. Before the program's module is evaluated the prelude freezes the intrinsics it relies on
 * (lockdown), so a program cannot replace a method the helpers call.
 *
 * Coverage cannot see this code (it runs in the isolate); the runtime tests exercise it through
 * programs.
 */
/* c8 ignore start */

/** The host side, one isolated-vm Callback each; arguments and results are primitives. */
export interface PreludeHost {
  storage_get(map: number, owner: string, id: number | bigint, flags: number): number;
  storage_delete(map: number, owner: string, id: number | bigint): number;
  map_lookup(map: number): number;
  map_update(map: number, flags: number): number;
  map_delete(map: number): number;
  slab(map: number, buffer: number): SharedArrayBuffer;
  seq_printf(fmt: string, ...args: (number | bigint | string)[]): number;
  seq_write(data: string, bytes: boolean): number;
  /** 0 when a write of len bytes may fit; else what that write returns (the seq_file overflowed). */
  seq_reserve(len: number): number;
  ktime(): bigint;
  cgroup_info(id: number): [number, string] | null;
  cgroup_ancestor(id: number, level: number): bigint;
  cgroup_read(id: number, file: string): Record<string, number | bigint | string> | null;
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
  /** Runs program `prog` with a ctx built from `rec`; the program's return value. */
  run(prog: number, rec: RunRecord): unknown;
}

/** A run's ctx as the host sends it: owners by id, the rest as values. */
export interface RunRecord {
  cgroup?: number | null;
  task?: { pid: number; tgid: number; comm: string; cgroup: number } | null;
  sk?: { id: number; family: number; type: number; protocol: number } | null;
  /** cgroup/sock programs: the ctx is the socket itself (struct bpf_sock *). */
  ctx_is_sk?: boolean;
  meta?: { session_id: bigint; seq_num: bigint };
  current_cgroup_id?: bigint;
  fields: Record<string, unknown>;
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
  scratch: SharedArrayBuffer,
): PreludeApi {
  'use strict';
  const { EINVAL, ENOENT } = init.errno;
  const freeze = Object.freeze;
  const LOC_SPLIT = 2 ** 32;
  /** Writes this long ask the host for room first: one more crossing, worth it only for large ones. */
  const LONG_WRITE = 4096;

  // --- handles: only the prelude makes them; helpers check the brand ------------------------------
  class Cgroup {
    readonly #id: number;
    #info: [number, string] | null | undefined;
    constructor(id: number) {
      this.#id = id;
      freeze(this);
    }
    static idOf(x: unknown): number | undefined {
      return typeof x === 'object' && x !== null && #id in x ? (x as Cgroup).#id : undefined;
    }
    static info(x: Cgroup): [number, string] | null {
      if (x.#info === undefined) x.#info = host.cgroup_info(x.#id);
      return x.#info;
    }
  }
  class Task {
    readonly #pid: number;
    readonly #cgroup: number;
    constructor(readonly pid: number, readonly tgid: number, readonly comm: string, cgroup: number) {
      this.#pid = pid;
      this.#cgroup = cgroup;
      freeze(this);
    }
    static pidOf(x: unknown): number | undefined {
      return typeof x === 'object' && x !== null && #pid in x ? (x as Task).#pid : undefined;
    }
    static cgroupOf(x: Task): number {
      return x.#cgroup;
    }
  }
  class Sock {
    readonly #id: number;
    constructor(id: number, readonly family: number, readonly type: number, readonly protocol: number) {
      this.#id = id;
      freeze(this);
    }
    static idOf(x: unknown): number | undefined {
      return typeof x === 'object' && x !== null && #id in x ? (x as Sock).#id : undefined;
    }
  }
  const SEQ = freeze({});
  freeze(Cgroup.prototype);
  freeze(Task.prototype);
  freeze(Sock.prototype);

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
  let curTask: Task | null = null;
  let curCgroupId = 0n;

  const ownerKey = (kind: string, x: unknown): number | bigint | undefined => {
    switch (kind) {
      case 'cgroup':
        return Cgroup.idOf(x);
      case 'task':
        return Task.pidOf(x);
      default:
        return Sock.idOf(x);
    }
  };

  const storageGet = (kind: string, type: number, map: unknown, owner: unknown, value: unknown, flags: unknown): unknown => {
    const m = mapOf(map);
    const id = ownerKey(kind, owner);
    if (m === undefined || m.type !== type || id === undefined || typeof flags !== 'number') return null;
    const r = host.storage_get(m.idx, kind, id, flags);
    if (r === -1) return null;
    const created = r < -1;
    const view = valueAt(m, created ? -r - 2 : r);
    if (created && value !== null && value !== undefined) {
      const b = Math.floor((-r - 2) / LOC_SPLIT);
      m.value.fromJson(value, new Uint8Array(m.buffers[b]!, (-r - 2) % LOC_SPLIT, m.value.size));
    }
    return view;
  };
  const storageDelete = (kind: string, type: number, map: unknown, owner: unknown): number => {
    const m = mapOf(map);
    const id = ownerKey(kind, owner);
    if (m === undefined || m.type !== type || id === undefined) return -EINVAL;
    return host.storage_delete(m.idx, kind, id);
  };
  const LS = init.localStorageTypes;

  const printable = (a: unknown): a is number | bigint | string =>
    typeof a === 'number' || typeof a === 'bigint' || typeof a === 'string';

  const helpers: Record<string, (...a: any[]) => unknown> = {
    bpf_seq_printf(seq: unknown, fmt: unknown, ...args: unknown[]) {
      if (seq !== SEQ || typeof fmt !== 'string' || !args.every(printable)) return -EINVAL;
      return host.seq_printf(fmt, ...(args as (number | bigint | string)[]));
    },
    bpf_seq_write(seq: unknown, data: unknown) {
      if (seq !== SEQ) return -EINVAL;
      if (typeof data !== 'string' && !ArrayBuffer.isView(data)) return -EINVAL;
      // A long write is checked against the room left before its bytes are converted and copied:
      // 10 MB that cannot fit would otherwise spend the run's whole deadline crossing over. A
      // string's UTF-8 is at least as long as the string.
      const len = typeof data === 'string' ? data.length : data.byteLength;
      if (len >= LONG_WRITE) {
        const r = host.seq_reserve(len);
        if (r !== 0) return r;
      }
      if (typeof data === 'string') return host.seq_write(data, false);
      const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      let s = '';
      for (let i = 0; i < bytes.length; i += 8192) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 8192) as unknown as number[]);
      return host.seq_write(s, true);
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
      const id = Cgroup.idOf(cg);
      return id === undefined ? 0n : BigInt(id);
    },
    vbpffs_cgroup_level(cg: unknown) {
      return Cgroup.idOf(cg) === undefined ? -EINVAL : (Cgroup.info(cg as Cgroup)?.[0] ?? -ENOENT);
    },
    vbpffs_cgroup_name(cg: unknown) {
      return Cgroup.idOf(cg) === undefined ? '' : (Cgroup.info(cg as Cgroup)?.[1] ?? '');
    },
    vbpffs_cgroup_ancestor_id(cg: unknown, level: unknown) {
      const id = Cgroup.idOf(cg);
      if (id === undefined || typeof level !== 'number') return 0n;
      return host.cgroup_ancestor(id, level);
    },
    vbpffs_cgroup_read(cg: unknown, file: unknown) {
      const id = Cgroup.idOf(cg);
      if (id === undefined || typeof file !== 'string') return null;
      const rec = host.cgroup_read(id, file);
      return rec === null ? null : freeze(rec);
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
  const intrinsics: unknown[] = [
    Object, Array, Function, String, Number, Boolean, BigInt, Symbol, Math, JSON, Date, RegExp, Map, Set, WeakMap, WeakSet,
    Error, TypeError, RangeError, SyntaxError, ReferenceError, EvalError, URIError, Promise, ArrayBuffer, SharedArrayBuffer,
    DataView, Uint8Array, Uint8ClampedArray, Int8Array, Uint16Array, Int16Array, Uint32Array, Int32Array, Float32Array,
    Float64Array, BigInt64Array, BigUint64Array, Reflect, Object.getPrototypeOf(Uint8Array),
    Object.getPrototypeOf([][Symbol.iterator]()), Object.getPrototypeOf(Object.getPrototypeOf([][Symbol.iterator]())),
    Object.getPrototypeOf(new Map()[Symbol.iterator]()), Object.getPrototypeOf(new Set()[Symbol.iterator]()),
    Object.getPrototypeOf(''[Symbol.iterator]()), Object.getPrototypeOf(function* () {}),
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
    run(prog, rec) {
      const p = programs[prog];
      if (p?.fn === undefined) throw new TypeError(`no program ${prog}`);
      const ctx: Record<string, unknown> = {};
      if (rec.meta !== undefined) ctx.meta = freeze({ seq: SEQ, session_id: rec.meta.session_id, seq_num: rec.meta.seq_num });
      if (rec.cgroup !== undefined) ctx.cgroup = rec.cgroup === null ? null : new Cgroup(rec.cgroup);
      const t = rec.task;
      curTask = t === undefined || t === null ? null : new Task(t.pid, t.tgid, t.comm, t.cgroup);
      if (t !== undefined) ctx.task = curTask;
      if (rec.sk !== undefined) ctx.sk = rec.sk === null ? null : new Sock(rec.sk.id, rec.sk.family, rec.sk.type, rec.sk.protocol);
      curCgroupId = rec.current_cgroup_id ?? (curTask === null ? 0n : BigInt(Task.cgroupOf(curTask)));
      for (const k of Object.keys(rec.fields)) ctx[k] = rec.fields[k];
      let r: unknown;
      try {
        r = p.fn(rec.ctx_is_sk === true && ctx.sk instanceof Sock ? ctx.sk : freeze(ctx));
      } catch (e) {
        throw new Error(describe(e));
      } finally {
        curTask = null;
      }
      return typeof r === 'number' || typeof r === 'bigint' ? r : typeof r;
    },
  };
  return freeze(api);
}
/* c8 ignore stop */
