/**
 * The engine's thread: starts an Engine from workerData and answers the serving thread's calls, one
 * message per call, in the order they come (the engine is single-threaded; an iterator read that
 * awaits file reads lets other calls in meanwhile, as the kernel's VFS would).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { abandonedRunsEnded } from '../../progs';
import { Engine, type EngineOptions } from './engine';
import { ENGINE_METHODS, errorReply, type CallMessage, type ReadyMessage } from './rpc';

const allowed = new Set<string>(ENGINE_METHODS);

/** How long a stop waits for abandoned runs: longer than any builtin a 64 MiB heap allows on a loaded host. */
const ABANDONED_RUN_WAIT_MS = 60_000;

async function main(): Promise<void> {
  const port = parentPort!;
  let engine: Engine;
  try {
    engine = await Engine.start(workerData as EngineOptions);
  } catch (e) {
    port.postMessage({ ready: false, ...errorReply(0, e) });
    return;
  }
  port.on('message', (msg: CallMessage | { stop: true }) => {
    if ('stop' in msg) {
      // A program run abandoned past its deadline may still hold one of isolated-vm's threads; the
      // thread must not be torn down under it (V8 crashes the process), so stopping waits for it.
      void engine
        .stop()
        .then(() => abandonedRunsEnded(ABANDONED_RUN_WAIT_MS))
        .finally(() => port.postMessage({ stopped: true }));
      return;
    }
    if (!allowed.has(msg.method)) {
      port.postMessage(errorReply(msg.id, new Error(`no engine method ${msg.method}`)));
      return;
    }
    const fn = (engine as unknown as Record<string, (...a: unknown[]) => unknown>)[msg.method]!;
    Promise.resolve()
      .then(() => fn.apply(engine, msg.args))
      .then(
        (value) => port.postMessage({ id: msg.id, value }),
        (e: unknown) => port.postMessage(errorReply(msg.id, e)),
      );
  });
  port.postMessage({ ready: true, replay: { records: engine.replay.records, failed: engine.replay.failed.length } } satisfies ReadyMessage);
}

void main();
