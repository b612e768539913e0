/**
 * Firing a cgroup hook: bpf_prog_run_array_cg (kernel/bpf/cgroup.c), what __cgroup_bpf_run_filter_*
 * do for each hook.
 *
 * Every program of the cgroup's effective array runs, in order, whatever the earlier ones returned.
 * The result starts at 0; a program returning 0 (deny) makes it -EPERM, unless a program already set
 * an error of its own through bpf_set_retval, which then stands. On hooks whose callers collect
 * them (egress, bind4, bind6: collectsRetFlags), a program's bits above bit 0 are OR'ed into `flags`
 * and only bit 0 is its verdict; elsewhere any non-zero return allows.
 *
 * A program that faults (run() throws: it threw, ran past its deadline or memory, or returned what
 * its type forbids) counts as having returned 0: the hook denies, and the rest of the array still
 * runs. Failing closed is what a filter must do (a crashing device or connect filter must not let
 * the operation through), and running the rest keeps "every program runs" true for the counters
 * and collectors behind it. The faults are reported in the result (docs/DIFFERENCES.md).
 */
import { BpfAttachType, ERRNO, fromSystemError, type BpfError } from '../../uapi';
import type { KernfsNode } from '../../tags';
import type { Kernel } from '../kernel';
import type { ProgCtx } from '../prog/prog';
import { cgroupAtype, cgroupAttachType, collectsRetFlags } from './attach-type';
import { cgroupBpfTable } from './cgroup-bpf';
import type { BpfProgArrayItem } from './effective';

/**
 * struct bpf_cg_run_ctx: what helpers of a running cgroup program see (current->bpf_ctx): the array
 * item being run (its old cgroup storages, for bpf_get_local_storage) and the hook's result so far.
 */
export interface BpfCgRunCtx {
  item: BpfProgArrayItem | null;
  retval: number;
}

let current: BpfCgRunCtx | null = null;

/**
 * The run context of the cgroup program running now, or null outside one: what the runtime's
 * bpf_get_retval / bpf_set_retval and bpf_get_local_storage read and write.
 */
export function bpfCgRunCtx(): BpfCgRunCtx | null {
  return current;
}

/** What a fire gives back. */
export interface CgroupRunResult {
  /** 0 (allowed), -EPERM (a program denied), or the error a program set. */
  retval: number;
  /** The programs' high return bits, OR'ed (hooks that collect them only). */
  flags: number;
  /** Programs run. */
  runs: number;
  /** Programs that faulted (each counted as a 0), and the last fault. */
  faults: number;
  lastFault: BpfError | undefined;
}

/**
 * IS_ERR_VALUE: an errno, -4095..-1. Only bpf_set_retval can store anything below -4095, which a
 * later denial then overwrites, as in the kernel.
 */
function isErrValue(v: number): boolean {
  /* c8 ignore next -- the lower bound needs bpf_set_retval, which the runtime does not offer yet */
  return v < 0 && v >= -4095;
}

type OnRun = (prog: BpfProgArrayItem['prog'], ret: number, fault: BpfError | undefined) => void;

/** One fire of a hook under way: the array it runs, the ctx, and the result so far. */
interface FilterRun {
  array: readonly BpfProgArrayItem[];
  progCtx: ProgCtx;
  retFlags: boolean;
  runCtx: BpfCgRunCtx;
  result: CgroupRunResult;
}

/** The fire's start, or null when it runs nothing (a removed cgroup, an empty array). */
function filterStart(kernel: Kernel, cgroup: KernfsNode, type: BpfAttachType | string, ctx: Readonly<Record<string, unknown>>): FilterRun | CgroupRunResult {
  const attachType = cgroupAttachType(type);
  const result: CgroupRunResult = { retval: 0, flags: 0, runs: 0, faults: 0, lastFault: undefined };
  if (cgroup.dying) return result;
  const array = cgroupBpfTable(kernel).of(cgroup).effective[cgroupAtype(attachType)]!;
  if (array.length === 0) return result;
  return { array, progCtx: { ...ctx, cgroup }, retFlags: collectsRetFlags(attachType), runCtx: { item: null, retval: 0 }, result };
}

/** One program's outcome folded into the fire's result. */
function filterStep(run: FilterRun, item: BpfProgArrayItem, outcome: number | unknown, ok: boolean, onRun: OnRun | undefined): void {
  let ret = 0;
  let fault: BpfError | undefined;
  if (ok) ret = outcome as number;
  else {
    run.result.faults++;
    run.result.lastFault = fault = fromSystemError(outcome, `prog ${item.prog.id}`);
  }
  run.result.runs++;
  onRun?.(item.prog, ret, fault);
  if (run.retFlags) {
    run.result.flags |= ret >>> 1;
    ret &= 1;
  }
  if (!ret && !isErrValue(run.runCtx.retval)) run.runCtx.retval = -ERRNO.EPERM;
}

/**
 * Fires a cgroup hook: runs the cgroup's effective array for the attach type with ctx (the cgroup is
 * added as ctx.cgroup) and combines the results. A removed cgroup runs nothing. onRun, when given,
 * sees each program's own return (or fault) as it runs: what `vbpffs cgroup run` prints.
 */
export function cgroupBpfRunFilter(
  kernel: Kernel,
  cgroup: KernfsNode,
  type: BpfAttachType | string,
  ctx: Readonly<Record<string, unknown>> = {},
  onRun?: OnRun,
): CgroupRunResult {
  const run = filterStart(kernel, cgroup, type, ctx);
  if (!('array' in run)) return run;
  const saved = current;
  current = run.runCtx;
  try {
    for (const item of run.array) {
      run.runCtx.item = item;
      let outcome: unknown;
      let ok = true;
      try {
        outcome = item.prog.run(run.progCtx);
      } catch (e) {
        outcome = e;
        ok = false;
      }
      filterStep(run, item, outcome, ok, onRun);
    }
  } finally {
    current = saved;
  }
  run.result.retval = run.runCtx.retval;
  return run.result;
}

/**
 * The same fire with each program run off the calling thread (BpfProg.runAsync), so a program V8
 * cannot interrupt fails at its deadline and holds no one: what the daemon's `cgroup run` and event
 * hooks use. Its programs do not see bpfCgRunCtx(), which is the synchronous path's alone (other
 * fires may run meanwhile); nothing the runtime offers programs reads it.
 */
export async function cgroupBpfRunFilterAsync(
  kernel: Kernel,
  cgroup: KernfsNode,
  type: BpfAttachType | string,
  ctx: Readonly<Record<string, unknown>> = {},
  onRun?: OnRun,
): Promise<CgroupRunResult> {
  const run = filterStart(kernel, cgroup, type, ctx);
  if (!('array' in run)) return run;
  for (const item of run.array) {
    run.runCtx.item = item;
    let outcome: unknown;
    let ok = true;
    try {
      outcome = await item.prog.runAsync(run.progCtx);
    } catch (e) {
      outcome = e;
      ok = false;
    }
    filterStep(run, item, outcome, ok, onRun);
  }
  run.result.retval = run.runCtx.retval;
  return run.result;
}
