/**
 * The engine's thread: starts an Engine from workerData and answers the serving thread's calls, one
 * message per call, in the order they come (the engine is single-threaded; an iterator read that
 * awaits file reads lets other calls in meanwhile, as the kernel's VFS would).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Engine, type EngineOptions } from './engine';
import { ENGINE_METHODS, errorReply, type CallMessage, type ReadyMessage } from './rpc';

const allowed = new Set<string>(ENGINE_METHODS);

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
      void engine.stop().finally(() => port.postMessage({ stopped: true }));
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
