/**
 * Which helper a program may call, and which return values it may give, by program type: the
 * kernel's get_func_proto tables and check_return_code(), for the program types vbpffs has.
 *
 * Followed (newest kernels, bpf-next 2026):
 * - kernel/bpf/helpers.c bpf_base_func_proto(): map_lookup/update/delete_elem and ktime_get_ns for
 *   every type; with CAP_BPF also cgrp_storage_get/delete, task_storage_get/delete,
 *   get_current_cgroup_id, get_current_ancestor_cgroup_id; with CAP_PERFMON get_current_task.
 *   vbpffs loads every program with both capabilities (the daemon is the only loader), so every type
 *   gets them, as in the kernel for root. (Older kernels gave get_current_cgroup_id and the storage
 *   helpers only to tracing and cgroup types; they moved into the base table later.)
 * - kernel/trace/bpf_trace.c tracing_prog_func_proto(): bpf_seq_printf and bpf_seq_write only when
 *   expected_attach_type == BPF_TRACE_ITER (iterator programs: iter/cgroup, and the RFC's
 *   cgroup_view, which is an iterator target); bpf_sk_storage_get/delete (the _tracing protos,
 *   allowed for BPF_TRACE_ITER by bpf_sk_storage_tracing_allowed()).
 * - tp_prog_func_proto() (tp/...): bpf_tracing_func_proto() -> base; no seq, no sk storage.
 * - net/core/filter.c: cg_skb_func_proto, sock_addr_func_proto, sock_ops_func_proto and
 *   kernel/bpf/cgroup.c cg_sockopt_func_proto give bpf_sk_storage_get and _delete;
 *   sock_filter_func_proto (cgroup_sock) gives only bpf_sk_storage_get (the cg_sock proto), no
 *   delete; sysctl_func_proto and cgroup_dev_func_proto give neither.
 * - bpf_inode_storage_get/delete are in bpf_lsm_func_proto only. vbpffs has no LSM programs, so no
 *   vbpffs program type may call them; inode storage maps are usable from userspace only.
 * - kernel/bpf/verifier.c check_return_code(): iterators 0..1; cgroup_skb ingress 0..1, egress 0..3;
 *   cgroup_sock_addr 0..1, bind4/6 0..3, recvmsg/getpeername/getsockname exactly 1; cgroup_sock,
 *   sock_ops, cgroup_device, cgroup_sysctl, cgroup_sockopt 0..1; tracepoints are not checked.
 *
 * vbpffs's own helpers (not kernel names; the kernel reads these facts through BTF pointers or kfuncs
 * such as bpf_cgroup_ancestor): vbpffs_cgroup_id, vbpffs_cgroup_level, vbpffs_cgroup_name,
 * vbpffs_cgroup_ancestor_id for every type, and vbpffs_cgroup_read (an interface file parsed as
 * key/value) where reading files is reasonable: cgroup_view, iter/cgroup, tp/timer/tick,
 * cgroup/tick and tp/cgroup/mkdir (not on the packet and socket paths, the scheduler sample or a
 * removed cgroup).
 *
 * vbpffs's own program type, cgroup_collector (cgroup/tick, cgroup/sched_sample): the tick and
 * scheduler-sample hooks attached to a cgroup instead of globally. Same helpers as their tp/ twins;
 * returns 0..1, combined as every cgroup hook's are.
 */
import { BpfAttachType, BpfProgType, bpfError } from '../../uapi';

export { BpfAttachType, BpfProgType };

/**
 * vbpffs's program types: bpftool's names for the kernel types, plus 'cgroup_view' (the RFC's
 * iterator target, which vbpffs runs as its own type) and 'iter' (BPF_PROG_TYPE_TRACING with
 * BPF_TRACE_ITER).
 */
export type ProgTypeName =
  | 'cgroup_view'
  | 'iter'
  | 'cgroup_skb'
  | 'cgroup_sock'
  | 'cgroup_sock_addr'
  | 'cgroup_sockopt'
  | 'cgroup_sysctl'
  | 'cgroup_device'
  | 'sock_ops'
  | 'tracepoint'
  | 'cgroup_collector';

/** What a section name (libbpf's SEC()) means. */
export interface SectionInfo {
  /** The section as libbpf spells it canonically ('sockops', 'cgroup/connect4', 'tp/cgroup/mkdir'). */
  readonly section: string;
  readonly type: ProgTypeName;
  /** The kernel's prog type (cgroup_view: TRACING, as the RFC's iterator programs are). */
  readonly progType: BpfProgType;
  /** expected_attach_type; undefined for tracepoints, which have none. */
  readonly attachType: BpfAttachType | undefined;
  /** How programs of the section are run: an iterator session, a cgroup's effective array, a global hook. */
  readonly family: 'iter' | 'cgroup' | 'tracing';
  /** The iterator target ('cgroup', 'cgroup_view'), for iterator programs. */
  readonly iterTarget?: string;
  /** The tracepoint's category and name ('cgroup', 'mkdir'), for tracepoints. */
  readonly tracepoint?: { readonly category: string; readonly name: string };
  /** iter.s/: a sleepable iterator. */
  readonly sleepable: boolean;
}

const cgroupSection = (
  section: string,
  type: ProgTypeName,
  progType: BpfProgType,
  attachType: BpfAttachType,
): SectionInfo => ({ section, type, progType, attachType, family: 'cgroup', sleepable: false });

/** libbpf's section_defs for the cgroup hooks (tools/lib/bpf/libbpf.c), the names libbpf accepts. */
const CGROUP_SECTIONS: readonly SectionInfo[] = [
  cgroupSection('cgroup_skb/ingress', 'cgroup_skb', BpfProgType.CGROUP_SKB, BpfAttachType.CGROUP_INET_INGRESS),
  cgroupSection('cgroup_skb/egress', 'cgroup_skb', BpfProgType.CGROUP_SKB, BpfAttachType.CGROUP_INET_EGRESS),
  // "cgroup/skb" has no expected_attach_type: 0, which is BPF_CGROUP_INET_INGRESS
  cgroupSection('cgroup/skb', 'cgroup_skb', BpfProgType.CGROUP_SKB, BpfAttachType.CGROUP_INET_INGRESS),
  cgroupSection('cgroup/sock', 'cgroup_sock', BpfProgType.CGROUP_SOCK, BpfAttachType.CGROUP_INET_SOCK_CREATE),
  cgroupSection('cgroup/sock_create', 'cgroup_sock', BpfProgType.CGROUP_SOCK, BpfAttachType.CGROUP_INET_SOCK_CREATE),
  cgroupSection('cgroup/sock_release', 'cgroup_sock', BpfProgType.CGROUP_SOCK, BpfAttachType.CGROUP_INET_SOCK_RELEASE),
  cgroupSection('cgroup/post_bind4', 'cgroup_sock', BpfProgType.CGROUP_SOCK, BpfAttachType.CGROUP_INET4_POST_BIND),
  cgroupSection('cgroup/post_bind6', 'cgroup_sock', BpfProgType.CGROUP_SOCK, BpfAttachType.CGROUP_INET6_POST_BIND),
  cgroupSection('cgroup/bind4', 'cgroup_sock_addr', BpfProgType.CGROUP_SOCK_ADDR, BpfAttachType.CGROUP_INET4_BIND),
  cgroupSection('cgroup/bind6', 'cgroup_sock_addr', BpfProgType.CGROUP_SOCK_ADDR, BpfAttachType.CGROUP_INET6_BIND),
  cgroupSection('cgroup/connect4', 'cgroup_sock_addr', BpfProgType.CGROUP_SOCK_ADDR, BpfAttachType.CGROUP_INET4_CONNECT),
  cgroupSection('cgroup/connect6', 'cgroup_sock_addr', BpfProgType.CGROUP_SOCK_ADDR, BpfAttachType.CGROUP_INET6_CONNECT),
  cgroupSection('cgroup/connect_unix', 'cgroup_sock_addr', BpfProgType.CGROUP_SOCK_ADDR, BpfAttachType.CGROUP_UNIX_CONNECT),
  cgroupSection('cgroup/sendmsg4', 'cgroup_sock_addr', BpfProgType.CGROUP_SOCK_ADDR, BpfAttachType.CGROUP_UDP4_SENDMSG),
  cgroupSection('cgroup/sendmsg6', 'cgroup_sock_addr', BpfProgType.CGROUP_SOCK_ADDR, BpfAttachType.CGROUP_UDP6_SENDMSG),
  cgroupSection('cgroup/sendmsg_unix', 'cgroup_sock_addr', BpfProgType.CGROUP_SOCK_ADDR, BpfAttachType.CGROUP_UNIX_SENDMSG),
  cgroupSection('cgroup/recvmsg4', 'cgroup_sock_addr', BpfProgType.CGROUP_SOCK_ADDR, BpfAttachType.CGROUP_UDP4_RECVMSG),
  cgroupSection('cgroup/recvmsg6', 'cgroup_sock_addr', BpfProgType.CGROUP_SOCK_ADDR, BpfAttachType.CGROUP_UDP6_RECVMSG),
  cgroupSection('cgroup/recvmsg_unix', 'cgroup_sock_addr', BpfProgType.CGROUP_SOCK_ADDR, BpfAttachType.CGROUP_UNIX_RECVMSG),
  cgroupSection('cgroup/getpeername4', 'cgroup_sock_addr', BpfProgType.CGROUP_SOCK_ADDR, BpfAttachType.CGROUP_INET4_GETPEERNAME),
  cgroupSection('cgroup/getpeername6', 'cgroup_sock_addr', BpfProgType.CGROUP_SOCK_ADDR, BpfAttachType.CGROUP_INET6_GETPEERNAME),
  cgroupSection('cgroup/getpeername_unix', 'cgroup_sock_addr', BpfProgType.CGROUP_SOCK_ADDR, BpfAttachType.CGROUP_UNIX_GETPEERNAME),
  cgroupSection('cgroup/getsockname4', 'cgroup_sock_addr', BpfProgType.CGROUP_SOCK_ADDR, BpfAttachType.CGROUP_INET4_GETSOCKNAME),
  cgroupSection('cgroup/getsockname6', 'cgroup_sock_addr', BpfProgType.CGROUP_SOCK_ADDR, BpfAttachType.CGROUP_INET6_GETSOCKNAME),
  cgroupSection('cgroup/getsockname_unix', 'cgroup_sock_addr', BpfProgType.CGROUP_SOCK_ADDR, BpfAttachType.CGROUP_UNIX_GETSOCKNAME),
  cgroupSection('cgroup/getsockopt', 'cgroup_sockopt', BpfProgType.CGROUP_SOCKOPT, BpfAttachType.CGROUP_GETSOCKOPT),
  cgroupSection('cgroup/setsockopt', 'cgroup_sockopt', BpfProgType.CGROUP_SOCKOPT, BpfAttachType.CGROUP_SETSOCKOPT),
  cgroupSection('cgroup/sysctl', 'cgroup_sysctl', BpfProgType.CGROUP_SYSCTL, BpfAttachType.CGROUP_SYSCTL),
  cgroupSection('cgroup/dev', 'cgroup_device', BpfProgType.CGROUP_DEVICE, BpfAttachType.CGROUP_DEVICE),
  cgroupSection('sockops', 'sock_ops', BpfProgType.SOCK_OPS, BpfAttachType.CGROUP_SOCK_OPS),
  // vbpffs's own cgroup hooks: collectors attached to a cgroup run for the events of its subtree,
  // through its effective array, with the attach modes of any cgroup hook.
  cgroupSection('cgroup/tick', 'cgroup_collector', BpfProgType.VBPFFS_CGROUP_COLLECTOR, BpfAttachType.VBPFFS_CGROUP_TICK),
  cgroupSection(
    'cgroup/sched_sample',
    'cgroup_collector',
    BpfProgType.VBPFFS_CGROUP_COLLECTOR,
    BpfAttachType.VBPFFS_CGROUP_SCHED_SAMPLE,
  ),
];

/** The iterator targets vbpffs registers. */
export const ITER_TARGETS: readonly string[] = ['cgroup'];

/** The tracepoints vbpffs's event sources fire. */
export const TRACEPOINTS: readonly string[] = ['sched/sample', 'cgroup/mkdir', 'cgroup/rmdir', 'timer/tick'];

const SECTIONS = new Map<string, SectionInfo>(CGROUP_SECTIONS.map((s) => [s.section, s]));
{
  const view: SectionInfo = {
    section: 'cgroup_view',
    type: 'cgroup_view',
    progType: BpfProgType.TRACING,
    attachType: BpfAttachType.TRACE_ITER,
    family: 'iter',
    iterTarget: 'cgroup_view',
    sleepable: false,
  };
  SECTIONS.set('cgroup_view', view);
  SECTIONS.set('iter/cgroup_view', view); // the RFC selftest's SEC("iter/cgroup_view")
  for (const target of ITER_TARGETS) {
    for (const sleepable of [false, true]) {
      const section = `${sleepable ? 'iter.s' : 'iter'}/${target}`;
      SECTIONS.set(section, {
        section,
        type: 'iter',
        progType: BpfProgType.TRACING,
        attachType: BpfAttachType.TRACE_ITER,
        family: 'iter',
        iterTarget: target,
        sleepable,
      });
    }
  }
  for (const tp of TRACEPOINTS) {
    const [category, name] = tp.split('/') as [string, string];
    const info: SectionInfo = {
      section: `tp/${tp}`,
      type: 'tracepoint',
      progType: BpfProgType.TRACEPOINT,
      attachType: undefined,
      family: 'tracing',
      tracepoint: { category, name },
      sleepable: false,
    };
    SECTIONS.set(`tp/${tp}`, info);
    SECTIONS.set(`tracepoint/${tp}`, info); // libbpf accepts both "tp/" and "tracepoint/"
  }
}

/** What a section name means, or undefined for a section vbpffs does not know (the loader's EINVAL). */
export function parseSection(section: string): SectionInfo | undefined {
  return SECTIONS.get(section);
}

/** parseSection, throwing EINVAL for an unknown section. */
export function requireSection(section: string): SectionInfo {
  const info = parseSection(section);
  if (info === undefined) throw bpfError('EINVAL', `unknown program section '${section}'`);
  return info;
}

/** Every section name vbpffs accepts. */
export function knownSections(): string[] {
  return [...SECTIONS.keys()];
}

// ---------------------------------------------------------------------------------------------------
// Helpers.

export interface HelperInfo {
  readonly name: string;
  /** 'kernel': the kernel's helper of that name and return convention; 'vbpffs': ours. */
  readonly origin: 'kernel' | 'vbpffs';
  /** enum bpf_func_id, for kernel helpers. */
  readonly id?: number;
}

/** Every helper vbpffs knows, kernel ones with their bpf_func_id. */
export const HELPERS: readonly HelperInfo[] = [
  { name: 'bpf_map_lookup_elem', origin: 'kernel', id: 1 },
  { name: 'bpf_map_update_elem', origin: 'kernel', id: 2 },
  { name: 'bpf_map_delete_elem', origin: 'kernel', id: 3 },
  { name: 'bpf_ktime_get_ns', origin: 'kernel', id: 5 },
  { name: 'bpf_get_current_task', origin: 'kernel', id: 35 },
  { name: 'bpf_get_current_cgroup_id', origin: 'kernel', id: 80 },
  { name: 'bpf_sk_storage_get', origin: 'kernel', id: 107 },
  { name: 'bpf_sk_storage_delete', origin: 'kernel', id: 108 },
  { name: 'bpf_seq_printf', origin: 'kernel', id: 126 },
  { name: 'bpf_seq_write', origin: 'kernel', id: 127 },
  { name: 'bpf_inode_storage_get', origin: 'kernel', id: 145 },
  { name: 'bpf_inode_storage_delete', origin: 'kernel', id: 146 },
  { name: 'bpf_task_storage_get', origin: 'kernel', id: 156 },
  { name: 'bpf_task_storage_delete', origin: 'kernel', id: 157 },
  { name: 'bpf_cgrp_storage_get', origin: 'kernel', id: 210 },
  { name: 'bpf_cgrp_storage_delete', origin: 'kernel', id: 211 },
  { name: 'vbpffs_cgroup_id', origin: 'vbpffs' },
  { name: 'vbpffs_cgroup_level', origin: 'vbpffs' },
  { name: 'vbpffs_cgroup_name', origin: 'vbpffs' },
  { name: 'vbpffs_cgroup_ancestor_id', origin: 'vbpffs' },
  { name: 'vbpffs_cgroup_read', origin: 'vbpffs' },
];

const HELPER_BY_NAME = new Map(HELPERS.map((h) => [h.name, h]));

/** The helper's description, or undefined for a name that is no helper. */
export function helperInfo(name: string): HelperInfo | undefined {
  return HELPER_BY_NAME.get(name);
}

/** bpf_base_func_proto() as root sees it (CAP_BPF and CAP_PERFMON), plus vbpffs's cgroup facts. */
const BASE = new Set([
  'bpf_map_lookup_elem',
  'bpf_map_update_elem',
  'bpf_map_delete_elem',
  'bpf_ktime_get_ns',
  'bpf_cgrp_storage_get',
  'bpf_cgrp_storage_delete',
  'bpf_task_storage_get',
  'bpf_task_storage_delete',
  'bpf_get_current_cgroup_id',
  'bpf_get_current_task',
  'vbpffs_cgroup_id',
  'vbpffs_cgroup_level',
  'vbpffs_cgroup_name',
  'vbpffs_cgroup_ancestor_id',
]);

const SK_STORAGE = ['bpf_sk_storage_get', 'bpf_sk_storage_delete'];
const SEQ = ['bpf_seq_printf', 'bpf_seq_write'];
const READ = 'vbpffs_cgroup_read';

/** The per-type additions to the base table (the kernel's *_func_proto switch before its default). */
function extraHelpers(info: SectionInfo): readonly string[] {
  switch (info.type) {
    case 'cgroup_view':
    case 'iter': // tracing_prog_func_proto, BPF_TRACE_ITER
      return [...SEQ, ...SK_STORAGE, READ];
    case 'cgroup_skb': // cg_skb_func_proto
    case 'cgroup_sock_addr': // sock_addr_func_proto
    case 'cgroup_sockopt': // cg_sockopt_func_proto
    case 'sock_ops': // sock_ops_func_proto
      return SK_STORAGE;
    case 'cgroup_sock': // sock_filter_func_proto: bpf_sk_storage_get_cg_sock_proto only
      return ['bpf_sk_storage_get'];
    case 'tracepoint': // tp_prog_func_proto -> bpf_tracing_func_proto -> base
      return info.section === 'tp/timer/tick' || info.section === 'tp/cgroup/mkdir' ? [READ] : [];
    case 'cgroup_collector': // as their tracepoint twins: the tick may read files, a sample may not
      return info.section === 'cgroup/tick' ? [READ] : [];
    default: // cgroup_sysctl (sysctl_func_proto), cgroup_device (cgroup_dev_func_proto)
      return [];
  }
}

const ALLOWED = new Map<SectionInfo, ReadonlySet<string>>();

const toInfo = (prog: SectionInfo | string): SectionInfo | undefined =>
  typeof prog === 'string' ? parseSection(prog) : prog;

/** The helpers a program of this section may call, sorted. Unknown section: EINVAL. */
export function helpersFor(prog: SectionInfo | string): string[] {
  const info = toInfo(prog);
  if (info === undefined) throw bpfError('EINVAL', `unknown program section '${String(prog)}'`);
  let set = ALLOWED.get(info);
  if (set === undefined) {
    set = new Set([...BASE, ...extraHelpers(info)]);
    ALLOWED.set(info, set);
  }
  return [...set].sort();
}

/** Whether a program of this section may call the helper (false for an unknown section or helper). */
export function helperAllowed(prog: SectionInfo | string, helper: string): boolean {
  const info = toInfo(prog);
  if (info === undefined || !HELPER_BY_NAME.has(helper)) return false;
  helpersFor(info);
  return ALLOWED.get(info)!.has(helper);
}

/**
 * The verifier's verdict on a call, with the kernel's words: "unknown func" for a name that is no
 * helper, "program of this type cannot use helper" for one the type's func_proto does not give
 * (both -EINVAL in check_helper_call).
 */
export function checkHelperCall(
  prog: SectionInfo | string,
  helper: string,
): { readonly ok: true } | { readonly ok: false; readonly errno: 'EINVAL'; readonly reason: string } {
  const info = toInfo(prog);
  if (info === undefined) return { ok: false, errno: 'EINVAL', reason: `unknown program section '${String(prog)}'` };
  const h = HELPER_BY_NAME.get(helper);
  if (h === undefined) return { ok: false, errno: 'EINVAL', reason: `unknown func ${helper}` };
  if (!helperAllowed(info, helper)) {
    const id = h.id === undefined ? '' : `#${h.id}`;
    return { ok: false, errno: 'EINVAL', reason: `program of this type cannot use helper ${helper}${id} (${info.section})` };
  }
  return { ok: true };
}

// ---------------------------------------------------------------------------------------------------
// Return values: check_return_code().

export interface ReturnRange {
  readonly min: number;
  readonly max: number;
  /** What each value means to the caller. */
  readonly meaning: Readonly<Record<number, string>>;
}

const range = (min: number, max: number, meaning: Record<number, string>): ReturnRange => ({ min, max, meaning });

const ALLOW_DENY = { 0: 'reject (the operation fails with EPERM)', 1: 'allow' };

/**
 * The values a program of this section may return, or null when the kernel does not check them
 * (tracepoints: check_return_code's default). Unknown section: EINVAL.
 */
export function returnRange(prog: SectionInfo | string): ReturnRange | null {
  const info = toInfo(prog);
  if (info === undefined) throw bpfError('EINVAL', `unknown program section '${String(prog)}'`);
  const at = info.attachType;
  switch (info.type) {
    case 'cgroup_view':
      return range(0, 1, { 0: 'ok', 1: 'retry: the read fails with EAGAIN (bpf_iter_run_prog)' });
    case 'iter':
      return range(0, 1, { 0: 'ok', 1: 'stop after this cgroup (cgroup_iter: terminate)' });
    case 'cgroup_skb':
      return at === BpfAttachType.CGROUP_INET_EGRESS
        ? range(0, 3, { 0: 'drop', 1: 'allow', 2: 'drop and notify congestion (cn)', 3: 'allow and notify congestion (cn)' })
        : range(0, 1, { 0: 'drop', 1: 'allow' });
    case 'cgroup_sock_addr':
      if (at === BpfAttachType.CGROUP_INET4_BIND || at === BpfAttachType.CGROUP_INET6_BIND) {
        return range(0, 3, {
          0: 'reject (EPERM)',
          1: 'allow',
          2: 'reject (EPERM)',
          3: 'allow, without the CAP_NET_BIND_SERVICE check (BPF_RET_BIND_NO_CAP_NET_BIND_SERVICE)',
        });
      }
      if (
        at === BpfAttachType.CGROUP_UDP4_RECVMSG || at === BpfAttachType.CGROUP_UDP6_RECVMSG ||
        at === BpfAttachType.CGROUP_UNIX_RECVMSG || at === BpfAttachType.CGROUP_INET4_GETPEERNAME ||
        at === BpfAttachType.CGROUP_INET6_GETPEERNAME || at === BpfAttachType.CGROUP_UNIX_GETPEERNAME ||
        at === BpfAttachType.CGROUP_INET4_GETSOCKNAME || at === BpfAttachType.CGROUP_INET6_GETSOCKNAME ||
        at === BpfAttachType.CGROUP_UNIX_GETSOCKNAME
      ) {
        return range(1, 1, { 1: 'continue (these hooks may only rewrite the address)' });
      }
      return range(0, 1, ALLOW_DENY);
    case 'cgroup_device':
      return range(0, 1, { 0: 'deny access to the device (EPERM)', 1: 'allow' });
    case 'sock_ops':
      return range(0, 1, { 0: 'ok', 1: 'ok' });
    case 'cgroup_sock':
    case 'cgroup_sysctl':
    case 'cgroup_sockopt':
      return range(0, 1, ALLOW_DENY);
    case 'cgroup_collector':
      return range(0, 1, { 0: 'deny: the fire reports EPERM (the event itself goes on)', 1: 'ok' });
    default: // tracepoint
      return null;
  }
}

/** Whether a program of this section may return `value` (any number for an unchecked type). */
export function returnAllowed(prog: SectionInfo | string, value: number): boolean {
  const r = returnRange(prog);
  return r === null || (Number.isInteger(value) && value >= r.min && value <= r.max);
}
