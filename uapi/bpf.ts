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

/**
 * enum bpf_prog_type (uapi), the values vbpffs uses. VBPFFS_* are vbpffs's own, numbered far past the
 * kernel's enum so they can never be mistaken for one.
 */
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
  /** Collectors attached to cgroups: the per-cgroup tick and the scheduler samples of a cgroup's tasks. */
  VBPFFS_CGROUP_COLLECTOR = 1000,
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
  /** BPF_PERF_EVENT: how a tracepoint program is linked to its tracepoint. */
  PERF_EVENT = 41,
  /** vbpffs's own cgroup hooks (see BpfProgType.VBPFFS_CGROUP_COLLECTOR). */
  VBPFFS_CGROUP_TICK = 1000,
  VBPFFS_CGROUP_SCHED_SAMPLE = 1001,
}

/**
 * The names a cgroup attach type goes by, so kernel scenarios replay unchanged: bpftool's short names
 * (`bpftool cgroup attach CGROUP egress PROG`), then libbpf's (libbpf_bpf_attach_type_str). vbpffs's
 * own hooks are `tick` and `sched_sample`.
 */
export const CGROUP_ATTACH_TYPE_NAMES: ReadonlyArray<readonly [BpfAttachType, string, string]> = [
  [BpfAttachType.CGROUP_INET_INGRESS, 'ingress', 'cgroup_inet_ingress'],
  [BpfAttachType.CGROUP_INET_EGRESS, 'egress', 'cgroup_inet_egress'],
  [BpfAttachType.CGROUP_INET_SOCK_CREATE, 'sock_create', 'cgroup_inet_sock_create'],
  [BpfAttachType.CGROUP_INET_SOCK_RELEASE, 'sock_release', 'cgroup_inet_sock_release'],
  [BpfAttachType.CGROUP_SOCK_OPS, 'sock_ops', 'cgroup_sock_ops'],
  [BpfAttachType.CGROUP_DEVICE, 'device', 'cgroup_device'],
  [BpfAttachType.CGROUP_INET4_BIND, 'bind4', 'cgroup_inet4_bind'],
  [BpfAttachType.CGROUP_INET6_BIND, 'bind6', 'cgroup_inet6_bind'],
  [BpfAttachType.CGROUP_INET4_CONNECT, 'connect4', 'cgroup_inet4_connect'],
  [BpfAttachType.CGROUP_INET6_CONNECT, 'connect6', 'cgroup_inet6_connect'],
  [BpfAttachType.CGROUP_UNIX_CONNECT, 'connect_unix', 'cgroup_unix_connect'],
  [BpfAttachType.CGROUP_INET4_POST_BIND, 'post_bind4', 'cgroup_inet4_post_bind'],
  [BpfAttachType.CGROUP_INET6_POST_BIND, 'post_bind6', 'cgroup_inet6_post_bind'],
  [BpfAttachType.CGROUP_INET4_GETPEERNAME, 'getpeername4', 'cgroup_inet4_getpeername'],
  [BpfAttachType.CGROUP_INET6_GETPEERNAME, 'getpeername6', 'cgroup_inet6_getpeername'],
  [BpfAttachType.CGROUP_UNIX_GETPEERNAME, 'getpeername_unix', 'cgroup_unix_getpeername'],
  [BpfAttachType.CGROUP_INET4_GETSOCKNAME, 'getsockname4', 'cgroup_inet4_getsockname'],
  [BpfAttachType.CGROUP_INET6_GETSOCKNAME, 'getsockname6', 'cgroup_inet6_getsockname'],
  [BpfAttachType.CGROUP_UNIX_GETSOCKNAME, 'getsockname_unix', 'cgroup_unix_getsockname'],
  [BpfAttachType.CGROUP_UDP4_SENDMSG, 'sendmsg4', 'cgroup_udp4_sendmsg'],
  [BpfAttachType.CGROUP_UDP6_SENDMSG, 'sendmsg6', 'cgroup_udp6_sendmsg'],
  [BpfAttachType.CGROUP_UNIX_SENDMSG, 'sendmsg_unix', 'cgroup_unix_sendmsg'],
  [BpfAttachType.CGROUP_UDP4_RECVMSG, 'recvmsg4', 'cgroup_udp4_recvmsg'],
  [BpfAttachType.CGROUP_UDP6_RECVMSG, 'recvmsg6', 'cgroup_udp6_recvmsg'],
  [BpfAttachType.CGROUP_UNIX_RECVMSG, 'recvmsg_unix', 'cgroup_unix_recvmsg'],
  [BpfAttachType.CGROUP_SYSCTL, 'sysctl', 'cgroup_sysctl'],
  [BpfAttachType.CGROUP_GETSOCKOPT, 'getsockopt', 'cgroup_getsockopt'],
  [BpfAttachType.CGROUP_SETSOCKOPT, 'setsockopt', 'cgroup_setsockopt'],
  [BpfAttachType.VBPFFS_CGROUP_TICK, 'tick', 'vbpffs_cgroup_tick'],
  [BpfAttachType.VBPFFS_CGROUP_SCHED_SAMPLE, 'sched_sample', 'vbpffs_cgroup_sched_sample'],
];

const ATTACH_TYPE_BY_NAME = new Map<string, BpfAttachType>(
  CGROUP_ATTACH_TYPE_NAMES.flatMap(([t, short, long]) => [
    [short, t],
    [long, t],
  ]),
);

/**
 * A cgroup attach type from its number or either of its names; undefined for anything else (the
 * caller's EINVAL, as an unknown attach_type is).
 */
export function parseCgroupAttachType(type: BpfAttachType | number | string): BpfAttachType | undefined {
  if (typeof type === 'string') return ATTACH_TYPE_BY_NAME.get(type);
  return CGROUP_ATTACH_TYPE_NAMES.some(([t]) => t === type) ? (type as BpfAttachType) : undefined;
}

/** bpftool's short name of a cgroup attach type, or its number for one vbpffs has no name for. */
export function cgroupAttachTypeName(type: BpfAttachType): string {
  return CGROUP_ATTACH_TYPE_NAMES.find(([t]) => t === type)?.[1] ?? String(type);
}

/** BPF_PROG_ATTACH attach_flags and BPF_LINK_CREATE flags for cgroups (include/uapi/linux/bpf.h). */
export const BPF_F_ALLOW_OVERRIDE = 1 << 0;
export const BPF_F_ALLOW_MULTI = 1 << 1;
export const BPF_F_REPLACE = 1 << 2;
export const BPF_F_BEFORE = 1 << 3;
export const BPF_F_AFTER = 1 << 4;
export const BPF_F_ID = 1 << 5;
export const BPF_F_PREORDER = 1 << 6;
// BPF_F_LINK (1 << 13) is above, with the map flags it shares a header block with.

/** BPF_PROG_QUERY query_flags. */
export const BPF_F_QUERY_EFFECTIVE = 1 << 0;

/** enum bpf_link_type (uapi). */
export enum BpfLinkType {
  UNSPEC = 0,
  RAW_TRACEPOINT = 1,
  TRACING = 2,
  CGROUP = 3,
  ITER = 4,
  NETNS = 5,
  XDP = 6,
  PERF_EVENT = 7,
  KPROBE_MULTI = 8,
  STRUCT_OPS = 9,
  NETFILTER = 10,
  TCX = 11,
  UPROBE_MULTI = 12,
  NETKIT = 13,
  SOCKMAP = 14,
}

/** bpftool's names for the link types (`bpftool link show`, fdinfo's link_type). */
export const LINK_TYPE_NAME: Readonly<Record<BpfLinkType, string>> = {
  [BpfLinkType.UNSPEC]: 'unspec',
  [BpfLinkType.RAW_TRACEPOINT]: 'raw_tracepoint',
  [BpfLinkType.TRACING]: 'tracing',
  [BpfLinkType.CGROUP]: 'cgroup',
  [BpfLinkType.ITER]: 'iter',
  [BpfLinkType.NETNS]: 'netns',
  [BpfLinkType.XDP]: 'xdp',
  [BpfLinkType.PERF_EVENT]: 'perf_event',
  [BpfLinkType.KPROBE_MULTI]: 'kprobe_multi',
  [BpfLinkType.STRUCT_OPS]: 'struct_ops',
  [BpfLinkType.NETFILTER]: 'netfilter',
  [BpfLinkType.TCX]: 'tcx',
  [BpfLinkType.UPROBE_MULTI]: 'uprobe_multi',
  [BpfLinkType.NETKIT]: 'netkit',
  [BpfLinkType.SOCKMAP]: 'sockmap',
};
