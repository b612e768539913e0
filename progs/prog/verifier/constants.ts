/**
 * The constants a program object file may import from 'vbpffs/bpf', with their values: the uapi's,
 * under the kernel's C names (BPF_MAP_TYPE_CGRP_STORAGE, BPF_F_NO_PREALLOC, BPF_ANY ...). The parser
 * folds them in map() literals; the runtime's 'vbpffs/bpf' module exports the same table.
 */
import * as uapi from '../../../uapi';
import { BpfCgroupIterOrder, BpfMapType } from '../../../uapi';

function enumEntries(e: Record<string, string | number>, prefix: string): [string, number][] {
  return Object.entries(e)
    .filter((kv): kv is [string, number] => typeof kv[1] === 'number')
    .map(([k, v]) => [`${prefix}${k}`, v]);
}

const FLAG_NAMES = [
  'BPF_F_NO_PREALLOC', 'BPF_F_NO_COMMON_LRU', 'BPF_F_NUMA_NODE', 'BPF_F_RDONLY', 'BPF_F_WRONLY',
  'BPF_F_STACK_BUILD_ID', 'BPF_F_ZERO_SEED', 'BPF_F_RDONLY_PROG', 'BPF_F_WRONLY_PROG', 'BPF_F_CLONE',
  'BPF_F_MMAPABLE', 'BPF_F_PRESERVE_ELEMS', 'BPF_F_INNER_MAP', 'BPF_F_LINK', 'BPF_F_PATH_FD',
  'BPF_ANY', 'BPF_NOEXIST', 'BPF_EXIST', 'BPF_F_LOCK',
  'BPF_LOCAL_STORAGE_GET_F_CREATE', 'BPF_SK_STORAGE_GET_F_CREATE',
] as const;

/** Name -> value of every constant 'vbpffs/bpf' exports. */
export const BPF_CONSTANTS: Readonly<Record<string, number>> = Object.freeze(Object.fromEntries([
  ...enumEntries(BpfMapType as unknown as Record<string, string | number>, 'BPF_MAP_TYPE_'),
  ...enumEntries(BpfCgroupIterOrder as unknown as Record<string, string | number>, 'BPF_CGROUP_ITER_'),
  ...FLAG_NAMES.map((n) => [n, uapi[n]] as [string, number]),
]));

/** What 'vbpffs/bpf' exports besides helpers and constants: the declaration functions. */
export const DECLARATORS = new Set(['map', 'SEC']);
