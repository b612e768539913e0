/**
 * What a local-storage owner must offer. tags/ (cgroups) and the event sources (tasks, sockets,
 * inodes) implement these structurally; this layer never imports them.
 *
 * `bpfStorage` is the owner's storage pointer (cgrp->bpf_cgrp_storage, task->bpf_storage,
 * sk->sk_bpf_storage, the inode's security blob). Only the local storage core reads or writes it;
 * the owner's one duty is to call its destroy() when the owner is freed, as css_free calls
 * bpf_cgrp_storage_free and free_task calls bpf_task_storage_free. A direct call, not a release hook
 * registered per owner: that costs a closure and a hook entry for every owner with values.
 */

export interface OwnerStorage {
  destroy(): void;
}

export interface StorageOwner {
  bpfStorage: OwnerStorage | null;
}

/**
 * A cgroup as CGRP_STORAGE sees it. `dying` is percpu_ref_is_dying(&cgrp->self.refcnt): true from
 * rmdir on; `released` is true once the last reference is gone (css_free), which is when its storage
 * is freed (through bpfStorage.destroy()). onRelease registers a hook for that same moment; it
 * returns a function that removes the hook.
 */
export interface CgroupOwner extends StorageOwner {
  readonly id: number;
  readonly path: string;
  readonly dying: boolean;
  readonly released: boolean;
  onRelease(hook: () => void): () => void;
  /**
   * Registers what cgroup_bpf_release does (cgroup links auto-detached, the old CGROUP_STORAGE
   * freed): it runs at rmdir (cgroup_destroy_locked -> cgroup_bpf_offline), while references may
   * remain, not at the last put as onRelease does. Returns a function that removes the hook; ENOENT
   * on a cgroup that is already dying.
   */
  onBpfRelease(hook: () => void): () => void;
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
}

/** An inode as INODE_STORAGE sees it. */
export interface InodeOwner extends StorageOwner {
  readonly ino: number;
  readonly dying: boolean;
}

/** The owner types that each have one 16-slot cache index allocator (sk_cache, cgroup_cache, ...). */
export type OwnerType = 'cgroup' | 'task' | 'sk' | 'inode';
