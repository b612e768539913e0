'use strict';
// node --expose-gc bench-mem.js <kind> : RSS cost per runtime instance (program loaded, one view run done)
const c = require('./common'); const r = require('./runtimes'); const { WorkerRuntime } = require('./worker-runtime');
const kind = process.argv[2]; const N = +(process.argv[3] || 20);
(async () => {
  const storage = c.makeStorage(true); const sink = c.makeSink();
  if (kind.startsWith('qjs')) await r.initQjs();
  const mods = [];
  if (kind === 'qjs-own-module') for (let i = 0; i < N; i++) mods.push(await r.newQjsModule());
  global.gc(); await new Promise(res => setTimeout(res, 100)); global.gc();
  const rss0 = process.memoryUsage().rss; const keep = []; const t0 = c.now();
  for (let i = 0; i < N; i++) {
    let rt;
    if (kind === 'ivm') rt = r.makeIvm({ model: 'slab', storage, sink, timeoutMs: 10 });
    else if (kind === 'qjs') rt = r.makeQjs({ model: 'slab', storage, sink, timeoutMs: 10 });
    else if (kind === 'qjs-own-module') rt = r.makeQjs({ model: 'slab', storage, sink, timeoutMs: 10, module: mods[i] });
    else if (kind === 'vm') rt = r.makeVm({ model: 'slab', storage, sink, timeoutMs: 10 });
    else if (kind.startsWith('worker+')) { rt = new WorkerRuntime({ kind: kind.slice(7), model: 'slab', sab: storage.buf, deadlineMs: 0 }); await rt.start(); }
    if (rt.run.length && !kind.startsWith('worker')) rt.run('view', 1005); else await rt.run('view', 1005, { deadline: false });
    sink.take(); keep.push(rt);
  }
  const createMs = (c.now() - t0) / 1e3 / N;
  global.gc(); await new Promise(res => setTimeout(res, 300)); global.gc();
  const per = (process.memoryUsage().rss - rss0) / N / 1048576;
  let extra = '';
  if (kind === 'ivm') { const s = keep[0].iso.getHeapStatisticsSync(); extra = `isolate heap used ${(s.used_heap_size / 1048576).toFixed(2)} MB, total ${(s.total_heap_size / 1048576).toFixed(2)} MB`; }
  if (kind === 'qjs-own-module') extra = 'includes one wasm module instance per runtime';
  console.log(JSON.stringify({ kind, n: N, rssPerInstanceMB: +per.toFixed(2), createMsEach: +createMs.toFixed(2), extra }));
  for (const k of keep) await k.dispose();
  process.exit(0);
})();
