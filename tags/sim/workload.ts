/**
 * Workload: simulated tasks on a clock the test controls, and the per-cgroup figures they produce
 * (cpu.stat, cpu/io/memory.pressure, cgroup.procs, cgroup.events populated) plus per-task
 * /proc/<pid>/schedstat figures for the scheduler event source.
 *
 * Model. Each task spends fixed fractions of wall time running (`run`), runnable but waiting for a
 * CPU (`wait`, run-queue delay) and blocked on I/O (`io`), until its rates change. Cumulative figures
 * are floor(rate * elapsed) from the last rate change, so they are exact integers with no drift
 * however the clock is advanced. A cgroup's cpu.stat is the sum of what its subtree's tasks ran while
 * they were in it, kept in every ancestor as the kernel's rstat flush does (a parent keeps the time
 * of children and tasks that have left).
 *
 * Pressure is a group property, not a sum. Tasks are taken as independent, each in a state with the
 * probability of its rate, so for the tasks of a subtree:
 *   cpu some = 1 - prod(1 - wait)                  (some task is waiting for a CPU)
 *   cpu full = prod(1 - run) - prod(1 - run - wait) (tasks wait and none of the group runs)
 *   io some  = 1 - prod(1 - io)
 *   io full  = prod(1 - run - wait) - prod(1 - run - wait - io) (I/O wait and nothing runnable)
 * which are the kernel's PSI_CPU_SOME/FULL and PSI_IO_SOME/FULL conditions (psi.c test_state) over
 * one CPU's worth of state. Memory stalls are not modelled: memory.pressure stays zero. Averages are
 * folded every PSI period as psi.ts describes. cpu.max bandwidth is not modelled either, so
 * nr_periods, nr_throttled, throttled_usec, nr_bursts and burst_usec stay zero.
 */
import { EventEmitter } from 'node:events';
import createDebug from 'debug';
import { bpfError } from '../../uapi';
import type { KernfsNode } from '../kernfs-node';
import { Task } from '../task';
import { PSI_PERIOD_NS, PSI_STATES, PsiGroup, type PsiResource, type PsiState } from './psi';

const debug = createDebug('vbpffs:tags');

/** Default length of one run on a CPU: EEVDF's base slice (0.75 ms * (1 + ilog2(ncpus))) on 8 CPUs. */
export const DEFAULT_SLICE_NS = 3_000_000;

export interface TaskRates {
  /** Fraction of wall time running, 0..1. */
  run: number;
  /** Fraction of wall time runnable but waiting on a run queue, 0..1. */
  wait: number;
  /** Fraction of wall time blocked on I/O, 0..1. run + wait + io <= 1. */
  io: number;
  /** Fraction of the running time spent in the kernel (system_usec), 0..1. */
  system: number;
}

export interface SpawnOptions extends Partial<TaskRates> {
  cgroup: KernfsNode;
  /** Default: the next free pid. */
  pid?: number;
  comm?: string;
  /** A positive nice value also counts user time as nice time (nice_usec), as CPUTIME_NICE does. */
  nice?: number;
  sliceNs?: number;
}

/** The three figures of /proc/<pid>/schedstat. */
export interface SchedStat {
  /** se.sum_exec_runtime */
  runNs: number;
  /** sched_info.run_delay */
  waitNs: number;
  /** sched_info.pcount: times the task got on a CPU */
  slices: number;
}

/** What changed: cgroups whose figures moved, live tasks whose figures moved, pids that exited. */
export interface WorkloadChange {
  cgroups: KernfsNode[];
  tasks: Task[];
  exited: number[];
}

export interface WorkloadEvents {
  change: [change: WorkloadChange];
}

/** Floor of rate * ns. The slack keeps a product of decimal fractions that should be whole (0.3 * 1e9) from landing one ns short. */
function accrue(rate: number, ns: number): number {
  const v = rate * ns;
  return Math.floor(v + Math.max(1e-6, v * 1e-12));
}

function checkRates(r: TaskRates): void {
  for (const [k, v] of Object.entries(r)) {
    if (typeof v !== 'number' || !(v >= 0 && v <= 1)) throw bpfError('EINVAL', `task rate ${k}=${v} is not within 0..1`);
  }
  if (r.run + r.wait + r.io > 1 + 1e-12) throw bpfError('EINVAL', `run + wait + io = ${r.run + r.wait + r.io} exceeds 1`);
}

class SimTask {
  rates: TaskRates;
  epoch: number;
  /** Cumulative figures at epoch. */
  base = { run: 0, sys: 0, wait: 0 };
  /** Cumulative figures already charged to cgroups. */
  charged = { run: 0, sys: 0 };
  seq: number;

  constructor(
    readonly task: Task,
    rates: TaskRates,
    readonly nice: number,
    readonly sliceNs: number,
    now: number,
    seq: number,
  ) {
    this.rates = rates;
    this.epoch = now;
    this.seq = seq;
  }

  run(at: number): number {
    return this.base.run + accrue(this.rates.run, at - this.epoch);
  }
  sys(at: number): number {
    return this.base.sys + accrue(this.rates.run * this.rates.system, at - this.epoch);
  }
  wait(at: number): number {
    return this.base.wait + accrue(this.rates.wait, at - this.epoch);
  }

  rebase(at: number, rates: TaskRates): void {
    this.base = { run: this.run(at), sys: this.sys(at), wait: this.wait(at) };
    this.epoch = at;
    this.rates = rates;
  }
}

const STALL_STATES: PsiState[] = ['cpu_some', 'cpu_full', 'io_some', 'io_full'];

/** What one cgroup has accumulated: cputime of its subtree and its psi group. */
class Account {
  usageNs = 0;
  systemNs = 0;
  niceNs = 0;
  readonly psi: PsiGroup;
  /** Stall rate per STALL_STATES entry, its epoch and the totals at that epoch. */
  rates = [0, 0, 0, 0];
  epoch: number;
  base = [0, 0, 0, 0];

  constructor(now: number) {
    this.psi = new PsiGroup(now);
    this.epoch = now;
  }

  settle(at: number): void {
    for (let i = 0; i < STALL_STATES.length; i++) {
      const state = STALL_STATES[i];
      const cum = this.base[i] + accrue(this.rates[i], at - this.epoch);
      const have = this.psi.total[stateIndex(state)];
      if (cum > have) this.psi.stall(state, cum - have);
    }
  }

  rebase(at: number, rates: number[]): void {
    this.settle(at);
    this.base = STALL_STATES.map((s) => this.psi.total[stateIndex(s)]);
    this.epoch = at;
    this.rates = rates;
  }
}

function stateIndex(s: PsiState): number {
  return PSI_STATES.indexOf(s);
}

export class Workload extends EventEmitter<WorkloadEvents> {
  #now: number;
  #nextPid = 100;
  #seq = 0;
  readonly #tasks = new Map<number, SimTask>();
  readonly #accounts = new Map<KernfsNode, Account>();

  /** `now` is the clock's start in ns (default 0). */
  constructor(now = 0) {
    super();
    this.#now = now;
  }

  /** The simulated clock, in ns (what bpf_ktime_get_ns returns in the simulator). */
  get now(): number {
    return this.#now;
  }

  taskByPid(pid: number): Task | undefined {
    return this.#tasks.get(pid)?.task;
  }

  /** Live tasks in spawn order. */
  tasks(): Task[] {
    return [...this.#tasks.values()].map((t) => t.task);
  }

  /** Starts a task in a live cgroup. */
  spawn(opts: SpawnOptions): Task {
    const rates: TaskRates = { run: opts.run ?? 0, wait: opts.wait ?? 0, io: opts.io ?? 0, system: opts.system ?? 0 };
    checkRates(rates);
    const sliceNs = opts.sliceNs ?? DEFAULT_SLICE_NS;
    if (!Number.isSafeInteger(sliceNs) || sliceNs <= 0) throw bpfError('EINVAL', `bad slice ${sliceNs} ns`);
    if (opts.cgroup.dying) throw bpfError('ENODEV', `cgroup ${opts.cgroup.path} is ${opts.cgroup.state}`);
    let pid = opts.pid;
    if (pid === undefined) {
      while (this.#tasks.has(this.#nextPid)) this.#nextPid++;
      pid = this.#nextPid++;
    } else if (this.#tasks.has(pid)) {
      throw bpfError('EEXIST', `pid ${pid} is in use`);
    }
    const task = new Task(pid, opts.comm ?? `task-${pid}`, opts.cgroup);
    this.#settle();
    this.#tasks.set(pid, new SimTask(task, rates, opts.nice ?? 0, sliceNs, this.#now, this.#seq++));
    debug('spawn %d in %s', pid, opts.cgroup.path);
    this.#regroup([opts.cgroup], [task]);
    return task;
  }

  /** Changes a task's rates from now on. */
  setRates(pid: number, rates: Partial<TaskRates>): void {
    const t = this.#get(pid);
    const next = { ...t.rates, ...rates };
    checkRates(next);
    this.#settle();
    t.rebase(this.#now, next);
    this.#regroup([t.task.cgroup], [t.task]);
  }

  /** Moves a task (a cgroup.procs write): ESRCH for an unknown pid, ENODEV for a removed cgroup. */
  migrate(pid: number, to: KernfsNode): void {
    const t = this.#get(pid);
    const from = t.task.cgroup;
    if (from === to) return;
    this.#settle();
    t.task.migrate(to);
    t.seq = this.#seq++;
    this.#regroup([from, to], [t.task]);
  }

  /** The task exits: it leaves its cgroup's procs and the task table, and drops its own reference. */
  exit(pid: number): void {
    const t = this.#get(pid);
    this.#settle();
    this.#tasks.delete(pid);
    const cgroup = t.task.cgroup;
    t.task.exit();
    this.#regroup([cgroup], [], [pid]);
  }

  /** Advances the clock by ns, folding pressure averages at every PSI period boundary crossed. */
  advance(ns: number): void {
    if (!Number.isSafeInteger(ns) || ns < 0) throw bpfError('EINVAL', `cannot advance the clock by ${ns} ns`);
    const target = this.#now + ns;
    for (let b = (Math.floor(this.#now / PSI_PERIOD_NS) + 1) * PSI_PERIOD_NS; b <= target; b += PSI_PERIOD_NS) {
      for (const acct of this.#accounts.values()) {
        acct.settle(b);
        if (acct.psi.active) acct.psi.update(b);
      }
    }
    this.#now = target;
    this.#settle();
    this.emit('change', { cgroups: [...this.#accounts.keys()], tasks: this.tasks(), exited: [] });
  }

  schedstat(pid: number): SchedStat {
    const t = this.#get(pid);
    const runNs = t.run(this.#now);
    return { runNs, waitNs: t.wait(this.#now), slices: Math.ceil(runNs / t.sliceNs) };
  }

  /** Pids in a cgroup itself (not its descendants), in the order they joined it. */
  procs(cgroup: KernfsNode): number[] {
    return [...this.#tasks.values()]
      .filter((t) => t.task.cgroup === cgroup)
      .sort((a, b) => a.seq - b.seq)
      .map((t) => t.task.pid);
  }

  /** cgroup.events populated: a task anywhere in the subtree. */
  populated(cgroup: KernfsNode): boolean {
    for (const t of this.#tasks.values()) if (t.task.cgroup.isDescendantOf(cgroup)) return true;
    return false;
  }

  /** The cputime figures of cpu.stat in ns. */
  cputime(cgroup: KernfsNode): { usageNs: number; userNs: number; systemNs: number; niceNs: number } {
    const a = this.#accounts.get(cgroup);
    if (a === undefined) return { usageNs: 0, userNs: 0, systemNs: 0, niceNs: 0 };
    return { usageNs: a.usageNs, userNs: a.usageNs - a.systemNs, systemNs: a.systemNs, niceNs: a.niceNs };
  }

  /** The psi group of a cgroup (all zeros until a task has been in its subtree). */
  psi(cgroup: KernfsNode): PsiGroup {
    return this.#accounts.get(cgroup)?.psi ?? new PsiGroup(this.#now);
  }

  /** <resource>.pressure text. The root's cpu full line is zero: CPU full is undefined system-wide. */
  pressure(cgroup: KernfsNode, resource: PsiResource): string {
    const text = this.psi(cgroup).show(resource);
    if (resource !== 'cpu' || cgroup.parent !== null) return text;
    return text.replace(/^full .*$/m, 'full avg10=0.00 avg60=0.00 avg300=0.00 total=0');
  }

  #get(pid: number): SimTask {
    const t = this.#tasks.get(pid);
    if (t === undefined) throw bpfError('ESRCH', `no task ${pid}`);
    return t;
  }

  /**
   * The account of a cgroup, made on first use. It is dropped when the cgroup is released, as the
   * kernel frees a cgroup's psi group and cputime with it. A cgroup released already (a migration
   * can drop the last reference on the one the task left) gets a throwaway account.
   */
  #account(node: KernfsNode): Account {
    let a = this.#accounts.get(node);
    if (a === undefined) {
      a = new Account(this.#now);
      if (node.released) return a;
      this.#accounts.set(node, a);
      node.onRelease(() => this.#accounts.delete(node));
    }
    return a;
  }

  /** Charges every task's running time since the last charge to its cgroup and all ancestors. */
  #settle(): void {
    for (const t of this.#tasks.values()) {
      const run = t.run(this.#now);
      const sys = t.sys(this.#now);
      const dRun = run - t.charged.run;
      const dSys = sys - t.charged.sys;
      if (dRun === 0 && dSys === 0) continue;
      t.charged = { run, sys };
      for (let n: KernfsNode | null = t.task.cgroup; n !== null; n = n.parent) {
        const a = this.#account(n);
        a.usageNs += dRun;
        a.systemNs += dSys;
        if (t.nice > 0) a.niceNs += dRun - dSys;
      }
    }
    for (const a of this.#accounts.values()) a.settle(this.#now);
  }

  /** After tasks joined, left or changed rates in these cgroups: new stall rates up their ancestry. */
  #regroup(cgroups: KernfsNode[], tasks: Task[], exited: number[] = []): void {
    const touched = new Set<KernfsNode>();
    for (const c of cgroups) for (let n: KernfsNode | null = c; n !== null; n = n.parent) touched.add(n);
    for (const n of touched) this.#account(n).rebase(this.#now, this.#stallRates(n));
    this.emit('change', { cgroups: [...touched], tasks, exited });
  }

  #stallRates(cgroup: KernfsNode): number[] {
    let noWait = 1;
    let noRun = 1;
    let noRunnable = 1;
    let noRunnableNoIo = 1;
    let noIo = 1;
    for (const t of this.#tasks.values()) {
      if (!t.task.cgroup.isDescendantOf(cgroup)) continue;
      const { run, wait, io } = t.rates;
      noWait *= 1 - wait;
      noRun *= 1 - run;
      noRunnable *= 1 - run - wait;
      noRunnableNoIo *= 1 - run - wait - io;
      noIo *= 1 - io;
    }
    const clamp = (x: number): number => Math.min(1, Math.max(0, x));
    return [clamp(1 - noWait), clamp(noRun - noRunnable), clamp(1 - noIo), clamp(noRunnable - noRunnableNoIo)];
  }
}
