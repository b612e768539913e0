'use strict';
// Why does ivm's 10 ms timeout overshoot when the program loops over host helper calls? And does a
// deadline check inside the host helpers bound it? node ivm-overshoot.js
const ivm = require('isolated-vm'); const c = require('./common');
function trial(label, { helperDeadline, prog }) {
  const iso = new ivm.Isolate({ memoryLimit: 32 }); const ctx = iso.createContextSync(); let deadline = 0, calls = 0;
  ctx.global.setSync('h', new ivm.Callback((s) => { calls++; if (helperDeadline && c.now() > deadline) throw new Error('deadline (helper)'); return 0; }));
  iso.compileScriptSync(`function loopH() { for (;;) h("0123456789012345678901234567890123456789"); }
    function loopHcatch() { for (;;) { try { h("x"); } catch (e) {} } }
    function spin() { for (;;) {} }`).runSync(ctx);
  const f = ctx.global.getSync(prog, { reference: true });
  const out = [];
  for (let i = 0; i < 5; i++) { calls = 0; const t = c.now(); deadline = t + 10000; let r; try { f.applySync(undefined, [], { timeout: 10 }); } catch (e) { r = e.message; } out.push(`${((c.now() - t) / 1e3).toFixed(1)}ms/${calls} calls (${r})`); }
  console.log(JSON.stringify({ label, runs: out })); iso.dispose();
}
trial('spin, ivm timeout 10', { prog: 'spin' });
trial('loop over host helper, ivm timeout 10', { prog: 'loopH' });
trial('loop over host helper, ivm timeout 10 + helper checks deadline', { prog: 'loopH', helperDeadline: true });
trial('loop over host helper catching errors, ivm timeout 10 + helper checks deadline', { prog: 'loopHcatch', helperDeadline: true });
