'use strict';
// Per-call cost of the deadline mechanism itself: an empty program (nop) called with and without the deadline.
const c = require('./common'); const r = require('./runtimes'); const { WorkerRuntime } = require('./worker-runtime');
const N = 20000;
async function measure(label, f, isAsync) {
  for (let i = 0; i < 2000; i++) isAsync ? await f() : f();
  const us = []; for (let i = 0; i < N; i++) { const t = c.now(); isAsync ? await f() : f(); us.push(c.now() - t); }
  console.log(JSON.stringify({ label, ...c.summarize(us) }));
}
(async () => {
  await r.initQjs(); const storage = c.makeStorage(true); const sink = c.makeSink();
  for (const t of [0, 10]) { const rt = r.makeIvm({ model: 'slab', storage, sink, timeoutMs: t }); await measure(`ivm applySync nop timeout=${t}`, () => rt.run('nop', 1)); if (t) await measure(`ivm apply (async) nop timeout=${t}`, () => rt.runAsync('nop', 1), true); rt.dispose(); }
  { const ivm = require('isolated-vm'); const iso = new ivm.Isolate({ memoryLimit: 32 }); const ctx = iso.createContextSync(); const f = ctx.evalSync('(function(){return 0})', { reference: true }); await measure('ivm bare applySync of empty fn', () => f.applySync(undefined, [])); await measure('ivm bare applySync of empty fn timeout=10', () => f.applySync(undefined, [], { timeout: 10 })); iso.dispose(); }
  for (const t of [0, 10]) { const rt = r.makeQjs({ model: 'slab', storage, sink, timeoutMs: t }); await measure(`qjs callFunction nop interruptDeadline=${t}`, () => rt.run('nop', 1)); rt.dispose(); }
  for (const t of [0, 10]) { const rt = r.makeVm({ model: 'slab', storage, sink, timeoutMs: t }); await measure(t ? `node:vm runInContext nop timeout=${t}` : 'node:vm direct call nop (no deadline possible)', () => rt.run('nop', 1)); }
  for (const d of [0, 10]) { const w = new WorkerRuntime({ kind: 'vm', model: 'slab', sab: storage.buf, deadlineMs: d }); await w.start(); await measure(`worker+vm round trip nop deadline=${d ? d + 'ms setTimeout+terminate' : 'none'}`, () => w.run('nop', 1, { deadline: !!d }), true); await w.dispose(); }
  process.exit(0);
})();
