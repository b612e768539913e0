/**
 * Tasks on the host: the pids of a cgroup (cgroup.procs, cgroup.threads) and a task's comm and cgroup
 * (/proc/<pid>/comm, the `0::` line of /proc/<pid>/cgroup), all with async fs.
 *
 * The `0::` path is relative to the reader's cgroup namespace root, which is the root of the cgroup2
 * mount it sees; vbpffs mirrors that mount, so the path names a node of the hierarchy directly.
 * A task that exits between listing and reading is ESRCH, as /proc lookups of a dead pid are.
 *
 * A Task made here holds a reference on its cgroup (tags/task.ts); whoever asked for it owns the task's
 * own reference and calls exit() once /proc no longer has the pid.
 */
import { promises as fsp } from 'node:fs';
import { bpfError, fromSystemError } from '../../uapi';
import type { KernfsNode } from '../kernfs-node';
import type { CgroupSource } from '../source';
import { Task } from '../task';

/** What /proc says about a task, before it is tied to a node of the hierarchy. */
export interface HostTaskInfo {
  pid: number;
  comm: string;
  /** The task's cgroup2 path ("/" or "/a/b"). */
  cgroupPath: string;
}

export interface ProcOptions {
  /** Where procfs is mounted; tests point it at a fixture. Default /proc. */
  procRoot?: string;
}

/** The pids in cgroup.procs (processes) or cgroup.threads (threads), in the kernel's order. */
export async function cgroupPids(source: CgroupSource, cgroup: KernfsNode, threads = false): Promise<number[]> {
  const text = await source.readFile(cgroup, threads ? 'cgroup.threads' : 'cgroup.procs');
  return parsePids(text);
}

export function parsePids(text: string): number[] {
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      const pid = Number(l);
      if (!Number.isSafeInteger(pid) || pid <= 0) throw bpfError('EINVAL', `bad pid ${JSON.stringify(l)} in a cgroup pid list`);
      return pid;
    });
}

async function readProc(pid: number, file: string, procRoot: string): Promise<string> {
  if (!Number.isSafeInteger(pid) || pid <= 0) throw bpfError('EINVAL', `bad pid ${pid}`);
  const where = `${procRoot}/${pid}/${file}`;
  try {
    return await fsp.readFile(where, 'utf8');
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'ENOENT' || code === 'ESRCH') throw bpfError('ESRCH', `no task ${pid} (${where})`, e);
    throw fromSystemError(e, `read ${where}`);
  }
}

/** The cgroup2 path in a /proc/<pid>/cgroup text: the `0::` line (hybrid hosts list v1 lines too). */
export function parseProcCgroup(text: string, pid: number): string {
  const line = text.split('\n').find((l) => l.startsWith('0::'));
  if (line === undefined) throw bpfError('ENODEV', `task ${pid} has no cgroup2 line in /proc/${pid}/cgroup (cgroup v1 only?)`);
  // A task of a removed cgroup shows "(deleted)" after the path.
  return line.slice(3).replace(/ \(deleted\)$/, '');
}

export async function taskCgroupPath(pid: number, opts: ProcOptions = {}): Promise<string> {
  return parseProcCgroup(await readProc(pid, 'cgroup', opts.procRoot ?? '/proc'), pid);
}

export async function taskComm(pid: number, opts: ProcOptions = {}): Promise<string> {
  return (await readProc(pid, 'comm', opts.procRoot ?? '/proc')).replace(/\n$/, '');
}

export async function readTaskInfo(pid: number, opts: ProcOptions = {}): Promise<HostTaskInfo> {
  const [comm, cgroupPath] = await Promise.all([taskComm(pid, opts), taskCgroupPath(pid, opts)]);
  return { pid, comm, cgroupPath };
}

/** A host task as a Task in source's hierarchy; ENOENT if its cgroup is not (yet) there. */
export async function hostTask(source: CgroupSource, pid: number, opts: ProcOptions = {}): Promise<Task> {
  const info = await readTaskInfo(pid, opts);
  const cgroup = source.hierarchy.cgroupByPath(info.cgroupPath);
  if (cgroup === undefined) throw bpfError('ENOENT', `task ${pid} (${info.comm}) is in ${info.cgroupPath}, which the hierarchy does not have`);
  return new Task(pid, info.comm, cgroup);
}

/**
 * The tasks of a cgroup (processes, or every thread), leaving out those that exit while we read. Each
 * task's cgroup is read from /proc, so one that moved meanwhile is reported where it now is.
 *
 * All or nothing: if any task fails for another reason than having exited, every Task already built
 * is exited (dropping the reference it holds on its cgroup, which could otherwise never be released)
 * and the first such error is thrown.
 */
export async function cgroupTasks(
  source: CgroupSource,
  cgroup: KernfsNode,
  opts: ProcOptions & { threads?: boolean } = {},
): Promise<Task[]> {
  const pids = await cgroupPids(source, cgroup, opts.threads ?? false);
  const settled = await Promise.allSettled(pids.map((pid) => hostTask(source, pid, opts)));
  const tasks: Task[] = [];
  let failure: { error: unknown } | null = null;
  for (const r of settled) {
    if (r.status === 'fulfilled') tasks.push(r.value);
    else if ((r.reason as { code?: string }).code !== 'ESRCH') failure ??= { error: r.reason };
  }
  if (failure === null) return tasks;
  for (const task of tasks) task.exit();
  throw failure.error;
}
