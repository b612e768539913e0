/**
 * BPF_MAP_CREATE (map_create in kernel/bpf/syscall.c): the checks every map type shares, then the
 * type's own alloc_check, then the name and BTF checks, then allocation, which hands the caller the
 * map's first reference.
 *
 * Deliberate difference in order: the kernel allocates the map before it checks the name and BTF
 * and frees it again on failure. vbpffs checks them first so a refused map never takes an id; the
 * errnos are the same, and every type-specific check still comes before them.
 */
import { BPF_F_RDONLY, BPF_F_RDONLY_PROG, BPF_F_WRONLY, BPF_F_WRONLY_PROG, BpfMapType, bpfError } from '../../uapi';
import type { Kernel } from '../kernel';
import { Handle } from '../object';
import { arrayMapOps } from './array';
import { cgroupStorageMapOps } from './cgroup-storage';
import { hashMapOps } from './hash';
import { cgrpStorageMapOps, inodeStorageMapOps, skStorageMapOps, taskStorageMapOps } from './local-storage';
import type { BpfMap, MapOps, MapSpec } from './map';

/**
 * bpf_map_types[]: the ops of every map type vbpffs models. A type missing here is EINVAL at
 * creation, like a type the kernel was built without.
 */
export const MAP_OPS: Partial<Record<BpfMapType, MapOps>> = {
  [BpfMapType.HASH]: hashMapOps,
  [BpfMapType.ARRAY]: arrayMapOps,
  [BpfMapType.CGROUP_STORAGE]: cgroupStorageMapOps,
  // Local storage (progs/maps/local-storage/).
  [BpfMapType.CGRP_STORAGE]: cgrpStorageMapOps,
  [BpfMapType.TASK_STORAGE]: taskStorageMapOps,
  [BpfMapType.SK_STORAGE]: skStorageMapOps,
  [BpfMapType.INODE_STORAGE]: inodeStorageMapOps,
};

/** BPF_OBJ_NAME_LEN, with the terminating NUL. */
export const BPF_OBJ_NAME_LEN = 16;

/** The map types whose values may hold a bpf_spin_lock (map_check_btf). */
const SPIN_LOCK_MAP_TYPES = new Set<BpfMapType>([
  BpfMapType.HASH,
  BpfMapType.ARRAY,
  BpfMapType.CGROUP_STORAGE,
  BpfMapType.SK_STORAGE,
  BpfMapType.INODE_STORAGE,
  BpfMapType.TASK_STORAGE,
  BpfMapType.CGRP_STORAGE,
]);

const U32_MAX = 0xffffffff;
const isU32 = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= U32_MAX;

/** bpf_obj_name_cpy: at most BPF_OBJ_NAME_LEN - 1 characters, each alphanumeric, '_' or '.'. */
export function bpfObjNameCpy(name: string): string {
  if (name.length >= BPF_OBJ_NAME_LEN) throw bpfError('EINVAL', `name '${name}' is longer than ${BPF_OBJ_NAME_LEN - 1} characters`);
  if (!/^[A-Za-z0-9_.]*$/.test(name)) throw bpfError('EINVAL', `name '${name}' may only hold letters, digits, '_' and '.'`);
  return name;
}

/**
 * map_check_btf: the key and value types must have the map's sizes; a value's bpf_spin_lock limits
 * the map type and its program access flags; then the type's own rules.
 */
function mapCheckBtf(spec: MapSpec, ops: MapOps): void {
  const { key, value } = spec.btf ?? {};
  if (value === undefined) return;
  if (key === undefined) {
    // "Some maps allow key to be unspecified": only those with their own check decide.
    if (ops.checkBtf === undefined) throw bpfError('EINVAL', 'a value type needs a key type for this map type');
  } else if (key.size !== spec.keySize) {
    throw bpfError('EINVAL', `BTF key size ${key.size} != key_size ${spec.keySize}`);
  }
  if (value.size !== spec.valueSize) throw bpfError('EINVAL', `BTF value size ${value.size} != value_size ${spec.valueSize}`);
  if (value.spinLockOffset >= 0) {
    if ((spec.flags ?? 0) & (BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG)) {
      throw bpfError('EACCES', 'a value with bpf_spin_lock cannot be read-only or write-only for programs');
    }
    if (!SPIN_LOCK_MAP_TYPES.has(spec.type)) throw bpfError('EOPNOTSUPP', 'this map type cannot hold a bpf_spin_lock');
  }
  ops.checkBtf?.(spec);
}

/**
 * BPF_MAP_CREATE: validates `spec` with the kernel's errnos and creates the map; the returned handle
 * owns the creator's reference (closing it frees the map unless something else holds it).
 */
export function createMap<T extends BpfMap = BpfMap>(kernel: Kernel, spec: MapSpec): Handle<T> {
  if (!isU32(spec.type) || !isU32(spec.keySize) || !isU32(spec.valueSize) || !isU32(spec.maxEntries) || !(spec.flags === undefined || isU32(spec.flags))) {
    throw bpfError('EINVAL', 'type, key_size, value_size, max_entries and map_flags are u32');
  }
  if (spec.btf?.key !== undefined && spec.btf.value === undefined) throw bpfError('EINVAL', 'a key type without a value type');
  // bpf_get_file_flag: the creator's fd cannot be both read-only and write-only.
  const flags = spec.flags ?? 0;
  if (flags & BPF_F_RDONLY && flags & BPF_F_WRONLY) throw bpfError('EINVAL', 'BPF_F_RDONLY and BPF_F_WRONLY together');
  const ops = MAP_OPS[spec.type as BpfMapType];
  if (ops === undefined) throw bpfError('EINVAL', `map type ${spec.type} is not supported`);
  ops.allocCheck(spec);
  bpfObjNameCpy(spec.name ?? '');
  mapCheckBtf(spec, ops);
  // bpf_map_area_alloc charges the memory cgroup: past its limit the allocation, and so the
  // creation, fails. Charged before anything is allocated, so a refused map takes no id.
  const size = ops.allocSize?.(spec) ?? 0;
  if (size > 0 && kernel.mapMemory() + size > kernel.mapMemLimit) {
    throw bpfError('ENOMEM', `a map of ${size} bytes would take the maps' memory past its limit of ${kernel.mapMemLimit} bytes (${kernel.mapMemory()} in use)`);
  }
  return new Handle(ops.alloc(kernel, spec) as T);
}
