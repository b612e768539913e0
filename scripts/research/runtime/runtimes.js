'use strict';
// One factory per candidate. Each returns a synchronous runtime:
//   { name, run(entry, cg) -> rc (throws on deadline/memory/escape errors), dispose(), alive() }
// entry is a program function name from common.PROGRAM ('view', 'tick', 'spin', ...).
const { PRELUDE, PROGRAM, seqPrintf } = require('./common');
const ENTRY = `\nfunction __call(name, cg) { return __run(globalThis[name], cg); }\n`;

function makeIvm({ model, storage, sink, timeoutMs = 0, memMB = 32 }) {
  const ivm = require('isolated-vm');
  const iso = new ivm.Isolate({ memoryLimit: memMB });
  const ctx = iso.createContextSync();
  const g = ctx.global;
  if (model === 'copy') {
    g.setSync('__h_get', new ivm.Callback((cg, flags) => { const off = storage.getOff(cg, flags); return off < 0 ? null : storage.copyOut(off); }));
    g.setSync('__h_put', new ivm.Callback((cg, ab) => { storage.copyIn(storage.index.get(cg), ab); }));
  } else {
    g.setSync('__h_get', new ivm.Callback((cg, flags) => storage.getOff(cg, flags)));
    g.setSync('__slab', new ivm.ExternalCopy(storage.buf).copyInto({ release: true })); // SAB: shared, not copied
  }
  g.setSync('__h_printf', new ivm.Callback((fmt, ...args) => seqPrintf(sink, fmt, args)));
  iso.compileScriptSync(PRELUDE(model) + PROGRAM + ENTRY).runSync(ctx);
  const call = g.getSync('__call', { reference: true });
  const opts = timeoutMs ? { timeout: timeoutMs } : {};
  return { name: 'isolated-vm', iso, ctx, call,
    run(entry, cg) { return call.applySync(undefined, [entry, cg], opts); },
    runAsync(entry, cg) { return call.apply(undefined, [entry, cg], opts); },
    alive() { return !iso.isDisposed; },
    heap() { const s = iso.getHeapStatisticsSync(); return s.used_heap_size + s.externally_allocated_size; },
    dispose() { try { call.release(); ctx.release(); } catch {} if (!iso.isDisposed) iso.dispose(); } };
}

function makeVm({ model, storage, sink, timeoutMs = 0, codeGen = true }) {
  const vm = require('vm');
  const sandbox = {};
  if (model === 'copy') {
    sandbox.__h_get = (cg, flags) => { const off = storage.getOff(cg, flags); return off < 0 ? null : storage.copyOut(off); };
    sandbox.__h_put = (cg, ab) => { storage.copyIn(storage.index.get(cg), ab); };
  } else {
    sandbox.__h_get = (cg, flags) => storage.getOff(cg, flags);
    sandbox.__slab = storage.buf;
  }
  sandbox.__h_printf = (fmt, ...args) => seqPrintf(sink, fmt, args);
  const ctx = vm.createContext(sandbox, { codeGeneration: { strings: codeGen, wasm: false } });
  new vm.Script(PRELUDE(model) + PROGRAM + ENTRY).runInContext(ctx);
  const call = ctx.__call;
  const script = new vm.Script('__call(__e, __cg)');
  return { name: 'node:vm', ctx,
    run(entry, cg) {
      if (!timeoutMs) return call(entry, cg);       // direct call: no deadline at all
      ctx.__e = entry; ctx.__cg = cg; return script.runInContext(ctx, { timeout: timeoutMs });
    },
    alive() { return true; }, dispose() {} };
}

let QJS = null; // the QuickJS wasm module (one per process unless separate=true)
async function initQjs() { if (!QJS) QJS = await require('quickjs-emscripten').getQuickJS(); return QJS; }
async function newQjsModule() { const q = require('quickjs-emscripten'); return q.newQuickJSWASMModule(q.RELEASE_SYNC); }
function makeQjs({ model, storage, sink, timeoutMs = 0, memMB = 32, module = QJS }) {
  const { shouldInterruptAfterDeadline } = require('quickjs-emscripten');
  const rt = module.newRuntime(); rt.setMemoryLimit(memMB * 1048576); rt.setMaxStackSize(1 << 20);
  const vm = rt.newContext();
  const val = (h) => { const t = vm.typeof(h); return t === 'bigint' ? vm.getBigInt(h) : t === 'number' ? vm.getNumber(h) : t === 'string' ? vm.getString(h) : vm.dump(h); };
  const def = (name, fn) => { const f = vm.newFunction(name, fn); vm.setProp(vm.global, name, f); f.dispose(); };
  if (model === 'copy') {
    def('__h_get', (cgH, flH) => { const off = storage.getOff(vm.getNumber(cgH), vm.getNumber(flH)); return off < 0 ? vm.null : vm.newArrayBuffer(storage.copyOut(off)); });
    def('__h_put', (cgH, abH) => { const l = vm.getArrayBuffer(abH); storage.copyIn(storage.index.get(vm.getNumber(cgH)), l.value); l.dispose(); });
  } else {
    // the slab lives inside the VM's wasm heap: the host cannot map it, it must copy to see it
    def('__h_get', (cgH, flH) => vm.newNumber(storage.getOff(vm.getNumber(cgH), vm.getNumber(flH))));
    const ab = vm.newArrayBuffer(storage.buf.slice(0)); vm.setProp(vm.global, '__slab', ab); ab.dispose();
  }
  def('__h_printf', (fmtH, ...argH) => vm.newNumber(seqPrintf(sink, vm.getString(fmtH), argH.map(val))));
  vm.unwrapResult(vm.evalCode(PRELUDE(model) + PROGRAM + ENTRY)).dispose();
  const call = vm.getProp(vm.global, '__call');
  const names = new Map();
  let dead = false;
  return { name: 'quickjs-emscripten', rt, vm,
    run(entry, cg) {
      if (timeoutMs) rt.setInterruptHandler(shouldInterruptAfterDeadline(Date.now() + timeoutMs));
      let nh = names.get(entry); if (!nh) { nh = vm.newString(entry); names.set(entry, nh); }
      const cgh = vm.newNumber(cg);
      const r = vm.callFunction(call, vm.undefined, nh, cgh); cgh.dispose();
      if (timeoutMs) rt.removeInterruptHandler();
      if (r.error) { const e = vm.dump(r.error); r.error.dispose(); throw new Error(typeof e === 'object' ? `${e.name}: ${e.message}` : String(e)); }
      const v = val(r.value); r.value.dispose(); return v;
    },
    // host-side read of one value in the VM-resident slab (what a userspace map lookup costs)
    hostRead(off) { const h = vm.unwrapResult(vm.evalCode(`__slab.slice(${off}, ${off + 32})`)); const l = vm.getArrayBuffer(h); const c = l.value.slice(); l.dispose(); h.dispose(); return c; },
    heap() { return rt.computeMemoryUsage ? null : null; },
    alive() { return !dead; },
    dispose() { try { for (const h of names.values()) h.dispose(); call.dispose(); vm.dispose(); rt.dispose(); } catch (e) { dead = true; } } };
}

module.exports = { makeIvm, makeVm, makeQjs, initQjs, newQjsModule };
