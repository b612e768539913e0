/**
 * The old BPF_MAP_TYPE_CGROUP_STORAGE (kernel/bpf/local_storage.c, ≥5.9 semantics).
 *
 * A storage is created by attaching a program that uses the map to a cgroup, never by userspace:
 * cgroupStoragesAlloc() is what the cgroup attach code calls. The key is the cgroup id alone (8-byte
 * key: one storage per cgroup, shared by every attach type) or {cgroup_inode_id, attach_type}
 * (16-byte key: one per cgroup and attach type).
 *
 * Lifetime: a storage is linked into its map and its cgroup, and freed only when either goes
 * (cgroup_storage_map_free, cgroup_bpf_release); detaching the program leaves it in place. A cgroup's
 * go at rmdir (cgroup_bpf_offline -> cgroup_bpf_release frees cgrp->bpf.storages), even while the
 * cgroup itself is still referenced: unlike CGRP_STORAGE, which waits for css_free. The map's
 * list is newest first (list_add), which is the get_next_key order.
 *
 * The PERCPU_CGROUP_STORAGE variant is not modelled: vbpffs runs programs on one logical CPU.
 */
import createDebug from 'debug';
import { BPF_EXIST, BPF_F_ACCESS_MASK, BPF_F_LOCK, BPF_F_NUMA_NODE, BPF_LOCAL_STORAGE_MAX_VALUE_SIZE, bpfError } from '../../uapi';
import type { Kernel } from '../kernel';
import { mapFlagsAccessOk } from './hash';
import { BpfMap, encodeIntKey, type MapOps, type MapSpec } from './map';
import type { CgroupOwner } from './owners';
import { LOC_SPLIT } from './slab';
import { copyMapValue, initMapValue } from './schema';

const debug = createDebug('vbpffs:progs');

const LOCAL_STORAGE_CREATE_FLAG_MASK = BPF_F_NUMA_NODE | BPF_F_ACCESS_MASK;
/** sizeof(struct bpf_cgroup_storage_key): __u64 cgroup_inode_id, __u32 attach_type, 4 bytes padding. */
export const CGROUP_STORAGE_KEY_SIZE = 16;
/** Nominal sizeof(struct bpf_cgroup_storage_map) and per-storage overhead, for memUsage. */
const STORAGE_MAP_SIZE = 256;
const STORAGE_OVERHEAD = 96;

/** struct bpf_cgroup_storage_key, as userspace may also give it. */
export interface CgroupStorageKey {
  cgroup_inode_id: number | bigint;
  attach_type?: number;
}

// The map's list (map->list) is intrusive, as in the kernel: each storage holds its neighbours, so
// unlinking one and finding the key after one are O(1). Symbols keep the links module-private.
const PREV = Symbol('prev');
const NEXT = Symbol('next');

/** One storage: the value bytes of one cgroup (and attach type, for an isolated map). */
export class CgroupStorage {
  readonly value: Uint8Array;
  #linked = true;
  /** @internal Neighbours on the map's list: PREV is newer, NEXT older. */
  [PREV]: CgroupStorage | null = null;
  /** @internal */
  [NEXT]: CgroupStorage | null = null;

  constructor(
    readonly map: CgroupStorageMap,
    readonly cgroup: CgroupOwner,
    readonly attachType: number,
  ) {
    const loc = map.slab.alloc();
    this.value = new Uint8Array(map.slab.bufferOf(loc), loc % LOC_SPLIT, map.valueSize);
  }

  /** Still in its map and its cgroup (neither has been freed). */
  get linked(): boolean {
    return this.#linked;
  }

  /** @internal bpf_cgroup_storage_unlink + _free; idempotent. */
  unlinkAndFree(): void {
    if (!this.#linked) return;
    this.#linked = false;
    this.map.unlinkStorage(this);
    this.map.slab.free(this.value);
    cgroupUnlink(this);
  }
}

// ---------------------------------------------------------------------------------------------------
// The cgroup side (cgrp->bpf.storages): kept here, keyed by cgroup, so a cgroup's release frees its
// storages without tags/ knowing about maps.

interface CgroupStorages {
  readonly storages: Set<CgroupStorage>;
  readonly unhook: () => void;
}

const byCgroup = new WeakMap<CgroupOwner, CgroupStorages>();

function cgroupLink(storage: CgroupStorage): void {
  const cgroup = storage.cgroup;
  let entry = byCgroup.get(cgroup);
  if (entry === undefined) {
    const storages = new Set<CgroupStorage>();
    // cgroup_bpf_release (at rmdir): every storage of the cgroup goes, whichever map it is in.
    const unhook = cgroup.onBpfRelease(() => {
      byCgroup.delete(cgroup);
      for (const s of [...storages]) s.unlinkAndFree();
    });
    entry = { storages, unhook };
    byCgroup.set(cgroup, entry);
  }
  entry.storages.add(storage);
}

function cgroupUnlink(storage: CgroupStorage): void {
  const entry = byCgroup.get(storage.cgroup);
  if (entry === undefined) return;
  entry.storages.delete(storage);
  if (entry.storages.size === 0) {
    entry.unhook();
    byCgroup.delete(storage.cgroup);
  }
}

/** The old cgroup storages a cgroup holds, in link order (for inspection and tests). */
export function cgroupStorages(cgroup: CgroupOwner): CgroupStorage[] {
  return [...(byCgroup.get(cgroup)?.storages ?? [])];
}

// ---------------------------------------------------------------------------------------------------

/** cgroup_storage_map_alloc's checks, in its order. */
function cgroupStorageMapAllocCheck(spec: MapSpec): void {
  if (spec.keySize !== CGROUP_STORAGE_KEY_SIZE && spec.keySize !== 8) {
    throw bpfError('EINVAL', `key_size ${spec.keySize}: the key is a u64 cgroup id or struct bpf_cgroup_storage_key`);
  }
  if (spec.valueSize === 0) throw bpfError('EINVAL', 'value_size 0');
  if (spec.valueSize > BPF_LOCAL_STORAGE_MAX_VALUE_SIZE) {
    throw bpfError('E2BIG', `value_size ${spec.valueSize} > BPF_LOCAL_STORAGE_MAX_VALUE_SIZE ${BPF_LOCAL_STORAGE_MAX_VALUE_SIZE}`);
  }
  const flags = spec.flags ?? 0;
  if (flags & ~LOCAL_STORAGE_CREATE_FLAG_MASK || !mapFlagsAccessOk(flags)) {
    throw bpfError('EINVAL', `cgroup storage map_flags 0x${flags.toString(16)}: reserved bits`);
  }
  // "max_entries is not used and enforced to be 0"
  if (spec.maxEntries !== 0) throw bpfError('EINVAL', `max_entries ${spec.maxEntries}: must be 0`);
}

/**
 * cgroup_storage_check_btf: an isolated key is a struct of exactly two ints, a u64 at 0 and a u32 at
 * 8; a shared key is a 64-bit int.
 */
function cgroupStorageCheckBtf(spec: MapSpec): void {
  const key = spec.btf?.key;
  if (spec.keySize === 8) {
    if (key === undefined || !key.isInt64()) throw bpfError('EINVAL', 'a shared cgroup storage key type must be a 64-bit int');
    return;
  }
  const t = key?.type;
  const ok =
    t?.kind === 'struct' &&
    t.members.length === 2 &&
    t.members[0]!.offset === 0 &&
    t.members[0]!.type.kind === 'int' &&
    t.members[0]!.type.size === 8 &&
    t.members[1]!.offset === 8 &&
    t.members[1]!.type.kind === 'int' &&
    t.members[1]!.type.size === 4;
  if (!ok) throw bpfError('EINVAL', 'the cgroup storage key type must be struct { u64 cgroup_inode_id; u32 attach_type; }');
}

export class CgroupStorageMap extends BpfMap {
  /** attach_type_isolated: a 16-byte key keeps one storage per attach type. */
  readonly attachTypeIsolated: boolean;
  readonly #byKey = new Map<string, CgroupStorage>();
  /** map->list: newest first, linked through the storages' PREV/NEXT. */
  #head: CgroupStorage | null = null;
  #count = 0;

  constructor(kernel: Kernel, spec: MapSpec) {
    super(kernel, spec);
    this.attachTypeIsolated = spec.keySize === CGROUP_STORAGE_KEY_SIZE;
  }

  get count(): number {
    return this.#count;
  }

  /** Storages in get_next_key order (newest first). */
  storages(): CgroupStorage[] {
    const out: CgroupStorage[] = [];
    for (let s = this.#head; s !== null; s = s[NEXT]) out.push(s);
    return out;
  }

  /** cgroup_storage_lookup by cgroup and attach type (ignored by a shared map). */
  lookupStorage(cgroupId: number, attachType: number): CgroupStorage | undefined {
    return this.#byKey.get(this.keyId(cgroupId, attachType));
  }

  lookupElem(key: unknown, flags = 0): Uint8Array {
    if (flags & ~BPF_F_LOCK) throw bpfError('EINVAL', `lookup flags 0x${flags.toString(16)}: only BPF_F_LOCK`);
    this.checkLockFlag(flags);
    const storage = this.find(key);
    if (storage === undefined) throw bpfError('ENOENT', `no storage for that key in cgroup storage map ${this.id}`);
    const out = new Uint8Array(this.valueSize);
    copyMapValue(out, storage.value, this.valueSchema);
    initMapValue(out, this.valueSchema);
    return out;
  }

  /**
   * cgroup_storage_update_elem: only existing storages can be updated ("a user can't create new
   * entries"), so BPF_NOEXIST is EINVAL and a missing key is ENOENT. Without BPF_F_LOCK the kernel
   * installs a fresh buffer whose lock word is zero; here the bytes are overwritten in place with the
   * lock word zeroed, which is the same value.
   */
  updateElem(key: unknown, value: Uint8Array, flags = 0): void {
    this.checkLockFlag(flags);
    if (flags & ~(BPF_F_LOCK | BPF_EXIST)) throw bpfError('EINVAL', `update flags 0x${flags.toString(16)}: only BPF_EXIST and BPF_F_LOCK`);
    const storage = this.find(key);
    this.checkValue(value);
    if (storage === undefined) throw bpfError('ENOENT', 'cgroup storage is created by attaching a program, not by update');
    if (flags & BPF_F_LOCK) {
      copyMapValue(storage.value, value, this.valueSchema);
      return;
    }
    storage.value.set(value.subarray(0, this.valueSize));
    initMapValue(storage.value, this.valueSchema);
  }

  /** cgroup_storage_delete_elem: storages go only with their map or cgroup. */
  deleteElem(key: unknown): void {
    this.find(key);
    throw bpfError('EINVAL', 'cgroup storage cannot be deleted');
  }

  /** cgroup_storage_get_next_key: list order; a key that is not in the map is ENOENT. */
  override getNextKey(key: unknown): Uint8Array {
    let next: CgroupStorage | null;
    if (key === null || key === undefined) {
      next = this.#head;
    } else {
      const storage = this.find(key);
      if (storage === undefined) throw bpfError('ENOENT', 'no storage for that key');
      next = storage[NEXT];
    }
    if (next === null) throw bpfError('ENOENT', `no key after this one in cgroup storage map ${this.id}`);
    return this.keyOf(next);
  }

  /** The key bytes of a storage, as get_next_key returns them (padding zero). */
  keyOf(storage: CgroupStorage): Uint8Array {
    const out = encodeIntKey(BigInt(storage.cgroup.id), 8);
    if (!this.attachTypeIsolated) return out;
    const key = new Uint8Array(CGROUP_STORAGE_KEY_SIZE);
    key.set(out);
    new DataView(key.buffer).setUint32(8, storage.attachType, true);
    return key;
  }

  /** The kernel counts only the map itself; vbpffs counts the storages it holds too. */
  memUsage(): number {
    return STORAGE_MAP_SIZE + this.#count * (STORAGE_OVERHEAD + this.valueSize);
  }

  /** @internal bpf_cgroup_storage_link's map half. */
  linkStorage(storage: CgroupStorage): void {
    this.#byKey.set(this.keyId(storage.cgroup.id, storage.attachType), storage);
    // list_add: at the head.
    storage[PREV] = null;
    storage[NEXT] = this.#head;
    if (this.#head !== null) this.#head[PREV] = storage;
    this.#head = storage;
    this.#count++;
  }

  /** @internal bpf_cgroup_storage_unlink's map half. */
  unlinkStorage(storage: CgroupStorage): void {
    const id = this.keyId(storage.cgroup.id, storage.attachType);
    if (this.#byKey.get(id) === storage) this.#byKey.delete(id);
    // list_del: O(1). Called once per storage (unlinkAndFree is idempotent).
    const prev = storage[PREV];
    const next = storage[NEXT];
    if (prev === null) this.#head = next;
    else prev[NEXT] = next;
    if (next !== null) next[PREV] = prev;
    storage[PREV] = storage[NEXT] = null;
    this.#count--;
  }

  /** cgroup_storage_map_free: every storage goes, and leaves its cgroup's list. */
  protected release(): void {
    while (this.#head !== null) this.#head.unlinkAndFree();
    debug('cgroup storage map %d freed its storages', this.id);
  }

  private keyId(cgroupId: number | bigint, attachType: number): string {
    return this.attachTypeIsolated ? `${cgroupId}:${attachType}` : `${cgroupId}`;
  }

  /**
   * A userspace key: bytes of key_size, a struct-like {cgroup_inode_id, attach_type}, or (shared
   * maps) a plain cgroup id. Only the key's fields count, not its padding, as in the kernel's compare.
   */
  private find(key: unknown): CgroupStorage | undefined {
    if (key !== null && typeof key === 'object' && !(key instanceof Uint8Array)) {
      const k = key as CgroupStorageKey;
      return this.#byKey.get(this.keyId(cgroupInodeId(k.cgroup_inode_id), attachTypeOf(k.attach_type)));
    }
    const kb = this.keyBytes(key);
    const dv = new DataView(kb.buffer, kb.byteOffset, kb.length);
    const id = dv.getBigUint64(0, true);
    return this.#byKey.get(this.keyId(id, this.attachTypeIsolated ? dv.getUint32(8, true) : 0));
  }
}

/**
 * A struct key's cgroup_inode_id: an integer that fits a __u64 (a negative one wraps, as its bytes
 * would); anything else (1.5, 'abc', undefined, NaN) is EINVAL.
 */
function cgroupInodeId(v: unknown): bigint {
  if (!((typeof v === 'number' && Number.isSafeInteger(v)) || typeof v === 'bigint')) {
    throw bpfError('EINVAL', `cgroup_inode_id must be an integer, got ${typeof v === 'number' ? v : typeof v}`);
  }
  const id = BigInt(v);
  if (id < -(1n << 63n) || id >= 1n << 64n) throw bpfError('EINVAL', `cgroup_inode_id ${id} does not fit a __u64`);
  return BigInt.asUintN(64, id);
}

/** A struct key's attach_type: a __u32, 0 when left out. */
function attachTypeOf(v: unknown): number {
  if (v === undefined) return 0;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffffffff) {
    throw bpfError('EINVAL', `attach_type must be a __u32, got ${typeof v === 'number' ? v : typeof v}`);
  }
  return v;
}

/**
 * bpf_cgroup_storages_alloc + bpf_cgroup_storage_link for one map, as __cgroup_bpf_attach does it:
 * the existing storage for (cgroup, attach type) if there is one, else a fresh zeroed storage linked
 * into the map and the cgroup. `created` tells the attach code what to free if the attach fails
 * after this (cgroupStorageFree), as bpf_cgroup_storages_free(new_storages) does.
 */
export function cgroupStoragesAlloc(
  map: CgroupStorageMap,
  cgroup: CgroupOwner,
  attachType: number,
): { storage: CgroupStorage; created: boolean } {
  if (map.released) throw bpfError('ENOENT', `cgroup storage map ${map.id} is released`);
  // A removed cgroup's BPF state is already released: nothing would ever free a storage linked now.
  if (cgroup.dying) throw bpfError('ENOENT', `cgroup ${cgroup.path} is removed`);
  const existing = map.lookupStorage(cgroup.id, attachType);
  if (existing !== undefined) return { storage: existing, created: false };
  const storage = new CgroupStorage(map, cgroup, attachType);
  map.linkStorage(storage);
  cgroupLink(storage);
  debug('cgroup storage map %d: new storage for %s (attach type %d)', map.id, cgroup.path, attachType);
  return { storage, created: true };
}

/** bpf_cgroup_storage_unlink + bpf_cgroup_storage_free: undoes a storage created by a failed attach. */
export function cgroupStorageFree(storage: CgroupStorage): void {
  storage.unlinkAndFree();
}

/**
 * bpf_get_local_storage(map, flags): the program's storage for the cgroup and attach type it was
 * attached with (the storage is bound at attach time, so a program attached to a parent and running
 * for a child still gets the parent's). The verifier refuses non-zero flags, "because
 * get_local_storage() can't return an error"; here that is an EINVAL thrown at the call. Null only if
 * no attach ever allocated the storage, which the kernel's attach order rules out.
 */
export function bpfGetLocalStorage(map: CgroupStorageMap, cgroup: CgroupOwner, attachType: number, flags: number): Uint8Array | null {
  if (flags !== 0) throw bpfError('EINVAL', "get_local_storage() doesn't support non-zero flags");
  return map.lookupStorage(cgroup.id, attachType)?.value ?? null;
}

export const cgroupStorageMapOps: MapOps = {
  allocCheck: cgroupStorageMapAllocCheck,
  alloc: (kernel, spec) => new CgroupStorageMap(kernel, spec),
  checkBtf: cgroupStorageCheckBtf,
};
