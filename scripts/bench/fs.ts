/**
 * The filesystem through real FUSE mounts (issue 7's "Must show"), each figure next to a baseline
 * measured in the same run. The daemon is `vbpffs mount --foreground` from dist/ in a child process,
 * on simulated trees (`--sim bench-1k`, `bench-10k`: slices of 99 services), with the cpu and procs
 * examples pinned at the root, so auto-mirror gives every cgroup's directory both views. Every
 * reader is a process of its own (scripts/bench-fs-reader.ts, find, cat): this process serves the
 * bare FUSE mount, and a synchronous call of its own into that mount would wait for itself.
 *
 * a. open + read to EOF + close, p50/p99 µs, the files taken in turn each round: a cgroup's cpu
 *    view; a bare file of the same bytes, served from this process through fs/fuse/host.ts's
 *    mountFuse (same options, direct_io included) by a backend that holds them; each through both
 *    FUSE bindings (fuse-native, and libfuse3 when its addon is built: a second daemon with
 *    `--fuse libfuse3`); and a cgroup's own cpu.stat on the host's cgroup2 mount (a cgroup made
 *    for the bench). Then the serving process's CPU per read of each FUSE file, one reader at a
 *    time for RATE_MS (the daemon's /proc/PID/stat, or this process's own for the bare files).
 * b. ops/s of 1 reader and of 2 concurrent readers (two processes, two cgroups' cpu views), and the
 *    scaling; the same for the bare file.
 * c. `find MNT -name procs | xargs cat` over 1,000 mirrored cgroups, s; against the same over a
 *    tree of regular files laid out the same (in the temporary directory's filesystem).
 * d. the daemon's RSS with both views pinned over 10,000 mirrored cgroups, against 1,000 and none,
 *    and how much of it is the simulated cgroupfs itself.
 * e. the same on the host's cgroup2 mount, with 10,000 real cgroups made for the bench.
 *
 * Needs root and FUSE; says why and returns otherwise. The host cpu.stat column needs a cgroup2
 * mount; without one it says why and the rest runs.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { mkdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { S_IFDIR, S_IFREG, bpfError } from '../../uapi';
import { SimCgroupSource, findCgroup2Mount } from '../../tags';
import { simPreset } from '../../fs/engine/sim-preset';
import { examplePath } from '../../progs/examples';
import { mountFuse, type FuseMount } from '../../fs/fuse/host';
import type { VfsBackend, VfsStat } from '../../fs/fuse/backend';
import { fuseBenchSkipReason } from '../bench-skip';
import { libfuse3Unavailable } from '../../fs/fuse/libfuse3';

const exec = promisify(execFile);
const CLI = path.join(__dirname, '..', '..', 'fs', 'cli.js');
const READER = path.join(__dirname, '..', 'bench-fs-reader.js');

const WARMUP = 300;
const ROUNDS = 3000;
const RATE_MS = 3000;
const FIND_ROUNDS = 3;

const pct = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!;
const median = (xs: number[]): number => xs.slice().sort((a, b) => a - b)[xs.length >> 1]!;
const mb = (kb: number): string => `${(kb / 1024).toFixed(1)} MB`;

// --- the daemon, in a child process ---------------------------------------------------------------

interface DaemonProc {
  readonly mnt: string;
  readonly pid: number;
  /** Runs `vbpffs ARGS` against this daemon's state root. */
  cli(...args: string[]): Promise<string>;
  stop(): Promise<void>;
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', () => r()));
}

/** A daemon on a simulated tree (`sim`), or on the host's cgroup2 mount when `sim` is null. */
async function startDaemon(base: string, name: string, sim: string | null, fuse = 'fuse-native'): Promise<DaemonProc> {
  const mnt = path.join(base, name);
  const env = { ...process.env, VBPFFS_STATE_ROOT: path.join(base, 'state') };
  const source = [...(sim === null ? [] : ['--sim', sim]), '--fuse', fuse];
  const child = spawn(process.execPath, [CLI, 'mount', mnt, ...source, '--foreground'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('vbpffs mounted at')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`vbpffs mount ${mnt} ${source.join(' ')} exited (${code}): ${err.trim()}`)));
  });
  return {
    mnt,
    pid: child.pid!,
    cli: async (...args) => (await exec(process.execPath, [CLI, ...args], { env, encoding: 'utf8' })).stdout,
    stop: async () => {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited(child);
      clearTimeout(killer);
    },
  };
}

/** Pins the cpu and procs views at the root of the mount; the ms the pins (and the mirror) took. */
async function pinViews(d: DaemonProc): Promise<number> {
  const t0 = performance.now();
  await d.cli('iter', 'pin', examplePath('cpu'), path.join(d.mnt, 'cpu'));
  await d.cli('iter', 'pin', examplePath('procs'), path.join(d.mnt, 'procs'));
  return performance.now() - t0;
}

async function rssKb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)![1]);
}

// --- the bare fuse-native file, served from this process ------------------------------------------

/** A VfsBackend of one read-only file, /file, holding `bytes`. */
function bareBackend(bytes: Uint8Array): VfsBackend {
  const now = new Date();
  const stat = (ino: number, mode: number, size: number, nlink: number): VfsStat => ({ ino, mode, nlink, uid: 0, gid: 0, size, atime: now, mtime: now, ctime: now });
  const open = new Map<number, number>();
  let nextFh = 1;
  const erofs = async (): Promise<never> => {
    throw bpfError('EROFS', 'the bare bench filesystem is read-only');
  };
  return {
    getattr: async (p) => {
      if (p === '/') return stat(1, S_IFDIR | 0o755, 0, 2);
      if (p === '/file') return stat(2, S_IFREG | 0o444, bytes.length, 1);
      throw bpfError('ENOENT', p);
    },
    readdir: async (p) => {
      if (p !== '/') throw bpfError('ENOTDIR', p);
      return ['file'];
    },
    readlink: async (p) => {
      throw bpfError('EINVAL', p);
    },
    mkdir: erofs,
    rmdir: erofs,
    unlink: erofs,
    rename: erofs,
    link: erofs,
    symlink: erofs,
    create: erofs,
    mknod: erofs,
    chmod: erofs,
    chown: erofs,
    utimens: erofs,
    open: async (p) => {
      if (p !== '/file') throw bpfError('ENOENT', p);
      open.set(nextFh, 0);
      return nextFh++;
    },
    read: async (fh, size) => {
      const pos = open.get(fh)!;
      const out = bytes.subarray(pos, pos + size);
      open.set(fh, pos + out.length);
      return out;
    },
    release: async (fh) => void open.delete(fh),
    statfs: async () => ({ bsize: 4096, blocks: 0, bfree: 0, bavail: 0, files: 2, ffree: 0, namemax: 255, type: 0 }),
  };
}

// --- a host cgroup's cpu.stat ---------------------------------------------------------------------

interface HostStat {
  file: string | null;
  why: string;
  cleanup(): Promise<void>;
}

async function hostCpuStat(): Promise<HostStat> {
  let mountPoint: string;
  try {
    mountPoint = (await findCgroup2Mount()).mountPoint;
  } catch (e) {
    return { file: null, why: (e as Error).message, cleanup: async () => {} };
  }
  const dir = path.join(mountPoint, `vbpffs-bench-fs-${process.pid}`);
  try {
    await mkdir(dir);
  } catch (e) {
    return { file: null, why: `cannot make ${dir}: ${(e as Error).message}`, cleanup: async () => {} };
  }
  const file = path.join(dir, 'cpu.stat');
  try {
    await readFile(file);
  } catch (e) {
    await rmdir(dir);
    return { file: null, why: `${file}: ${(e as Error).message}`, cleanup: async () => {} };
  }
  return { file, why: '', cleanup: () => rmdir(dir) };
}

// --- readers --------------------------------------------------------------------------------------

async function reader<T>(...args: string[]): Promise<T> {
  const { stdout } = await exec(process.execPath, [READER, ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });
  return JSON.parse(stdout) as T;
}

/** ops/s of one reader per file, all starting together. */
async function rate(files: string[]): Promise<number> {
  const start = Date.now() + 500;
  const rs = await Promise.all(files.map((f) => reader<{ ops: number; seconds: number }>('rate', String(start), String(RATE_MS), f)));
  return rs.reduce((s, r) => s + r.ops / r.seconds, 0);
}

// --- the figures ----------------------------------------------------------------------------------

interface Target {
  label: string;
  file: string;
  /** The serving process's CPU so far, µs (none for files the kernel serves). */
  cpuUs?: () => Promise<number>;
}

/** utime + stime of a process, µs. */
async function procCpuUs(pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).replace(/^.*\) /s, '').split(' ');
  // Fields 14 and 15 of stat(5), counted here from field 3 (state).
  return ((Number(fields[11]) + Number(fields[12])) * 1e6) / 100;
}

const selfCpuUs = async (): Promise<number> => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

async function latencies(targets: Target[], view: string): Promise<void> {
  const r = await reader<{ bytes: number[]; us: number[][] }>('latency', String(WARMUP), String(ROUNDS), ...targets.map((x) => x.file));
  const sorted = r.us.map((xs) => xs.sort((x, y) => x - y));
  const fig = (xs: number[]): string => `p50 ${pct(xs, 50).toFixed(1).padStart(7)} us  p99 ${pct(xs, 99).toFixed(1).padStart(7)} us`;
  console.log(`(a) open + read to EOF + close, ${ROUNDS} rounds, the files in turn:`);
  targets.forEach((x, i) => console.log(`    ${`${x.label} (${r.bytes[i]} B)`.padEnd(52)} ${fig(sorted[i]!)}`));
  const base = sorted[targets.findIndex((x) => x.file === view)]!;
  for (let i = 0; i < targets.length; i++) {
    if (targets[i]!.file === view) continue;
    console.log(`    fuse-native view / ${targets[i]!.label}: ${(pct(base, 50) / pct(sorted[i]!, 50)).toFixed(2)}x at p50`);
  }
  console.log(`    serving process CPU per read (one reader, ${RATE_MS / 1000} s each):`);
  for (const x of targets) {
    if (x.cpuUs === undefined) continue;
    const c0 = await x.cpuUs();
    const start = Date.now() + 200;
    const { ops } = await reader<{ ops: number; seconds: number }>('rate', String(start), String(RATE_MS), x.file);
    const c1 = await x.cpuUs();
    console.log(`    ${x.label.padEnd(52)} ${((c1 - c0) / ops).toFixed(1).padStart(7)} us CPU per read (${ops} reads)`);
  }
}

async function concurrency(pairs: { label: string; files: [string, string] }[]): Promise<void> {
  console.log(`(b) open + read + close in a loop for ${RATE_MS / 1000} s per reader process (${cpus().length} CPUs):`);
  for (const { label, files } of pairs) {
    try {
      const one = await rate([files[0]]);
      const two = await rate(files);
      console.log(`    ${label}: 1 reader ${one.toFixed(0)} ops/s, 2 concurrent readers ${two.toFixed(0)} ops/s together: ${(two / one).toFixed(2)}x`);
    } catch (e) {
      // A view's run can miss its deadline on a loaded host (EIO): that row fails, not the bench.
      console.log(`    ${label}: failed (${(e as Error).message.split('\n').find((l) => l.startsWith('Error:')) ?? (e as Error).message})`);
    }
  }
}

/** Runs `find ROOT -name procs | xargs cat`: seconds and the number of files cat printed. */
async function findCat(root: string): Promise<{ s: number; files: number }> {
  const t0 = performance.now();
  const { stdout } = await exec('sh', ['-c', `find '${root}' -name procs | xargs cat`], { encoding: 'utf8', maxBuffer: 64 << 20 });
  const s = (performance.now() - t0) / 1000;
  return { s, files: stdout.split('\n').filter((l) => l.startsWith('procs ')).length };
}

/** The same directories as the mount, with regular files holding what one view printed. */
async function plainTree(src: string, dst: string, procs: string, cpu: string): Promise<void> {
  const { stdout } = await exec('find', [src, '-type', 'd'], { encoding: 'utf8', maxBuffer: 64 << 20 });
  for (const d of stdout.split('\n').filter(Boolean)) {
    const to = path.join(dst, path.relative(src, d));
    await mkdir(to, { recursive: true });
    await writeFile(path.join(to, 'procs'), procs);
    await writeFile(path.join(to, 'cpu'), cpu);
  }
}

async function findBench(d: DaemonProc, base: string): Promise<void> {
  const cat = async (f: string): Promise<string> => (await exec('cat', [f], { encoding: 'utf8' })).stdout;
  const plain = path.join(base, 'plain');
  await plainTree(d.mnt, plain, await cat(path.join(d.mnt, 'procs')), await cat(path.join(d.mnt, 'cpu')));
  const cold = await findCat(d.mnt);
  const warm: number[] = [];
  const files: number[] = [];
  for (let i = 0; i < FIND_ROUNDS; i++) {
    warm.push((await findCat(d.mnt)).s);
    const p = await findCat(plain);
    files.push(p.s);
  }
  const v = median(warm);
  const p = median(files);
  console.log(`(c) find MNT -name procs | xargs cat over ${cold.files} mirrored directories (1,000 cgroups and the root):`);
  console.log(`    vbpffs: first ${cold.s.toFixed(3)} s, then ${v.toFixed(3)} s (median of ${FIND_ROUNDS}; ${((v * 1e6) / cold.files).toFixed(0)} us per file)`);
  console.log(`    the same tree of regular files (${tmpdir()}): ${p.toFixed(3)} s;  vbpffs / regular files: ${(v / p).toFixed(1)}x`);
}

/** The daemon's RSS once the pins are made and it has been idle a second. */
async function settledRss(d: DaemonProc): Promise<number> {
  await sleep(1000);
  return rssKb(d.pid);
}

async function rssBench(base: string, r1: number): Promise<void> {
  const settle = settledRss;
  const empty = await startDaemon(base, 'empty', 'empty');
  let r0: number;
  try {
    await pinViews(empty);
    r0 = await settle(empty);
  } finally {
    await empty.stop();
  }
  const big = await startDaemon(base, 'tenk', 'bench-10k');
  try {
    const pinMs = await pinViews(big);
    const r10 = await settle(big);
    console.log(`(d) the daemon's RSS (VmRSS, both views pinned at the root, auto-mirror):`);
    console.log(`    no cgroups ${mb(r0)};  1,000 cgroups ${mb(r1)};  10,000 cgroups ${mb(r10)} (pinning at 10,000 took ${pinMs.toFixed(0)} ms)`);
    console.log(`    per mirrored cgroup: ${((r10 - r0) / 10_000).toFixed(1)} KiB (0 -> 10,000), ${((r10 - r1) / 9_000).toFixed(1)} KiB (1,000 -> 10,000)`);
  } finally {
    await big.stop();
  }
  const sim = await simTreeHeapKb(10_000);
  console.log(`    of which the simulated cgroupfs itself (its memfs volume, measured in this process's heap): ${(sim / 10_000).toFixed(1)} KiB per cgroup`);
}

/** The heap a simulated tree of n cgroups takes by itself, KiB (the benches run with --expose-gc). */
async function simTreeHeapKb(n: number): Promise<number> {
  const gc = (globalThis as { gc?: () => void }).gc ?? ((): void => {});
  gc();
  const before = process.memoryUsage().heapUsed;
  const sim = new SimCgroupSource();
  await sim.start();
  await simPreset(sim, n === 10_000 ? 'bench-10k' : 'bench-1k');
  gc();
  const kb = (process.memoryUsage().heapUsed - before) / 1024;
  await sim.stop();
  return kb;
}

/**
 * e. The daemon on the host's cgroup2 mount: its RSS with both views pinned, before and after
 *    10,000 real cgroups are made under a cgroup of the bench's own (100 of 100), so the figure per
 *    cgroup is the mirror's and the pins' alone, with no simulated cgroupfs in it.
 */
async function hostRssBench(base: string, host: HostStat): Promise<void> {
  if (host.file === null) {
    console.log(`(e) the daemon's RSS on the host's cgroups: skipped (${host.why})`);
    return;
  }
  const top = path.join(path.dirname(host.file), 'rss');
  const d = await startDaemon(base, 'host', null);
  const made: string[] = [];
  try {
    await pinViews(d);
    const before = await settledRss(d);
    const cgroups = async (): Promise<number> => {
      const mounts = JSON.parse(await d.cli('-j', 'status')) as { mountPoint: string; source: { cgroups: number } }[];
      return mounts.find((m) => m.mountPoint === d.mnt)!.source.cgroups;
    };
    const start = await cgroups();
    await mkdir(top);
    made.push(top);
    for (let s = 0; s < 100; s++) {
      const slice = path.join(top, `slice-${s}`);
      await mkdir(slice);
      made.push(slice);
      for (let c = 0; c < 99; c++) {
        await mkdir(path.join(slice, `svc-${c}`));
        made.push(path.join(slice, `svc-${c}`));
      }
    }
    const n = made.length;
    const deadline = Date.now() + 120_000;
    while ((await cgroups()) < start + n && Date.now() < deadline) await sleep(500);
    const mirrored = (await cgroups()) - start;
    const after = await settledRss(d);
    console.log(`(e) the daemon's RSS on the host's cgroup2 mount (both views pinned at the root, auto-mirror):`);
    console.log(`    before ${mb(before)};  with ${mirrored.toLocaleString('en')} more real cgroups ${mb(after)};  per cgroup ${((after - before) / mirrored).toFixed(1)} KiB`);
  } finally {
    await d.stop();
    for (const dir of made.reverse()) await rmdir(dir).catch(() => undefined);
  }
}

export async function run(): Promise<void> {
  const skip = await fuseBenchSkipReason();
  if (skip !== null) {
    console.log(`skipped: ${skip}`);
    return;
  }
  const base = mkdtempSync(path.join(tmpdir(), 'vbpffs-bench-fs-'));
  const host = await hostCpuStat();
  const l3why = libfuse3Unavailable();
  let d: DaemonProc | null = null;
  let d3: DaemonProc | null = null;
  let bare: FuseMount | null = null;
  let bare3: FuseMount | null = null;
  try {
    d = await startDaemon(base, 'mnt', 'bench-1k');
    await pinViews(d);
    const rss1k = await settledRss(d);
    const cell = (m: string, svc: string): string => path.join(m, 'slice-3.slice', svc, 'cpu');
    const view = cell(d.mnt, 'svc-42.service');
    const other = path.join(d.mnt, 'slice-5.slice', 'svc-7.service', 'cpu');
    // The second read of a cpu view is its usual shape (the first has no rate yet).
    await exec('cat', [view]);
    const bytes = Buffer.from((await exec('cat', [view])).stdout);
    bare = await mountFuse(path.join(base, 'bare'), bareBackend(bytes), { fuse: 'fuse-native' });
    const bareFile = path.join(bare.mountPoint, 'file');
    const targets: Target[] = [
      { label: 'vbpffs cpu view, fuse-native', file: view, cpuUs: () => procCpuUs(d!.pid) },
      { label: 'bare file, fuse-native', file: bareFile, cpuUs: selfCpuUs },
    ];
    const pairs: { label: string; files: [string, string] }[] = [
      { label: 'vbpffs cpu views (two cgroups), fuse-native', files: [view, other] },
      { label: 'bare file, fuse-native', files: [bareFile, bareFile] },
    ];
    if (l3why === null) {
      d3 = await startDaemon(base, 'mnt3', 'bench-1k', 'libfuse3');
      await pinViews(d3);
      const view3 = cell(d3.mnt, 'svc-42.service');
      await exec('cat', [view3]);
      bare3 = await mountFuse(path.join(base, 'bare3'), bareBackend(bytes), { fuse: 'libfuse3' });
      const bare3File = path.join(bare3.mountPoint, 'file');
      targets.push({ label: 'vbpffs cpu view, libfuse3', file: view3, cpuUs: () => procCpuUs(d3!.pid) }, { label: 'bare file, libfuse3', file: bare3File, cpuUs: selfCpuUs });
      pairs.push(
        { label: 'vbpffs cpu views (two cgroups), libfuse3', files: [view3, path.join(d3.mnt, 'slice-5.slice', 'svc-7.service', 'cpu')] },
        { label: 'bare file, libfuse3', files: [bare3File, bare3File] },
      );
    } else {
      console.log(`libfuse3 rows skipped: ${l3why}`);
    }
    if (host.file === null) console.log(`host cgroup cpu.stat row skipped: ${host.why}`);
    else targets.push({ label: `host cgroup's own cpu.stat`, file: host.file });
    await latencies(targets, view);
    await concurrency(pairs);
    await d3?.stop();
    d3 = null;
    await bare3?.unmount();
    bare3 = null;
    await findBench(d, base);
    await rssBench(base, rss1k);
    await hostRssBench(base, host);
  } finally {
    await bare?.unmount();
    await bare3?.unmount();
    await d?.stop();
    await d3?.stop();
    await host.cleanup();
    // Only empty mount points are left once everything is unmounted; a mount still there stays.
    await rm(base, { recursive: true, force: true }).catch((e: unknown) => console.log(`left ${base}: ${(e as Error).message}`));
  }
}
