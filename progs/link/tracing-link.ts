/**
 * Tracepoint programs and their links: the global hooks the event sources fire (tp/sched/sample,
 * tp/cgroup/mkdir, tp/cgroup/rmdir, tp/timer/tick).
 *
 * As in the kernel, a tracepoint exists whether or not anything listens, and holds an array of the
 * programs attached to it (the trace event's prog_array); libbpf attaches a SEC("tp/...") program
 * through a perf event and BPF_LINK_CREATE with BPF_PERF_EVENT, which makes a perf_event link. Each
 * event runs every attached program in attach order; return values are not combined (a tracepoint
 * has no verdict) and a faulting program is counted and skipped. At most BPF_TRACE_MAX_PROGS (64)
 * programs per tracepoint (E2BIG). A perf_event link has neither a detach nor an update op: it is
 * detached by dropping its last holder.
 */
import { BpfAttachType, BpfLinkType, bpfError, fromSystemError, type BpfError } from '../../uapi';
import { Handle } from '../object';
import type { Kernel } from '../kernel';
import type { BpfProg, ProgCtx } from '../prog/prog';
import { BpfLink, progFromRef, type ProgRef } from './link';

/** BPF_TRACE_MAX_PROGS: programs per tracepoint. */
export const BPF_TRACE_MAX_PROGS = 64;

/** What running a tracepoint's programs gives back. */
export interface TraceRunResult {
  runs: number;
  faults: number;
  lastFault: BpfError | undefined;
}

/** One tracepoint: the programs attached to it, in attach order. */
export class Tracepoint {
  /** Replaced, never edited, so an event in progress keeps the array it started with. */
  progs: readonly BpfProg[] = [];

  constructor(readonly name: string) {}

  /** trace_call_bpf: runs every attached program with ctx. */
  run(ctx: ProgCtx): TraceRunResult {
    const result: TraceRunResult = { runs: 0, faults: 0, lastFault: undefined };
    const progs = this.progs;
    for (let i = 0; i < progs.length; i++) {
      result.runs++;
      try {
        progs[i]!.run(ctx);
      } catch (e) {
        result.faults++;
        result.lastFault = fromSystemError(e, `prog ${progs[i]!.id}`);
      }
    }
    return result;
  }
}

const registries = new WeakMap<Kernel, Map<string, Tracepoint>>();

/** The Kernel's tracepoint by section name ('tp/sched/sample'), made on first use. */
export function tracepoint(kernel: Kernel, name: string): Tracepoint {
  let reg = registries.get(kernel);
  if (reg === undefined) registries.set(kernel, (reg = new Map()));
  let tp = reg.get(name);
  if (tp === undefined) reg.set(name, (tp = new Tracepoint(name)));
  return tp;
}

/** Runs a tracepoint's programs (what an event source's event does). */
export function bpfTraceRun(kernel: Kernel, name: string, ctx: ProgCtx): TraceRunResult {
  return tracepoint(kernel, name).run(ctx);
}

/** A perf_event link: a tracepoint program attached to its tracepoint. */
export class BpfTracingLink extends BpfLink {
  readonly type = BpfLinkType.PERF_EVENT;
  readonly tracepoint: Tracepoint;

  /** @internal Made by bpfTracepointLinkAttach. */
  constructor(kernel: Kernel, prog: BpfProg, tp: Tracepoint) {
    super(kernel, prog, BpfAttachType.PERF_EVENT);
    this.tracepoint = tp;
  }

  /** A perf_event link is attached from creation until its release. */
  get attached(): boolean {
    return !this.released;
  }

  /** bpf_perf_link_release: the program leaves the tracepoint. */
  protected linkRelease(): void {
    const progs = [...this.tracepoint.progs];
    progs.splice(progs.indexOf(this.prog), 1);
    this.tracepoint.progs = progs;
  }

  // A perf_event link's program is never swapped, so its section names the tracepoint for good.
  protected override fillLinkInfo(): Record<string, unknown> {
    const { category, name } = this.prog.sec.tracepoint!;
    return { perfEvent: { type: 'tracepoint', category, tpName: name } };
  }

  protected override fdinfo(): string {
    return `tp_name:\t${this.prog.sec.tracepoint!.name}\n`;
  }
}

/**
 * BPF_LINK_CREATE with BPF_PERF_EVENT for a tracepoint program: from now on its tracepoint's events
 * run it. A program of another kind is EINVAL (bpf_prog_attach_check_attach_type); a full
 * tracepoint is E2BIG.
 */
export function bpfTracepointLinkAttach(kernel: Kernel, progRef: ProgRef): Handle<BpfTracingLink> {
  const prog = progFromRef(progRef);
  if (prog.sec.family !== 'tracing' || prog.sec.tracepoint === undefined) {
    throw bpfError('EINVAL', `prog ${prog.id} (${prog.section}) is not a tracepoint program`);
  }
  const tp = tracepoint(kernel, `tp/${prog.sec.tracepoint.category}/${prog.sec.tracepoint.name}`);
  if (tp.progs.length >= BPF_TRACE_MAX_PROGS) throw bpfError('E2BIG', `${tp.name} already runs ${BPF_TRACE_MAX_PROGS} programs`);
  if (tp.progs.includes(prog)) throw bpfError('EEXIST', `prog ${prog.id} is already attached to ${tp.name}`);
  const link = new BpfTracingLink(kernel, prog, tp);
  tp.progs = [...tp.progs, prog];
  return new Handle(link);
}
