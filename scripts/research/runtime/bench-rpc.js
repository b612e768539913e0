'use strict';
// Cost of a *synchronous* helper call from a worker (where the program runs) back to map storage on the
// main thread: the worker posts a request and blocks in Atomics.wait; the main thread answers from its
// event loop and Atomics.notify's. Compared with a helper served inside the worker (storage index local,
// values in a SharedArrayBuffer slab).
const { Worker, isMainThread, parentPort, workerData } = require('worker_threads');
const c = require('./common');
const N = 20000;
if (isMainThread) {
  const sab = new SharedArrayBuffer(16); const flag = new Int32Array(sab);
  const storage = c.makeStorage(true);
  const w = new Worker(__filename, { workerData: { sab, slab: storage.buf } });
  w.on('message', (m) => {
    if (m.req !== undefined) { flag[1] = storage.getOff(m.req, 0); Atomics.store(flag, 0, 1); Atomics.notify(flag, 0); return; }
    console.log(JSON.stringify(m)); if (m.done) w.terminate();
  });
} else {
  const { sab, slab } = workerData; const flag = new Int32Array(sab);
  const storage = c.makeStorage(true, slab);
  const rpc = (cg) => { Atomics.store(flag, 0, 0); parentPort.postMessage({ req: cg }); Atomics.wait(flag, 0, 0, 1000); return flag[1]; };
  for (let i = 0; i < 2000; i++) rpc(1000 + (i % 1000));
  let us = []; for (let i = 0; i < N; i++) { const t = c.now(); rpc(1000 + (i % 1000)); us.push(c.now() - t); }
  parentPort.postMessage({ label: 'sync helper worker->main via postMessage+Atomics.wait (main idle)', ...c.summarize(us) });
  us = []; for (let i = 0; i < N; i++) { const t = c.now(); storage.getOff(1000 + (i % 1000), 0); us.push(c.now() - t); }
  parentPort.postMessage({ label: 'helper served inside the worker (local index, SAB slab)', ...c.summarize(us), done: true });
}
