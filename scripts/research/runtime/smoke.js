const c = require('./common'); const r = require('./runtimes');
(async () => {
  await r.initQjs();
  for (const [name, mk] of [['ivm', r.makeIvm], ['vm', r.makeVm], ['qjs', r.makeQjs]]) for (const model of ['copy', 'slab']) for (const t of [0, 10]) {
    const storage = c.makeStorage(model === 'slab'); const sink = c.makeSink();
    const rt = mk({ model, storage, sink, timeoutMs: t });
    const rc = rt.run('view', 1005); const out = sink.take();
    rt.run('tick', 1007);
    const ok = out === c.EXPECT_VIEW(1005);
    const readsHost = model === 'slab' && name === 'qjs' ? 'vm-resident' : storage.field(1005, 2);
    console.log(name, model, t, rc, ok ? 'OUT OK' : JSON.stringify(out), 'reads seen by host:', readsHost, 'tick run_ns:', name==='qjs'&&model==='slab' ? new DataView(rt.hostRead(7*32).buffer||rt.hostRead(7*32)).getBigUint64(8,true) : storage.field(1007, 1));
    rt.dispose();
  }
})();
