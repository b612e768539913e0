/**
 * What bpffs needs of an iterator link (issue 6's BpfIterLink), recognised by shape so that this
 * layer does not depend on how iter/ builds it: a link with an iterator target and an open() that
 * starts one seq_file session.
 */
import { BpfLink, type BpfObject } from '../../progs';
import type { CgroupSource, KernfsNode } from '../../tags';

/** One seq_file session of an iterator (what an open file of a pinned iterator link reads). */
export interface IterSession {
  /** bpf_seq_read: up to `size` bytes; an empty array is the end. */
  read(size: number): Promise<Uint8Array>;
  close(): void;
}

export interface IterOpenOptions {
  /** cgroup_view: the cgroup of the directory the file is in (its tag). */
  cgroup?: KernfsNode;
  /** Where cgroups come from, for targets that walk or read them. */
  source?: CgroupSource;
}

export interface IterLinkLike {
  readonly target: 'cgroup' | 'cgroup_view';
  open(opts: IterOpenOptions): IterSession;
}

/** bpf_link_is_iter: a link with an iterator target and sessions to open. */
export function isIterLink(obj: BpfObject): obj is BpfLink & IterLinkLike {
  if (!(obj instanceof BpfLink)) return false;
  const l = obj as Partial<IterLinkLike>;
  return typeof l.target === 'string' && typeof l.open === 'function';
}

/** bpf_link_support_inherit: only a cgroup_view iterator link is inherited by new directories. */
export function bpfLinkSupportInherit(obj: BpfObject): obj is BpfLink & IterLinkLike {
  return isIterLink(obj) && obj.target === 'cgroup_view';
}
