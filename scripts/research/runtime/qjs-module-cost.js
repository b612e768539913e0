// RSS and time per QuickJS wasm module instance (each has its own wasm memory = its own heap)
const q = require('quickjs-emscripten');
(async () => { global.gc(); const r0 = process.memoryUsage().rss; const t0 = Date.now(); const m = [];
  for (let i = 0; i < 20; i++) { const mod = await q.newQuickJSWASMModule(q.RELEASE_SYNC); const vm = mod.newContext(); vm.evalCode('1+1').value.dispose(); m.push(vm); }
  global.gc(); console.log(JSON.stringify({ qjsModuleInstance: { rssMBEach: +((process.memoryUsage().rss - r0) / 20 / 1048576).toFixed(2), msEach: (Date.now() - t0) / 20 } })); })();
