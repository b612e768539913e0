/**
 * Task: a process as vbpffs sees it (pid, comm, cgroup), shaped to be a task-storage owner
 * (progs/maps/owners.ts TaskOwner) without this layer knowing about storage.
 *
 * Lifetime (mirrors task_struct): a running task holds one reference on itself (the one the pid
 * hash and the scheduler stand for); exit() drops it and marks the task dying (PF_EXITING: no new
 * task storage). Other holders (an event source mid-run, a map lookup) take their own with tryGet().
 * When the last reference goes the task is released: hooks run (bpf_task_storage_free from
 * free_task) and only then is its cgroup reference dropped, as the kernel drops the css_set in
 * cgroup_free, so a cgroup is never released before the tasks that were in it.
 */
import createDebug from 'debug';
import { bpfError } from '../uapi';
import type { KernfsNode } from './kernfs-node';

const debug = createDebug('vbpffs:tags');

export class Task {
  readonly pid: number;
  readonly comm: string;
  /**
   * The task's local storage (task->bpf_storage), opaque to this layer but for its destroy(), which
   * release calls as free_task calls bpf_task_storage_free.
   */
  bpfStorage: { destroy(): void } | null = null;

  #cgroup: KernfsNode;
  #dying = false;
  #refcnt = 1;
  #hooks: (() => void)[] = [];

  /** Takes a reference on cgroup (css_tryget: a task may still be found in a removed cgroup). */
  constructor(pid: number, comm: string, cgroup: KernfsNode) {
    if (!Number.isSafeInteger(pid) || pid <= 0) throw bpfError('EINVAL', `bad pid ${pid}`);
    if (!cgroup.tryGet()) throw bpfError('ENOENT', `cgroup ${cgroup.path} is released`);
    this.pid = pid;
    this.comm = comm;
    this.#cgroup = cgroup;
  }

  get cgroup(): KernfsNode {
    return this.#cgroup;
  }
  /** True from exit() on. */
  get dying(): boolean {
    return this.#dying;
  }
  get released(): boolean {
    return this.#refcnt === 0;
  }
  get refs(): number {
    return this.#refcnt;
  }

  /**
   * Moves the task to another cgroup (a cgroup.procs write). The destination must be online:
   * cgroup_procs_write on a removed cgroup fails with ENODEV, and an exiting task cannot move (ESRCH).
   */
  migrate(to: KernfsNode): void {
    if (this.#dying) throw bpfError('ESRCH', `task ${this.pid} is exiting`);
    if (to === this.#cgroup) return;
    if (!to.tryGetOnline()) throw bpfError('ENODEV', `cgroup ${to.path} is ${to.state}`);
    const from = this.#cgroup;
    this.#cgroup = to;
    debug('task %d (%s) %s -> %s', this.pid, this.comm, from.path, to.path);
    from.put();
  }

  /** do_exit: the task is dying from now on and drops its own reference. */
  exit(): void {
    if (this.#dying) throw bpfError('ESRCH', `task ${this.pid} has already exited`);
    this.#dying = true;
    debug('task %d (%s) exits', this.pid, this.comm);
    this.put();
  }

  /** get_task_struct only while the task is not released (tryget_task_struct). */
  tryGet(): boolean {
    if (this.#refcnt === 0) return false;
    this.#refcnt++;
    return true;
  }

  /** put_task_struct. A running task holds its own reference until exit(), so a put cannot take it. */
  put(): void {
    if (this.#refcnt <= 0) throw bpfError('EINVAL', `task ${this.pid}: reference put twice`);
    if (this.#refcnt === 1 && !this.#dying) throw bpfError('EINVAL', `task ${this.pid}: a put would drop a running task's own reference`);
    if (--this.#refcnt === 0) this.#release();
  }

  /**
   * Registers a hook to run at release (free_task); returns its remover. Hooks run in registration
   * order; one that throws is reported and the rest still run.
   */
  onRelease(hook: () => void): () => void {
    if (this.#refcnt === 0) throw bpfError('ESRCH', `task ${this.pid} is released`);
    this.#hooks.push(hook);
    return () => {
      const i = this.#hooks.indexOf(hook);
      if (i >= 0) this.#hooks.splice(i, 1);
    };
  }

  #release(): void {
    const hooks = this.#hooks;
    this.#hooks = [];
    const storage = this.bpfStorage;
    for (const step of storage === null ? hooks : [...hooks, () => storage.destroy()]) {
      try {
        step();
      } catch (e) {
        debug('release of task %d: a step failed: %O', this.pid, e);
      }
    }
    debug('task %d released', this.pid);
    this.#cgroup.put();
  }
}

/** How a source turns a pid into a Task it knows (find_task_by_vpid). Exited tasks are not found. */
export interface TaskResolver {
  taskByPid(pid: number): Task | undefined;
}
