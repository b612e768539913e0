// QuickJS: what the 32 MB limit leaves behind in the process (wasm memory never shrinks)
const c = require('./common'); const r = require('./runtimes');
(async () => {
  const Q = await r.initQjs(); const storage = c.makeStorage(true); const sink = c.makeSink();
  const prog = process.argv[2] || 'bomb'; const t = +(process.argv[3] || 10);
  const rt = r.makeQjs({ model: 'slab', storage, sink, timeoutMs: t, memMB: 32 });
  const before = c.rssMB(); const t0 = c.now(); let res;
  try { rt.run(prog, 1005); res = 'returned'; } catch (e) { res = e.message; }
  console.log(JSON.stringify({ prog, deadlineMs: t, ms: +((c.now() - t0) / 1e3).toFixed(1), res, rssBeforeMB: before, rssAfterMB: c.rssMB(), runtimeMemory: rt.rt.dumpMemoryUsage().split('\n').slice(0, 3).join(' / ') }));
})();
