'use strict';
// Runs inside a worker thread: holds one runtime (node:vm context or an isolated-vm isolate), the helpers
// and the storage index; map values live in a SharedArrayBuffer slab shared with the main thread.
const { parentPort, workerData } = require('worker_threads');
const c = require('./common'); const r = require('./runtimes');
const { kind, model, sab, timeoutMs, memMB } = workerData;
const storage = c.makeStorage(true, sab);
const sink = c.makeSink();
const rt = kind === 'ivm' ? r.makeIvm({ model, storage, sink, timeoutMs, memMB }) : r.makeVm({ model, storage, sink, timeoutMs });
parentPort.on('message', (m) => {
  if (m.batch) { // one message, many runs (the tick hook fired for N cgroups)
    let rc = 0; const t0 = c.now();
    for (const cg of m.batch) { try { rc = rt.run(m.entry, cg); } catch (e) { rc = String(e.message); } }
    parentPort.postMessage({ id: m.id, rc, us: c.now() - t0 }); return;
  }
  try { const rc = rt.run(m.entry, m.cg); parentPort.postMessage({ id: m.id, rc, out: sink.take() }); }
  catch (e) { sink.take(); parentPort.postMessage({ id: m.id, err: String(e && e.message || e) }); }
});
parentPort.postMessage({ ready: true });
