/**
 * bpf_local_storage_map_alloc_check and bpf_local_storage_map_check_btf: the creation rules every
 * local storage map type shares. createMap runs them in the kernel's order: the attribute checks
 * (EINVAL, then E2BIG), then the common BTF size checks, then the key type check.
 */
import { BPF_F_CLONE, BPF_F_NO_PREALLOC, BPF_LOCAL_STORAGE_MAX_VALUE_SIZE, bpfError } from '../../../uapi';
import type { MapSpec } from '../map';

const BPF_LOCAL_STORAGE_CREATE_FLAG_MASK = BPF_F_NO_PREALLOC | BPF_F_CLONE;

export function localStorageMapAllocCheck(spec: MapSpec): void {
  const flags = spec.flags ?? 0;
  if ((flags & ~BPF_LOCAL_STORAGE_CREATE_FLAG_MASK) !== 0 || (flags & BPF_F_NO_PREALLOC) === 0) {
    throw bpfError('EINVAL', `map_flags ${flags}: local storage needs BPF_F_NO_PREALLOC and allows only BPF_F_CLONE besides`);
  }
  if (spec.maxEntries !== 0) throw bpfError('EINVAL', `max_entries ${spec.maxEntries}: local storage maps take 0`);
  if (spec.keySize !== 4) throw bpfError('EINVAL', `key_size ${spec.keySize}: the key is an int (an fd), 4 bytes`);
  if (!Number.isSafeInteger(spec.valueSize) || spec.valueSize <= 0) {
    throw bpfError('EINVAL', `value_size ${spec.valueSize}: must be positive`);
  }
  // "Enforce BTF for userspace sk dumping"
  if (spec.btf?.key === undefined || spec.btf.value === undefined) {
    throw bpfError('EINVAL', 'local storage maps need BTF for both key and value');
  }
  if (spec.valueSize > BPF_LOCAL_STORAGE_MAX_VALUE_SIZE) {
    throw bpfError('E2BIG', `value_size ${spec.valueSize} > BPF_LOCAL_STORAGE_MAX_VALUE_SIZE ${BPF_LOCAL_STORAGE_MAX_VALUE_SIZE}`);
  }
}

/** The key is an fd: its BTF type must be a 32-bit int (btf_type_is_i32). */
export function localStorageMapCheckBtf(spec: MapSpec): void {
  if (spec.btf?.key?.isInt32() !== true) throw bpfError('EINVAL', 'the BTF key type must be a 32-bit int');
}
