/**
 * struct bpf_map: what every map type shares. The userspace side of the bpf() syscall
 * (BPF_MAP_LOOKUP_ELEM, _UPDATE_ELEM, _DELETE_ELEM, _GET_NEXT_KEY) is one method each; keys are what
 * the type takes (bytes for hash and array, a cgroup/task/socket/inode for local storage, where the
 * kernel takes an fd), values are bytes of exactly value_size.
 */
import { BPF_F_LOCK, BpfMapType, MAP_TYPE_NAME, bpfError } from '../../uapi';
import { BpfObject } from '../object';
import type { Kernel } from '../kernel';
import type { ValueSchema } from './schema';
import { ValueSlab } from './slab';

export interface MapSpec {
  type: BpfMapType;
  /** BPF_OBJ_NAME_LEN is 16 with the NUL: at most 15 characters of [A-Za-z0-9_.]. */
  name?: string;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags?: number;
  /** BTF's role: the key and value types. Local storage maps require both, as the kernel does. */
  btf?: {
    key?: ValueSchema;
    value?: ValueSchema;
  };
}

export abstract class BpfMap extends BpfObject {
  readonly kind = 'map' as const;
  readonly type: BpfMapType;
  readonly name: string;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly flags: number;
  readonly keySchema: ValueSchema | undefined;
  readonly valueSchema: ValueSchema | undefined;
  /** Where the values' bytes live (shared with the isolates of programs that use the map). */
  readonly slab: ValueSlab;
  protected readonly kernel: Kernel;

  protected constructor(kernel: Kernel, spec: MapSpec, slab?: ValueSlab) {
    super(kernel.mapIdr);
    this.kernel = kernel;
    this.slab = slab ?? new ValueSlab(spec.valueSize);
    this.type = spec.type;
    this.name = spec.name ?? '';
    this.keySize = spec.keySize;
    this.valueSize = spec.valueSize;
    this.maxEntries = spec.maxEntries;
    this.flags = spec.flags ?? 0;
    this.keySchema = spec.btf?.key;
    this.valueSchema = spec.btf?.value;
  }

  get typeName(): string {
    return MAP_TYPE_NAME[this.type];
  }

  /** BPF_MAP_LOOKUP_ELEM: a copy of the value; ENOENT when absent. */
  abstract lookupElem(key: unknown, flags?: number): Uint8Array;
  /** BPF_MAP_UPDATE_ELEM with BPF_ANY / BPF_NOEXIST / BPF_EXIST, optionally | BPF_F_LOCK. */
  abstract updateElem(key: unknown, value: Uint8Array, flags?: number): void;
  /** BPF_MAP_DELETE_ELEM */
  abstract deleteElem(key: unknown): void;
  /** BPF_MAP_GET_NEXT_KEY: the first key for null, ENOENT after the last. */
  getNextKey(_key: unknown): unknown {
    throw bpfError('ENOTSUPP', `${this.typeName} map ${this.id} cannot be enumerated (get_next_key)`);
  }
  /** Bytes this map holds now (map_mem_usage, what bpftool shows as memlock). */
  abstract memUsage(): number;

  /** The value carries a bpf_spin_lock (btf_record_has_field(map->record, BPF_SPIN_LOCK)). */
  get hasSpinLock(): boolean {
    return (this.valueSchema?.spinLockOffset ?? -1) >= 0;
  }

  /**
   * A key as bytes of exactly key_size. For convenience a number or bigint is accepted too and
   * encoded little-endian into key_size bytes (negative values as two's complement), the way a C
   * integer key sits in memory on the targets vbpffs models. EINVAL for anything else.
   */
  protected keyBytes(key: unknown): Uint8Array {
    if (key instanceof Uint8Array) {
      if (key.length !== this.keySize) throw bpfError('EINVAL', `key must be ${this.keySize} bytes, got ${key.length}`);
      return key;
    }
    if ((typeof key === 'number' && Number.isSafeInteger(key)) || typeof key === 'bigint') {
      return encodeIntKey(BigInt(key), this.keySize);
    }
    throw bpfError('EINVAL', `key must be ${this.keySize} bytes or an integer`);
  }

  /** map_lookup_elem/map_update_elem in syscall.c: BPF_F_LOCK needs a bpf_spin_lock in the value. */
  protected checkLockFlag(flags: number): void {
    if (flags & BPF_F_LOCK && !this.hasSpinLock) throw bpfError('EINVAL', 'BPF_F_LOCK on a value without bpf_spin_lock');
  }

  protected checkValue(value: Uint8Array): void {
    if (!(value instanceof Uint8Array) || value.length !== this.valueSize) {
      throw bpfError('EINVAL', `value must be ${this.valueSize} bytes, got ${value instanceof Uint8Array ? value.length : typeof value}`);
    }
  }
}

/**
 * struct bpf_map_ops, the creation half: map_alloc_check validates the attributes with the kernel's
 * errnos before anything is allocated; map_alloc builds the map (the creator owns its reference).
 */
export interface MapOps {
  allocCheck(spec: MapSpec): void;
  alloc(kernel: Kernel, spec: MapSpec): BpfMap;
  /**
   * map_check_btf: the type's own rules for the key and value types, run after the common ones. A
   * type that has it may be created with a value type and no key type (it then decides).
   */
  checkBtf?(spec: MapSpec): void;
  /**
   * What map_alloc allocates up front, as the type's memUsage would count it for the empty map: the
   * kernel charges it to the creator's memory cgroup, and creation fails with ENOMEM past its limit.
   */
  allocSize?(spec: MapSpec): number;
}

/**
 * What the map helpers reach for maps whose programs use bpf_map_lookup_elem/update_elem/delete_elem
 * (hash, array). Like the kernel's helpers they never throw: lookup gives the live value bytes (the
 * program writes in place) or null, update and delete give 0 or a negative errno.
 */
export interface ProgMapAccess {
  bpfMapLookupElem(key: unknown): Uint8Array | null;
  bpfMapUpdateElem(key: unknown, value: Uint8Array, flags: number): number;
  bpfMapDeleteElem(key: unknown): number;
}

export function hasProgMapAccess(map: BpfMap): map is BpfMap & ProgMapAccess {
  return typeof (map as Partial<ProgMapAccess>).bpfMapLookupElem === 'function';
}

/** Little-endian two's-complement encoding of an integer key into `size` bytes; EINVAL if it does not fit. */
export function encodeIntKey(v: bigint, size: number): Uint8Array {
  const bits = BigInt(size * 8);
  if (v < -(1n << (bits - 1n)) || v >= 1n << bits) throw bpfError('EINVAL', `key ${v} does not fit ${size} bytes`);
  let u = BigInt.asUintN(size * 8, v);
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++, u >>= 8n) out[i] = Number(u & 0xffn);
  return out;
}
