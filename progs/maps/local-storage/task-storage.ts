/**
 * BPF_MAP_TYPE_TASK_STORAGE (kernel/bpf/bpf_task_storage.c): local storage owned by tasks.
 *
 * Userspace names a task by the object or its pid where the kernel takes a pidfd; the values are
 * freed when the task is released.
 */
import { BPF_LOCAL_STORAGE_GET_F_CREATE, ERRNO, bpfError } from '../../../uapi';
import type { Kernel } from '../../kernel';
import type { MapOps, MapSpec } from '../map';
import type { TaskOwner } from '../owners';
import { localStorageMapAllocCheck, localStorageMapCheckBtf } from './alloc-check';
import { taskStorageBusy } from './busy';
import { LocalStorageMap, bpfLocalStorageFreeLocked } from './map';
import type { LocalStorage } from './storage';

// Held in a module constant so the hot path reads the counter, not the import first.
const busy = taskStorageBusy;

export function isTaskOwner(x: unknown): x is TaskOwner {
  const t = x as TaskOwner | null;
  return (
    typeof t === 'object' && t !== null && 'bpfStorage' in t && typeof t.pid === 'number' &&
    typeof t.dying === 'boolean'
  );
}

export class TaskStorageMap extends LocalStorageMap<TaskOwner> {
  protected override readonly ownerName = 'task';

  constructor(kernel: Kernel, spec: MapSpec) {
    super(kernel, spec, 'task', busy, bpf_task_storage_free);
  }

  /**
   * pidfd_get_pid + pid_task: a key that is not a task (a non-pidfd) is EBADF; a task that has
   * exited, or a pid with no task, is ENOENT (pid_task() finds nothing for the pidfd).
   */
  protected override ownerOf(key: unknown): TaskOwner {
    let task: unknown = key;
    if (typeof key === 'number') {
      if (!Number.isSafeInteger(key) || key <= 0) throw bpfError('EBADF', `not a pid: ${key}`);
      task = this.kernel.tasks?.taskByPid(key);
      if (task === undefined) throw bpfError('ENOENT', `no task with pid ${key}`);
    }
    if (!isTaskOwner(task)) throw bpfError('EBADF', 'not a task');
    if (task.dying) throw bpfError('ENOENT', `task ${task.pid} has exited`);
    return task;
  }
}

/**
 * bpf_task_storage_get (bpf_task_storage_get_recur since v6.2): the value, or NULL; creates only
 * for a task that has not exited. Unlike cgroup storage, a re-entered call (the guard busy) still
 * finds an existing value, without touching the cache; only creation needs the guard free.
 */
export function bpf_task_storage_get(
  map: TaskStorageMap,
  task: TaskOwner | null,
  value: Uint8Array | null = null,
  flags = 0,
): Uint8Array | null {
  if ((flags !== 0 && flags !== BPF_LOCAL_STORAGE_GET_F_CREATE) || task === null || task === undefined) return null;
  const nobusy = busy.count === 0;
  const sdata = map.lookup(task.bpfStorage as LocalStorage | null, nobusy);
  if (sdata !== null || flags === 0 || !nobusy) return sdata;
  return taskStorageCreate(map, task, value);
}

function taskStorageCreate(map: TaskStorageMap, task: TaskOwner, value: Uint8Array | null): Uint8Array | null {
  if (!isTaskOwner(task) || task.dying) return null;
  busy.lock();
  try {
    return map.createForHelper(task, value);
  } finally {
    busy.unlock();
  }
}

/**
 * bpf_task_storage_delete: 0, or -EINVAL (no task), -ENOENT (no value), -EBUSY (re-entered).
 * Since v6.2 the value is looked up first, so an absent one is -ENOENT even when re-entered.
 */
export function bpf_task_storage_delete(map: TaskStorageMap, task: TaskOwner | null): number {
  if (task === null || task === undefined) return -ERRNO.EINVAL;
  if (map.lookup(task.bpfStorage as LocalStorage | null, false) === null) return -ERRNO.ENOENT;
  if (!busy.trylock()) return -ERRNO.EBUSY;
  try {
    return map.deleteOwner(task) ? 0 : -ERRNO.ENOENT;
  } finally {
    busy.unlock();
  }
}

/** bpf_task_storage_free: the task is released; its values in every map go with it. */
export function bpf_task_storage_free(task: TaskOwner): void {
  bpfLocalStorageFreeLocked(busy, task);
}

export const taskStorageMapOps: MapOps = {
  allocCheck: localStorageMapAllocCheck,
  checkBtf: localStorageMapCheckBtf,
  alloc: (kernel, spec) => new TaskStorageMap(kernel, spec),
};
