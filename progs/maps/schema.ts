/**
 * ValueSchema: the role BTF plays for a map's key or value. A schema is a C type (fixed-size integers,
 * fixed arrays, nested structs, one bpf_spin_lock) laid out as clang lays out the struct on x86-64:
 * each member at the next multiple of its alignment, the struct padded to its largest alignment, so
 * `size` is sizeof().
 *
 *   ValueSchema.define({ wait_ns: 'u64', count: 'u32', hist: ['u64', 8], nested: { a: 'u16', b: 's8' },
 *                        lock: 'bpf_spin_lock' })
 *   ValueSchema.define('u32')
 *
 * Programs get typed views that read and write the value bytes in place (little-endian, like the BPF
 * targets vbpffs models); userspace gets JSON (u64/s64 as a number when it is a safe integer, else a
 * decimal string; both are accepted) or bytes. Accessors are compiled once per schema: a view class
 * per struct type whose getters close over constant offsets, so a field access is one DataView call.
 * Defining a schema costs O(members), never O(array elements): an integer array views as a typed
 * array, an array of structs as an ElementsView (get(i)/set(i, v)); see arrayCodec.
 */
import { bpfError } from '../../uapi';

export type IntName = 'u8' | 'u16' | 'u32' | 'u64' | 's8' | 's16' | 's32' | 's64';

/** How a user describes a type: an integer name, the lock, [element, length], or a struct literal. */
export type TypeDesc = IntName | 'bpf_spin_lock' | readonly [TypeDesc, number] | { readonly [member: string]: TypeDesc };

export type JsonValue = number | string | boolean | null | JsonValue[] | { [k: string]: JsonValue };

/** The resolved type tree, for code that inspects a schema (map_check_btf, dumpers). */
export type SchemaType = IntType | LockType | ArrayType | StructType;

export interface IntType {
  readonly kind: 'int';
  readonly name: IntName;
  readonly size: 1 | 2 | 4 | 8;
  readonly align: number;
  readonly signed: boolean;
}

/** struct bpf_spin_lock { __u32 val; }: 4 bytes, 4-aligned. */
export interface LockType {
  readonly kind: 'lock';
  readonly size: 4;
  readonly align: 4;
}

export interface ArrayType {
  readonly kind: 'array';
  readonly elem: SchemaType;
  readonly length: number;
  readonly size: number;
  readonly align: number;
}

export interface StructMember {
  readonly name: string;
  readonly offset: number;
  readonly type: SchemaType;
}

export interface StructType {
  readonly kind: 'struct';
  readonly members: readonly StructMember[];
  readonly size: number;
  readonly align: number;
}

/** What a view over a value looks like to a program: fields by name, nested views, array views. */
export type ValueView = Record<string, unknown>;

/**
 * An integer array's view: indexable, with a length, iterable. It is a live typed array of the
 * element type (Uint8Array ... BigInt64Array) over the value's bytes; at an unaligned offset, an
 * object that indexes the same way. Arrays of structs are an ElementsView (get(i)/set(i, v)).
 */
export interface ArrayView<T = unknown> extends Iterable<T> {
  readonly length: number;
  [index: number]: T;
}

const INT_SIZE: Readonly<Record<IntName, 1 | 2 | 4 | 8>> = {
  u8: 1, s8: 1, u16: 2, s16: 2, u32: 4, s32: 4, u64: 8, s64: 8,
};

const LOCK: LockType = { kind: 'lock', size: 4, align: 4 };

/** BTF allows more, but a value is at most KMALLOC_MAX_SIZE in every map that stores one. */
const MAX_SCHEMA_SIZE = 1 << 22;

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

const roundUp = (n: number, align: number): number => Math.ceil(n / align) * align;

// ---------------------------------------------------------------------------------------------------
// Resolving a description into a laid-out type.

function resolve(desc: unknown, path: string, depth: number): SchemaType {
  // MAX_RESOLVE_DEPTH is 32 in btf.c: deeper nesting is refused there too.
  if (depth > 32) throw bpfError('E2BIG', `${path}: types nest deeper than 32 levels`);
  if (typeof desc === 'string') {
    if (desc === 'bpf_spin_lock') return LOCK;
    const size = INT_SIZE[desc as IntName];
    if (size === undefined || !Object.hasOwn(INT_SIZE, desc)) throw bpfError('EINVAL', `${path}: unknown type '${desc}'`);
    return { kind: 'int', name: desc as IntName, size, align: size, signed: desc[0] === 's' };
  }
  if (Array.isArray(desc)) {
    const [elemDesc, length] = desc as unknown[];
    if (desc.length !== 2 || !Number.isSafeInteger(length) || (length as number) < 1) {
      throw bpfError('EINVAL', `${path}: an array is [type, length] with length >= 1`);
    }
    const elem = resolve(elemDesc, `${path}[]`, depth + 1);
    const size = elem.size * (length as number);
    if (size > MAX_SCHEMA_SIZE) throw bpfError('E2BIG', `${path}: array of ${size} bytes`);
    return { kind: 'array', elem, length: length as number, size, align: elem.align };
  }
  if (desc !== null && typeof desc === 'object') return resolveStruct(desc as Record<string, unknown>, path, depth);
  throw bpfError('EINVAL', `${path}: not a type description`);
}

function resolveStruct(desc: Record<string, unknown>, path: string, depth: number): StructType {
  const names = Object.keys(desc);
  if (names.length === 0) throw bpfError('EINVAL', `${path}: a struct needs at least one member`);
  const members: StructMember[] = [];
  let offset = 0;
  let align = 1;
  for (const name of names) {
    // Views expose members as properties: a C identifier that does not shadow Object.prototype.
    if (!IDENT.test(name) || name in Object.prototype) throw bpfError('EINVAL', `${path}: bad member name '${name}'`);
    const type = resolve(desc[name], path === '' ? name : `${path}.${name}`, depth + 1);
    offset = roundUp(offset, type.align);
    members.push({ name, offset, type });
    offset += type.size;
    align = Math.max(align, type.align);
  }
  const size = roundUp(offset, align);
  if (size > MAX_SCHEMA_SIZE) throw bpfError('E2BIG', `${path || 'value'}: struct of ${size} bytes`);
  return { kind: 'struct', members, size, align };
}

/**
 * btf_parse_fields' rules for bpf_spin_lock, as vbpffs applies them: at most one per value (a second
 * one is E2BIG, btf_get_field_type's seen_mask), and an array of locks is EINVAL (btf_repeat_fields
 * refuses to repeat a lock). A lock inside a nested struct is EINVAL here: kernels before 6.10 ignore
 * it (it is plain bytes, and the verifier then refuses bpf_spin_lock on it) while 6.10+ find it, so
 * vbpffs accepts the only placement every kernel treats as a lock: a top-level member.
 */
function findSpinLock(root: SchemaType): number {
  if (root.kind === 'lock') throw bpfError('EINVAL', 'a bare bpf_spin_lock is not a map value (it has no lock member)');
  if (root.kind !== 'struct') {
    if (containsLock(root)) throw bpfError('EINVAL', 'bpf_spin_lock must be a top-level struct member, not an array element');
    return -1;
  }
  let off = -1;
  for (const m of root.members) {
    if (m.type.kind === 'lock') {
      if (off >= 0) throw bpfError('E2BIG', `only one bpf_spin_lock is allowed in a value ('${m.name}' is a second one)`);
      off = m.offset;
    } else if (containsLock(m.type)) {
      throw bpfError('EINVAL', `'${m.name}': bpf_spin_lock must be a top-level struct member`);
    }
  }
  return off;
}

function containsLock(t: SchemaType): boolean {
  if (t.kind === 'lock') return true;
  if (t.kind === 'array') return containsLock(t.elem);
  if (t.kind === 'struct') return t.members.some((m) => containsLock(m.type));
  return false;
}

// ---------------------------------------------------------------------------------------------------
// Compiled codecs: one per type node, built once per schema.

interface Codec {
  /** A program's read: a number, a bigint, or a nested view (structs, arrays, the lock). */
  get(dv: DataView, off: number): unknown;
  /** A program's write: the scalar, or a JSON-like object/array for aggregates. */
  set(dv: DataView, off: number, v: unknown): void;
  toJson(dv: DataView, off: number): JsonValue;
  fromJson(dv: DataView, off: number, v: unknown, path: string): void;
}

const DV = Symbol('dataview');
const OFF = Symbol('offset');

interface ViewState {
  [DV]: DataView;
  [OFF]: number;
}

function intCodec(t: IntType): Codec {
  const { name, size, signed } = t;
  let get: (dv: DataView, off: number) => number | bigint;
  let set: (dv: DataView, off: number, v: unknown) => void;
  switch (name) {
    case 'u8': get = (dv, o) => dv.getUint8(o); set = (dv, o, v) => dv.setUint8(o, Number(v)); break;
    case 's8': get = (dv, o) => dv.getInt8(o); set = (dv, o, v) => dv.setInt8(o, Number(v)); break;
    case 'u16': get = (dv, o) => dv.getUint16(o, true); set = (dv, o, v) => dv.setUint16(o, Number(v), true); break;
    case 's16': get = (dv, o) => dv.getInt16(o, true); set = (dv, o, v) => dv.setInt16(o, Number(v), true); break;
    case 'u32': get = (dv, o) => dv.getUint32(o, true); set = (dv, o, v) => dv.setUint32(o, Number(v), true); break;
    case 's32': get = (dv, o) => dv.getInt32(o, true); set = (dv, o, v) => dv.setInt32(o, Number(v), true); break;
    case 'u64': get = (dv, o) => dv.getBigUint64(o, true); set = (dv, o, v) => dv.setBigUint64(o, toBigInt(v), true); break;
    case 's64': get = (dv, o) => dv.getBigInt64(o, true); set = (dv, o, v) => dv.setBigInt64(o, toBigInt(v), true); break;
  }
  const bits = BigInt(size * 8);
  const min = signed ? -(1n << (bits - 1n)) : 0n;
  const max = signed ? (1n << (bits - 1n)) - 1n : (1n << bits) - 1n;
  return {
    get,
    set,
    toJson(dv, off) {
      const v = get(dv, off);
      if (typeof v === 'number') return v;
      return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
    },
    fromJson(dv, off, v, path) {
      const n = parseInteger(v, path);
      if (n < min || n > max) throw bpfError('EINVAL', `${path}: ${n} does not fit ${name}`);
      if (size === 8) set(dv, off, n);
      else set(dv, off, Number(n));
    },
  };
}

/**
 * A 64-bit write from a program: a bigint as is, a finite number (or a numeric string or boolean)
 * truncated to an integer and wrapped. Anything else (NaN, Infinity, undefined, an object) has no
 * integer value: EINVAL, which fails that program's run with a clear errno instead of a RangeError.
 */
function toBigInt(v: unknown): bigint {
  if (typeof v === 'bigint') return v;
  const n = typeof v === 'number' ? v : typeof v === 'string' || typeof v === 'boolean' ? Number(v) : Number.NaN;
  if (!Number.isFinite(n)) throw bpfError('EINVAL', `a 64-bit field cannot hold ${typeof v === 'string' ? JSON.stringify(v) : String(v as never)}`);
  return BigInt(Math.trunc(n));
}

function parseInteger(v: unknown, path: string): bigint {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v)) throw bpfError('EINVAL', `${path}: ${v} is not an exact integer (give large values as a decimal string)`);
    return BigInt(v);
  }
  if (typeof v === 'string' && /^\s*-?(0x[0-9a-f]+|\d+)\s*$/i.test(v)) {
    const s = v.trim();
    return s.startsWith('-') ? -BigInt(s.slice(1)) : BigInt(s);
  }
  throw bpfError('EINVAL', `${path}: expected an integer, got ${JSON.stringify(v) ?? typeof v}`);
}

/** A program's handle on the value's bpf_spin_lock (the `val` word the lock helpers flip). */
export class SpinLockView {
  readonly [DV]: DataView;
  readonly [OFF]: number;
  constructor(dv: DataView, off: number) {
    this[DV] = dv;
    this[OFF] = off;
  }
  get val(): number {
    return this[DV].getUint32(this[OFF], true);
  }
  set val(v: number) {
    this[DV].setUint32(this[OFF], v, true);
  }
  /** The bytes and offset of the lock word, for the bpf_spin_lock/unlock helpers. */
  get target(): { dv: DataView; offset: number } {
    return { dv: this[DV], offset: this[OFF] };
  }
}

const lockCodec: Codec = {
  get: (dv, off) => new SpinLockView(dv, off),
  // Like copy_map_value, writes never touch the lock word: only the lock helpers do.
  set: () => {},
  // bpftool prints struct bpf_spin_lock as its one member.
  toJson: (dv, off) => ({ val: dv.getUint32(off, true) }),
  fromJson: (_dv, _off, v, path) => {
    if (v !== undefined && v !== null && (typeof v !== 'object' || Array.isArray(v))) {
      throw bpfError('EINVAL', `${path}: a bpf_spin_lock is given as {"val": n} or left out`);
    }
  },
};

function structCodec(t: StructType): Codec {
  const codecs = t.members.map((m) => ({ name: m.name, offset: m.offset, type: m.type, codec: codecOf(m.type) }));
  const View = class {
    readonly [DV]: DataView;
    readonly [OFF]: number;
    constructor(dv: DataView, off: number) {
      this[DV] = dv;
      this[OFF] = off;
    }
  };
  for (const { name, offset, codec } of codecs) {
    Object.defineProperty(View.prototype, name, {
      enumerable: true,
      get(this: ViewState) {
        return codec.get(this[DV], this[OFF] + offset);
      },
      set(this: ViewState, v: unknown) {
        codec.set(this[DV], this[OFF] + offset, v);
      },
    });
  }
  const names = new Set(codecs.map((c) => c.name));
  const fromJson = (dv: DataView, off: number, v: unknown, path: string): void => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw bpfError('EINVAL', `${path || 'value'}: expected an object`);
    for (const k of Object.keys(v)) {
      if (!names.has(k)) throw bpfError('EINVAL', `${path || 'value'}: no member '${k}'`);
    }
    // Members left out are zero, as in a C initializer.
    for (const { name, offset, type, codec } of codecs) {
      const mv = (v as Record<string, unknown>)[name];
      if (mv === undefined) zeroFill(dv, off + offset, type);
      else codec.fromJson(dv, off + offset, mv, path === '' ? name : `${path}.${name}`);
    }
  };
  return {
    get: (dv, off) => new View(dv, off),
    set: (dv, off, v) => fromJson(dv, off, v, ''),
    toJson(dv, off) {
      const out: Record<string, JsonValue> = {};
      for (const { name, offset, codec } of codecs) out[name] = codec.toJson(dv, off + offset);
      return out;
    },
    fromJson,
  };
}

function zeroFill(dv: DataView, off: number, t: SchemaType): void {
  // The lock word is left alone, as every other write leaves it.
  if (t.kind === 'lock') return;
  new Uint8Array(dv.buffer, dv.byteOffset + off, t.size).fill(0);
}

/** The typed array that views an integer element type in place (host byte order: see LITTLE_ENDIAN). */
const TYPED_ARRAY: Readonly<Record<IntName, new (buffer: ArrayBufferLike, byteOffset: number, length: number) => ArrayLike<unknown>>> = {
  u8: Uint8Array, s8: Int8Array, u16: Uint16Array, s16: Int16Array,
  u32: Uint32Array, s32: Int32Array, u64: BigUint64Array, s64: BigInt64Array,
};

/** Typed arrays use the host's byte order; values are little-endian, so only a little-endian host may use them. */
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** A canonical array index ("0", "17"; not "01", "-1", "1.5"), or -1. */
function indexOf(key: string | symbol): number {
  if (typeof key !== 'string') return -1;
  const n = Number(key);
  return Number.isSafeInteger(n) && n >= 0 && String(n) === key ? n : -1;
}

/**
 * An array view for what no typed array can view: arrays of structs, and integer arrays whose bytes
 * are not aligned for their element type. get(i) builds element i's view when asked, set(i, v)
 * writes it; an index outside [0, length) reads undefined and writes nothing, as a typed array does.
 */
export interface ElementsView<T = unknown> extends Iterable<T> {
  readonly length: number;
  get(i: number): T | undefined;
  set(i: number, v: unknown): void;
}

class Elements implements ElementsView {
  readonly #dv: DataView;
  readonly #off: number;
  readonly #codec: Codec;
  readonly #esize: number;
  readonly length: number;
  constructor(dv: DataView, off: number, codec: Codec, esize: number, length: number) {
    this.#dv = dv;
    this.#off = off;
    this.#codec = codec;
    this.#esize = esize;
    this.length = length;
  }
  get(i: number): unknown {
    if (!Number.isInteger(i) || i < 0 || i >= this.length) return undefined;
    return this.#codec.get(this.#dv, this.#off + i * this.#esize);
  }
  set(i: number, v: unknown): void {
    if (!Number.isInteger(i) || i < 0 || i >= this.length) return;
    this.#codec.set(this.#dv, this.#off + i * this.#esize, v);
  }
  *[Symbol.iterator](): Iterator<unknown> {
    for (let i = 0; i < this.length; i++) yield this.get(i);
  }
}

/**
 * `[i]` on an unaligned integer array, so a program indexes it as it indexes the typed array it gets
 * for aligned bytes. A Proxy costs ~170 ns an access against ~10 for get(i), which is why struct
 * arrays do not get one; unaligned integer arrays only occur in a view made at an unaligned offset.
 */
const INDEXED: ProxyHandler<Elements> = {
  get(target, key) {
    const i = indexOf(key);
    if (i >= 0) return target.get(i);
    const v: unknown = Reflect.get(target, key, target);
    return typeof v === 'function' ? v.bind(target) : v;
  },
  set(target, key, v) {
    const i = indexOf(key);
    if (i < 0) return false;
    target.set(i, v);
    return true;
  },
};

/**
 * Array views, made in O(1) whatever the length (a definition used to build a property per element):
 * - an integer array whose bytes are aligned for its element type is a typed array over the value's
 *   bytes (Uint8Array, Int16Array, Uint32Array, BigUint64Array, ...): `[i]`, length, iteration, all
 *   the TypedArray methods. u64/s64 elements are read and written as bigints (a BigUint64Array
 *   throws TypeError when given a number);
 * - the same array at an unaligned address is an ElementsView behind a Proxy: `[i]` still works;
 * - an array of structs is an ElementsView: `get(i)` gives element i's view, `set(i, v)` assigns it
 *   from a JSON-like object. `[i]` is not defined there.
 */
function arrayCodec(t: ArrayType): Codec {
  const { elem, length } = t;
  const esize = elem.size;
  const codec = codecOf(elem);
  let get: (dv: DataView, off: number) => unknown;
  if (elem.kind === 'int') {
    const Typed = TYPED_ARRAY[elem.name];
    get = (dv, off) => {
      const at = dv.byteOffset + off;
      if (LITTLE_ENDIAN && at % esize === 0) return new Typed(dv.buffer, at, length);
      return new Proxy(new Elements(dv, off, codec, esize, length), INDEXED);
    };
  } else {
    get = (dv, off) => new Elements(dv, off, codec, esize, length);
  }
  const fromJson = (dv: DataView, off: number, v: unknown, path: string): void => {
    if (!Array.isArray(v) && !ArrayBuffer.isView(v)) throw bpfError('EINVAL', `${path}: expected an array`);
    const items = v as ArrayLike<unknown>;
    if (items.length > length) throw bpfError('EINVAL', `${path}: ${items.length} elements for an array of ${length}`);
    for (let i = 0; i < length; i++) {
      if (i < items.length) codec.fromJson(dv, off + i * esize, items[i], `${path}[${i}]`);
      else zeroFill(dv, off + i * esize, elem);
    }
  };
  return {
    get,
    set: (dv, off, v) => fromJson(dv, off, v, 'array'),
    toJson(dv, off) {
      const out: JsonValue[] = new Array(length);
      for (let i = 0; i < length; i++) out[i] = codec.toJson(dv, off + i * esize);
      return out;
    },
    fromJson,
  };
}

const codecs = new WeakMap<SchemaType, Codec>();

function codecOf(t: SchemaType): Codec {
  let c = codecs.get(t);
  if (c !== undefined) return c;
  if (t.kind === 'int') c = intCodec(t);
  else if (t.kind === 'lock') c = lockCodec;
  else if (t.kind === 'array') c = arrayCodec(t);
  else c = structCodec(t);
  codecs.set(t, c);
  return c;
}

/** A view over a scalar value: `view.value`. */
export interface ScalarView {
  value: number | bigint;
}

// ---------------------------------------------------------------------------------------------------

export class ValueSchema {
  readonly type: SchemaType;
  /** sizeof() the type. */
  readonly size: number;
  /** alignof() the type. */
  readonly align: number;
  /** Offset of the top-level bpf_spin_lock (btf_record's spin_lock_off), -1 when there is none. */
  readonly spinLockOffset: number;
  readonly #codec: Codec;
  readonly #makeView: (dv: DataView, off: number) => unknown;

  private constructor(type: SchemaType) {
    this.type = type;
    this.size = type.size;
    this.align = type.align;
    this.spinLockOffset = findSpinLock(type);
    this.#codec = codecOf(type);
    if (type.kind === 'int') {
      const codec = this.#codec;
      this.#makeView = (dv, off) => ({
        get value() {
          return codec.get(dv, off) as number | bigint;
        },
        set value(v: number | bigint) {
          codec.set(dv, off, v);
        },
      });
    } else {
      this.#makeView = this.#codec.get;
    }
  }

  /** Lays out a described type; EINVAL for a malformed description, E2BIG/EINVAL for lock misuse. */
  static define(desc: TypeDesc): ValueSchema {
    return new ValueSchema(resolve(desc, '', 0));
  }

  /** btf_type_is_i32: a 32-bit integer (either signedness), what local storage keys must be. */
  isInt32(): boolean {
    return this.type.kind === 'int' && this.type.size === 4;
  }

  /** A 64-bit integer (either signedness): the shared old cgroup storage key (cgroup id). */
  isInt64(): boolean {
    return this.type.kind === 'int' && this.type.size === 8;
  }

  /** A fresh zeroed value. */
  zero(): Uint8Array {
    return new Uint8Array(this.size);
  }

  /**
   * A program's typed view over value bytes (at `offset`), reading and writing them in place. A
   * struct gives fields by name, a scalar gives `.value`. EINVAL if the bytes are too short.
   */
  view<T = ValueView>(bytes: Uint8Array, offset = 0): T {
    if (!(bytes instanceof Uint8Array) || offset < 0 || bytes.byteLength - offset < this.size) {
      throw bpfError('EINVAL', `a view needs ${this.size} bytes`);
    }
    return this.#makeView(new DataView(bytes.buffer, bytes.byteOffset + offset, this.size), 0) as T;
  }

  /** Bytes -> JSON, the way `bpftool map dump -j` shows a value with BTF ("formatted"). */
  toJson(bytes: Uint8Array): JsonValue {
    this.checkBytes(bytes);
    return this.#codec.toJson(new DataView(bytes.buffer, bytes.byteOffset, this.size), 0);
  }

  /**
   * JSON -> bytes. Missing struct members and missing trailing array elements are zero; unknown
   * members, out-of-range integers and non-integers are EINVAL. 64-bit integers may be numbers (when
   * exact), decimal or 0x strings, or bigints. Writes into `into` when given (the lock word kept).
   */
  fromJson(value: unknown, into?: Uint8Array): Uint8Array {
    const bytes = into ?? this.zero();
    this.checkBytes(bytes);
    this.#codec.fromJson(new DataView(bytes.buffer, bytes.byteOffset, this.size), 0, value, this.type.kind === 'struct' ? '' : 'value');
    return bytes;
  }

  private checkBytes(bytes: Uint8Array): void {
    if (!(bytes instanceof Uint8Array) || bytes.byteLength !== this.size) {
      throw bpfError('EINVAL', `value must be ${this.size} bytes`);
    }
  }
}

/** check_and_init_map_value: zeroes the lock word of a value copied out to userspace. */
export function initMapValue(bytes: Uint8Array, schema: ValueSchema | undefined): void {
  const lock = schema?.spinLockOffset ?? -1;
  if (lock >= 0) bytes.fill(0, lock, lock + 4);
}

/**
 * copy_map_value: copies a whole value except its bpf_spin_lock word, which belongs to whoever holds
 * the lock and is never overwritten by an update or a lookup copy.
 */
export function copyMapValue(dst: Uint8Array, src: Uint8Array, schema: ValueSchema | undefined): void {
  const lock = schema?.spinLockOffset ?? -1;
  if (lock < 0) {
    dst.set(src.subarray(0, dst.length));
    return;
  }
  dst.set(src.subarray(0, lock), 0);
  dst.set(src.subarray(lock + 4, dst.length), lock + 4);
}
