'use strict';
// node bench-perf.js [config...]  -> one JSON line per config: view p50/p99/mean µs, tick 1000 total ms + CPU ms
const c = require('./common'); const r = require('./runtimes'); const { WorkerRuntime } = require('./worker-runtime');
const WARM = 2000, N = +(process.env.N || 20000), TICK_REPS = 5;
const CONFIGS = {
  'ivm/copy':            { kind: 'ivm', model: 'copy', timeoutMs: 0 },
  'ivm/slab':            { kind: 'ivm', model: 'slab', timeoutMs: 0 },
  'ivm/slab/timeout10':  { kind: 'ivm', model: 'slab', timeoutMs: 10 },
  'ivm/copy/timeout10':  { kind: 'ivm', model: 'copy', timeoutMs: 10 },
  'ivm/slab/async+timeout10': { kind: 'ivm', model: 'slab', timeoutMs: 10, async: true },
  'qjs/copy':            { kind: 'qjs', model: 'copy', timeoutMs: 0 },
  'qjs/slab':            { kind: 'qjs', model: 'slab', timeoutMs: 0 },
  'qjs/slab/deadline10': { kind: 'qjs', model: 'slab', timeoutMs: 10 },
  'qjs/copy/deadline10': { kind: 'qjs', model: 'copy', timeoutMs: 10 },
  'vm/copy':             { kind: 'vm', model: 'copy', timeoutMs: 0 },
  'vm/slab':             { kind: 'vm', model: 'slab', timeoutMs: 0 },
  'vm/slab/timeout10':   { kind: 'vm', model: 'slab', timeoutMs: 10 },
  'worker+vm/slab/nodeadline': { kind: 'worker', inner: 'vm', model: 'slab', deadlineMs: 0 },
  'worker+vm/slab/terminate10': { kind: 'worker', inner: 'vm', model: 'slab', deadlineMs: 10 },
  'worker+vm/copy/terminate10': { kind: 'worker', inner: 'vm', model: 'copy', deadlineMs: 10 },
  'worker+ivm/slab/timeout10': { kind: 'worker', inner: 'ivm', model: 'slab', timeoutMs: 10, deadlineMs: 50 },
};
function cpuMs(f) { const u = process.cpuUsage(); const t = c.now(); return Promise.resolve(f()).then(() => { const d = process.cpuUsage(u); return { wallMs: (c.now() - t) / 1e3, cpuMs: (d.user + d.system) / 1e3 }; }); }
const med = (a) => a.slice().sort((x, y) => x - y)[a.length >> 1];
async function bench(name) {
  const cfg = CONFIGS[name];
  const storage = c.makeStorage(cfg.model === 'slab' || cfg.kind === 'worker'); const sink = c.makeSink();
  let run, dispose, check; const kills = []; // normal runs cut by a wall-clock deadline (false kills under load)
  if (cfg.kind === 'worker') {
    const w = new WorkerRuntime({ kind: cfg.inner, model: cfg.model, sab: storage.buf, timeoutMs: cfg.timeoutMs || 0, deadlineMs: cfg.deadlineMs });
    await w.start();
    run = async (e, cg) => { try { const m = await w.run(e, cg, { deadline: !!cfg.deadlineMs }); return m.out; } catch (err) { kills.push(String(err.message).slice(0, 60)); await w.restart(); return c.EXPECT_VIEW(cg); } };
    dispose = () => w.dispose(); cfg.w = w;
  } else {
    if (cfg.kind === 'qjs') await r.initQjs();
    const mk = { ivm: r.makeIvm, qjs: r.makeQjs, vm: r.makeVm }[cfg.kind];
    const rt = mk({ model: cfg.model, storage, sink, timeoutMs: cfg.timeoutMs });
    run = cfg.async ? async (e, cg) => { try { await rt.runAsync(e, cg); } catch (err) { kills.push(String(err.message).slice(0, 60)); sink.take(); return c.EXPECT_VIEW(cg); } return sink.take(); }
                    : (e, cg) => { try { rt.run(e, cg); } catch (err) { kills.push(String(err.message).slice(0, 60)); sink.take(); return c.EXPECT_VIEW(cg); } return sink.take(); };
    dispose = () => rt.dispose();
  }
  const isAsync = cfg.kind === 'worker' || cfg.async;
  let bad = 0;
  for (let i = 0; i < WARM; i++) { const cg = 1000 + (i % 1000); const o = isAsync ? await run('view', cg) : run('view', cg); if (i < 5 && o !== c.EXPECT_VIEW(cg)) bad++; }
  const us = new Float64Array(N);
  const u0 = process.cpuUsage(); const w0 = c.now();
  for (let i = 0; i < N; i++) { const cg = 1000 + (i % 1000); const t = c.now(); const o = isAsync ? await run('view', cg) : run('view', cg); us[i] = c.now() - t; if ((i & 1023) === 0 && o !== c.EXPECT_VIEW(cg)) bad++; }
  const wall = c.now() - w0; const cd = process.cpuUsage(u0);
  const view = { ...c.summarize(Array.from(us)), cpuPerRunUs: +(((cd.user + cd.system)) / N).toFixed(2), wallPerRunUs: +(wall / N).toFixed(2) };
  // the tick hook: 1,000 cgroups, one run each
  const ticks = [];
  for (let rep = 0; rep < TICK_REPS; rep++) ticks.push(await cpuMs(async () => { for (let i = 0; i < 1000; i++) { if (isAsync) await run('tick', 1000 + i); else run('tick', 1000 + i); } }));
  const tick = { totalMs: +med(ticks.map(t => t.wallMs)).toFixed(2), cpuMs: +med(ticks.map(t => t.cpuMs)).toFixed(2) };
  let tickBatch;
  if (cfg.kind === 'worker') { const tb = []; for (let rep = 0; rep < TICK_REPS; rep++) tb.push(await cpuMs(() => cfg.w.batch('tick', Array.from({ length: 1000 }, (_, i) => 1000 + i), 1000))); tickBatch = { totalMs: +med(tb.map(t => t.wallMs)).toFixed(2), mainCpuMs: +med(tb.map(t => t.cpuMs)).toFixed(2) }; }
  // host visibility check: reads counter per cgroup incremented by every view run (copy: via copy-out, slab: in place)
  const reads = cfg.kind === 'qjs' && cfg.model === 'slab' ? 'vm-resident (host must copy)' : String(storage.field(1000, 2));
  await dispose();
  return { config: name, view, tick, tickBatch, outputErrors: bad, falseDeadlineKills: kills.length, killMsgs: [...new Set(kills)], readsCounterCg1000: reads };
}
(async () => {
  const names = process.argv.slice(2).length ? process.argv.slice(2) : Object.keys(CONFIGS);
  for (const n of names) console.log(JSON.stringify(await bench(n)));
  process.exit(0);
})();
