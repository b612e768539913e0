/**
 * BPF_MAP_TYPE_ARRAY (kernel/bpf/arraymap.c): max_entries values, all allocated and zeroed at
 * creation, keyed by a u32 index. Elements always exist, so there is nothing to delete and nothing to
 * insert: BPF_NOEXIST is EEXIST, delete is EINVAL, an index past the end is E2BIG on update and
 * ENOENT on lookup.
 *
 * Values live in one buffer, each at index * round_up(value_size, 8) like the kernel's layout; a
 * program's lookup gets a live view of its slot.
 */
import {
  BPF_EXIST,
  BPF_F_ACCESS_MASK,
  BPF_F_INNER_MAP,
  BPF_F_LOCK,
  BPF_F_MMAPABLE,
  BPF_F_NUMA_NODE,
  BPF_F_PRESERVE_ELEMS,
  BPF_F_RDONLY_PROG,
  BPF_NOEXIST,
  ERRNO,
  bpfError,
  errnoName,
} from '../../uapi';
import type { Kernel } from '../kernel';
import { mapFlagsAccessOk } from './hash';
import { ValueSlab } from './slab';
import { BpfMap, type MapOps, type MapSpec, type ProgMapAccess } from './map';
import { copyMapValue, initMapValue } from './schema';

const ARRAY_CREATE_FLAG_MASK = BPF_F_NUMA_NODE | BPF_F_MMAPABLE | BPF_F_ACCESS_MASK | BPF_F_PRESERVE_ELEMS | BPF_F_INNER_MAP;

/** "avoid overflow on round_up(map->value_size)": the kernel's value cap for arrays. */
const ARRAY_MAX_VALUE_SIZE = 0x7fffffff;
/**
 * vbpffs' own allocation cap: the kernel would try vmalloc and fail with ENOMEM somewhere above the
 * machine's memory; vbpffs refuses past 1 GiB per array so one map cannot take the daemon down.
 */
export const ARRAY_MAX_BYTES = 1 << 30;
/** A nominal sizeof(struct bpf_array), for array_map_mem_usage's formula. */
const BPF_ARRAY_SIZE = 320;
const PAGE_SIZE = 4096;

const roundUp = (n: number, to: number): number => Math.ceil(n / to) * to;

/** array_map_alloc_check, then array_map_alloc's allocation limit. */
function arrayMapAllocCheck(spec: MapSpec): void {
  const flags = spec.flags ?? 0;
  if (spec.maxEntries === 0 || spec.keySize !== 4 || spec.valueSize === 0 || flags & ~ARRAY_CREATE_FLAG_MASK || !mapFlagsAccessOk(flags)) {
    throw bpfError('EINVAL', 'arrays need max_entries > 0, key_size 4, value_size > 0 and array map_flags');
  }
  // BPF_F_PRESERVE_ELEMS means something only for perf event arrays.
  if (flags & BPF_F_PRESERVE_ELEMS) throw bpfError('EINVAL', 'BPF_F_PRESERVE_ELEMS is for perf event arrays');
  if (spec.valueSize > ARRAY_MAX_VALUE_SIZE) throw bpfError('E2BIG', `value_size ${spec.valueSize} > INT_MAX`);
  if (spec.maxEntries * roundUp(spec.valueSize, 8) > ARRAY_MAX_BYTES) {
    throw bpfError('ENOMEM', `an array of ${spec.maxEntries} x ${spec.valueSize} bytes is over vbpffs' 1 GiB per map`);
  }
}

/** array_map_mem_usage's formula, for a map or the spec of one to be made. */
function arrayMemUsage(spec: { maxEntries: number; valueSize: number; flags?: number }): number {
  const data = spec.maxEntries * roundUp(spec.valueSize, 8);
  if ((spec.flags ?? 0) & BPF_F_MMAPABLE) return roundUp(BPF_ARRAY_SIZE, PAGE_SIZE) + roundUp(data, PAGE_SIZE);
  return BPF_ARRAY_SIZE + data;
}

export class ArrayMap extends BpfMap implements ProgMapAccess {
  /** round_up(value_size, 8): the stride between values. */
  readonly elemSize: number;
  readonly #values: Uint8Array;

  constructor(kernel: Kernel, spec: MapSpec) {
    super(kernel, spec, ValueSlab.single(spec.maxEntries * roundUp(spec.valueSize, 8)));
    this.elemSize = roundUp(this.valueSize, 8);
    this.#values = new Uint8Array(this.slab.buffers[0]!, 0, this.maxEntries * this.elemSize);
  }

  lookupElem(key: unknown, flags = 0): Uint8Array {
    if (flags & ~BPF_F_LOCK) throw bpfError('EINVAL', `lookup flags 0x${flags.toString(16)}: only BPF_F_LOCK`);
    this.checkLockFlag(flags);
    const slot = this.slot(this.index(key));
    if (slot === null) throw bpfError('ENOENT', `index past max_entries ${this.maxEntries}`);
    const out = new Uint8Array(this.valueSize);
    copyMapValue(out, slot, this.valueSchema);
    initMapValue(out, this.valueSchema);
    return out;
  }

  updateElem(key: unknown, value: Uint8Array, flags = 0): void {
    this.checkLockFlag(flags);
    const index = this.index(key);
    this.checkValue(value);
    const err = this.update(index, value, flags);
    if (err !== 0) throw bpfError(errnoName(err)!, `update of array map ${this.id} at ${index} failed`);
  }

  /** array_map_delete_elem: elements of an array always exist. */
  deleteElem(key: unknown): void {
    this.index(key);
    throw bpfError('EINVAL', 'array elements cannot be deleted');
  }

  /** array_map_get_next_key: 0 for null or an index past the end, ENOENT after the last index. */
  override getNextKey(key: unknown): Uint8Array {
    const index = key === null || key === undefined ? 0xffffffff : this.index(key);
    const out = new Uint8Array(4);
    if (index >= this.maxEntries) return out;
    if (index === this.maxEntries - 1) throw bpfError('ENOENT', `no index after ${index}`);
    new DataView(out.buffer).setUint32(0, index + 1, true);
    return out;
  }

  bpfMapLookupElem(key: unknown): Uint8Array | null {
    const index = this.progIndex(key);
    return index === null ? null : this.slot(index);
  }

  bpfMapUpdateElem(key: unknown, value: Uint8Array, flags: number): number {
    if (this.flags & BPF_F_RDONLY_PROG) return -ERRNO.EACCES;
    const index = this.progIndex(key);
    if (index === null || !(value instanceof Uint8Array) || value.length < this.valueSize) return -ERRNO.EINVAL;
    return this.update(index, value, flags);
  }

  bpfMapDeleteElem(_key: unknown): number {
    return -ERRNO.EINVAL;
  }

  /** array_map_mem_usage: the whole array, allocated up front. */
  memUsage(): number {
    return arrayMemUsage(this);
  }

  /** array_map_update_elem: flag check, then bounds (E2BIG), then BPF_NOEXIST (EEXIST), then the lock. */
  private update(index: number, value: Uint8Array, flags: number): number {
    if ((flags & ~BPF_F_LOCK) > BPF_EXIST) return -ERRNO.EINVAL;
    if (index >= this.maxEntries) return -ERRNO.E2BIG;
    if (flags & BPF_NOEXIST) return -ERRNO.EEXIST;
    if (flags & BPF_F_LOCK && !this.hasSpinLock) return -ERRNO.EINVAL;
    copyMapValue(this.slot(index)!, value, this.valueSchema);
    return 0;
  }

  private slot(index: number): Uint8Array | null {
    if (index >= this.maxEntries) return null;
    const off = index * this.elemSize;
    return this.#values.subarray(off, off + this.valueSize);
  }

  private index(key: unknown): number {
    const kb = this.keyBytes(key);
    return new DataView(kb.buffer, kb.byteOffset, 4).getUint32(0, true);
  }

  private progIndex(key: unknown): number | null {
    try {
      return this.index(key);
    } catch {
      return null;
    }
  }

  /** array_map_free: nothing outside the map owns its values, so dropping the map frees them. */
  protected release(): void {}
}

export const arrayMapOps: MapOps = {
  allocCheck: arrayMapAllocCheck,
  alloc: (kernel, spec) => new ArrayMap(kernel, spec),
  allocSize: arrayMemUsage,
  // array_map_check_btf: a keyed array's key type must be a 32-bit int.
  checkBtf(spec) {
    if (spec.btf?.key === undefined || !spec.btf.key.isInt32()) throw bpfError('EINVAL', 'an array key type must be a 32-bit int');
  },
};
