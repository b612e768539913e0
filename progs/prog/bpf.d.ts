/**
 * The program side of vbpffs: what an object file may import from 'vbpffs/bpf'. Helpers keep the
 * kernel's names and return conventions (a negative errno for failure, null where the kernel returns
 * NULL); maps declared with map() carry their key and value schemas in their type, so
 * `bpf_cgrp_storage_get(cpu_stats, ...)` returns a view whose fields are typed (u64 -> bigint,
 * u32 -> number). Point an editor at it with `/// <reference path=".../progs/prog/bpf.d.ts" />` or
 * a `paths` entry; the loader does not type-check, the verifier checks what it must.
 */
declare module 'vbpffs/bpf' {
  // -----------------------------------------------------------------------------------------------
  // Value schemas (progs/maps/schema.ts TypeDesc) and the views programs get over them.

  export type IntName = 'u8' | 'u16' | 'u32' | 'u64' | 's8' | 's16' | 's32' | 's64';
  export type TypeDesc = IntName | 'bpf_spin_lock' | readonly [TypeDesc, number] | { readonly [member: string]: TypeDesc };

  /** struct bpf_spin_lock: the lock word. */
  export interface BpfSpinLock {
    readonly val: number;
  }

  /** An integer array's view: a live typed array over the value's bytes. */
  export interface IntArrayView<T> extends Iterable<T> {
    readonly length: number;
    [index: number]: T;
  }

  /** An array of structs: get(i) gives element i's view, set(i, v) assigns it. */
  export interface ElementsView<T> extends Iterable<T> {
    readonly length: number;
    get(i: number): T | undefined;
    set(i: number, v: unknown): void;
  }

  /** The typed view of a described type: u64/s64 read as bigint, the other integers as number. */
  export type ViewOf<D> = D extends 'u64' | 's64'
    ? bigint
    : D extends IntName
      ? number
      : D extends 'bpf_spin_lock'
        ? BpfSpinLock
        : D extends readonly [infer E, number]
          ? E extends IntName
            ? IntArrayView<ViewOf<E>>
            : ElementsView<ViewOf<E>>
          : { -readonly [K in keyof D]: ViewOf<D[K]> };

  /** What a program writes: numbers or bigints for integers, objects and arrays for aggregates. */
  export type InitOf<D> = D extends IntName
    ? number | bigint
    : D extends 'bpf_spin_lock'
      ? never
      : D extends readonly [infer E, number]
        ? readonly InitOf<E>[]
        : { readonly [K in keyof D]?: InitOf<D[K]> };

  /** A map value as a program sees it: a struct's view, or `{ value }` for a scalar value. */
  export type MapValue<V> = V extends IntName ? { value: ViewOf<V> } : ViewOf<V>;

  // -----------------------------------------------------------------------------------------------
  // uapi constants, with the kernel's names and values.

  export const BPF_MAP_TYPE_UNSPEC: 0;
  export const BPF_MAP_TYPE_HASH: 1;
  export const BPF_MAP_TYPE_ARRAY: 2;
  export const BPF_MAP_TYPE_CGROUP_STORAGE: 19;
  export const BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE: 21;
  export const BPF_MAP_TYPE_SK_STORAGE: 24;
  export const BPF_MAP_TYPE_INODE_STORAGE: 28;
  export const BPF_MAP_TYPE_TASK_STORAGE: 29;
  export const BPF_MAP_TYPE_CGRP_STORAGE: 32;

  export const BPF_F_NO_PREALLOC: 1;
  export const BPF_F_NO_COMMON_LRU: 2;
  export const BPF_F_NUMA_NODE: 4;
  export const BPF_F_RDONLY: 8;
  export const BPF_F_WRONLY: 16;
  export const BPF_F_STACK_BUILD_ID: 32;
  export const BPF_F_ZERO_SEED: 64;
  export const BPF_F_RDONLY_PROG: 128;
  export const BPF_F_WRONLY_PROG: 256;
  export const BPF_F_CLONE: 512;
  export const BPF_F_MMAPABLE: 1024;
  export const BPF_F_PRESERVE_ELEMS: 2048;
  export const BPF_F_INNER_MAP: 4096;
  export const BPF_F_LINK: 8192;
  export const BPF_F_PATH_FD: 16384;

  export const BPF_ANY: 0;
  export const BPF_NOEXIST: 1;
  export const BPF_EXIST: 2;
  export const BPF_F_LOCK: 4;

  export const BPF_LOCAL_STORAGE_GET_F_CREATE: 1;
  export const BPF_SK_STORAGE_GET_F_CREATE: 1;

  export const BPF_CGROUP_ITER_UNSPEC: 0;
  export const BPF_CGROUP_ITER_SELF_ONLY: 1;
  export const BPF_CGROUP_ITER_DESCENDANTS_PRE: 2;
  export const BPF_CGROUP_ITER_DESCENDANTS_POST: 3;
  export const BPF_CGROUP_ITER_ANCESTORS_UP: 4;
  export const BPF_CGROUP_ITER_CHILDREN: 5;

  // -----------------------------------------------------------------------------------------------
  // Maps: map({...}) is libbpf's SEC(".maps") struct.

  export type MapPinning = 'none' | 'by_name';

  export interface MapDef {
    readonly type: number;
    readonly key?: TypeDesc;
    readonly value: TypeDesc;
    readonly flags?: number;
    /** max_entries; omit for local storage maps (which require 0). */
    readonly maxEntries?: number;
    /** libbpf's LIBBPF_PIN_BY_NAME: pin at <pin root>/<map name>, reuse the pinned map when it matches. */
    readonly pinning?: MapPinning;
  }

  /** A declared map, carrying its type and schemas for the helpers' signatures. */
  export interface BpfMap<T extends number = number, K = unknown, V = unknown> {
    readonly __bpf_map: T;
    readonly __bpf_key?: K;
    readonly __bpf_value?: V;
  }

  /** Declares a map; only as `export const name = map({...})`, with static members. */
  export function map<const D extends MapDef>(def: D): BpfMap<D['type'], D['key'], D['value']>;

  type HashLike = typeof BPF_MAP_TYPE_HASH | typeof BPF_MAP_TYPE_ARRAY;
  type OldCgroupStorage = typeof BPF_MAP_TYPE_CGROUP_STORAGE | typeof BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE;
  type KeyOf<K> = K extends 'u64' | 's64' ? bigint | number : K extends IntName ? number : InitOf<K>;

  // -----------------------------------------------------------------------------------------------
  // Objects helpers take and ctx types.

  /** The seq_file an iterator program prints to (struct seq_file *). */
  export interface SeqFile {
    readonly __bpf_seq_file: true;
  }

  /** struct bpf_iter_meta. */
  export interface BpfIterMeta {
    readonly seq: SeqFile;
    readonly session_id: bigint;
    readonly seq_num: bigint;
  }

  /** A cgroup (struct cgroup *): a handle for helpers; its facts come from the vbpffs_cgroup_* helpers. */
  export interface Cgroup {
    readonly __bpf_cgroup: true;
  }

  /** A task (struct task_struct *). */
  export interface Task {
    readonly pid: number;
    readonly tgid: number;
    readonly comm: string;
  }

  /** A socket (struct bpf_sock *). */
  export interface Sock {
    readonly family: number;
    readonly type: number;
    readonly protocol: number;
  }

  /** An inode (struct inode *). */
  export interface Inode {
    readonly ino: bigint;
  }

  /** cgroup_view: runs once for the cgroup of the directory it is read in. */
  export interface CgroupViewCtx {
    readonly meta: BpfIterMeta;
    readonly cgroup: Cgroup;
  }

  /** iter/cgroup (struct bpf_iter__cgroup): cgroup is null at the end of the walk. */
  export interface CgroupIterCtx {
    readonly meta: BpfIterMeta;
    readonly cgroup: Cgroup | null;
  }

  /** tp/sched/sample: one task's scheduler figures over the last interval. */
  export interface SchedSampleCtx {
    readonly task: Task;
    readonly cgroup: Cgroup;
    /** Nanoseconds run, waited on a run queue, and timeslices, since the previous sample. */
    readonly run_ns: bigint;
    readonly wait_ns: bigint;
    readonly slices: bigint;
  }

  /** tp/cgroup/mkdir and tp/cgroup/rmdir (the cgroup:cgroup_mkdir/rmdir tracepoints). */
  export interface CgroupEventCtx {
    readonly cgroup: Cgroup;
    readonly path: string;
  }

  /** tp/timer/tick: the periodic per-cgroup tick. */
  export interface TickCtx {
    readonly cgroup: Cgroup;
    readonly now_ns: bigint;
  }

  /** cgroup_skb/ingress, cgroup_skb/egress (struct __sk_buff). */
  export interface SkBuffCtx {
    readonly len: number;
    readonly protocol: number;
    readonly sk: Sock | null;
  }

  /** cgroup/sock_create, cgroup/sock_release, cgroup/post_bind4|6 (struct bpf_sock). */
  export type SockCtx = Sock;

  /** cgroup/bind4|6, cgroup/connect4|6, cgroup/sendmsg4|6, ... (struct bpf_sock_addr). */
  export interface SockAddrCtx {
    readonly user_family: number;
    readonly user_ip4: number;
    readonly user_port: number;
    readonly sk: Sock;
  }

  /** sockops (struct bpf_sock_ops). */
  export interface SockOpsCtx {
    readonly op: number;
    readonly sk: Sock | null;
  }

  /** cgroup/dev (struct bpf_cgroup_dev_ctx). */
  export interface CgroupDevCtx {
    readonly access_type: number;
    readonly major: number;
    readonly minor: number;
  }

  /** cgroup/sysctl (struct bpf_sysctl). */
  export interface SysctlCtx {
    readonly write: number;
    readonly file_pos: number;
  }

  /** cgroup/getsockopt, cgroup/setsockopt (struct bpf_sockopt). */
  export interface SockoptCtx {
    readonly sk: Sock;
    readonly level: number;
    readonly optname: number;
    readonly optlen: number;
    readonly retval: number;
  }

  /** Each section and the ctx its program gets. */
  export interface SectionCtx {
    'cgroup_view': CgroupViewCtx;
    'iter/cgroup': CgroupIterCtx;
    'tp/sched/sample': SchedSampleCtx;
    'tp/cgroup/mkdir': CgroupEventCtx;
    'tp/cgroup/rmdir': CgroupEventCtx;
    'tp/timer/tick': TickCtx;
    'cgroup_skb/ingress': SkBuffCtx;
    'cgroup_skb/egress': SkBuffCtx;
    'cgroup/skb': SkBuffCtx;
    'cgroup/sock': SockCtx;
    'cgroup/sock_create': SockCtx;
    'cgroup/sock_release': SockCtx;
    'cgroup/post_bind4': SockCtx;
    'cgroup/post_bind6': SockCtx;
    'cgroup/bind4': SockAddrCtx;
    'cgroup/bind6': SockAddrCtx;
    'cgroup/connect4': SockAddrCtx;
    'cgroup/connect6': SockAddrCtx;
    'cgroup/getpeername4': SockAddrCtx;
    'cgroup/getpeername6': SockAddrCtx;
    'cgroup/getsockname4': SockAddrCtx;
    'cgroup/getsockname6': SockAddrCtx;
    'cgroup/sendmsg4': SockAddrCtx;
    'cgroup/sendmsg6': SockAddrCtx;
    'cgroup/recvmsg4': SockAddrCtx;
    'cgroup/recvmsg6': SockAddrCtx;
    'sockops': SockOpsCtx;
    'cgroup/dev': CgroupDevCtx;
    'cgroup/sysctl': SysctlCtx;
    'cgroup/getsockopt': SockoptCtx;
    'cgroup/setsockopt': SockoptCtx;
    /** vbpffs's collectors: the tick and sched sample hooks, attached to a cgroup's subtree. */
    'cgroup/tick': TickCtx;
    'cgroup/sched_sample': SchedSampleCtx;
  }

  /** A declared program. */
  export interface BpfProgram<S extends keyof SectionCtx = keyof SectionCtx> {
    readonly __bpf_section: S;
  }

  /** Declares a program; only as `export const name = SEC('section', (ctx) => ...)`. */
  export function SEC<S extends keyof SectionCtx>(section: S, fn: (ctx: SectionCtx[S]) => number): BpfProgram<S>;

  // -----------------------------------------------------------------------------------------------
  // Helpers: the kernel's names and return conventions.

  /** seq_file printf (spec 5.5): at most 12 arguments; 0, or -EINVAL / -EOVERFLOW. */
  export function bpf_seq_printf(seq: SeqFile, fmt: string, ...args: (number | bigint | string)[]): number;
  /** Writes bytes (or a string's UTF-8) to the seq_file: 0, or -EOVERFLOW. */
  export function bpf_seq_write(seq: SeqFile, data: Uint8Array | string): number;

  /** The cgroup's storage in `map`; with BPF_LOCAL_STORAGE_GET_F_CREATE created from `value` (zero if null). */
  export function bpf_cgrp_storage_get<K, V>(map: BpfMap<typeof BPF_MAP_TYPE_CGRP_STORAGE, K, V>, cgroup: Cgroup, value: InitOf<V> | null, flags: number): MapValue<V> | null;
  /** 0, or -ENOENT when the cgroup has no storage in `map`. */
  export function bpf_cgrp_storage_delete<K, V>(map: BpfMap<typeof BPF_MAP_TYPE_CGRP_STORAGE, K, V>, cgroup: Cgroup): number;
  export function bpf_task_storage_get<K, V>(map: BpfMap<typeof BPF_MAP_TYPE_TASK_STORAGE, K, V>, task: Task, value: InitOf<V> | null, flags: number): MapValue<V> | null;
  export function bpf_task_storage_delete<K, V>(map: BpfMap<typeof BPF_MAP_TYPE_TASK_STORAGE, K, V>, task: Task): number;
  export function bpf_sk_storage_get<K, V>(map: BpfMap<typeof BPF_MAP_TYPE_SK_STORAGE, K, V>, sk: Sock, value: InitOf<V> | null, flags: number): MapValue<V> | null;
  export function bpf_sk_storage_delete<K, V>(map: BpfMap<typeof BPF_MAP_TYPE_SK_STORAGE, K, V>, sk: Sock): number;
  export function bpf_inode_storage_get<K, V>(map: BpfMap<typeof BPF_MAP_TYPE_INODE_STORAGE, K, V>, inode: Inode, value: InitOf<V> | null, flags: number): MapValue<V> | null;
  export function bpf_inode_storage_delete<K, V>(map: BpfMap<typeof BPF_MAP_TYPE_INODE_STORAGE, K, V>, inode: Inode): number;

  /** The value for `key`, or null. */
  export function bpf_map_lookup_elem<K, V>(map: BpfMap<HashLike | OldCgroupStorage, K, V>, key: KeyOf<K>): MapValue<V> | null;
  /** 0, or -EEXIST / -ENOENT / -E2BIG / -EINVAL by BPF_NOEXIST / BPF_EXIST / BPF_ANY. */
  export function bpf_map_update_elem<K, V>(map: BpfMap<HashLike, K, V>, key: KeyOf<K>, value: InitOf<V>, flags: number): number;
  /** 0, or -ENOENT (-EINVAL for an array). */
  export function bpf_map_delete_elem<K, V>(map: BpfMap<HashLike, K, V>, key: KeyOf<K>): number;

  /** CLOCK_MONOTONIC in nanoseconds. */
  export function bpf_ktime_get_ns(): bigint;
  /** The task the event is about (hooks), or null where there is none. */
  export function bpf_get_current_task(): Task | null;
  /** The current task's cgroup v2 id. */
  export function bpf_get_current_cgroup_id(): bigint;

  // vbpffs's own helpers (not kernel names): the cgroup facts a kernel program reads through BTF.

  /** The cgroup's id (its kernfs node id). */
  export function vbpffs_cgroup_id(cgroup: Cgroup): bigint;
  /** The cgroup's depth: 0 for the root. */
  export function vbpffs_cgroup_level(cgroup: Cgroup): number;
  /** The cgroup's directory name ('' for the root). */
  export function vbpffs_cgroup_name(cgroup: Cgroup): string;
  /** The id of the cgroup's ancestor at `level` (0 is the root), or 0n when it is deeper than the cgroup. */
  export function vbpffs_cgroup_ancestor_id(cgroup: Cgroup, level: number): bigint;
  /**
   * A cgroup interface file (cpu.stat, memory.stat, cpu.pressure, ...) parsed as key/value; null
   * when the file is absent. Allowed where reading files is reasonable (cgroup_view, iter/cgroup,
   * tp/timer/tick, tp/cgroup/mkdir).
   */
  export function vbpffs_cgroup_read(cgroup: Cgroup, file: string): Record<string, number | bigint | string> | null;
}
