/**
 * The scheduler sample scan, as one synchronous pass over a small file reader: for every tracked
 * cgroup, its cgroup.threads; for every thread listed, /proc/<tid>/schedstat, comm and cgroup.
 *
 * Why threads and /proc/<tid>: schedstat is per task_struct (a thread), and cgroup.threads lists every
 * thread of the cgroup (cgroup.procs only thread-group leaders). /proc/<tid>/ resolves any thread id,
 * not only leaders (it is hidden from readdir of /proc, not from lookup), and its schedstat, comm and
 * cgroup are that thread's own (proc_pid_schedstat reads task->se.sum_exec_runtime,
 * task->sched_info.run_delay and pcount of the task the pid names). So /proc/<tid>/schedstat needs no
 * tgid and is one path component shorter than /proc/<tgid>/task/<tid>/schedstat.
 *
 * The pass is synchronous on purpose: on the host it runs in a worker thread (sched-worker.ts), one
 * file open at a time, which is the bounded concurrency the serving thread needs (no fd pile-up, no
 * EMFILE, no lost pids) at the lowest cost per read (no libuv round trip per file). On the simulator
 * the reader is the memfs volume, read in-process.
 *
 * A thread that is gone between listing and reading (ENOENT, ESRCH), or a cgroup removed before its
 * cgroup.threads was read, is skipped and counted; any other failure fails the scan.
 */
import fs from 'node:fs';
import { bpfError } from '../../uapi';

/** Reads a whole file as text; throws an error whose `code` is the errno name (ENOENT, ESRCH, ...). */
export interface ProcReader {
  read(path: string): string;
}

export interface ScanRequest {
  /** The cgroup2 mount point the cgroup paths are below. */
  mountPoint: string;
  /** Where procfs is mounted. */
  procRoot: string;
  /** Cgroup paths below the mount ("/", "/a/b"), each read for its own threads. */
  cgroups: string[];
}

/** What the scan found, one column per figure (cheap to clone from a worker). */
export interface ScanResult {
  tids: number[];
  runNs: number[];
  waitNs: number[];
  slices: number[];
  comm: string[];
  /** The cgroup2 path of the thread's `0::` line when read. */
  cgroup: string[];
  /** Threads listed but gone before they were read. */
  vanished: number;
  /** Cgroups gone before their cgroup.threads was read. */
  cgroupsGone: number;
}

function isGone(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return code === 'ENOENT' || code === 'ESRCH';
}

/** The three figures of a schedstat text: run ns, run-queue wait ns, slices. */
export function parseSchedstat(text: string, where: string): [number, number, number] {
  const f = text.trim().split(/\s+/).map(Number);
  if (f.length < 3 || !f.slice(0, 3).every((n) => Number.isSafeInteger(n) && n >= 0)) {
    throw bpfError('EINVAL', `${where}: not a schedstat line: ${JSON.stringify(text.slice(0, 64))}`);
  }
  return [f[0]!, f[1]!, f[2]!];
}

/** The cgroup2 path of a /proc/<tid>/cgroup text (the `0::` line), without a " (deleted)" mark. */
export function parseCgroupLine(text: string, where: string): string {
  for (const line of text.split('\n')) {
    if (line.startsWith('0::')) return line.slice(3).replace(/ \(deleted\)$/, '');
  }
  throw bpfError('ENODEV', `${where}: no cgroup2 (0::) line`);
}

function threadsFile(mountPoint: string, cgroup: string): string {
  return `${mountPoint}${cgroup === '/' ? '' : cgroup}/cgroup.threads`;
}

export function scanThreads(reader: ProcReader, req: ScanRequest): ScanResult {
  const out: ScanResult = { tids: [], runNs: [], waitNs: [], slices: [], comm: [], cgroup: [], vanished: 0, cgroupsGone: 0 };
  const seen = new Set<number>();
  for (const cg of req.cgroups) {
    let list: string;
    try {
      list = reader.read(threadsFile(req.mountPoint, cg));
    } catch (e) {
      if (!isGone(e)) throw e;
      out.cgroupsGone++;
      continue;
    }
    for (const line of list.split('\n')) {
      if (line === '') continue;
      const tid = Number(line);
      // A thread that moves between two cgroups while we list them can appear in both.
      if (seen.has(tid)) continue;
      seen.add(tid);
      const dir = `${req.procRoot}/${tid}`;
      let stat: [number, number, number];
      let comm: string;
      let cgroup: string;
      try {
        stat = parseSchedstat(reader.read(`${dir}/schedstat`), `${dir}/schedstat`);
        comm = reader.read(`${dir}/comm`).replace(/\n$/, '');
        cgroup = parseCgroupLine(reader.read(`${dir}/cgroup`), `${dir}/cgroup`);
      } catch (e) {
        if (!isGone(e)) throw e;
        out.vanished++;
        continue;
      }
      out.tids.push(tid);
      out.runNs.push(stat[0]);
      out.waitNs.push(stat[1]);
      out.slices.push(stat[2]);
      out.comm.push(comm);
      out.cgroup.push(cgroup);
    }
  }
  return out;
}

/**
 * The host's reader: open, read into one reused buffer, close. Three syscalls a file, and at most one
 * file open at a time.
 */
export function hostReader(): ProcReader {
  let buf = Buffer.allocUnsafe(16384);
  return {
    read(path: string): string {
      const fd = fs.openSync(path, 'r');
      try {
        let n = 0;
        for (;;) {
          if (n === buf.length) {
            const bigger = Buffer.allocUnsafe(buf.length * 2);
            buf.copy(bigger);
            buf = bigger;
          }
          const r = fs.readSync(fd, buf, n, buf.length - n, null);
          if (r === 0) return buf.toString('utf8', 0, n);
          n += r;
        }
      } finally {
        fs.closeSync(fd);
      }
    },
  };
}
