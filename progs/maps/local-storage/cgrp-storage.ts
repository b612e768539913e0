/**
 * BPF_MAP_TYPE_CGRP_STORAGE (kernel/bpf/bpf_cgrp_storage.c): local storage owned by cgroups.
 *
 * Userspace names a cgroup by the object, its id or its path where the kernel takes a cgroup fd;
 * programs call bpf_cgrp_storage_get/delete with a cgroup they hold. A value lives until its map is
 * freed or its cgroup is released (css_free, after rmdir and the last reference), whichever is first.
 */
import { BPF_LOCAL_STORAGE_GET_F_CREATE, ERRNO, bpfError } from '../../../uapi';
import type { Kernel } from '../../kernel';
import type { MapOps, MapSpec } from '../map';
import type { CgroupOwner } from '../owners';
import { localStorageMapAllocCheck, localStorageMapCheckBtf } from './alloc-check';
import { cgrpStorageBusy } from './busy';
import { LocalStorageMap, bpfLocalStorageFreeLocked } from './map';
import type { LocalStorage } from './storage';

// Held in a module constant so the hot path reads the counter, not the import first.
const busy = cgrpStorageBusy;

export function isCgroupOwner(x: unknown): x is CgroupOwner {
  const c = x as CgroupOwner | null;
  return (
    typeof c === 'object' && c !== null && 'bpfStorage' in c && typeof c.id === 'number' &&
    typeof c.path === 'string' && typeof c.released === 'boolean' && typeof c.onRelease === 'function'
  );
}

export class CgrpStorageMap extends LocalStorageMap<CgroupOwner> {
  protected override readonly ownerName = 'cgroup';

  constructor(kernel: Kernel, spec: MapSpec) {
    super(kernel, spec, 'cgroup', busy, bpf_cgrp_storage_free);
  }

  /**
   * cgroup_v1v2_get_from_fd: anything that is not a cgroup is EBADF (as a bad fd or a non-cgroup
   * fd is); a removed cgroup is ENOENT (css_tryget_online fails from rmdir on). An id or a path
   * that names no cgroup is ENOENT too: the kernel would have failed earlier, in cgroup_get_from_id
   * or in the open() that made the fd, with that errno.
   */
  protected override ownerOf(key: unknown): CgroupOwner {
    const resolver = this.kernel.cgroups;
    let cgrp: unknown = key;
    if ((typeof key === 'number' && Number.isSafeInteger(key)) || typeof key === 'string') {
      cgrp = typeof key === 'number' ? resolver?.cgroupById(key) : resolver?.cgroupByPath(key);
      if (cgrp === undefined) throw bpfError('ENOENT', `no cgroup ${typeof key === 'number' ? 'with id ' : ''}${key}`);
    }
    if (!isCgroupOwner(cgrp)) throw bpfError('EBADF', `not a cgroup: ${describeKey(key)}`);
    if (cgrp.dying || cgrp.released) throw bpfError('ENOENT', `cgroup ${cgrp.path} (id ${cgrp.id}) has been removed`);
    return cgrp;
  }
}

function describeKey(key: unknown): string {
  return typeof key === 'object' && key !== null ? (key.constructor?.name ?? 'object') : String(key);
}

/**
 * bpf_cgrp_storage_get: the value, or NULL (never an error). Creates only with F_CREATE and only
 * while the cgroup is online: "only allocate new storage, when the cgroup is refcounted".
 *
 * The recursion guard is checked first, as bpf_cgrp_storage_trylock does, but only taken around
 * creation: a lookup runs no code that could re-enter, so holding the counter across it would
 * change nothing but the cost of the hot path.
 */
export function bpf_cgrp_storage_get(
  map: CgrpStorageMap,
  cgrp: CgroupOwner | null,
  value: Uint8Array | null = null,
  flags = 0,
): Uint8Array | null {
  if ((flags !== 0 && flags !== BPF_LOCAL_STORAGE_GET_F_CREATE) || cgrp === null || cgrp === undefined || busy.count !== 0) return null;
  const sdata = map.lookup(cgrp.bpfStorage as LocalStorage | null, true);
  if (sdata !== null || flags === 0) return sdata;
  return cgrpStorageCreate(map, cgrp, value);
}

function cgrpStorageCreate(map: CgrpStorageMap, cgrp: CgroupOwner, value: Uint8Array | null): Uint8Array | null {
  if (!isCgroupOwner(cgrp) || cgrp.dying) return null;
  busy.lock();
  try {
    return map.createForHelper(cgrp, value);
  } finally {
    busy.unlock();
  }
}

/** bpf_cgrp_storage_delete: 0, or -EINVAL (no cgroup), -EBUSY (re-entered), -ENOENT (no value). */
export function bpf_cgrp_storage_delete(map: CgrpStorageMap, cgrp: CgroupOwner | null): number {
  if (cgrp === null || cgrp === undefined) return -ERRNO.EINVAL;
  if (!busy.trylock()) return -ERRNO.EBUSY;
  try {
    return map.deleteOwner(cgrp) ? 0 : -ERRNO.ENOENT;
  } finally {
    busy.unlock();
  }
}

/** bpf_cgrp_storage_free: the cgroup is released (css_free); its values in every map go with it. */
export function bpf_cgrp_storage_free(cgrp: CgroupOwner): void {
  bpfLocalStorageFreeLocked(busy, cgrp);
}

export const cgrpStorageMapOps: MapOps = {
  allocCheck: localStorageMapAllocCheck,
  checkBtf: localStorageMapCheckBtf,
  alloc: (kernel, spec) => new CgrpStorageMap(kernel, spec),
};
