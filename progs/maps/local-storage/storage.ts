/**
 * The data structures of include/linux/bpf_local_storage.h, with the kernel's names.
 *
 * One LocalStorage hangs off each owner that has values (owner.bpfStorage). It holds the owner's
 * elems, one per map, on an intrusive list, and a 16-slot cache of the elem last found for each
 * map's cache index. Each elem is also on its map's list, so a map being freed can find every
 * value it defined. The owner, not the map, is the primary owner of an elem.
 *
 * Layout, chosen for the cached bpf_*_storage_get (measured in scripts/bench/local-storage.ts): in
 * C the cache array is inline in struct bpf_local_storage and the value bytes are inline in the
 * elem (sdata.data[]), so a hit is owner -> storage -> elem. Here too: LocalStorage is an Array
 * whose elements are the cache slots, and LocalStorageElem is a Uint8Array whose bytes are the
 * value, so the elem *is* struct bpf_local_storage_data and the value a program gets. Against a
 * storage object holding a cache array and elems holding a value array, that saves two dependent
 * loads per lookup and an object per value.
 *
 * Because programs hold the elem itself, its links are private fields: a program cannot reach its
 * map, its owner's storage or its neighbours through it. The core reaches them only through the
 * functions below.
 */
import { LOC_SPLIT } from '../slab';
import type { OwnerStorage, StorageOwner } from '../owners';
import type { LocalStorageMap, LocalStorageOwner, OwnerStorageFree } from './map';

/**
 * sizeof(struct bpf_local_storage) on x86-64 (v6.x, rqspinlock era): cache[16] 128, list 8, owner 8,
 * rcu 16, lock 4 (+4 pad), mem_charge 8, owner_refcnt 4, use_kmalloc_nolock 1, padded to 184.
 * Charged once per owner, with its first elem.
 */
export const BPF_LOCAL_STORAGE_SIZE = 184;

/**
 * offsetof(struct bpf_local_storage_elem, sdata.data): map_node 16, snode 16, local_storage 8,
 * rcu/free_node 16, state 4, use_kmalloc_nolock 1, then sdata is cacheline aligned (64) and data
 * follows its smap pointer. elem_size = this + value_size.
 */
export const BPF_LOCAL_STORAGE_ELEM_DATA_OFFSET = 72;

/** sizeof(struct bpf_spin_lock): the bytes copy_map_value leaves alone. */
export const BPF_SPIN_LOCK_SIZE = 4;

/** Any local storage map, whatever its owner type. */
export type AnyLocalStorageMap = LocalStorageMap<LocalStorageOwner>;

/** SDATA(selem)->smap: the map that defines the value, the key an owner's elems are searched by. */
export let smapOf: (selem: LocalStorageElem) => AnyLocalStorageMap;
/** selem->local_storage: the owner's storage while linked to it, else null. */
export let storageOf: (selem: LocalStorageElem) => LocalStorage | null;
/** The next elem of the same owner (snode), newest first. */
export let snodeNext: (selem: LocalStorageElem) => LocalStorageElem | null;
/** The next elem of the same map (map_node). */
export let mapNext: (selem: LocalStorageElem) => LocalStorageElem | null;
/** bpf_selem_link_storage_nolock's list half: at the head of the owner's list. */
export let linkStorageList: (storage: LocalStorage, selem: LocalStorageElem) => void;
/** hlist_del of the snode: off the owner's list (a short one: one elem per map at most). */
export let unlinkStorageList: (storage: LocalStorage, selem: LocalStorageElem) => void;
/** bpf_selem_link_map's list half: at the head of the map's list. */
export let linkMapList: (smap: AnyLocalStorageMap, selem: LocalStorageElem) => void;
/** hlist_del of the map_node. */
export let unlinkMapList: (smap: AnyLocalStorageMap, selem: LocalStorageElem) => void;

/**
 * struct bpf_local_storage_elem, with its struct bpf_local_storage_data: the value's bytes, plus
 * (privately) the map that defines it and its links into the owner's storage and the map.
 */
export class LocalStorageElem extends Uint8Array {
  #smap: AnyLocalStorageMap;
  #localStorage: LocalStorage | null = null;
  #snodeNext: LocalStorageElem | null = null;
  #mapPrev: LocalStorageElem | null = null;
  #mapNext: LocalStorageElem | null = null;

  /** A zeroed value of smap's value_size in the map's slab, linked to nothing yet. */
  constructor(smap: AnyLocalStorageMap) {
    const loc = smap.slab.alloc();
    // Uint8Array's typings give a subclass's super() only the ArrayBuffer overload.
    super(smap.slab.bufferOf(loc) as unknown as ArrayBuffer, loc % LOC_SPLIT, smap.valueSize);
    this.#smap = smap;
  }

  /** slice(), map() and the like make plain Uint8Arrays, not elems. */
  static get [Symbol.species](): Uint8ArrayConstructor {
    return Uint8Array;
  }

  static {
    smapOf = (e) => e.#smap;
    storageOf = (e) => e.#localStorage;
    snodeNext = (e) => e.#snodeNext;
    mapNext = (e) => e.#mapNext;
    linkStorageList = (storage, e) => {
      e.#localStorage = storage;
      e.#snodeNext = storage.list;
      storage.list = e;
    };
    unlinkStorageList = (storage, e) => {
      if (storage.list === e) {
        storage.list = e.#snodeNext;
      } else {
        let prev = storage.list!;
        while (prev.#snodeNext !== e) prev = prev.#snodeNext!;
        prev.#snodeNext = e.#snodeNext;
      }
      e.#snodeNext = null;
      e.#localStorage = null;
    };
    linkMapList = (smap, e) => {
      e.#mapNext = smap.list;
      if (smap.list !== null) smap.list.#mapPrev = e;
      smap.list = e;
    };
    unlinkMapList = (smap, e) => {
      if (e.#mapPrev !== null) e.#mapPrev.#mapNext = e.#mapNext;
      else smap.list = e.#mapNext;
      if (e.#mapNext !== null) e.#mapNext.#mapPrev = e.#mapPrev;
      e.#mapPrev = e.#mapNext = null;
    };
  }
}

/**
 * struct bpf_local_storage_data. Here it is the elem itself (SELEM() and SDATA() are the identity):
 * its bytes are the data, its map is smapOf(sdata).
 */
export type LocalStorageData = LocalStorageElem;

/**
 * struct bpf_local_storage: one per owner that has at least one value. Its array elements are the
 * 16-slot cache: slot i (elements 2i and 2i+1) holds the map with cache_idx i whose elem was last
 * found, and that elem. The kernel checks sdata->smap, which shares the data's cache line; keeping
 * the map beside the pointer does the same here, so a hit reads one line of the storage.
 *
 * The kernel's array always has BPF_LOCAL_STORAGE_CACHE_SIZE slots; this one starts with as many as
 * the owner type's maps use (4 maps, 4 slots) and grows when a newer map caches a value, since
 * slots an owner never uses are most of a storage's memory. Past the end reads as undefined: a miss.
 */
export class LocalStorage extends Array<AnyLocalStorageMap | LocalStorageElem | null> implements OwnerStorage {
  /** Head of the owner's elems, newest first (hlist_add_head). */
  list: LocalStorageElem | null = null;
  /** Cleared when the storage is freed, after which the owner may go. */
  owner: StorageOwner | null;
  /** What has been charged to the owner for this storage: its own size plus each elem's. */
  memCharge = BPF_LOCAL_STORAGE_SIZE;
  /** The owner type's free (bpf_cgrp_storage_free, ...): one function per type, not per owner. */
  readonly ownerFree: OwnerStorageFree<never>;

  /** nrSlots: the cache slots to start with (the owner type's highest cache_idx in use, plus one). */
  constructor(owner: StorageOwner, nrSlots: number, ownerFree: OwnerStorageFree<never>) {
    // Elements given one by one (never fewer than two) so V8 keeps them packed: no hole checks.
    super(...new Array<null>(2 * nrSlots).fill(null));
    this.owner = owner;
    this.ownerFree = ownerFree;
  }

  /**
   * The owner is being freed: its values in every map go with it (the owner type's free, which
   * takes the recursion guard and runs bpf_local_storage_destroy). Once freed, a no-op.
   */
  destroy(): void {
    const owner = this.owner;
    if (owner !== null) (this.ownerFree as OwnerStorageFree<StorageOwner>)(owner);
  }

  /** Makes room for slot cacheIdx, appending so that the elements stay packed. */
  reserve(cacheIdx: number): void {
    while (this.length < 2 * cacheIdx + 2) this.push(null);
  }

  /** The elem cached in slot cacheIdx, if any. */
  cached(cacheIdx: number): LocalStorageElem | null {
    return (this[2 * cacheIdx + 1] as LocalStorageElem | undefined) ?? null;
  }

  /** map(), filter() and the like make plain arrays, not storages. */
  static override get [Symbol.species](): ArrayConstructor {
    return Array;
  }

  /** The owner's elems, newest first. */
  *elems(): Generator<LocalStorageElem> {
    for (let e = this.list; e !== null; e = snodeNext(e)) yield e;
  }
}

/**
 * copy_map_value: copies a whole value except its bpf_spin_lock, which belongs to the destination
 * (a new value's lock starts zeroed; an existing one's stays as it is).
 */
export function copyMapValue(dst: Uint8Array, src: Uint8Array, spinLockOffset: number): void {
  if (spinLockOffset < 0) {
    dst.set(src);
    return;
  }
  dst.set(src.subarray(0, spinLockOffset));
  const after = spinLockOffset + BPF_SPIN_LOCK_SIZE;
  dst.set(src.subarray(after), after);
}
