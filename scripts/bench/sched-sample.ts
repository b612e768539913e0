/**
 * Bench of the tp/sched/sample source at 1,000 tasks per second: 1,000 sleeping processes in a
 * bench-owned cgroup, sampled once a second for DURATION_MS by the host sampler (its scan in a worker
 * thread). Prints the CPU it costs as a share of one core (process.cpuUsage covers every thread, the
 * worker included; an idle window of the same length is measured first and subtracted), the worker's
 * own busy share (its event-loop utilisation: the scan is synchronous, so busy means on a CPU or in
 * a read), the cost per task, and the serving thread's longest event-loop stall while sampling.
 * Needs root and a cgroup2 mount; says why and returns otherwise.
 */
import fs, { promises as fsp } from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { SchedSampler, type SchedSampleBatch } from '../../progs/events';
import { HostCgroupSource, findCgroup2Mount } from '../../tags';
import { cgroupBenchSkipReason } from '../bench-skip';

const TASKS = 1000;
const DURATION_MS = 10_000;
const INTERVAL_MS = 1000;
/** The delay monitor's timer period; Node's histogram records the whole gap between its ticks. */
const RESOLUTION_MS = 10;

function threadsIn(dir: string): number {
  return fs.readFileSync(path.join(dir, 'cgroup.threads'), 'utf8').split('\n').filter(Boolean).length;
}

async function waitFor(what: string, cond: () => boolean, ms = 30_000): Promise<void> {
  for (const deadline = Date.now() + ms; !cond(); await sleep(20)) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
  }
}

/** Kills every process of the bench cgroup (cgroup.kill, or SIGKILL pid by pid) and removes it. */
async function removeBenchCgroup(dir: string): Promise<void> {
  if (!fs.existsSync(dir)) return;
  try {
    await fsp.writeFile(path.join(dir, 'cgroup.kill'), '1');
  } catch {
    for (const pid of fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  await waitFor('the bench tasks to exit', () => threadsIn(dir) === 0, 10_000);
  await fsp.rmdir(dir);
}

interface Window {
  /** CPU of the whole process (every thread) as a share of one core. */
  cpu: number;
  /** The serving thread's event-loop stall beyond the monitor's period (ns). */
  maxDelayNs: number;
  p99DelayNs: number;
}

/** Watches a window of ms: process CPU and the serving thread's event-loop delay (its monitor's own timer is in both windows, so it cancels out). */
async function measure(ms: number): Promise<Window> {
  const delay = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  delay.enable();
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await sleep(ms);
  const c = process.cpuUsage(c0);
  const wallUs = Number(process.hrtime.bigint() - t0) / 1000;
  delay.disable();
  const beyond = (ns: number): number => Math.max(0, ns - RESOLUTION_MS * 1e6);
  return { cpu: (c.user + c.system) / wallUs, maxDelayNs: beyond(delay.max), p99DelayNs: beyond(delay.percentile(99)) };
}

const ms = (ns: number): string => `${(ns / 1e6).toFixed(2)} ms`;

export async function run(): Promise<void> {
  const reason = await cgroupBenchSkipReason();
  if (reason !== null) {
    console.log(`sched sample bench skipped: ${reason}`);
    return;
  }
  const mount = (await findCgroup2Mount()).mountPoint;
  const dir = path.join(mount, `vbpffs-bench-sched-${process.pid}`);
  let src: HostCgroupSource | null = null;
  let sampler: SchedSampler | null = null;
  try {
    await fsp.mkdir(dir);
    // One shell moves itself into the bench cgroup, then forks the sleepers there.
    const forker = spawn(
      'sh',
      ['-c', `echo $$ > ${dir}/cgroup.procs && i=0; while [ $i -lt ${TASKS} ]; do sleep 3600 & i=$((i+1)); done; wait`],
      { stdio: 'ignore', detached: true },
    );
    forker.unref();
    await waitFor(`${TASKS} tasks in the bench cgroup`, () => threadsIn(dir) >= TASKS + 1);
    console.log(`${threadsIn(dir)} tasks (${TASKS} sleep + their shell) in ${dir}`);

    src = await HostCgroupSource.open({ reconcileIntervalMs: 0 });
    await src.start();
    const root = src.hierarchy.cgroupByPath(`/${path.basename(dir)}`)!;
    const idle = await measure(DURATION_MS);

    sampler = new SchedSampler(src, { root, intervalMs: INTERVAL_MS });
    const batches: SchedSampleBatch[] = [];
    sampler.subscribe((b) => batches.push(b));
    sampler.start();
    // The first sample starts the worker and takes the baselines; measure from the second on.
    await waitFor('the first sample', () => batches.length >= 1);
    const elu0 = sampler.workerUtilization()!;
    const n0 = batches.length;
    const busy = await measure(DURATION_MS);
    const elu = sampler.workerUtilization()!;
    const workerBusyMs = elu.active - elu0.active;
    const taken = batches.slice(n0);
    const tasks = taken.reduce((s, b) => s + b.samples.length + b.baselined + b.unresolved, 0);
    const perTaskUs = (workerBusyMs * 1000) / tasks;
    const cost = Math.max(0, busy.cpu - idle.cpu);

    console.log(`samples: ${taken.length} in ${DURATION_MS / 1000} s, ${Math.round(tasks / taken.length)} tasks each (${taken.at(-1)?.samples.length} with deltas)`);
    console.log(`CPU, whole process (serving thread + worker): ${(busy.cpu * 100).toFixed(2)}% of one core, idle ${(idle.cpu * 100).toFixed(2)}% -> sampling costs ${(cost * 100).toFixed(2)}% of one core at ${Math.round(tasks / (DURATION_MS / 1000))} tasks/s`);
    console.log(`worker busy: ${((workerBusyMs / DURATION_MS) * 100).toFixed(2)}% of the time, ${perTaskUs.toFixed(1)} us per task (last scan ${sampler.stats.lastScanMs.toFixed(1)} ms for ${sampler.stats.lastTasks} tasks)`);
    console.log(`serving thread's longest event-loop stall while sampling: ${ms(busy.maxDelayNs)} (p99 ${ms(busy.p99DelayNs)}); idle, for comparison: ${ms(idle.maxDelayNs)} (p99 ${ms(idle.p99DelayNs)})`);
    console.log(`skipped ticks: ${sampler.stats.skipped}, failed samples: ${sampler.stats.failures}`);
  } finally {
    await sampler?.stop();
    await src?.stop();
    await removeBenchCgroup(dir);
  }
}
