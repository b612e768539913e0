/**
 * Constants of the kernel's uapi <linux/bpf.h> that vbpffs models, with the kernel's names and values,
 * so kernel scenarios replay unchanged.
 */

export enum BpfMapType {
  UNSPEC = 0,
  HASH = 1,
  ARRAY = 2,
  CGROUP_STORAGE = 19, // a.k.a. BPF_MAP_TYPE_CGROUP_STORAGE_DEPRECATED
  PERCPU_CGROUP_STORAGE = 21,
  SK_STORAGE = 24,
  INODE_STORAGE = 28,
  TASK_STORAGE = 29,
  CGRP_STORAGE = 32,
}

/** bpftool's names for the map types (`bpftool map show` prints these). */
export const MAP_TYPE_NAME: Readonly<Record<BpfMapType, string>> = {
  [BpfMapType.UNSPEC]: 'unspec',
  [BpfMapType.HASH]: 'hash',
  [BpfMapType.ARRAY]: 'array',
  [BpfMapType.CGROUP_STORAGE]: 'cgroup_storage',
  [BpfMapType.PERCPU_CGROUP_STORAGE]: 'percpu_cgroup_storage',
  [BpfMapType.SK_STORAGE]: 'sk_storage',
  [BpfMapType.INODE_STORAGE]: 'inode_storage',
  [BpfMapType.TASK_STORAGE]: 'task_storage',
  [BpfMapType.CGRP_STORAGE]: 'cgrp_storage',
};

/** map_flags at BPF_MAP_CREATE. */
export const BPF_F_NO_PREALLOC = 1 << 0;
export const BPF_F_NO_COMMON_LRU = 1 << 1;
export const BPF_F_NUMA_NODE = 1 << 2;
export const BPF_F_RDONLY = 1 << 3;
export const BPF_F_WRONLY = 1 << 4;
export const BPF_F_STACK_BUILD_ID = 1 << 5;
export const BPF_F_ZERO_SEED = 1 << 6;
export const BPF_F_RDONLY_PROG = 1 << 7;
export const BPF_F_WRONLY_PROG = 1 << 8;
export const BPF_F_CLONE = 1 << 9;
export const BPF_F_MMAPABLE = 1 << 10;
export const BPF_F_PRESERVE_ELEMS = 1 << 11;
export const BPF_F_INNER_MAP = 1 << 12;
export const BPF_F_LINK = 1 << 13;
export const BPF_F_PATH_FD = 1 << 14;

/** The access-mode bits a map may carry (BPF_F_ACCESS_MASK in the kernel). */
export const BPF_F_ACCESS_MASK = BPF_F_RDONLY | BPF_F_RDONLY_PROG | BPF_F_WRONLY | BPF_F_WRONLY_PROG;

/** BPF_MAP_UPDATE_ELEM flags. */
export const BPF_ANY = 0;
export const BPF_NOEXIST = 1;
export const BPF_EXIST = 2;
export const BPF_F_LOCK = 4;

/** bpf_*_storage_get() flags. */
export const BPF_LOCAL_STORAGE_GET_F_CREATE = 1;
export const BPF_SK_STORAGE_GET_F_CREATE = BPF_LOCAL_STORAGE_GET_F_CREATE;

/** include/linux/bpf_local_storage.h */
export const BPF_LOCAL_STORAGE_CACHE_SIZE = 16;

/**
 * BPF_LOCAL_STORAGE_MAX_VALUE_SIZE = min(KMALLOC_MAX_SIZE - MAX_BPF_STACK - sizeof(selem),
 * U16_MAX - sizeof(selem)); with 64-byte cache lines sizeof(struct bpf_local_storage_elem) is 128,
 * so the U16_MAX term wins on x86-64.
 */
export const BPF_LOCAL_STORAGE_ELEM_SIZE = 128;
export const BPF_LOCAL_STORAGE_MAX_VALUE_SIZE = 0xffff - BPF_LOCAL_STORAGE_ELEM_SIZE;

/** KMALLOC_MAX_SIZE on x86-64 (4 KiB pages, MAX_PAGE_ORDER 10): the array and hash value cap. */
export const KMALLOC_MAX_SIZE = 1 << 22;
/** MAX_BPF_STACK: hash/array keys larger than this are rejected with E2BIG. */
export const MAX_BPF_STACK = 512;

/** The cgroup iterator's orders (enum bpf_cgroup_iter_order). */
export enum BpfCgroupIterOrder {
  UNSPEC = 0,
  SELF_ONLY = 1,
  DESCENDANTS_PRE = 2,
  DESCENDANTS_POST = 3,
  ANCESTORS_UP = 4,
  CHILDREN = 5,
}

/** enum bpf_prog_type (uapi), the values vbpffs uses. */
export enum BpfProgType {
  TRACEPOINT = 5,
  CGROUP_SKB = 8,
  CGROUP_SOCK = 9,
  SOCK_OPS = 13,
  CGROUP_DEVICE = 15,
  CGROUP_SOCK_ADDR = 18,
  CGROUP_SYSCTL = 23,
  CGROUP_SOCKOPT = 25,
  TRACING = 26,
}

/** enum bpf_attach_type (uapi), the values vbpffs uses. */
export enum BpfAttachType {
  CGROUP_INET_INGRESS = 0,
  CGROUP_INET_EGRESS = 1,
  CGROUP_INET_SOCK_CREATE = 2,
  CGROUP_SOCK_OPS = 3,
  CGROUP_DEVICE = 6,
  CGROUP_INET4_BIND = 8,
  CGROUP_INET6_BIND = 9,
  CGROUP_INET4_CONNECT = 10,
  CGROUP_INET6_CONNECT = 11,
  CGROUP_INET4_POST_BIND = 12,
  CGROUP_INET6_POST_BIND = 13,
  CGROUP_UDP4_SENDMSG = 14,
  CGROUP_UDP6_SENDMSG = 15,
  CGROUP_SYSCTL = 18,
  CGROUP_UDP4_RECVMSG = 19,
  CGROUP_UDP6_RECVMSG = 20,
  CGROUP_GETSOCKOPT = 21,
  CGROUP_SETSOCKOPT = 22,
  TRACE_ITER = 28,
  CGROUP_INET4_GETPEERNAME = 29,
  CGROUP_INET6_GETPEERNAME = 30,
  CGROUP_INET4_GETSOCKNAME = 31,
  CGROUP_INET6_GETSOCKNAME = 32,
  CGROUP_INET_SOCK_RELEASE = 34,
  CGROUP_UNIX_CONNECT = 49,
  CGROUP_UNIX_SENDMSG = 50,
  CGROUP_UNIX_RECVMSG = 51,
  CGROUP_UNIX_GETPEERNAME = 52,
  CGROUP_UNIX_GETSOCKNAME = 53,
}
