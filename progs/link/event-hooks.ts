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
 * named as in progs/prog/bpf.d.ts (a sample's task is the TaskOwner when the Kernel can find it).
 */
import { BpfAttachType } from '../../uapi';
import type { Kernel } from '../kernel';
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
import { cgroupBpfRunFilter } from '../cgroup/run';
import { bpfTraceRun, tracepoint } from './tracing-link';

/** The event sources to connect; any may be left out. */
export interface EventSources {
  tick?: CgroupTick;
  sampler?: SchedSampler;
  cgroupEvents?: CgroupEventSource;
}

/** Runs the hooks of one tick: per cgroup, the global tracepoint, then the cgroup's collectors. */
export function fireTick(kernel: Kernel, batch: TickBatch): void {
  const tp = tracepoint(kernel, TIMER_TICK_HOOK);
  const nowNs = BigInt(batch.timeNs);
  for (const cgroup of batch.cgroups) {
    tp.run({ cgroup, now_ns: nowNs });
    cgroupBpfRunFilter(kernel, cgroup, BpfAttachType.VBPFFS_CGROUP_TICK, { now_ns: nowNs });
  }
}

/** Runs the hooks of one scheduler sample batch: per task, the tracepoint, then its cgroup's collectors. */
export function fireSchedSamples(kernel: Kernel, batch: SchedSampleBatch): void {
  const tp = tracepoint(kernel, SCHED_SAMPLE_HOOK);
  for (const s of batch.samples) {
    const fields = {
      task: kernel.tasks?.taskByPid(s.pid) ?? null,
      pid: s.pid,
      comm: s.comm,
      run_ns: BigInt(s.runNs),
      wait_ns: BigInt(s.waitNs),
      slices: BigInt(s.slices),
    };
    tp.run({ ...fields, cgroup: s.cgroup });
    cgroupBpfRunFilter(kernel, s.cgroup, BpfAttachType.VBPFFS_CGROUP_SCHED_SAMPLE, fields);
  }
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
  if (sources.tick !== undefined) unsubscribe.push(sources.tick.subscribe((b) => fireTick(kernel, b)));
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
