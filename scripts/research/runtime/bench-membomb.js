'use strict';
// Memory limit alone (deadline 5 s so the limit, not the clock, has to stop it): node bench-membomb.js
const c = require('./common'); const r = require('./runtimes'); const { WorkerRuntime } = require('./worker-runtime');
(async () => {
  await r.initQjs();
  const storage = c.makeStorage(true);
  const out = [];
  const prog = process.argv[2] || 'bomb';
  for (const kind of ['ivm', 'qjs', 'worker+vm', 'worker+ivm']) {
    const sink = c.makeSink();
    let rt, run;
    if (kind.startsWith('worker+')) { rt = new WorkerRuntime({ kind: kind.slice(7), model: 'slab', sab: storage.buf, timeoutMs: kind === 'worker+ivm' ? 5000 : 0, deadlineMs: 6000, memMB: 32 }); await rt.start(); run = (e) => rt.run(e, 1005); }
    else { rt = (kind === 'ivm' ? r.makeIvm : r.makeQjs)({ model: 'slab', storage, sink, timeoutMs: 5000, memMB: 32 }); run = (e) => rt.run(e, 1005); }
    const s = await c.stallDuring(() => run(prog));
    let after; try { const o = await run('view'); after = 'same runtime OK'; } catch (e) { after = 'same runtime unusable: ' + String(e.message).slice(0, 60); }
    out.push({ kind, prog, ...s, result: String(s.result).slice(0, 120), after, hostAlive: true, rssMB: c.rssMB() });
    try { await rt.dispose(); } catch {}
  }
  console.log(JSON.stringify(out, null, 1)); process.exit(0);
})();
