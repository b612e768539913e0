/**
 * progs/link: bpf_link, the object that attaches a program to a hook. The BpfLink base (ids,
 * references, detach, update, info) that every kind subclasses, cgroup links, tracepoint links,
 * and the bridge that makes the event sources' events run the attached programs.
 */
export {
  BpfLink,
  bpfLinkDetach,
  bpfLinkGetInfo,
  bpfLinkUpdate,
  linkFromRef,
  progFromRef,
  type BpfLinkInfo,
  type LinkRef,
  type LinkUpdateOpts,
  type ProgRef,
} from './link';
export { BpfCgroupLink, cgroupBpfLinkAttach, type CgroupLinkOpts } from './cgroup-link';
export {
  BPF_TRACE_MAX_PROGS,
  BpfTracingLink,
  Tracepoint,
  bpfTraceRun,
  bpfTracepointLinkAttach,
  tracepoint,
  type TraceRunResult,
} from './tracing-link';
export { connectEventSources, fireCgroupEvent, fireSchedSamples, fireTick, type EventSources } from './event-hooks';
