/**
 * The scan worker's entry point: walks a cgroup2 tree off the serving thread. One request at a time
 * comes from ScanWorker (scanner.ts); errors travel back as errno name and message, since a BpfError
 * does not survive structured cloning as itself.
 */
import { parentPort } from 'node:worker_threads';
import { isBpfError } from '../../uapi';
import { scanTreeSync } from './scan';

export interface ScanRequest {
  seq: number;
  root: string;
}

export type ScanReply =
  | { seq: number; result: ReturnType<typeof scanTreeSync> }
  | { seq: number; error: { code: string; message: string } };

parentPort?.on('message', ({ seq, root }: ScanRequest) => {
  try {
    const result = scanTreeSync(root);
    // The typed arrays move to the serving thread instead of being copied.
    parentPort!.postMessage({ seq, result } satisfies ScanReply, [
      result.parents.buffer as ArrayBuffer,
      result.inos.buffer as ArrayBuffer,
    ]);
  } catch (e) {
    const code = isBpfError(e) ? e.code : 'EIO';
    parentPort!.postMessage({ seq, error: { code, message: e instanceof Error ? e.message : String(e) } } satisfies ScanReply);
  }
});
