'use strict';
// node bench-safety.js <ivm|ivm-async|qjs|vm|vm-nocodegen|worker+vm|worker+ivm>
// Each hostile program runs once with a 10 ms deadline and a 32 MB limit; we record what stopped it, the longest
// event-loop stall while it ran, whether a normal program then still runs, and the cost of recreating the runtime.
const c = require('./common'); const r = require('./runtimes'); const { WorkerRuntime } = require('./worker-runtime');
const kind = process.argv[2];
const HOSTILE = ['spin', 'bomb', 'esc1', 'esc2', 'esc3', 'esc4', 'esc5', 'esc6', 'esc7', 'print10mb', 'printloop'];
(async () => {
  const storage = c.makeStorage(true); const sink = c.makeSink(1 << 20);
  let rt, mkRt, run;
  if (kind.startsWith('worker+')) {
    mkRt = async () => { const w = new WorkerRuntime({ kind: kind.slice(7), model: 'slab', sab: storage.buf, timeoutMs: kind === 'worker+ivm' ? 10 : 0, deadlineMs: kind === 'worker+ivm' ? 50 : 10, memMB: 32 }); await w.start(); return w; };
    run = async (e, cg) => { const m = await rt.run(e, cg); return { rc: m.rc, out: m.out }; };
  } else {
    if (kind === 'qjs') await r.initQjs();
    const mk = { ivm: r.makeIvm, 'ivm-async': r.makeIvm, qjs: r.makeQjs, vm: r.makeVm, 'vm-nocodegen': r.makeVm }[kind];
    mkRt = () => mk({ model: 'slab', storage, sink, timeoutMs: 10, memMB: 32, codeGen: kind !== 'vm-nocodegen' });
    run = kind === 'ivm-async' ? async (e, cg) => { const rc = await rt.runAsync(e, cg); return { rc, out: sink.take() }; } : (e, cg) => { const rc = rt.run(e, cg); return { rc, out: sink.take() }; };
  }
  rt = await mkRt();
  const results = [];
  for (const h of HOSTILE) {
    if (h === 'bomb' && kind.startsWith('vm')) { results.push({ prog: h, result: 'NOT RUN in-process: node:vm has no memory limit; see child-process check in safety-vm-bomb.sh' }); continue; }
    const rss0 = c.rssMB();
    const s = await c.stallDuring(async () => { const o = await run(h, 1005); return `returned rc=${JSON.stringify(o.rc)} out=${o.out ? o.out.length : 0}B sinkOverflow=${sink.overflow}`; });
    sink.take();
    let after, recreateMs = null;
    try { const o = await run('view', 1005); after = o.out === c.EXPECT_VIEW(1005) ? 'normal view OK on same runtime' : 'normal view wrong output: ' + JSON.stringify(o.out); }
    catch (e) {
      after = 'same runtime unusable (' + String(e.message).slice(0, 80) + ')';
      const t0 = c.now(); try { if (rt.dispose) await rt.dispose(); } catch {} rt = await mkRt(); recreateMs = +((c.now() - t0) / 1e3).toFixed(2);
      const o = await run('view', 1005); after += o.out === c.EXPECT_VIEW(1005) ? '; recreated, normal view OK' : '; recreated, wrong output';
    }
    results.push({ prog: h, ...s, result: String(s.result).slice(0, 140), after, recreateMs, rssMB: [rss0, c.rssMB()] });
  }
  // recreate cost in isolation (median of 5)
  const rc = []; for (let i = 0; i < 5; i++) { const t0 = c.now(); const x = await mkRt(); rc.push((c.now() - t0) / 1e3); if (x.dispose) await x.dispose(); }
  console.log(JSON.stringify({ kind, recreateMedianMs: +rc.sort((a, b) => a - b)[2].toFixed(2), results }, null, 1));
  process.exit(0);
})().catch(e => { console.log(JSON.stringify({ kind, fatal: String(e && e.stack || e) })); process.exit(1); });
