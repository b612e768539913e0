/**
 * progs/maps: the BPF map types and what they share. Maps are created through createMap (the
 * BPF_MAP_CREATE rules and the per-type ops table); values are described by a ValueSchema (BTF's
 * role); format turns maps into bpftool dumps and bpffs pinned-map text.
 */
export { BpfMap, encodeIntKey, hasProgMapAccess, type MapOps, type MapSpec, type ProgMapAccess } from './map';
export * from './schema';
export { createMap, bpfObjNameCpy, MAP_OPS, BPF_OBJ_NAME_LEN } from './create';
export { HashMap, hashMapOps, mapFlagsAccessOk } from './hash';
export { ArrayMap, arrayMapOps, ARRAY_MAX_BYTES } from './array';
export {
  CgroupStorage,
  CgroupStorageMap,
  cgroupStorageMapOps,
  cgroupStoragesAlloc,
  cgroupStorageFree,
  cgroupStorages,
  bpfGetLocalStorage,
  CGROUP_STORAGE_KEY_SIZE,
  type CgroupStorageKey,
} from './cgroup-storage';
export * from './format';
export * from './owners';
export { LocalStorageCache } from './cache-idx';
// Local storage (CGRP_STORAGE, TASK_STORAGE, SK_STORAGE, INODE_STORAGE): the generic core and its owners.
export * from './local-storage';
export { LOC_SPLIT, ValueSlab } from './slab';
