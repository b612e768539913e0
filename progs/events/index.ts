/**
 * progs/events: the event sources that fire tracing-style hooks. Each emits typed events to plain
 * listener functions; the hook/link layer subscribes to them.
 *   tp/sched/sample   SchedSampler: per-task schedstat deltas per interval, with pid, comm, cgroup
 *   tp/cgroup/mkdir   CgroupEventSource: a cgroup appeared in the hierarchy
 *   tp/cgroup/rmdir   CgroupEventSource: a cgroup was removed
 *   tp/timer/tick     CgroupTick: every interval, every live cgroup in pre-order, one batch
 */
import { CGROUP_MKDIR_HOOK, CGROUP_RMDIR_HOOK } from './cgroup-events';
import { SCHED_SAMPLE_HOOK } from './sched-sample';
import { TIMER_TICK_HOOK } from './tick';

export { Listeners, type Clock, type Listener } from './listeners';
export { type ProcReader } from './sched-scan';
export {
  SCHED_SAMPLE_HOOK,
  SchedSampler,
  type SchedSample,
  type SchedSampleBatch,
  type SchedSamplerOptions,
  type SchedSamplerStats,
} from './sched-sample';
export {
  CGROUP_MKDIR_HOOK,
  CGROUP_RMDIR_HOOK,
  CgroupEventSource,
  type CgroupEvent,
  type CgroupEventHook,
  type CgroupEventOptions,
} from './cgroup-events';
export { TIMER_TICK_HOOK, CgroupTick, type CgroupTickOptions, type TickBatch } from './tick';

/** The hooks the event sources fire, by section name. */
export const EVENT_HOOKS = [SCHED_SAMPLE_HOOK, CGROUP_MKDIR_HOOK, CGROUP_RMDIR_HOOK, TIMER_TICK_HOOK] as const;
export type EventHook = (typeof EVENT_HOOKS)[number];
