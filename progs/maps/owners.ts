/**
 * What a local-storage owner must offer. tags/ (cgroups) and the event sources (tasks, sockets,
 * inodes) implement these structurally; this layer never imports them.
 *
 * `bpfStorage` is the owner's storage pointer (cgrp->bpf_cgrp_storage, task->bpf_storage,
 * sk->sk_bpf_storage, the inode's security blob). It is opaque to owners: only the local storage core
 * reads or writes it.
 */

export interface StorageOwner {
  bpfStorage: object | null;
}

/**
 * A cgroup as CGRP_STORAGE sees it. `dying` is percpu_ref_is_dying(&cgrp->self.refcnt): true from
 * rmdir on; `released` is true once the last reference is gone (css_free), which is when its storage
 * is freed. onRelease registers the hook that css_free_rwork_fn runs (bpf_cgrp_storage_free); it
 * returns a function that removes the hook.
 */
export interface CgroupOwner extends StorageOwner {
  readonly id: number;
  readonly path: string;
  readonly dying: boolean;
  readonly released: boolean;
  onRelease(hook: () => void): () => void;
}

/** How the library turns a cgroup id or path into a cgroup, where the kernel takes a cgroup fd. */
export interface CgroupResolver {
  cgroupById(id: number): CgroupOwner | undefined;
  cgroupByPath(path: string): CgroupOwner | undefined;
}

/** A task as TASK_STORAGE sees it: `dying` once it has exited (no new storage may be created). */
export interface TaskOwner extends StorageOwner {
  readonly pid: number;
  readonly dying: boolean;
  onRelease(hook: () => void): () => void;
}

/**
 * A socket as SK_STORAGE sees it. `refcnt` zero means going away (refcount_inc_not_zero fails);
 * `fullsock` is sk_fullsock(); optmem is the sk_omem_alloc charge checked against sysctl_optmem_max.
 */
export interface SockOwner extends StorageOwner {
  readonly cookie: number;
  readonly fullsock: boolean;
  readonly refcnt: number;
  omemAlloc: number;
  readonly optmemMax: number;
  onRelease(hook: () => void): () => void;
}

/** An inode as INODE_STORAGE sees it. */
export interface InodeOwner extends StorageOwner {
  readonly ino: number;
  readonly dying: boolean;
  onRelease(hook: () => void): () => void;
}

/** The owner types that each have one 16-slot cache index allocator (sk_cache, cgroup_cache, ...). */
export type OwnerType = 'cgroup' | 'task' | 'sk' | 'inode';
