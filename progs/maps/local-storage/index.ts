/**
 * Local storage: the generic core (LocalStorageMap and the per-owner LocalStorage) and its four
 * owner adapters, each with its map type's ops and the helpers programs call.
 */
export { LocalStorageMap, bpfLocalStorageDestroy } from './map';
export {
  LocalStorage,
  LocalStorageElem,
  smapOf,
  BPF_LOCAL_STORAGE_SIZE,
  BPF_LOCAL_STORAGE_ELEM_DATA_OFFSET,
  type LocalStorageData,
} from './storage';
export { localStorageMapAllocCheck, localStorageMapCheckBtf } from './alloc-check';
export { StorageBusy, cgrpStorageBusy, taskStorageBusy } from './busy';
export * from './cgrp-storage';
export * from './task-storage';
export * from './sk-storage';
export * from './inode-storage';
