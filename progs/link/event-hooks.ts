/**
 * Where the event sources' events become program runs. Each event fires its global tracepoint
 * (programs linked by bpfTracepointLinkAttach) and, for the per-cgroup hooks, the cgroup hook of the
 * event's cgroup (collectors attached to it or inherited through its effective array):
 *
 *   CgroupTick batch      each cgroup: tp/timer/tick, then cgroup/tick of that cgroup
 *   SchedSampler batch    each sample: tp/sched/sample, then cgroup/sched_sample of the task's cgroup
 *   CgroupEventSource     tp/cgroup/mkdir, tp/cgroup/rmdir
 *
 * A program's ctx is `{ cgroup, ...fields }`: the cgroup node, and numbers, bigints and strings
 * named as in progs/prog/bpf.d.ts; a sample's `task`, and a tick's `files` (the interface files its
 * programs read, snapshotted before they run).
 */
import createDebug from 'debug';
import { BpfAttachType } from '../../uapi';
import type { InterfaceFile, KernfsNode } from '../../tags';
import type { Kernel } from '../kernel';
import type { TaskOwner } from '../maps/owners';
import type { BpfProg } from '../prog/prog';
import type { CgroupFiles } from '../runtime/cgroup-files';
import {
  CGROUP_MKDIR_HOOK,
  CGROUP_RMDIR_HOOK,
  SCHED_SAMPLE_HOOK,
  TIMER_TICK_HOOK,
  type CgroupEvent,
  type CgroupEventSource,
  type CgroupTick,
  type SchedSampleBatch,
  type SchedSampler,
  type TickBatch,
} from '../events';
import { effectiveProgs } from '../cgroup/cgroup-bpf';
import { cgroupBpfRunFilter } from '../cgroup/run';
import { bpfTraceRun, tracepoint } from './tracing-link';

const debug = createDebug('vbpffs:hooks');

/** The event sources to connect; any may be left out. */
export interface EventSources {
  tick?: CgroupTick;
  sampler?: SchedSampler;
  cgroupEvents?: CgroupEventSource;
}

/**
 * Runs the hooks of one tick: per live cgroup, in the batch's pre-order, the global tracepoint and
 * then the cgroup's collectors. Programs run synchronously and reading a cgroup's files is I/O, so
 * the files the programs name (BpfProg.cgroupFiles) are read first, for every cgroup at once, and
 * each run reads them from its snapshot (ctx.files). A cgroup removed meanwhile is skipped.
 */
export async function fireTick(kernel: Kernel, batch: TickBatch): Promise<void> {
  const tp = tracepoint(kernel, TIMER_TICK_HOOK);
  const files = await Promise.all(batch.cgroups.map((cgroup) => tickFiles(kernel, tp.progs, cgroup, batch)));
  const nowNs = BigInt(batch.timeNs);
  batch.cgroups.forEach((cgroup, i) => {
    if (cgroup.dying) return;
    const fields = files[i] === undefined ? { now_ns: nowNs } : { now_ns: nowNs, files: files[i] };
    tp.run({ ...fields, cgroup });
    cgroupBpfRunFilter(kernel, cgroup, BpfAttachType.VBPFFS_CGROUP_TICK, fields);
  });
}

/** The snapshot of the files this cgroup's tick programs read; undefined when they read none. */
async function tickFiles(kernel: Kernel, tpProgs: readonly BpfProg[], cgroup: KernfsNode, batch: TickBatch): Promise<CgroupFiles | undefined> {
  const names = new Set<string>();
  for (const p of tpProgs) for (const f of p.cgroupFiles) names.add(f);
  for (const p of effectiveProgs(kernel, cgroup, BpfAttachType.VBPFFS_CGROUP_TICK)) for (const f of p.cgroupFiles) names.add(f);
  if (names.size === 0) return undefined;
  const out = new Map<string, string | null>();
  await Promise.all(
    [...names].map(async (f) => {
      try {
        out.set(f, await batch.readFile(cgroup, f as InterfaceFile));
      } catch {
        out.set(f, null);
      }
    }),
  );
  return out;
}

/**
 * Runs the hooks of one scheduler sample batch: per task, the tracepoint, then its cgroup's
 * collectors. ctx.task is the Kernel's task when it knows the pid; otherwise a stand-in that counts
 * as exited, so task storage is never created on it.
 */
export function fireSchedSamples(kernel: Kernel, batch: SchedSampleBatch): void {
  const tp = tracepoint(kernel, SCHED_SAMPLE_HOOK);
  for (const s of batch.samples) {
    const fields = {
      task: kernel.tasks?.taskByPid(s.pid) ?? untrackedTask(s.pid, s.comm, s.cgroup),
      run_ns: BigInt(s.runNs),
      wait_ns: BigInt(s.waitNs),
      slices: BigInt(s.slices),
    };
    tp.run({ ...fields, cgroup: s.cgroup });
    cgroupBpfRunFilter(kernel, s.cgroup, BpfAttachType.VBPFFS_CGROUP_SCHED_SAMPLE, fields);
  }
}

function untrackedTask(pid: number, comm: string, cgroup: KernfsNode): TaskOwner & { tgid: number; comm: string; cgroup: KernfsNode } {
  return { pid, tgid: pid, comm, cgroup, dying: true, bpfStorage: null };
}

/** Runs tp/cgroup/mkdir or tp/cgroup/rmdir for one cgroup event. */
export function fireCgroupEvent(kernel: Kernel, event: CgroupEvent): void {
  bpfTraceRun(kernel, event.hook, { cgroup: event.cgroup, path: event.path });
}

/**
 * Connects event sources to the Kernel's hooks: from now on their events run the attached programs.
 * Returns the disconnect function. Starting and stopping the sources stays the caller's business.
 */
export function connectEventSources(kernel: Kernel, sources: EventSources): () => void {
  const unsubscribe: (() => void)[] = [];
  if (sources.tick !== undefined) {
    // Ticks run one after the other, so a slow read never lets a later tick overtake an earlier one.
    let chain: Promise<void> = Promise.resolve();
    const tick = sources.tick;
    unsubscribe.push(
      tick.subscribe((b) => {
        chain = chain
          .then(() => fireTick(kernel, b))
          /* c8 ignore next -- fireTick reports faults in its results; only a bug would reject */
          .catch((e: unknown) => debug('tick %d: %O', b.seq, e));
      }),
    );
  }
  if (sources.sampler !== undefined) unsubscribe.push(sources.sampler.subscribe((b) => fireSchedSamples(kernel, b)));
  const events = sources.cgroupEvents;
  if (events !== undefined) {
    const fire = (e: CgroupEvent): void => fireCgroupEvent(kernel, e);
    unsubscribe.push(events.subscribe(CGROUP_MKDIR_HOOK, fire), events.subscribe(CGROUP_RMDIR_HOOK, fire));
  }
  return () => {
    for (const u of unsubscribe.splice(0)) u();
  };
}
