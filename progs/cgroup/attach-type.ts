/**
 * Which programs a cgroup attach type takes (kernel/bpf/syscall.c attach_type_to_prog_type and
 * bpf_prog_attach_check_attach_type), and the dense index of each type in a cgroup's state
 * (to_cgroup_bpf_attach_type: cgroup_bpf keeps one list and one effective array per type).
 */
import { BpfAttachType, BpfProgType, CGROUP_ATTACH_TYPE_NAMES, bpfError, parseCgroupAttachType } from '../../uapi';
import type { BpfProg } from '../prog/prog';

/** The cgroup attach types, in the order of their index (enum cgroup_bpf_attach_type). */
export const CGROUP_ATTACH_TYPES: readonly BpfAttachType[] = CGROUP_ATTACH_TYPE_NAMES.map(([t]) => t);

/** MAX_CGROUP_BPF_ATTACH_TYPE: how many lists and effective arrays each cgroup has. */
export const NR_CGROUP_ATYPES = CGROUP_ATTACH_TYPES.length;

const ATYPE_INDEX = new Map<BpfAttachType, number>(CGROUP_ATTACH_TYPES.map((t, i) => [t, i]));

/** A cgroup attach type from its number or name; EINVAL for anything else (an unknown attach_type). */
export function cgroupAttachType(type: BpfAttachType | number | string): BpfAttachType {
  const t = parseCgroupAttachType(type);
  if (t === undefined) throw bpfError('EINVAL', `'${String(type)}' is not a cgroup attach type`);
  return t;
}

/** to_cgroup_bpf_attach_type: the type's index in a cgroup's lists. */
export function cgroupAtype(type: BpfAttachType): number {
  return ATYPE_INDEX.get(type)!;
}

/** attach_type_to_prog_type for the cgroup attach types. */
export function attachTypeToProgType(type: BpfAttachType): BpfProgType {
  switch (type) {
    case BpfAttachType.CGROUP_INET_INGRESS:
    case BpfAttachType.CGROUP_INET_EGRESS:
      return BpfProgType.CGROUP_SKB;
    case BpfAttachType.CGROUP_INET_SOCK_CREATE:
    case BpfAttachType.CGROUP_INET_SOCK_RELEASE:
    case BpfAttachType.CGROUP_INET4_POST_BIND:
    case BpfAttachType.CGROUP_INET6_POST_BIND:
      return BpfProgType.CGROUP_SOCK;
    case BpfAttachType.CGROUP_SOCK_OPS:
      return BpfProgType.SOCK_OPS;
    case BpfAttachType.CGROUP_DEVICE:
      return BpfProgType.CGROUP_DEVICE;
    case BpfAttachType.CGROUP_SYSCTL:
      return BpfProgType.CGROUP_SYSCTL;
    case BpfAttachType.CGROUP_GETSOCKOPT:
    case BpfAttachType.CGROUP_SETSOCKOPT:
      return BpfProgType.CGROUP_SOCKOPT;
    case BpfAttachType.VBPFFS_CGROUP_TICK:
    case BpfAttachType.VBPFFS_CGROUP_SCHED_SAMPLE:
      return BpfProgType.VBPFFS_CGROUP_COLLECTOR;
    default: // bind, connect, sendmsg, recvmsg, getpeername, getsockname, for inet4, inet6, unix
      return BpfProgType.CGROUP_SOCK_ADDR;
  }
}

/**
 * bpf_prog_get_type + bpf_prog_attach_check_attach_type: may this program attach to this cgroup
 * hook? A program of another type is EINVAL. cgroup_sock, cgroup_sock_addr and cgroup_sockopt
 * programs attach only to the type they were loaded for, as do vbpffs's collectors. cgroup_skb
 * programs attach to ingress or egress, except egress programs that may return 2 or 3 (the
 * congestion bit), which the verifier pins to egress (enforce_expected_attach_type): vbpffs cannot
 * bound a computed return value, so it pins every cgroup_skb/egress program (docs/DIFFERENCES.md).
 */
export function checkProgAttachType(prog: BpfProg, type: BpfAttachType): void {
  const ptype = attachTypeToProgType(type);
  if (prog.progType !== ptype) {
    throw bpfError('EINVAL', `prog ${prog.id} (${prog.section}) cannot attach to cgroup hook ${type}: wrong program type`);
  }
  const pinned =
    ptype === BpfProgType.CGROUP_SKB
      ? prog.expectedAttachType === BpfAttachType.CGROUP_INET_EGRESS && prog.section === 'cgroup_skb/egress'
      : ptype !== BpfProgType.CGROUP_DEVICE && ptype !== BpfProgType.CGROUP_SYSCTL && ptype !== BpfProgType.SOCK_OPS;
  if (pinned && prog.expectedAttachType !== type) {
    throw bpfError('EINVAL', `prog ${prog.id} (${prog.section}) was loaded for attach type ${prog.expectedAttachType}, not ${type}`);
  }
}

/**
 * Hooks whose callers collect the programs' high return bits (the ret_flags of
 * bpf_prog_run_array_cg): egress (bit 0: congestion notification, BPF_RET_SET_CN) and bind4/bind6
 * (bit 0: BPF_RET_BIND_NO_CAP_NET_BIND_SERVICE). Elsewhere any non-zero return allows.
 */
export function collectsRetFlags(type: BpfAttachType): boolean {
  return (
    type === BpfAttachType.CGROUP_INET_EGRESS ||
    type === BpfAttachType.CGROUP_INET4_BIND ||
    type === BpfAttachType.CGROUP_INET6_BIND
  );
}
