/**
 * tp/sched/sample: per task (thread), per interval, the deltas of /proc/<tid>/schedstat (run ns =
 * se.sum_exec_runtime, run-queue wait ns = sched_info.run_delay, slices = sched_info.pcount) with the
 * task's pid, comm and cgroup (the node of its `0::` line in the hierarchy, read with the figures).
 *
 * Which tasks: every thread of every live cgroup in the tracked subtree (the whole hierarchy unless
 * `root` says otherwise), listed from cgroup.threads; sched-scan.ts says why threads and /proc/<tid>.
 *
 * Where the scan runs: on the host, in a worker thread of this sampler's own (started on the first
 * sample, unreferenced while idle, ended by stop()); the serving thread only posts the cgroup list and
 * turns the reply into events. On the simulated source, in-process over the memfs volume, so tests get
 * exact figures after `workload.advance(ns)`. A `reader` option forces an in-process reader (tests).
 *
 * Deltas. A task seen for the first time gives no sample, only a baseline: its counters run from its
 * birth, not from the last interval. A task whose counters went backwards is a new task that reused
 * the id; it too is a baseline. A task listed last time and not now is in `gone` (it exited, or left
 * the tracked cgroups) and its baseline is dropped. A task gone between listing and reading is skipped
 * silently (counted in `vanished`). A task whose cgroup path the hierarchy does not (yet) have is left
 * out (counted in `unresolved`), its baseline moved on, so every sample covers one interval.
 *
 * Pacing. start() samples at once (the baseline), then every interval; a tick that comes while a scan
 * is still running is skipped (counted in stats.skipped), never queued. sampleOnce() calls are
 * serialised, so each delta is against the sample before it. Timers hold the process open while
 * started: stop() ends them and the worker.
 */
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import createDebug from 'debug';
import { SimCgroupSource, type CgroupSource, type KernfsNode } from '../../tags';
import { ERRNO, bpfError, type ErrnoName } from '../../uapi';
import { Listeners, checkInterval, sourceClock, type Clock, type Listener } from './listeners';
import { scanThreads, type ProcReader, type ScanRequest, type ScanResult } from './sched-scan';
import type { WorkerReply, WorkerRequest } from './sched-worker';

const debug = createDebug('vbpffs:events');

export const SCHED_SAMPLE_HOOK = 'tp/sched/sample';

/** Next to this file: sched-worker.ts under a TypeScript loader (tests), sched-worker.js once built. */
const WORKER_FILE = path.join(__dirname, `sched-worker${path.extname(__filename)}`);

/** One task's figures over one interval. */
export interface SchedSample {
  /** The kernel's task pid: the thread id (the tgid of a single-threaded process). */
  pid: number;
  comm: string;
  /** The task's cgroup when its figures were read. */
  cgroup: KernfsNode;
  /** Time on a CPU during the interval (se.sum_exec_runtime delta). */
  runNs: number;
  /** Time runnable on a run queue, waiting for a CPU (sched_info.run_delay delta). */
  waitNs: number;
  /** Times the task got on a CPU (sched_info.pcount delta). */
  slices: number;
}

/** One sample of every tracked task, handed to subscribers as one batch. */
export interface SchedSampleBatch {
  /** Sequence number of this sample, from 1. */
  seq: number;
  /** When the figures were taken (the simulator's clock on the simulated source). */
  timeNs: number;
  /** Time since the previous sample (0 for the first). */
  intervalNs: number;
  samples: SchedSample[];
  /** Tasks sampled last time and not listed now (exited, or moved out of the tracked cgroups). */
  gone: number[];
  /** Tasks seen for the first time (or with a reused id): baseline only, no sample yet. */
  baselined: number;
  /** Tasks listed but gone before their files were read. */
  vanished: number;
  /** Tasks in a cgroup the hierarchy does not have. */
  unresolved: number;
}

export interface SchedSamplerOptions {
  /** Sampling interval in ms. Default 1000. */
  intervalMs?: number;
  /** Sample the tasks of this cgroup's subtree only. Default: the hierarchy's root. */
  root?: KernfsNode;
  /** Read in-process with this reader instead of a worker (the simulator's volume by default). */
  reader?: ProcReader;
  /** Where procfs is. Default: the simulated source's procRoot, or /proc. */
  procRoot?: string;
  /** Timestamps of batches. Default: the simulator's clock, or CLOCK_MONOTONIC. */
  clock?: Clock;
}

export interface SchedSamplerStats {
  samples: number;
  /** Ticks skipped because the previous scan had not finished. */
  skipped: number;
  /** Samples that failed (reported through debug; the sampler carries on). */
  failures: number;
  /** Tasks read by the last scan. */
  lastTasks: number;
  /** Wall time of the last scan, from posting it to its reply, in ms. */
  lastScanMs: number;
}

interface Baseline {
  runNs: number;
  waitNs: number;
  slices: number;
}

interface Pending {
  resolve: (r: ScanResult) => void;
  reject: (e: Error) => void;
}

/** The sampler's worker: one scan in flight at most (the sampler serialises), held only while busy. */
class SchedWorker {
  readonly #worker: Worker;
  readonly #pending = new Map<number, Pending>();
  #seq = 0;
  #dead: Error | null = null;

  constructor() {
    const worker = new Worker(WORKER_FILE);
    this.#worker = worker;
    worker.unref();
    worker.on('message', (reply: WorkerReply) => this.#settle(reply));
    const fail = (e: Error): void => {
      this.#dead ??= e;
      /* c8 ignore next -- only a worker that crashes mid-scan has pending scans (stop() waits for them) */
      for (const p of this.#pending.values()) p.reject(e);
      this.#pending.clear();
    };
    worker.on('error', (e) => fail(bpfError('EIO', `sched sample worker failed: ${e.message}`, e)));
    worker.on('exit', (code) => fail(bpfError('EIO', `sched sample worker exited (code ${code})`)));
  }

  get dead(): boolean {
    return this.#dead !== null;
  }

  /** The worker's event-loop utilisation: its busy share, which for this synchronous scan is its CPU. */
  get performance(): Worker['performance'] {
    return this.#worker.performance;
  }

  scan(req: ScanRequest): Promise<ScanResult> {
    /* c8 ignore next -- the sampler replaces a dead worker before it asks it for a scan */
    if (this.#dead !== null) return Promise.reject(this.#dead);
    const seq = ++this.#seq;
    return new Promise<ScanResult>((resolve, reject) => {
      this.#pending.set(seq, { resolve, reject });
      this.#worker.ref();
      this.#worker.postMessage({ ...req, seq } satisfies WorkerRequest);
    });
  }

  async terminate(): Promise<void> {
    await this.#worker.terminate();
  }

  #settle(reply: WorkerReply): void {
    const p = this.#pending.get(reply.seq);
    /* c8 ignore next -- a reply whose scan was already failed by an exit */
    if (p === undefined) return;
    this.#pending.delete(reply.seq);
    if (this.#pending.size === 0) this.#worker.unref();
    if ('result' in reply) return p.resolve(reply.result);
    const code = (reply.error.code in ERRNO ? reply.error.code : 'EIO') as ErrnoName;
    p.reject(bpfError(code, reply.error.message.replace(`${code}: `, '')));
  }
}

export class SchedSampler {
  readonly hook = SCHED_SAMPLE_HOOK;
  readonly intervalMs: number;
  readonly #source: CgroupSource;
  readonly #root: KernfsNode;
  readonly #reader: ProcReader | null;
  readonly #procRoot: string;
  readonly #clock: Clock;
  readonly #listeners = new Listeners<SchedSampleBatch>(SCHED_SAMPLE_HOOK);
  #worker: SchedWorker | null = null;
  #baseline = new Map<number, Baseline>();
  #lastTimeNs: number | null = null;
  #seq = 0;
  #chain: Promise<unknown> = Promise.resolve();
  #busy = 0;
  #timer: NodeJS.Timeout | null = null;
  readonly #stats: SchedSamplerStats = { samples: 0, skipped: 0, failures: 0, lastTasks: 0, lastScanMs: 0 };

  constructor(source: CgroupSource, opts: SchedSamplerOptions = {}) {
    this.#source = source;
    this.intervalMs = checkInterval(opts.intervalMs ?? 1000, SCHED_SAMPLE_HOOK);
    this.#root = opts.root ?? source.hierarchy.root;
    const sim = source instanceof SimCgroupSource ? source : null;
    this.#reader = opts.reader ?? (sim === null ? null : { read: (p) => sim.fs.readFileSync(p, 'utf8') as string });
    this.#procRoot = opts.procRoot ?? sim?.procRoot ?? '/proc';
    this.#clock = opts.clock ?? sourceClock(source);
  }

  /** Adds a listener for every batch; returns its remover. */
  subscribe(fn: Listener<SchedSampleBatch>): () => void {
    return this.#listeners.subscribe(fn);
  }

  get running(): boolean {
    return this.#timer !== null;
  }

  get stats(): Readonly<SchedSamplerStats> {
    return { ...this.#stats };
  }

  /** The worker's event-loop utilisation since it started (null before the first host sample). */
  workerUtilization(): ReturnType<Worker['performance']['eventLoopUtilization']> | null {
    return this.#worker?.performance.eventLoopUtilization() ?? null;
  }

  /** Samples now (the baseline), then every interval. Idempotent. */
  start(): void {
    if (this.#timer !== null) return;
    this.#timer = setInterval(() => this.#tick(), this.intervalMs);
    this.#tick();
  }

  /** Stops the timer, waits for a scan in flight, ends the worker. Baselines are kept. */
  async stop(): Promise<void> {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    await this.#chain;
    const worker = this.#worker;
    this.#worker = null;
    if (worker !== null) await worker.terminate();
  }

  /** One sample, emitted to subscribers and returned. Serialised with any other sample. */
  sampleOnce(): Promise<SchedSampleBatch> {
    this.#busy++;
    const run = this.#chain.then(() => this.#sample());
    this.#chain = run.then(
      () => this.#busy--,
      () => this.#busy--,
    );
    return run;
  }

  #tick(): void {
    if (this.#busy > 0) {
      this.#stats.skipped++;
      return;
    }
    this.sampleOnce().catch((e: unknown) => {
      this.#stats.failures++;
      debug('%s failed: %O', SCHED_SAMPLE_HOOK, e);
    });
  }

  #cgroupPaths(): string[] {
    const paths: string[] = [];
    for (const node of this.#source.hierarchy.walk(this.#root)) if (!node.dying) paths.push(node.path);
    return paths;
  }

  async #scan(req: ScanRequest): Promise<ScanResult> {
    if (this.#reader !== null) return scanThreads(this.#reader, req);
    // A worker that crashed (never seen in tests: its scan is plain fs reads) is replaced.
    if (this.#worker === null || this.#worker.dead) this.#worker = new SchedWorker();
    return this.#worker.scan(req);
  }

  async #sample(): Promise<SchedSampleBatch> {
    const t0 = performance.now();
    const r = await this.#scan({ mountPoint: this.#source.mountPoint, procRoot: this.#procRoot, cgroups: this.#cgroupPaths() });
    this.#stats.lastScanMs = performance.now() - t0;
    this.#stats.lastTasks = r.tids.length;
    const timeNs = this.#clock();
    const batch: SchedSampleBatch = {
      seq: ++this.#seq,
      timeNs,
      intervalNs: this.#lastTimeNs === null ? 0 : timeNs - this.#lastTimeNs,
      samples: [],
      gone: [],
      baselined: 0,
      vanished: r.vanished,
      unresolved: 0,
    };
    this.#lastTimeNs = timeNs;
    const next = new Map<number, Baseline>();
    const nodes = new Map<string, KernfsNode | undefined>();
    const hierarchy = this.#source.hierarchy;
    for (let i = 0; i < r.tids.length; i++) {
      const pid = r.tids[i]!;
      const now: Baseline = { runNs: r.runNs[i]!, waitNs: r.waitNs[i]!, slices: r.slices[i]! };
      next.set(pid, now);
      const prev = this.#baseline.get(pid);
      if (prev === undefined || now.runNs < prev.runNs || now.waitNs < prev.waitNs || now.slices < prev.slices) {
        batch.baselined++;
        continue;
      }
      const cgPath = r.cgroup[i]!;
      let node = nodes.get(cgPath);
      if (node === undefined && !nodes.has(cgPath)) nodes.set(cgPath, (node = hierarchy.cgroupByPath(cgPath)));
      if (node === undefined) {
        batch.unresolved++;
        continue;
      }
      batch.samples.push({
        pid,
        comm: r.comm[i]!,
        cgroup: node,
        runNs: now.runNs - prev.runNs,
        waitNs: now.waitNs - prev.waitNs,
        slices: now.slices - prev.slices,
      });
    }
    for (const pid of this.#baseline.keys()) if (!next.has(pid)) batch.gone.push(pid);
    this.#baseline = next;
    this.#stats.samples++;
    this.#listeners.emit(batch);
    return batch;
  }
}
