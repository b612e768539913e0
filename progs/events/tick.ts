/**
 * tp/timer/tick: every interval, one event per live cgroup of the tracked subtree, in pre-order
 * (parents before children, children in creation order, as the kernel's css walkers go), handed to
 * subscribers as one batch so a program can read each cgroup's interface files (cpu.stat,
 * *.pressure, cgroup.procs, ...) through `readFile`. Dying cgroups are left out.
 *
 * The batch holds no references: a cgroup removed after the tick reads as ENOENT, as the source says.
 * Timers hold the process open while started; stop() ends them.
 */
import type { CgroupSource, InterfaceFile, KernfsNode } from '../../tags';
import { Listeners, checkInterval, sourceClock, type Clock, type Listener } from './listeners';

export const TIMER_TICK_HOOK = 'tp/timer/tick';

export interface TickBatch {
  /** Tick number, from 1. */
  seq: number;
  timeNs: number;
  /** The live cgroups, one event each, in pre-order. */
  cgroups: KernfsNode[];
  /** Reads an interface file of a cgroup of this tick (the source's readFile). */
  readFile(cgroup: KernfsNode, file: InterfaceFile): Promise<string>;
}

export interface CgroupTickOptions {
  /** Interval in ms. Default 1000. */
  intervalMs?: number;
  /** Tick the cgroups of this subtree only. Default: the hierarchy's root. */
  root?: KernfsNode;
  /** Timestamps of batches. Default: the simulator's clock, or CLOCK_MONOTONIC. */
  clock?: Clock;
}

export class CgroupTick {
  readonly hook = TIMER_TICK_HOOK;
  readonly intervalMs: number;
  readonly #root: KernfsNode;
  readonly #clock: Clock;
  readonly #listeners = new Listeners<TickBatch>(TIMER_TICK_HOOK);
  readonly #readFile: TickBatch['readFile'];
  #timer: NodeJS.Timeout | null = null;
  #seq = 0;

  constructor(source: CgroupSource, opts: CgroupTickOptions = {}) {
    this.intervalMs = checkInterval(opts.intervalMs ?? 1000, TIMER_TICK_HOOK);
    this.#root = opts.root ?? source.hierarchy.root;
    this.#clock = opts.clock ?? sourceClock(source);
    this.#readFile = (cgroup, file) => source.readFile(cgroup, file);
  }

  /** Adds a listener for every batch; returns its remover. */
  subscribe(fn: Listener<TickBatch>): () => void {
    return this.#listeners.subscribe(fn);
  }

  get running(): boolean {
    return this.#timer !== null;
  }

  /** Ticks every interval from now (the first one an interval away). Idempotent. */
  start(): void {
    if (this.#timer !== null) return;
    this.#timer = setInterval(() => this.tickOnce(), this.intervalMs);
  }

  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }

  /** One tick now: emitted to subscribers and returned. */
  tickOnce(): TickBatch {
    const cgroups: KernfsNode[] = [];
    // A dying node's live descendants were removed with it, so its subtree is skipped whole.
    const visit = (node: KernfsNode): void => {
      if (node.dying) return;
      cgroups.push(node);
      for (const child of node.children) visit(child);
    };
    visit(this.#root);
    const batch: TickBatch = { seq: ++this.#seq, timeNs: this.#clock(), cgroups, readFile: this.#readFile };
    this.#listeners.emit(batch);
    return batch;
  }
}
