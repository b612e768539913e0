/**
 * tp/cgroup/mkdir and tp/cgroup/rmdir: one event per cgroup the hierarchy gains or loses, from its
 * mkdir/rmdir events (emitted once the mutation is complete; a subtree removal gives one rmdir per
 * node, deepest first). Events carry the node and its id, path and level as they were at the event:
 * a removed node keeps its id and level, and its path is the one it had.
 *
 * Tracking begins at start() and ends at stop(); cgroups that exist before start() give no mkdir.
 */
import type { CgroupSource, KernfsNode } from '../../tags';
import { Listeners, sourceClock, type Clock, type Listener } from './listeners';

export const CGROUP_MKDIR_HOOK = 'tp/cgroup/mkdir';
export const CGROUP_RMDIR_HOOK = 'tp/cgroup/rmdir';

export type CgroupEventHook = typeof CGROUP_MKDIR_HOOK | typeof CGROUP_RMDIR_HOOK;

export interface CgroupEvent {
  hook: CgroupEventHook;
  cgroup: KernfsNode;
  id: number;
  path: string;
  level: number;
  timeNs: number;
}

export interface CgroupEventOptions {
  /** Timestamps of events. Default: the simulator's clock, or CLOCK_MONOTONIC. */
  clock?: Clock;
}

export class CgroupEventSource {
  readonly #source: CgroupSource;
  readonly #clock: Clock;
  readonly #listeners = {
    [CGROUP_MKDIR_HOOK]: new Listeners<CgroupEvent>(CGROUP_MKDIR_HOOK),
    [CGROUP_RMDIR_HOOK]: new Listeners<CgroupEvent>(CGROUP_RMDIR_HOOK),
  };
  #started = false;

  readonly #onMkdir = (node: KernfsNode): void => this.#emit(CGROUP_MKDIR_HOOK, node);
  readonly #onRmdir = (node: KernfsNode): void => this.#emit(CGROUP_RMDIR_HOOK, node);

  constructor(source: CgroupSource, opts: CgroupEventOptions = {}) {
    this.#source = source;
    this.#clock = opts.clock ?? sourceClock(source);
  }

  /** Adds a listener for one hook; returns its remover. */
  subscribe(hook: CgroupEventHook, fn: Listener<CgroupEvent>): () => void {
    return this.#listeners[hook].subscribe(fn);
  }

  get running(): boolean {
    return this.#started;
  }

  /** Begins listening to the hierarchy. Idempotent. */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    this.#source.hierarchy.on('mkdir', this.#onMkdir).on('rmdir', this.#onRmdir);
  }

  /** Stops listening. Idempotent. */
  stop(): void {
    if (!this.#started) return;
    this.#started = false;
    this.#source.hierarchy.off('mkdir', this.#onMkdir).off('rmdir', this.#onRmdir);
  }

  #emit(hook: CgroupEventHook, node: KernfsNode): void {
    this.#listeners[hook].emit({ hook, cgroup: node, id: node.id, path: node.path, level: node.level, timeNs: this.#clock() });
  }
}
