/**
 * ScanWorker: runs scanTreeSync in a worker thread and hands the result back as a promise.
 *
 * A 10,000-cgroup walk costs ~300 ms of synchronous fs work, so it never runs on the serving thread.
 * One worker per process (sharedScanWorker) serves every host source: started on the first scan and
 * kept, since starting one per reconcile would cost more than the walk of a small tree. It holds the
 * process open only while a scan is in flight; between walks it sleeps, unreferenced.
 */
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import createDebug from 'debug';
import { bpfError, type ErrnoName, ERRNO } from '../../uapi';
import type { ScanResult } from './scan';
import type { ScanReply, ScanRequest } from './scan-worker';

const debug = createDebug('vbpffs:tags');

/** Next to this file: scan-worker.ts under a TypeScript loader (tests), scan-worker.js once built. */
const WORKER_FILE = path.join(__dirname, `scan-worker${path.extname(__filename)}`);

interface Pending {
  resolve: (r: ScanResult) => void;
  reject: (e: Error) => void;
}

export class ScanWorker {
  #worker: Worker | null = null;
  #seq = 0;
  readonly #pending = new Map<number, Pending>();

  scan(root: string): Promise<ScanResult> {
    const worker = this.#worker ?? this.#spawn();
    const seq = ++this.#seq;
    return new Promise<ScanResult>((resolve, reject) => {
      this.#pending.set(seq, { resolve, reject });
      worker.ref();
      worker.postMessage({ seq, root } satisfies ScanRequest);
    });
  }

  async close(): Promise<void> {
    const worker = this.#worker;
    this.#worker = null;
    if (worker !== null) await worker.terminate();
  }

  #spawn(): Worker {
    const worker = new Worker(WORKER_FILE);
    this.#worker = worker;
    worker.on('message', (reply: ScanReply) => this.#settle(reply));
    // A worker that dies takes its pending scans with it; the next scan starts a fresh one.
    const fail = (e: Error): void => {
      if (this.#worker === worker) this.#worker = null;
      for (const p of this.#pending.values()) p.reject(e);
      this.#pending.clear();
    };
    worker.on('error', (e) => {
      debug('scan worker failed: %O', e);
      fail(bpfError('EIO', `cgroup scan worker failed: ${e.message}`, e));
    });
    worker.on('exit', (code) => fail(bpfError('EIO', `cgroup scan worker exited (code ${code})`)));
    return worker;
  }

  #settle(reply: ScanReply): void {
    const p = this.#pending.get(reply.seq);
    if (p === undefined) return;
    this.#pending.delete(reply.seq);
    if (this.#pending.size === 0) this.#worker?.unref();
    if ('result' in reply) return p.resolve(reply.result);
    const code = (reply.error.code in ERRNO ? reply.error.code : 'EIO') as ErrnoName;
    p.reject(bpfError(code, reply.error.message.replace(`${code}: `, '')));
  }
}

let shared: ScanWorker | null = null;

/** The process's scan worker, shared by every host source. */
export function sharedScanWorker(): ScanWorker {
  return (shared ??= new ScanWorker());
}
