/**
 * BPF_MAP_TYPE_SK_STORAGE (net/core/bpf_sk_storage.c): local storage owned by sockets, the first
 * of its kind. Unlike the other owners a socket pays for its storage: every elem and the storage
 * itself are charged to sk_omem_alloc within sysctl_optmem_max. Maps created with BPF_F_CLONE have
 * their values copied to the socket accept() makes from a listener (bpf_sk_storage_clone).
 */
import { BPF_F_CLONE, BPF_SK_STORAGE_GET_F_CREATE, ERRNO, bpfError } from '../../../uapi';
import type { Kernel } from '../../kernel';
import type { MapOps, MapSpec } from '../map';
import type { SockOwner } from '../owners';
import { localStorageMapAllocCheck, localStorageMapCheckBtf } from './alloc-check';
import { LocalStorageMap, bpfLocalStorageDestroy, linkStorage } from './map';
import { smapOf, type LocalStorage, type LocalStorageElem } from './storage';

export function isSockOwner(x: unknown): x is SockOwner {
  const s = x as SockOwner | null;
  return (
    typeof s === 'object' && s !== null && 'bpfStorage' in s && typeof s.cookie === 'number' &&
    typeof s.fullsock === 'boolean' && typeof s.refcnt === 'number' && typeof s.omemAlloc === 'number'
  );
}

export class SkStorageMap extends LocalStorageMap<SockOwner> {
  protected override readonly ownerName = 'socket';

  constructor(kernel: Kernel, spec: MapSpec) {
    super(kernel, spec, 'sk', null, bpf_sk_storage_free);
  }

  /**
   * sockfd_lookup: an object that is not a socket is ENOTSOCK (an fd of another file); anything
   * else, or a socket already closed, is EBADF.
   */
  protected override ownerOf(key: unknown): SockOwner {
    if (isSockOwner(key)) {
      if (key.refcnt <= 0) throw bpfError('EBADF', `socket ${key.cookie} is closed`);
      return key;
    }
    if (typeof key === 'object' && key !== null) throw bpfError('ENOTSOCK', 'the key is not a socket');
    throw bpfError('EBADF', `not a socket: ${String(key)}`);
  }

  /** bpf_sk_storage_charge: "same check as in sock_kmalloc()". */
  protected override charge(sk: SockOwner, size: number): boolean {
    if (size > sk.optmemMax || sk.omemAlloc + size >= sk.optmemMax) return false;
    sk.omemAlloc += size;
    return true;
  }

  protected override uncharge(sk: SockOwner, size: number): void {
    sk.omemAlloc -= size;
  }
}

/** bpf_sk_storage_get: NULL for no socket, a request sock or timewait sock, or unknown flags. */
export function bpf_sk_storage_get(
  map: SkStorageMap,
  sk: SockOwner | null,
  value: Uint8Array | null = null,
  flags = 0,
): Uint8Array | null {
  if (sk === null || sk === undefined || !sk.fullsock || (flags !== 0 && flags !== BPF_SK_STORAGE_GET_F_CREATE)) return null;
  const sdata = map.lookup(sk.bpfStorage as LocalStorage | null, true);
  if (sdata !== null) return sdata;
  // "Cannot add new elem to a going away sk" (refcount_inc_not_zero).
  if (flags === BPF_SK_STORAGE_GET_F_CREATE && isSockOwner(sk) && sk.refcnt > 0) {
    return map.createForHelper(sk, value);
  }
  return null;
}

/** bpf_sk_storage_delete: 0, or -EINVAL (not a full socket), -ENOENT (no value, or sk going away). */
export function bpf_sk_storage_delete(map: SkStorageMap, sk: SockOwner | null): number {
  if (sk === null || sk === undefined || !sk.fullsock) return -ERRNO.EINVAL;
  if (sk.refcnt <= 0) return -ERRNO.ENOENT;
  return map.deleteOwner(sk) ? 0 : -ERRNO.ENOENT;
}

/** bpf_sk_storage_free (__sk_destruct): every value goes and its optmem charge is returned. */
export function bpf_sk_storage_free(sk: SockOwner): void {
  const storage = sk.bpfStorage as LocalStorage | null;
  if (storage === null) return;
  sk.omemAlloc -= bpfLocalStorageDestroy(storage);
}

/**
 * bpf_sk_storage_clone (sk_clone_lock, on accept): copies the listener's values of BPF_F_CLONE maps
 * to newsk, charging newsk, skipping maps already going away. Returns 0 or -ENOMEM; on failure the
 * copies made so far stay on newsk and "the caller is responsible to call bpf_sk_storage_free".
 */
export function bpf_sk_storage_clone(sk: SockOwner, newsk: SockOwner): number {
  newsk.bpfStorage = null;
  const storage = sk.bpfStorage as LocalStorage | null;
  if (storage === null) return 0;
  for (const selem of storage.elems()) {
    const smap = smapOf(selem) as unknown as SkStorageMap;
    if ((smap.flags & BPF_F_CLONE) === 0) continue;
    // bpf_map_inc_not_zero: the map may be on its way to map free.
    if (!smap.tryGet()) continue;
    try {
      if (!cloneElem(smap, selem, newsk)) return -ERRNO.ENOMEM;
    } finally {
      smap.put();
    }
  }
  return 0;
}

function cloneElem(smap: SkStorageMap, selem: LocalStorageElem, newsk: SockOwner): boolean {
  let copy: LocalStorageElem;
  try {
    // The value is copied around its spin lock, so the copy's lock starts released.
    copy = smap.selemAlloc(newsk, selem);
  } catch {
    return false;
  }
  const newStorage = newsk.bpfStorage as LocalStorage | null;
  if (newStorage !== null) {
    smap.linkMap(copy);
    linkStorage(newStorage, copy);
    return true;
  }
  try {
    smap.storageAlloc(newsk, copy);
  } catch {
    return false;
  }
  return true;
}

export const skStorageMapOps: MapOps = {
  allocCheck: localStorageMapAllocCheck,
  checkBtf: localStorageMapCheckBtf,
  alloc: (kernel, spec) => new SkStorageMap(kernel, spec),
};
