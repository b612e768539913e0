/**
 * Bench of the host cgroup source on a real 10,000-cgroup tree (100 x 100 below a bench-owned cgroup):
 * load time and the serving thread's longest stall during it, host mkdir to node visible, idle CPU of
 * tracking, and the memory of the tracked tree. Making and removing the tree is not measured.
 * Needs root and a cgroup2 mount; says why and returns otherwise.
 */
import fs, { promises as fsp } from 'node:fs';
import path from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { findCgroup2Mount } from '../../tags/host/mountinfo';
import { HostCgroupSource } from '../../tags/host/host-source';
import { scanTreeSync } from '../../tags/host/scan';
import { cgroupBenchSkipReason } from '../bench-skip';

const FANOUT = 100;
const MKDIRS = 300;
const IDLE_MS = 10_000;
/** Concurrent mkdir/rmdir while making and removing the tree. */
const PARALLEL = 16;

function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

function mb(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MB`;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function inParallel<T>(items: T[], fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: PARALLEL }, lane));
}

/** Removes the bench cgroups, deepest first; it never holds tasks. */
async function removeBenchTree(dir: string): Promise<void> {
  if (!fs.existsSync(dir)) return;
  const levels: string[][] = [];
  const visit = (d: string, depth: number): void => {
    (levels[depth] ??= []).push(d);
    for (const e of fs.readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) visit(path.join(d, e.name), depth + 1);
  };
  visit(dir, 0);
  for (const level of levels.reverse()) await inParallel(level, (d) => fsp.rmdir(d));
}

export async function run(): Promise<void> {
  const reason = await cgroupBenchSkipReason();
  if (reason !== null) {
    console.log(`host source bench skipped: ${reason}`);
    return;
  }
  const mount = (await findCgroup2Mount()).mountPoint;
  const dir = path.join(mount, `vbpffs-bench-${process.pid}`);
  let src: HostCgroupSource | null = null;
  // Watches and the idle scan worker do not hold the process open (a daemon's FUSE session does).
  const keepAlive = setInterval(() => undefined, 60_000);
  try {
    await fsp.mkdir(dir);
    const dirs: string[] = [];
    for (let i = 0; i < FANOUT; i++) for (let j = 0; j < FANOUT; j++) dirs.push(path.join(dir, `g${i}`, `c${j}`));
    await inParallel(
      Array.from({ length: FANOUT }, (_, i) => path.join(dir, `g${i}`)),
      (d) => fsp.mkdir(d),
    );
    await inParallel(dirs, (d) => fsp.mkdir(d));

    gc();
    const heap0 = process.memoryUsage();
    const stall = monitorEventLoopDelay({ resolution: 5 });
    stall.enable();
    const t0 = performance.now();
    src = await HostCgroupSource.open({ reconcileIntervalMs: 0 });
    await src.start();
    const loadMs = performance.now() - t0;
    stall.disable();
    const cgroups = src.hierarchy.size;
    console.log(`host source: ${cgroups} cgroups tracked (${FANOUT} x ${FANOUT} below ${dir}), ${src.watchCount} inotify watches`);
    console.log(`  load (walk in a worker, build, watches, catch-up walk): ${loadMs.toFixed(0)} ms`);
    // Baseline: the same walk on the serving thread, the stall a load without the worker would cause.
    const w0 = performance.now();
    scanTreeSync(mount);
    const syncWalkMs = performance.now() - w0;
    console.log(
      `  longest event-loop stall during the load: ${(stall.max / 1e6).toFixed(1)} ms ` +
        `(the same walk on the serving thread blocks it ${syncWalkMs.toFixed(0)} ms)`,
    );

    stall.reset();
    stall.enable();
    const c0 = process.cpuUsage();
    const r0 = performance.now();
    const { added, removed } = await src.reconcile();
    const reconcileMs = performance.now() - r0;
    const rc = process.cpuUsage(c0);
    stall.disable();
    console.log(
      `  reconcile walk: ${reconcileMs.toFixed(0)} ms, ${((rc.user + rc.system) / 1000).toFixed(0)} ms CPU (both threads), ` +
        `longest stall ${(stall.max / 1e6).toFixed(1)} ms, +${added} -${removed}`,
    );
    // The source spaces periodic walks at max(30 s, 200 x the last walk's wall time).
    const everyMs = Math.max(30_000, reconcileMs * 200);
    console.log(
      `  periodic reconcile: every ${(everyMs / 1000).toFixed(0)} s at this size, ` +
        `${(((rc.user + rc.system) / 1000 / everyMs) * 100).toFixed(2)}% of a core`,
    );

    gc();
    const heap1 = process.memoryUsage();
    const heap = heap1.heapUsed - heap0.heapUsed;
    console.log(
      `  memory of the tracked tree: heap +${mb(heap)} (${((heap / cgroups) | 0)} bytes per cgroup), ` +
        `rss +${mb(heap1.rss - heap0.rss)}`,
    );

    const tracked = src;
    const latencies: number[] = [];
    const parent = path.join(dir, 'g0');
    const parentPath = `/${path.relative(mount, parent)}`;
    for (let i = 0; i < MKDIRS; i++) {
      const cgPath = `${parentPath}/lat${i}`;
      const visible = new Promise<number>((resolve) => {
        const on = (node: { path: string }): void => {
          if (node.path !== cgPath) return;
          tracked.hierarchy.off('mkdir', on);
          resolve(performance.now());
        };
        tracked.hierarchy.on('mkdir', on);
      });
      const start = performance.now();
      fs.mkdirSync(path.join(parent, `lat${i}`));
      latencies.push((await visible) - start);
    }
    latencies.sort((a, b) => a - b);
    const us = (ms: number): string => `${(ms * 1000).toFixed(0)} us`;
    console.log(`  host mkdir to node visible (${MKDIRS} mkdirs): p50 ${us(percentile(latencies, 50))}, p99 ${us(percentile(latencies, 99))}`);
    for (let i = 0; i < MKDIRS; i++) fs.rmdirSync(path.join(parent, `lat${i}`));
    await sleep(500);

    const idle0 = process.cpuUsage();
    const i0 = performance.now();
    await sleep(IDLE_MS);
    const idle = process.cpuUsage(idle0);
    const idleMs = performance.now() - i0;
    const pct = ((idle.user + idle.system) / 1000 / idleMs) * 100;
    console.log(`  idle CPU of tracking over ${(idleMs / 1000).toFixed(0)} s: ${pct.toFixed(3)}% of a core (limit 1%)`);
  } finally {
    await src?.stop();
    await removeBenchTree(dir);
    clearInterval(keepAlive);
  }
}

if (require.main === module) {
  run().catch((e) => {
    console.error(e);
    process.exitCode = 1;
  });
}
