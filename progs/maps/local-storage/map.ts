/**
 * struct bpf_local_storage_map and the generic paths of kernel/bpf/bpf_local_storage.c: lookup with
 * the 16-slot cache, update with the check_flags rules, unlink, owner destroy and map free.
 *
 * The map is the "type" of a value, not its primary owner: it defines the value size, is the key
 * an owner's elems are searched by, and tracks its elems so they can be freed with it. Owner
 * adapters (cgroup, task, socket, inode) subclass it and only say how a userspace key becomes an
 * owner and when an owner may get new storage.
 */
import createDebug from 'debug';
import { BPF_EXIST, BPF_F_LOCK, BPF_NOEXIST, bpfError } from '../../../uapi';
import type { Kernel } from '../../kernel';
import type { LocalStorageCache } from '../cache-idx';
import { BpfMap, type MapSpec } from '../map';
import type { OwnerType, StorageOwner } from '../owners';
import type { StorageBusy } from './busy';
import {
  BPF_LOCAL_STORAGE_ELEM_DATA_OFFSET,
  BPF_LOCAL_STORAGE_SIZE,
  LocalStorage,
  LocalStorageElem,
  copyMapValue,
  linkMapList,
  linkStorageList,
  mapNext,
  smapOf,
  snodeNext,
  storageOf,
  unlinkMapList,
  unlinkStorageList,
  type LocalStorageData,
} from './storage';

const debug = createDebug('vbpffs:progs');

/**
 * bpf_local_storage_map_mem_usage: sizeof(struct bpf_local_storage_map) (struct bpf_map is 256 on
 * x86-64, cacheline aligned, plus buckets, bucket_log, elem_size, cache_idx: padded to 320) and its
 * buckets (hlist_head + rqspinlock, 16 bytes each; max(2, roundup_pow_of_two(nr_cpus)) of them,
 * 2 for our one CPU). Like the kernel, it does not count the elems, which are charged to owners.
 */
const SMAP_SIZE = 320;
const SMAP_BUCKETS_SIZE = 2 * 16;

/** What every owner type offers the core: the storage pointer, whose destroy() it calls when freed. */
export type LocalStorageOwner = StorageOwner;

/** How an owner type frees its storage when the owner goes (bpf_cgrp_storage_free, ...). */
export type OwnerStorageFree<O> = (owner: O) => void;

export abstract class LocalStorageMap<O extends LocalStorageOwner> extends BpfMap {
  /** This map's slot in every owner's cache, from the owner type's cache index allocator. */
  readonly cacheIdx: number;
  /** Where that slot starts in a LocalStorage's elements (2 * cacheIdx: the map, then its elem). */
  readonly cacheSlot: number;
  /** What one value costs its owner: the elem header plus value_size. */
  readonly elemSize: number;
  /** Where the value's bpf_spin_lock is, -1 without one (BPF_F_LOCK is then EINVAL). */
  readonly spinLockOffset: number;
  /**
   * Head of the map's elems. The kernel spreads them over hashed buckets to cut lock contention;
   * with one thread a single list does the same job.
   */
  list: LocalStorageElem | null = null;
  nrElems = 0;
  /** The owner type's recursion guard, taken by the syscall paths; null for sk and inode storage. */
  protected readonly busy: StorageBusy | null;
  readonly #cache: LocalStorageCache;
  // Kept as the widest type so that a cgroup map is still a LocalStorageMap<LocalStorageOwner>.
  readonly #storageFree: OwnerStorageFree<never>;

  protected constructor(
    kernel: Kernel,
    spec: MapSpec,
    ownerType: OwnerType,
    busy: StorageBusy | null,
    storageFree: OwnerStorageFree<O>,
  ) {
    super(kernel, spec);
    this.#cache = kernel.storageCaches[ownerType];
    this.cacheIdx = this.#cache.idxGet();
    this.cacheSlot = 2 * this.cacheIdx;
    this.elemSize = BPF_LOCAL_STORAGE_ELEM_DATA_OFFSET + spec.valueSize;
    this.spinLockOffset = spec.btf!.value!.spinLockOffset; // alloc_check made BTF mandatory
    this.busy = busy;
    this.#storageFree = storageFree;
    debug('%s map %d: cache_idx %d', this.typeName, this.id, this.cacheIdx);
  }

  /** The owner a userspace key names (the kernel takes an fd); throws the owner type's errno. */
  protected abstract ownerOf(key: unknown): O;

  /** map_local_storage_charge: only sk storage limits what an owner may hold. */
  protected charge(_owner: O, _size: number): boolean {
    return true;
  }

  /** map_local_storage_uncharge */
  protected uncharge(_owner: O, _size: number): void {}

  /**
   * bpf_local_storage_lookup: the cached slot if it still belongs to this map, else a walk of the
   * owner's elems; with cacheit the hit takes over this map's slot (evicting whichever map shares
   * the index). This is the hot path of every bpf_*_storage_get: keep it free of allocations.
   */
  lookup(storage: LocalStorage | null | undefined, cacheit: boolean): LocalStorageData | null {
    // Strict compares: their cost does not depend on what the feedback has seen.
    if (storage === null || storage === undefined) return null;
    const slot = this.cacheSlot;
    if (storage[slot] === this) return storage[slot + 1] as LocalStorageData;
    return this.lookupSlow(storage, cacheit);
  }

  /** The cache miss, kept out of lookup() so the hit path stays small enough to inline. */
  private lookupSlow(storage: LocalStorage, cacheit: boolean): LocalStorageData | null {
    let selem = storage.list;
    while (selem !== null && smapOf(selem) !== this) selem = snodeNext(selem);
    if (selem === null) return null;
    if (cacheit) {
      storage.reserve(this.cacheIdx);
      storage[this.cacheSlot] = this;
      storage[this.cacheSlot + 1] = selem;
    }
    return selem;
  }

  /**
   * bpf_local_storage_update. The caller has checked that the owner may get new storage (it is
   * refcounted). Returns the live value; throws EINVAL/EEXIST/ENOENT/ENOMEM as the kernel returns.
   */
  update(owner: O, value: Uint8Array | null, mapFlags: number): LocalStorageData {
    // (flags & ~BPF_F_LOCK) > BPF_EXIST on the kernel's u64; checked on the whole number, since JS
    // bit operations would see only its low 32 bits.
    const op = mapFlags & ~BPF_F_LOCK;
    if (!Number.isInteger(mapFlags) || mapFlags < 0 || mapFlags > (BPF_F_LOCK | BPF_EXIST) || op > BPF_EXIST) {
      throw bpfError('EINVAL', `update flags ${mapFlags}: BPF_ANY, BPF_NOEXIST or BPF_EXIST, optionally with BPF_F_LOCK`);
    }
    const locked = (mapFlags & BPF_F_LOCK) !== 0;
    if (locked && this.spinLockOffset < 0) throw bpfError('EINVAL', 'BPF_F_LOCK on a value without a bpf_spin_lock');

    const storage = owner.bpfStorage as LocalStorage | null;
    if (storage === null) {
      // The very first elem of this owner, in any map.
      checkFlags(null, op);
      const selem = this.selemAlloc(owner, value);
      this.storageAlloc(owner, selem);
      return selem;
    }

    if (locked && op !== BPF_NOEXIST) {
      // In place, so a program holding the value sees the update and nothing is allocated.
      const old = this.lookup(storage, false);
      checkFlags(old, op);
      if (old !== null) {
        copyMapValue(old, value!, this.spinLockOffset);
        return old;
      }
    }

    // The kernel allocates before re-checking under the storage lock: a full owner (sk optmem)
    // therefore answers ENOMEM before EEXIST/ENOENT, and so do we.
    const selem = this.selemAlloc(owner, value);
    const old = this.lookup(storage, false);
    try {
      checkFlags(old, op);
    } catch (e) {
      this.uncharge(owner, this.elemSize);
      this.slab.free(selem);
      throw e;
    }
    // First link the new elem to the map, then publish it to the owner, then drop the old one: a
    // reader always finds one live value.
    this.linkMap(selem);
    linkStorage(storage, selem);
    if (old !== null) {
      this.unlinkMap(old);
      this.unlinkStorage(storage, old);
    }
    return selem;
  }

  /** The helpers' delete and BPF_MAP_DELETE_ELEM (cgroup_storage_delete, ...): false if absent. */
  deleteOwner(owner: O): boolean {
    const sdata = this.lookup(owner.bpfStorage as LocalStorage | null, false);
    if (sdata === null) return false;
    this.selemUnlink(sdata);
    return true;
  }

  /** A helper's creation: bpf_local_storage_update with BPF_NOEXIST, any error being NULL. */
  createForHelper(owner: O, value: Uint8Array | null): LocalStorageData | null {
    if (value !== null && (!(value instanceof Uint8Array) || value.length !== this.valueSize)) return null;
    try {
      return this.update(owner, value, BPF_NOEXIST);
    } catch (e) {
      debug('%s map %d: storage get failed: %s', this.typeName, this.id, (e as Error).message);
      return null;
    }
  }

  // --- BPF_MAP_*_ELEM from userspace ------------------------------------------------------------

  override lookupElem(key: unknown, flags = 0): Uint8Array {
    if (flags !== 0 && flags !== BPF_F_LOCK) throw bpfError('EINVAL', `lookup flags ${flags}: only BPF_F_LOCK`);
    if (flags === BPF_F_LOCK && this.spinLockOffset < 0) throw bpfError('EINVAL', 'BPF_F_LOCK on a value without a bpf_spin_lock');
    const owner = this.ownerOf(key);
    this.busy?.lock();
    let sdata: LocalStorageData | null;
    try {
      sdata = this.lookup(owner.bpfStorage as LocalStorage | null, true);
    } finally {
      this.busy?.unlock();
    }
    if (sdata === null) throw bpfError('ENOENT', `${this.typeName} map ${this.id}: no value for this ${this.ownerName}`);
    // The copy's spin lock reads as zero, as check_and_init_map_value leaves it.
    const copy = new Uint8Array(this.valueSize);
    copyMapValue(copy, sdata, this.spinLockOffset);
    return copy;
  }

  override updateElem(key: unknown, value: Uint8Array, flags = 0): void {
    if ((flags & BPF_F_LOCK) !== 0 && this.spinLockOffset < 0) {
      throw bpfError('EINVAL', 'BPF_F_LOCK on a value without a bpf_spin_lock');
    }
    this.checkValue(value);
    const owner = this.ownerOf(key);
    this.busy?.lock();
    try {
      this.update(owner, value, flags);
    } finally {
      this.busy?.unlock();
    }
  }

  override deleteElem(key: unknown): void {
    const owner = this.ownerOf(key);
    this.busy?.lock();
    let found: boolean;
    try {
      found = this.deleteOwner(owner);
    } finally {
      this.busy?.unlock();
    }
    if (!found) throw bpfError('ENOENT', `${this.typeName} map ${this.id}: no value for this ${this.ownerName}`);
  }

  override memUsage(): number {
    return SMAP_SIZE + SMAP_BUCKETS_SIZE;
  }

  /** What the key names, for messages: "cgroup", "task", "socket", "inode". */
  protected abstract readonly ownerName: string;

  /**
   * bpf_local_storage_map_free: the last reference is gone, so no program or syscall can reach the
   * map; every value it defined is unlinked from its owner (freeing owners' storage that had only
   * this map's value), other maps' values stay, and the cache index is given back.
   */
  protected override release(): void {
    this.#cache.idxFree(this.cacheIdx);
    const n = this.nrElems;
    while (this.list !== null) this.selemUnlink(this.list);
    debug('%s map %d freed: %d values unlinked', this.typeName, this.id, n);
  }

  // --- elem and storage lifetime ----------------------------------------------------------------

  /** bpf_selem_alloc: charge the owner, then a zeroed value with `value` copied in. */
  selemAlloc(owner: O, value: Uint8Array | null): LocalStorageElem {
    if (!this.charge(owner, this.elemSize)) throw bpfError('ENOMEM', `${this.ownerName} cannot be charged ${this.elemSize} bytes`);
    const selem = new LocalStorageElem(this);
    if (value !== null) copyMapValue(selem, value, this.spinLockOffset);
    return selem;
  }

  /**
   * bpf_local_storage_alloc: the owner's first value brings its storage, which the owner destroys
   * when it is freed. If the storage cannot be charged, the first value's charge is returned too
   * (it was never linked), as the kernel frees the selem on that error path.
   */
  storageAlloc(owner: O, first: LocalStorageElem): void {
    if (!this.charge(owner, BPF_LOCAL_STORAGE_SIZE)) {
      this.uncharge(owner, this.elemSize);
      this.slab.free(first);
      throw bpfError('ENOMEM', `${this.ownerName} cannot be charged ${BPF_LOCAL_STORAGE_SIZE} bytes`);
    }
    const storage = new LocalStorage(owner, this.cacheSlotsInUse(), this.#storageFree);
    linkStorage(storage, first);
    this.linkMap(first);
    owner.bpfStorage = storage;
  }

  /** The owner type's highest cache index in use, plus one: how many slots a new storage needs. */
  private cacheSlotsInUse(): number {
    const counts = this.#cache.idxUsageCounts;
    let n = counts.length;
    while (counts[n - 1] === 0) n--;
    return n;
  }

  /**
   * bpf_selem_unlink: from the map first, then from the owner (maybe freeing its storage). Only
   * linked elems reach here: with one thread, delete and map free cannot race for an elem.
   */
  selemUnlink(selem: LocalStorageElem): void {
    const storage = storageOf(selem)!;
    this.unlinkMap(selem);
    this.unlinkStorage(storage, selem);
  }

  /**
   * bpf_selem_unlink_storage_nolock: clears the cache slot if it held this elem, uncharges it, and
   * when it was the owner's last value frees the storage and clears the owner's pointer.
   */
  private unlinkStorage(storage: LocalStorage, selem: LocalStorageElem): void {
    const owner = storage.owner as O;
    const last = storage.list === selem && snodeNext(selem) === null;
    if (storage[this.cacheSlot + 1] === selem) storage[this.cacheSlot] = storage[this.cacheSlot + 1] = null;
    const uncharge = this.elemSize + (last ? BPF_LOCAL_STORAGE_SIZE : 0);
    this.uncharge(owner, uncharge);
    storage.memCharge -= uncharge;
    unlinkStorageList(storage, selem);
    if (last) freeStorage(storage);
  }

  linkMap(selem: LocalStorageElem): void {
    linkMapList(this, selem);
    this.nrElems++;
  }

  /** Every unlink passes here once, last of the elem's life: its slot is free from then on. */
  unlinkMap(selem: LocalStorageElem): void {
    unlinkMapList(this, selem);
    this.slab.free(selem);
    this.nrElems--;
  }

  /** The map's values, newest first (what map free walks). */
  *elems(): Generator<LocalStorageElem> {
    for (let e = this.list; e !== null; e = mapNext(e)) yield e;
  }
}

/** check_flags: BPF_NOEXIST needs the value absent, BPF_EXIST present. */
function checkFlags(old: LocalStorageData | null, op: number): void {
  if (old !== null && op === BPF_NOEXIST) throw bpfError('EEXIST', 'value exists (BPF_NOEXIST)');
  if (old === null && op === BPF_EXIST) throw bpfError('ENOENT', 'no value to update (BPF_EXIST)');
}

/** bpf_selem_link_storage_nolock: newest first, charged to the storage. */
export function linkStorage(storage: LocalStorage, selem: LocalStorageElem): void {
  storage.memCharge += smapOf(selem).elemSize;
  linkStorageList(storage, selem);
}

/** The storage has no values left or its owner is going: detach it from the owner for good. */
function freeStorage(storage: LocalStorage): void {
  const owner = storage.owner!;
  storage.owner = null;
  storage.fill(null);
  owner.bpfStorage = null;
}

/**
 * bpf_local_storage_destroy: the owner is going away, so every one of its values leaves its map
 * and the storage is freed. Returns mem_charge for the caller to uncharge (only sk storage does).
 */
export function bpfLocalStorageDestroy(storage: LocalStorage): number {
  while (storage.list !== null) {
    const selem = storage.list;
    smapOf(selem).unlinkMap(selem);
    unlinkStorageList(storage, selem);
  }
  freeStorage(storage);
  return storage.memCharge;
}

/**
 * bpf_cgrp_storage_free, bpf_task_storage_free: the owner is being freed, so its values in every map
 * go, with the owner type's recursion guard held so a program re-entering meanwhile backs off.
 */
export function bpfLocalStorageFreeLocked(busy: StorageBusy, owner: StorageOwner): void {
  const storage = owner.bpfStorage as LocalStorage | null;
  if (storage === null) return;
  busy.lock();
  try {
    bpfLocalStorageDestroy(storage);
  } finally {
    busy.unlock();
  }
}
