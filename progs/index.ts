/**
 * progs/: the BPF object model. Objects with kernel-like ids and references (Kernel, BpfObject,
 * Handle), maps, programs, links and cgroup attachment. The only file layers above import.
 */
export { Kernel, type KernelOptions, type TaskResolver } from './kernel';
export { BpfObject, Handle, type ObjectKind } from './object';
export { IdTable, ID_MAX } from './idr';
export * from './maps';
export * from './helpers';
export * from './prog';
export * from './events';
export * from './runtime';
export * from './link';
export * from './cgroup';
