/**
 * BPF_MAP_TYPE_INODE_STORAGE (kernel/bpf/bpf_inode_storage.c): local storage owned by inodes, the
 * BPF LSM's per-file state. Userspace names an inode by the object where the kernel takes the fd
 * of any open file (fget_raw); the values are freed with the inode.
 */
import { BPF_LOCAL_STORAGE_GET_F_CREATE, ERRNO, bpfError } from '../../../uapi';
import type { Kernel } from '../../kernel';
import type { MapOps, MapSpec } from '../map';
import type { InodeOwner } from '../owners';
import { localStorageMapAllocCheck, localStorageMapCheckBtf } from './alloc-check';
import { LocalStorageMap, bpfLocalStorageDestroy } from './map';
import type { LocalStorage } from './storage';

export function isInodeOwner(x: unknown): x is InodeOwner {
  const i = x as InodeOwner | null;
  return (
    typeof i === 'object' && i !== null && 'bpfStorage' in i && typeof i.ino === 'number' &&
    typeof i.dying === 'boolean'
  );
}

export class InodeStorageMap extends LocalStorageMap<InodeOwner> {
  protected override readonly ownerName = 'inode';

  constructor(kernel: Kernel, spec: MapSpec) {
    super(kernel, spec, 'inode', null, bpf_inode_storage_free);
  }

  /** fget_raw: anything but a live inode is EBADF (no open file can name a freed inode). */
  protected override ownerOf(key: unknown): InodeOwner {
    if (!isInodeOwner(key) || key.dying) throw bpfError('EBADF', 'the key is not an open file\'s inode');
    return key;
  }
}

/**
 * bpf_inode_storage_get: the value, or NULL. The kernel creates whenever asked, trusting the LSM
 * hook to hold the inode; here a program may keep an inode object past its life, so creation also
 * requires the inode not to be dying (otherwise the value would outlive its owner's free).
 */
export function bpf_inode_storage_get(
  map: InodeStorageMap,
  inode: InodeOwner | null,
  value: Uint8Array | null = null,
  flags = 0,
): Uint8Array | null {
  if ((flags !== 0 && flags !== BPF_LOCAL_STORAGE_GET_F_CREATE) || inode === null || inode === undefined) return null;
  const sdata = map.lookup(inode.bpfStorage as LocalStorage | null, true);
  if (sdata !== null) return sdata;
  if (flags === BPF_LOCAL_STORAGE_GET_F_CREATE && isInodeOwner(inode) && !inode.dying) {
    return map.createForHelper(inode, value);
  }
  return null;
}

/** bpf_inode_storage_delete: 0, or -EINVAL (no inode), -ENOENT (no value). */
export function bpf_inode_storage_delete(map: InodeStorageMap, inode: InodeOwner | null): number {
  if (inode === null || inode === undefined) return -ERRNO.EINVAL;
  return map.deleteOwner(inode) ? 0 : -ERRNO.ENOENT;
}

/** bpf_inode_storage_free: the inode is evicted; its values in every map go with it. */
export function bpf_inode_storage_free(inode: InodeOwner): void {
  const storage = inode.bpfStorage as LocalStorage | null;
  if (storage === null) return;
  bpfLocalStorageDestroy(storage);
}

export const inodeStorageMapOps: MapOps = {
  allocCheck: localStorageMapAllocCheck,
  checkBtf: localStorageMapCheckBtf,
  alloc: (kernel, spec) => new InodeStorageMap(kernel, spec),
};
