/**
 * The local-storage recursion guard (bpf_cgrp_storage_busy, bpf_task_storage_busy): a per-CPU counter
 * per owner type. JS has one CPU, so there is one counter per owner type for the whole process.
 *
 * Syscall paths take it unconditionally (bpf_*_storage_lock) because nothing can be running under
 * them on the same CPU except a tracing program that re-enters; helper paths only trylock, so a
 * program that runs while the counter is held (a tracing hook inside an update, an owner free)
 * gets NULL from get and -EBUSY from delete instead of deadlocking on the storage.
 */
export class StorageBusy {
  count = 0;

  /** bpf_*_storage_lock */
  lock(): void {
    this.count++;
  }

  /** bpf_*_storage_unlock */
  unlock(): void {
    this.count--;
  }

  /** bpf_*_storage_trylock: succeeds only when nothing of this owner type is in progress. */
  trylock(): boolean {
    if (this.count !== 0) return false;
    this.count = 1;
    return true;
  }
}

/** Only cgroup and task storage have a guard; socket and inode storage run their helpers without one. */
export const cgrpStorageBusy = new StorageBusy();
export const taskStorageBusy = new StorageBusy();
