/**
 * The scheduler sample worker's entry point: runs scanThreads over the host's files off the serving
 * thread, one request at a time. Errors travel back as errno name and message, since a BpfError does
 * not survive structured cloning as itself.
 */
import { parentPort } from 'node:worker_threads';
import { hostReader, scanThreads, type ScanRequest, type ScanResult } from './sched-scan';

export type WorkerRequest = ScanRequest & { seq: number };

export type WorkerReply = { seq: number; result: ScanResult } | { seq: number; error: { code: string; message: string } };

const reader = hostReader();

parentPort?.on('message', (req: WorkerRequest) => {
  let reply: WorkerReply;
  try {
    reply = { seq: req.seq, result: scanThreads(reader, req) };
  } catch (e) {
    const code = (e as { code?: unknown } | null)?.code;
    reply = { seq: req.seq, error: { code: typeof code === 'string' ? code : 'EIO', message: e instanceof Error ? e.message : String(e) } };
  }
  parentPort!.postMessage(reply);
});
