/**
 * HostCgroupSource: the host's cgroup2 hierarchy, loaded once and tracked live.
 *
 * Loading: the walk runs in a worker thread (scanner.ts); the serving thread only turns its result into
 * nodes and sets the watches, in slices that yield to the event loop. Watches go on after the walk, so
 * the load ends with one reconcile that catches whatever changed in between.
 *
 * Tracking: one inotify watch per cgroup directory (watches.ts). An event only names an entry; the
 * entry is then stat'ed and the hierarchy made to agree with what is there now, never with what the
 * event claimed, so reordered or coalesced events converge to the same tree. Entries of one directory
 * are handled one at a time in arrival order. A new cgroup is watched first and listed second, so
 * children made before its watch existed (`mkdir -p a/b/c`) are found by the listing and none made
 * after are lost. A slow reconcile walk repairs anything missed (a failed watch, a queue overflow).
 *
 * Degraded, not failed: a watch that cannot be set (ENOSPC past fs.inotify.max_user_watches, EMFILE,
 * EACCES) is reported (debug 'vbpffs:tags') and counted in status(); the directory is still listed, and
 * the periodic walk covers it (and retries its watch) from then on. A reconcile re-reads each entry on
 * its own: one that fails is counted and the others are still repaired.
 *
 * start() and stop() are serialised on one promise chain, so a stop() always finishes the start() before
 * it, and a start() after a stop() begins only once the stop() has closed its watches. Each start()
 * has its own epoch; a load or periodic walk of an older epoch does nothing more once it sees the epoch
 * changed (it schedules no walk and sets no watch).
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import createDebug from 'debug';
import { bpfError, fromSystemError } from '../../uapi';
import { CgroupHierarchy } from '../hierarchy';
import type { KernfsNode } from '../kernfs-node';
import type { CgroupSource, InterfaceFile, ReconcileResult } from '../source';
import { diffTree } from './diff';
import { findCgroup2Mount } from './mountinfo';
import { cgroupIdOf, childCgroups, vanished } from './scan';
import { sharedScanWorker } from './scanner';
import { DirWatches } from './watches';

const debug = createDebug('vbpffs:tags');

/** Nodes added, and watches set, per slice of the load before yielding to the event loop. */
const ADD_SLICE = 500;
const WATCH_SLICE = 250;
/** The periodic reconcile's walk may take at most 1/200 of the time between walks. */
const RECONCILE_COST_FACTOR = 200;
/** After a watch error, the reconcile waits this long so a burst of errors costs one walk. */
const REPAIR_DELAY_MS = 100;

export interface HostSourceOptions {
  /** The cgroup2 mount point; found in /proc/self/mountinfo when absent, verified when given. */
  mountPoint?: string;
  /** The mountinfo file to read (tests pass a sample). */
  mountinfo?: string;
  /**
   * Milliseconds between reconcile walks; 0 turns them off. Default 30 s; a large tree stretches it so
   * the walks cost under 0.5% of a core.
   */
  reconcileIntervalMs?: number;
  /** How long mkdir/rmdir wait for the hierarchy to show their change. Default 5 s. */
  settleTimeoutMs?: number;
}

/** What a host source is doing, and what has gone wrong so far (counts are totals since open). */
export interface HostSourceStatus {
  /** start() has been called and stop() has not. */
  tracking: boolean;
  /** Directories watched now. */
  watches: number;
  /** Live cgroups whose watch could not be set (not counting vanished ones): the walk covers them. */
  unwatched: number;
  /** Watch attempts that failed with something other than the directory being gone. */
  watchFailures: number;
  /** Re-reads of an entry (stat, listing) that failed, in reconciles and on events. */
  rereadFailures: number;
  /** The last reconcile walk that completed, or null before the first. */
  lastReconcile: { at: Date; durationMs: number; added: number; removed: number; failures: number } | null;
}

export class HostCgroupSource implements CgroupSource {
  readonly kind = 'host' as const;
  readonly hierarchy: CgroupHierarchy;
  readonly #scanner = sharedScanWorker();
  readonly #watches: DirWatches;
  /** Per directory, the tail of its entries' pending re-reads (one at a time, in arrival order). */
  readonly #queues = new Map<KernfsNode, Promise<void>>();
  readonly #reconcileIntervalMs: number;
  readonly #settleTimeoutMs: number;
  #started: Promise<void> | null = null;
  /** start() and stop() run one after another on this chain. */
  #lifecycle: Promise<void> = Promise.resolve();
  #tracking = false;
  #paused = false;
  #reconciling: Promise<ReconcileResult> = Promise.resolve({ added: 0, removed: 0 });
  #timer: NodeJS.Timeout | null = null;
  /** Bumped by stop(): a load or periodic reconcile of an older epoch schedules nothing more. */
  #epoch = 0;
  #repairTimer: NodeJS.Timeout | null = null;
  /** Live nodes whose watch failed (other than vanished): reported once, retried by each walk. */
  readonly #unwatched = new Set<KernfsNode>();
  #watchFailures = 0;
  #rereadFailures = 0;
  #lastReconcile: HostSourceStatus['lastReconcile'] = null;

  /** Finds (or verifies) the cgroup2 mount and reads its root's id; the tree loads on start(). */
  static async open(opts: HostSourceOptions = {}): Promise<HostCgroupSource> {
    const mount = await findCgroup2Mount({ path: opts.mountPoint, mountinfo: opts.mountinfo });
    let ino: bigint;
    try {
      ino = (await fsp.stat(mount.mountPoint, { bigint: true })).ino;
    } catch (e) {
      throw fromSystemError(e, `stat ${mount.mountPoint}`);
    }
    return new HostCgroupSource(mount.mountPoint, cgroupIdOf(ino, mount.mountPoint), opts);
  }

  /** For a mount point already verified; open() is the usual way in. */
  constructor(
    readonly mountPoint: string,
    rootId: number,
    opts: HostSourceOptions = {},
  ) {
    this.hierarchy = new CgroupHierarchy(rootId);
    this.#reconcileIntervalMs = opts.reconcileIntervalMs ?? 30_000;
    this.#settleTimeoutMs = opts.settleTimeoutMs ?? 5_000;
    this.#watches = new DirWatches({
      onName: (node, name) => {
        // Paused, or stopped with the watch not closed yet: the next reconcile finds the change.
        if (this.#paused || !this.#tracking) return;
        this.#reread(node, name, { added: 0, removed: 0 }).catch((e) => {
          this.#rereadFailures++;
          this.#repair(`event for ${name} in ${node.path}`, e);
        });
      },
      onError: (node, e) => this.#repair(`watch of ${node.path}`, e),
    });
    // A removed cgroup's watch goes with it; the kernel has already dropped the inotify watch.
    this.hierarchy.on('rmdir', (node) => {
      this.#watches.close(node);
      this.#queues.delete(node);
      this.#unwatched.delete(node);
    });
  }

  /** The host path of a node, or of the entry `name` inside it. */
  hostPath(node: KernfsNode, name?: string): string {
    const rel = name === undefined ? node.path : path.posix.join(node.path, name);
    return path.join(this.mountPoint, rel);
  }

  /** Number of directories watched (one per live cgroup while tracking). */
  get watchCount(): number {
    return this.#watches.size;
  }

  /** Whether node's directory is watched now. */
  isWatched(node: KernfsNode): boolean {
    return this.#watches.has(node);
  }

  get paused(): boolean {
    return this.#paused;
  }

  /** Watches, failures so far and the last reconcile: what a degraded source has given up. */
  status(): HostSourceStatus {
    return {
      tracking: this.#started !== null,
      watches: this.#watches.size,
      unwatched: this.#unwatched.size,
      watchFailures: this.#watchFailures,
      rereadFailures: this.#rereadFailures,
      lastReconcile: this.#lastReconcile === null ? null : { ...this.#lastReconcile },
    };
  }

  /** Loads and begins tracking, after any stop() still in progress. Idempotent while started. */
  start(): Promise<void> {
    if (this.#started !== null) return this.#started;
    const epoch = this.#epoch;
    const started: Promise<void> = this.#lifecycle
      .then(() => this.#load(epoch))
      .catch((e: unknown) => {
        // A stop() since has cleaned up already, and a start() after it owns the watches.
        if (this.#epoch === epoch) {
          this.#started = null;
          this.#tracking = false;
          this.#watches.closeAll();
          this.#unwatched.clear();
        }
        throw e;
      });
    this.#started = started;
    this.#lifecycle = started.catch(() => undefined);
    return started;
  }

  /** Ends tracking once the start() before it (if any) has finished; its watches are all closed. */
  stop(): Promise<void> {
    this.#tracking = false;
    this.#started = null;
    this.#epoch++;
    this.#clearTimers();
    const stopped = this.#lifecycle.then(async () => {
      await this.#reconciling.catch(() => undefined);
      // Timers a finishing load or walk may have set meanwhile (none should: they check the epoch).
      this.#clearTimers();
      this.#watches.closeAll();
      this.#unwatched.clear();
    });
    this.#lifecycle = stopped;
    return stopped;
  }

  #clearTimers(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    if (this.#repairTimer !== null) clearTimeout(this.#repairTimer);
    this.#timer = this.#repairTimer = null;
  }

  /** Drops inotify events until resume(); changes made meanwhile are found by the next reconcile. */
  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    this.#paused = false;
  }

  /**
   * Walks the host tree in the worker and repairs the hierarchy. Calls made while one runs wait for it
   * and then walk again, so a caller always gets a walk that began after its call.
   */
  reconcile(): Promise<ReconcileResult> {
    this.#reconciling = this.#reconciling.catch(() => undefined).then(() => this.#reconcileNow());
    return this.#reconciling;
  }

  async mkdir(cgroupPath: string): Promise<KernfsNode> {
    const rel = relativePath(cgroupPath);
    try {
      await fsp.mkdir(path.join(this.mountPoint, rel));
    } catch (e) {
      throw fromSystemError(e, `mkdir ${cgroupPath}`);
    }
    // Our own mkdir does not wait for inotify: the entry is re-read now (paused or not), and the
    // event that follows finds nothing left to do.
    const parent = this.hierarchy.cgroupByPath(path.posix.dirname(rel));
    if (parent !== undefined) await this.#reread(parent, path.posix.basename(rel), { added: 0, removed: 0 });
    return this.#settle(`mkdir ${cgroupPath}`, () => this.hierarchy.cgroupByPath(rel));
  }

  async rmdir(cgroupPath: string): Promise<void> {
    const rel = relativePath(cgroupPath);
    const node = this.hierarchy.cgroupByPath(rel);
    try {
      await fsp.rmdir(path.join(this.mountPoint, rel));
    } catch (e) {
      throw fromSystemError(e, `rmdir ${cgroupPath}`);
    }
    if (node?.parent == null) return;
    await this.#reread(node.parent, node.name, { added: 0, removed: 0 });
    await this.#settle(`rmdir ${cgroupPath}`, () => (node.dying ? node : undefined));
  }

  async readFile(cgroup: KernfsNode, file: InterfaceFile): Promise<string> {
    if (file.includes('/')) throw bpfError('EINVAL', `${file} is not an interface file name`);
    if (cgroup.dying) throw bpfError('ENOENT', `cgroup ${cgroup.path} is ${cgroup.state}`);
    let text: string;
    try {
      text = await fsp.readFile(this.hostPath(cgroup, file), 'utf8');
    } catch (e) {
      throw fromSystemError(e, `read ${path.posix.join(cgroup.path, file)}`);
    }
    // Removed while we read: the text may belong to a new cgroup of the same name.
    if (cgroup.dying) throw bpfError('ENOENT', `cgroup ${cgroup.path} was removed during the read`);
    return text;
  }

  async #load(epoch: number): Promise<void> {
    // Stopped before this start's turn on the chain came: nothing to do.
    if (this.#epoch !== epoch) return;
    this.#tracking = true;
    const scan = await this.#scanner.scan(this.mountPoint);
    const rootIno = cgroupIdOf(scan.rootIno, this.mountPoint);
    if (rootIno !== this.hierarchy.root.id) {
      throw bpfError('ESTALE', `${this.mountPoint} now has root id ${rootIno}, not ${this.hierarchy.root.id}: remounted?`);
    }
    // A restart after stop() keeps the nodes it has; the reconcile below repairs them.
    if (this.hierarchy.root.children.length === 0) {
      const nodes: KernfsNode[] = [];
      for (let i = 0; i < scan.names.length; i++) {
        if (i > 0 && i % ADD_SLICE === 0) await yieldToLoop();
        const p = scan.parents[i]!;
        const parent = p < 0 ? this.hierarchy.root : nodes[p]!;
        const name = scan.names[i]!;
        nodes[i] = this.hierarchy.add(parent, name, cgroupIdOf(scan.inos[i]!, this.hostPath(parent, name)));
      }
    }
    await this.reconcile();
    if (this.#epoch !== epoch) return;
    if (this.#reconcileIntervalMs > 0) this.#schedule(this.#reconcileIntervalMs, epoch);
    debug('host source %s: %d cgroups, %d watches', this.mountPoint, this.hierarchy.size, this.#watches.size);
  }

  async #reconcileNow(): Promise<ReconcileResult> {
    const t0 = performance.now();
    const counts = { added: 0, removed: 0 };
    // Watches before the walk: whatever changes after a directory's watch exists is reported by
    // inotify, whatever changed before is seen by the walk.
    await this.#watchAll();
    const diff = diffTree(this.hierarchy, await this.#scanner.scan(this.mountPoint));
    let failures = 0;
    // Each entry on its own: one that fails is counted, and the repairs after it still happen.
    const reread = async (parent: KernfsNode, name: string): Promise<void> => {
      try {
        await this.#reread(parent, name, counts);
      } catch (e) {
        failures++;
        this.#rereadFailures++;
        debug('reconcile of %s: re-read of %s failed: %O', this.mountPoint, this.hostPath(parent, name), e);
      }
    };
    for (const node of diff.gone) {
      if (!node.dying && node.parent !== null) await reread(node.parent, node.name);
    }
    for (const { parent, name } of diff.found) {
      if (!parent.dying) await reread(parent, name);
    }
    if (counts.added + counts.removed + failures > 0) debug('reconcile of %s: %o, %d failed', this.mountPoint, counts, failures);
    this.#lastReconcile = { at: new Date(), durationMs: performance.now() - t0, ...counts, failures };
    return counts;
  }

  /** Watches every live node that lacks a watch (all of them after the load). */
  async #watchAll(): Promise<void> {
    if (!this.#tracking) return;
    let set = 0;
    // A list taken up front: the tree may change while we yield.
    for (const node of liveNodes(this.hierarchy.root)) {
      if (node.dying || this.#watches.has(node)) continue;
      if (++set % WATCH_SLICE === 0) await yieldToLoop();
      if (!this.#tracking) return;
      // Gone since the walk: the walk that follows reports it as gone. Other failures are degraded.
      this.#watch(node);
    }
  }

  /**
   * Watches node's directory. False if that failed: vanished (the caller decides what that means), or
   * anything else (ENOSPC, EMFILE, EACCES), which is reported, counted and left to the walk.
   */
  #watch(node: KernfsNode): boolean {
    try {
      this.#watches.add(node, this.hostPath(node));
      this.#unwatched.delete(node);
      return true;
    } catch (e) {
      if (vanished(e)) return false;
      this.#watchFailures++;
      if (!this.#unwatched.has(node)) {
        this.#unwatched.add(node);
        debug('no watch on %s, the reconcile walk covers it: %O', node.path, e);
      }
      return false;
    }
  }

  /**
   * The periodic reconcile. A walk of a large tree is not free (~300 ms of worker CPU at 10,000
   * cgroups), so the next one waits at least RECONCILE_COST_FACTOR times as long as the last took:
   * the safety net stays under half a percent of a core however large the tree.
   */
  #schedule(delayMs: number, epoch: number): void {
    this.#timer = setTimeout(async () => {
      this.#timer = null;
      const t0 = performance.now();
      await this.reconcile().catch((e) => debug('periodic reconcile failed: %O', e));
      if (this.#epoch !== epoch) return;
      this.#schedule(Math.max(this.#reconcileIntervalMs, (performance.now() - t0) * RECONCILE_COST_FACTOR), epoch);
    }, delayMs).unref();
  }

  /** Queues a re-read of one entry of parent's directory behind the others of that directory. */
  #reread(parent: KernfsNode, name: string, counts: ReconcileResult): Promise<void> {
    const prev = this.#queues.get(parent) ?? Promise.resolve();
    const run = prev.then(() => this.#rereadNow(parent, name, counts));
    const tail = run.catch(() => undefined);
    this.#queues.set(parent, tail);
    void tail.then(() => {
      if (this.#queues.get(parent) === tail) this.#queues.delete(parent);
    });
    return run;
  }

  /** Makes the hierarchy agree with what is at parent/name now. */
  async #rereadNow(parent: KernfsNode, name: string, counts: ReconcileResult): Promise<void> {
    if (parent.dying) return;
    const where = this.hostPath(parent, name);
    let id: number | null = null;
    try {
      const st = await fsp.lstat(where, { bigint: true });
      if (st.isDirectory()) id = cgroupIdOf(st.ino, where);
    } catch (e) {
      if (!vanished(e)) throw fromSystemError(e, `stat ${where}`);
    }
    if (parent.dying) return;
    const known = parent.child(name);
    if (known !== undefined && known.id !== id) {
      counts.removed += liveNodes(known).length;
      this.hierarchy.remove(known);
    }
    if (id === null || known?.id === id) return;
    const node = this.hierarchy.add(parent, name, id);
    counts.added++;
    await this.#watchAndList(node, counts);
  }

  /**
   * Watches a new cgroup, then reads the children it already has. A watch that fails for another
   * reason than the directory being gone does not stop the listing (the walk covers the directory).
   */
  async #watchAndList(node: KernfsNode, counts: ReconcileResult): Promise<void> {
    const dir = this.hostPath(node);
    let children;
    try {
      if (this.#tracking) this.#watch(node);
      children = await childCgroups(dir);
    } catch (e) {
      if (!vanished(e)) throw fromSystemError(e, `scan of ${dir}`);
      // Removed as soon as it was made; we hold its parent's queue, so this is the rmdir's place.
      if (!node.dying) {
        counts.removed++;
        this.hierarchy.remove(node);
      }
      return;
    }
    for (const c of children) await this.#reread(node, c.name, counts);
  }

  /** Something was missed (a failed watch or re-read): repair with a walk soon, once per burst. */
  #repair(what: string, e: unknown): void {
    debug('%s failed, reconciling: %O', what, e);
    if (!this.#tracking || this.#repairTimer !== null) return;
    this.#repairTimer = setTimeout(() => {
      this.#repairTimer = null;
      this.reconcile().catch((err) => debug('repair reconcile failed: %O', err));
    }, REPAIR_DELAY_MS).unref();
  }

  /** Resolves with what `probe` finds once it finds it: now, or on a later hierarchy event. */
  #settle<T>(what: string, probe: () => T | undefined): Promise<T> {
    const now = probe();
    if (now !== undefined) return Promise.resolve(now);
    return new Promise<T>((resolve, reject) => {
      const check = (): void => {
        const found = probe();
        if (found === undefined) return;
        done();
        resolve(found);
      };
      const timer = setTimeout(() => {
        done();
        reject(bpfError('ETIMEDOUT', `${what}: not reflected in the hierarchy after ${this.#settleTimeoutMs} ms`));
      }, this.#settleTimeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        this.hierarchy.off('mkdir', check).off('rmdir', check);
      };
      this.hierarchy.on('mkdir', check).on('rmdir', check);
    });
  }
}

/** The live nodes from root down, parents before children. */
function liveNodes(root: KernfsNode): KernfsNode[] {
  const out: KernfsNode[] = [];
  const stack = [root];
  while (stack.length > 0) {
    const node = stack.pop()!;
    if (node.dying) continue;
    out.push(node);
    for (let i = node.children.length - 1; i >= 0; i--) stack.push(node.children[i]!);
  }
  return out;
}

/** "/a/b" or "a/b" to "a/b"; ".." is refused, since a cgroup path never leaves the mount. */
function relativePath(cgroupPath: string): string {
  const parts = cgroupPath.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw bpfError('EINVAL', `cgroup path ${cgroupPath} contains ".."`);
  return parts.join('/');
}
