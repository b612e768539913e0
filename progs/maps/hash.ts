/**
 * BPF_MAP_TYPE_HASH (kernel/bpf/hashtab.c): fixed-size keys and values, at most max_entries elements.
 *
 * Elements sit in a Map by key for lookups and on an insertion-ordered list for get_next_key. The
 * kernel walks buckets instead; any stable order satisfies its contract, and a key that is not in
 * the map restarts the walk from the first element exactly as htab_map_get_next_key does.
 *
 * Each element's value is its own Uint8Array for its whole life: a program's lookup gets those live
 * bytes and writes them in place. An update of an existing key copies into the same bytes (the
 * kernel swaps in a new element; only a program racing with userspace could tell).
 */
import {
  BPF_EXIST,
  BPF_F_ACCESS_MASK,
  BPF_F_LOCK,
  BPF_F_NO_COMMON_LRU,
  BPF_F_NO_PREALLOC,
  BPF_F_NUMA_NODE,
  BPF_F_RDONLY_PROG,
  BPF_F_WRONLY_PROG,
  BPF_F_ZERO_SEED,
  BPF_NOEXIST,
  ERRNO,
  KMALLOC_MAX_SIZE,
  bpfError,
  errnoName,
} from '../../uapi';
import type { Kernel } from '../kernel';
import { LOC_SPLIT } from './slab';
import { BpfMap, type MapOps, type MapSpec, type ProgMapAccess } from './map';
import { copyMapValue, initMapValue } from './schema';

const HTAB_CREATE_FLAG_MASK = BPF_F_NO_PREALLOC | BPF_F_NO_COMMON_LRU | BPF_F_NUMA_NODE | BPF_F_ACCESS_MASK | BPF_F_ZERO_SEED;

/** sizeof(struct htab_elem) on x86-64: hash_node 16 + lru_node/ptr_to_pptr 24 + hash 4, key 8-aligned. */
const HTAB_ELEM_SIZE = 48;
/** sizeof(struct bucket) and a nominal sizeof(struct bpf_htab), for htab_map_mem_usage's formula. */
const BUCKET_SIZE = 16;
const HTAB_SIZE = 512;

const roundUp8 = (n: number): number => Math.ceil(n / 8) * 8;

/** bpf_map_flags_access_ok: a map cannot be both read-only and write-only for programs. */
export function mapFlagsAccessOk(flags: number): boolean {
  return (flags & (BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG)) !== (BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG);
}

/** htab_map_alloc_check + htab_map_alloc's size checks, in the kernel's order. */
function htabMapAllocCheck(spec: MapSpec): void {
  const flags = spec.flags ?? 0;
  if (flags & ~HTAB_CREATE_FLAG_MASK || !mapFlagsAccessOk(flags)) throw bpfError('EINVAL', `hash map_flags 0x${flags.toString(16)} not allowed`);
  // BPF_F_NO_COMMON_LRU is only for the LRU hash types.
  if (flags & BPF_F_NO_COMMON_LRU) throw bpfError('EINVAL', 'BPF_F_NO_COMMON_LRU on a non-LRU hash');
  // "value_size == 0 may be allowed in the future to use map as a set"
  if (spec.maxEntries === 0 || spec.keySize === 0 || spec.valueSize === 0) {
    throw bpfError('EINVAL', 'hash maps need max_entries, key_size and value_size > 0');
  }
  // "if key_size + value_size is bigger, the user space won't be able to access the elements"
  if (spec.keySize + spec.valueSize >= KMALLOC_MAX_SIZE - HTAB_ELEM_SIZE) {
    throw bpfError('E2BIG', `key_size + value_size ${spec.keySize + spec.valueSize} is too big for a hash element`);
  }
  // htab_map_alloc: max_entries is checked before roundup_pow_of_two (which would overflow on 32-bit
  // arches), then the bucket array's byte size must fit a u32: n_buckets > U32_MAX / sizeof(struct
  // bucket) is E2BIG. With 16-byte buckets that refuses n_buckets >= 2^28, so max_entries > 2^27.
  if (spec.maxEntries > 2 ** 31) throw bpfError('E2BIG', `max_entries ${spec.maxEntries} > 2^31`);
  const nBuckets = roundupPowOfTwo(spec.maxEntries);
  if (nBuckets > Math.floor(U32_MAX / BUCKET_SIZE)) {
    throw bpfError('E2BIG', `max_entries ${spec.maxEntries}: ${nBuckets} buckets of ${BUCKET_SIZE} bytes overflow a u32`);
  }
}

const U32_MAX = 0xffffffff;

/** roundup_pow_of_two for 1 <= n <= 2^31. */
const roundupPowOfTwo = (n: number): number => 2 ** Math.ceil(Math.log2(n));

interface HtabElem {
  readonly id: string;
  readonly key: Uint8Array;
  readonly value: Uint8Array;
  prev: HtabElem | null;
  next: HtabElem | null;
}

/** A key's identity: its bytes as a latin1 string (one char per byte), cheap to build and to hash. */
function keyId(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.length).toString('latin1');
}

/** htab_map_mem_usage's formula, for a map or the spec of one to be made (with no elements). */
function htabMemUsage(spec: { keySize: number; valueSize: number; maxEntries: number; flags?: number }, count: number): number {
  const elemSize = HTAB_ELEM_SIZE + roundUp8(spec.keySize) + roundUp8(spec.valueSize);
  const buckets = roundupPowOfTwo(Math.max(1, spec.maxEntries));
  const base = HTAB_SIZE + BUCKET_SIZE * buckets;
  // Preallocated maps hold max_entries elements (+1 extra per CPU) whatever they contain.
  if (((spec.flags ?? 0) & BPF_F_NO_PREALLOC) === 0) return base + elemSize * (spec.maxEntries + 1) + 8;
  return base + (elemSize + 8) * count;
}

export class HashMap extends BpfMap implements ProgMapAccess {
  readonly #elems = new Map<string, HtabElem>();
  #first: HtabElem | null = null;
  #last: HtabElem | null = null;

  constructor(kernel: Kernel, spec: MapSpec) {
    super(kernel, spec);
  }

  get count(): number {
    return this.#elems.size;
  }

  get prealloc(): boolean {
    return (this.flags & BPF_F_NO_PREALLOC) === 0;
  }

  lookupElem(key: unknown, flags = 0): Uint8Array {
    if (flags & ~BPF_F_LOCK) throw bpfError('EINVAL', `lookup flags 0x${flags.toString(16)}: only BPF_F_LOCK`);
    this.checkLockFlag(flags);
    const elem = this.#elems.get(keyId(this.keyBytes(key)));
    if (elem === undefined) throw bpfError('ENOENT', `no such key in hash map ${this.id}`);
    // bpf_map_copy_value: copy the value, then mask the lock word that was not copied.
    const out = new Uint8Array(this.valueSize);
    copyMapValue(out, elem.value, this.valueSchema);
    initMapValue(out, this.valueSchema);
    return out;
  }

  updateElem(key: unknown, value: Uint8Array, flags = 0): void {
    this.checkLockFlag(flags);
    const kb = this.keyBytes(key);
    this.checkValue(value);
    const err = this.update(kb, value, flags);
    if (err !== 0) throw bpfError(errnoName(err)!, `update of hash map ${this.id} failed`);
  }

  deleteElem(key: unknown): void {
    if (!this.delete(this.keyBytes(key))) throw bpfError('ENOENT', `no such key in hash map ${this.id}`);
  }

  /** htab_map_get_next_key: the first key for null or for a key that is not in the map. */
  override getNextKey(key: unknown): Uint8Array {
    const elem = key === null || key === undefined ? undefined : this.#elems.get(keyId(this.keyBytes(key)));
    const next = elem === undefined ? this.#first : elem.next;
    if (next === null) throw bpfError('ENOENT', `no key after this one in hash map ${this.id}`);
    return next.key.slice();
  }

  bpfMapLookupElem(key: unknown): Uint8Array | null {
    const kb = this.progKey(key);
    return kb === null ? null : (this.#elems.get(keyId(kb))?.value ?? null);
  }

  bpfMapUpdateElem(key: unknown, value: Uint8Array, flags: number): number {
    if (this.flags & BPF_F_RDONLY_PROG) return -ERRNO.EACCES;
    const kb = this.progKey(key);
    if (kb === null || !(value instanceof Uint8Array) || value.length < this.valueSize) return -ERRNO.EINVAL;
    return this.update(kb, value, flags);
  }

  bpfMapDeleteElem(key: unknown): number {
    if (this.flags & BPF_F_RDONLY_PROG) return -ERRNO.EACCES;
    const kb = this.progKey(key);
    if (kb === null) return -ERRNO.EINVAL;
    return this.delete(kb) ? 0 : -ERRNO.ENOENT;
  }

  /** htab_map_mem_usage's formula with vbpffs' struct sizes and one possible CPU. */
  memUsage(): number {
    return htabMemUsage(this, this.#elems.size);
  }

  /** htab_map_update_elem, shared by the syscall and the helper: 0 or a negative errno. */
  private update(key: Uint8Array, value: Uint8Array, flags: number): number {
    if ((flags & ~BPF_F_LOCK) > BPF_EXIST) return -ERRNO.EINVAL;
    if (flags & BPF_F_LOCK && !this.hasSpinLock) return -ERRNO.EINVAL;
    const id = keyId(key);
    const old = this.#elems.get(id);
    // check_flags
    const mode = flags & ~BPF_F_LOCK;
    if (old !== undefined && mode === BPF_NOEXIST) return -ERRNO.EEXIST;
    if (old === undefined && mode === BPF_EXIST) return -ERRNO.ENOENT;
    if (old !== undefined) {
      copyMapValue(old.value, value, this.valueSchema);
      return 0;
    }
    // A full map still takes updates of existing keys (the kernel keeps an extra element per CPU).
    if (this.#elems.size >= this.maxEntries) return -ERRNO.E2BIG;
    const elem: HtabElem = { id, key: key.slice(), value: this.slabValue(), prev: this.#last, next: null };
    copyMapValue(elem.value, value, this.valueSchema);
    if (this.#last === null) this.#first = elem;
    else this.#last.next = elem;
    this.#last = elem;
    this.#elems.set(id, elem);
    return 0;
  }

  private slabValue(): Uint8Array {
    const loc = this.slab.alloc();
    return new Uint8Array(this.slab.bufferOf(loc), loc % LOC_SPLIT, this.valueSize);
  }

  private delete(key: Uint8Array): boolean {
    const elem = this.#elems.get(keyId(key));
    if (elem === undefined) return false;
    this.#elems.delete(elem.id);
    this.slab.free(elem.value);
    if (elem.prev === null) this.#first = elem.next;
    else elem.prev.next = elem.next;
    if (elem.next === null) this.#last = elem.prev;
    else elem.next.prev = elem.prev;
    return true;
  }

  /** A program's key, or null where the kernel's verifier would have refused it. */
  private progKey(key: unknown): Uint8Array | null {
    try {
      return this.keyBytes(key);
    } catch {
      return null;
    }
  }

  /** htab_map_free: every element goes with the map. */
  protected release(): void {
    this.#elems.clear();
    this.#first = this.#last = null;
  }
}

export const hashMapOps: MapOps = {
  allocCheck: htabMapAllocCheck,
  alloc: (kernel, spec) => new HashMap(kernel, spec),
  allocSize: (spec) => htabMemUsage(spec, 0),
};
