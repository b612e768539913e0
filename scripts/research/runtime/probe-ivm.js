const ivm = require('isolated-vm');
const iso = new ivm.Isolate({ memoryLimit: 32 });
const ctx = iso.createContextSync();
const g = ctx.global;
const t = (name, f) => { try { console.log(name, f()); } catch (e) { console.log(name, 'ERR', e.message); } };
t('cb returns ArrayBuffer', () => { g.setSync('f', new ivm.Callback(() => new Uint8Array([1,2,3]).buffer)); return iso.compileScriptSync('String(f() instanceof ArrayBuffer)+" "+f().byteLength').runSync(ctx); });
t('cb returns Uint8Array', () => { g.setSync('f', new ivm.Callback(() => new Uint8Array([1,2,3]))); return iso.compileScriptSync('Object.prototype.toString.call(f())').runSync(ctx); });
t('cb returns object', () => { g.setSync('f', new ivm.Callback(() => ({h:1, b: new Uint8Array(4)}))); return iso.compileScriptSync('JSON.stringify(f())').runSync(ctx); });
t('cb bigint arg', () => { g.setSync('f', new ivm.Callback((x) => typeof x + ':' + x)); return iso.compileScriptSync('f(5n)').runSync(ctx); });
t('cb rest args', () => { g.setSync('f', new ivm.Callback((...a) => a.length)); return iso.compileScriptSync('f(1,"a",3n,4)').runSync(ctx); });
// SAB sharing
const sab = new SharedArrayBuffer(64); const hv = new Uint8Array(sab);
t('ExternalCopy(SAB) into isolate', () => { g.setSync('sab', new ivm.ExternalCopy(sab).copyInto({ release: true })); hv[0] = 7; return iso.compileScriptSync('const u=new Uint8Array(sab); globalThis.u=u; (sab instanceof SharedArrayBuffer)+" host-write-seen="+u[0]').runSync(ctx); });
t('isolate write seen by host', () => { iso.compileScriptSync('u[1]=42').runSync(ctx); return hv[1]; });
t('setSync SAB directly', () => { const s2 = new SharedArrayBuffer(8); g.setSync('s2', s2, {copy:true}); new Uint8Array(s2)[0]=9; return iso.compileScriptSync('Object.prototype.toString.call(s2)+" "+new Uint8Array(s2)[0]').runSync(ctx); });
t('transferIn SAB', () => { const s3 = new SharedArrayBuffer(8); g.setSync('s3', new ivm.ExternalCopy(s3, {transferOut:false})).copyInto?.(); return 'n/a'; });
console.log('ivm keys', Object.keys(ivm));
