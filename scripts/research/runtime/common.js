'use strict';
// Shared pieces: the value schema, the host-side map storage, the seq sink and bpf_seq_printf formatter,
// the program source (what a transpiled vbpffs object file's program body looks like), and the
// program-side prelude that turns raw host hooks into kernel-named helpers for each value-access model.
const VALUE_SIZE = 32; // struct { u64 wait_ns; u64 run_ns; u64 reads; u64 last_ns; }
const NCG = 1000;      // cgroups with a storage value
const EOVERFLOW = -75, EINVAL = -22, ENOENT = -2;

// Host-side cgroup storage: a slab (SharedArrayBuffer where the model shares it) + cgroup id -> offset index.
function makeStorage(shared, existing) {
  const buf = existing || (shared ? new SharedArrayBuffer(VALUE_SIZE * (NCG + 16)) : new ArrayBuffer(VALUE_SIZE * (NCG + 16)));
  const dv = new DataView(buf); const u8 = new Uint8Array(buf);
  const index = new Map(); let next = 0;
  for (let i = 0; i < NCG; i++) {
    const cg = 1000 + i; const off = next; next += VALUE_SIZE; index.set(cg, off);
    if (!existing) { dv.setBigUint64(off, BigInt(1000 + i), true); dv.setBigUint64(off + 8, BigInt(5000 + i), true); }
  }
  return {
    buf, dv, u8, index,
    // bpf_cgrp_storage_get: offset or -1 (NULL); flag 1 = BPF_LOCAL_STORAGE_GET_F_CREATE
    getOff(cg, flags) {
      let off = index.get(cg);
      if (off === undefined) { if (!(flags & 1) || next + VALUE_SIZE > buf.byteLength) return -1; off = next; next += VALUE_SIZE; index.set(cg, off); u8.fill(0, off, off + VALUE_SIZE); }
      return off;
    },
    copyOut(off) { return buf.slice(off, off + VALUE_SIZE); },           // returns a fresh ArrayBuffer (copy in to the program)
    copyIn(off, ab) { u8.set(new Uint8Array(ab), off); },                 // copy the program's bytes back
    field(cg, i) { return dv.getBigUint64(index.get(cg) + 8 * i, true); },
  };
}

// seq sink: host-side buffer with a limit, -EOVERFLOW past it (what iter/'s seq_file will implement)
function makeSink(limit = 1 << 20) {
  return { parts: [], len: 0, limit, overflow: false,
    write(s) { if (this.len + s.length > this.limit) { this.overflow = true; return EOVERFLOW; } this.parts.push(s); this.len += s.length; return 0; },
    take() { const s = this.parts.join(''); this.parts = []; this.len = 0; this.overflow = false; return s; } };
}

// bpf_seq_printf formatter (subset of spec 5.5 enough for the workload: flags/width, l/ll, d i u x X c s p %%)
const FMT_RE = /%([-0 +#]*)(\d*)(ll|l|h|hh)?([diuxXcsp%])/g;
function seqFormat(fmt, args) {
  if (typeof fmt !== 'string' || args.length > 12) return null;
  let ai = 0, bad = false;
  const out = fmt.replace(FMT_RE, (m, flags, width, len, conv) => {
    if (conv === '%') return '%';
    if (ai >= args.length) { bad = true; return ''; }
    let a = args[ai++], s;
    switch (conv) {
      case 'd': case 'i': s = BigInt.asIntN(64, BigInt(a)).toString(); break;
      case 'u': s = BigInt.asUintN(64, BigInt(a)).toString(); break;
      case 'x': s = BigInt.asUintN(64, BigInt(a)).toString(16); break;
      case 'X': s = BigInt.asUintN(64, BigInt(a)).toString(16).toUpperCase(); break;
      case 'p': s = '0x' + BigInt.asUintN(64, BigInt(a)).toString(16); break;
      case 'c': s = String.fromCharCode(Number(a) & 255); break;
      case 's': s = String(a); break;
    }
    const w = width ? +width : 0;
    if (s.length < w) s = flags.includes('-') ? s.padEnd(w) : s.padStart(w, flags.includes('0') ? '0' : ' ');
    return s;
  });
  return bad ? null : out;
}
function seqPrintf(sink, fmt, args) { const s = seqFormat(fmt, args); if (s === null) return EINVAL; return sink.write(s); }

// ---- program-side prelude (trusted, runs inside the sandbox before the program) ----
// Raw hooks the host installs: __h_get(cg, flags) ; __h_printf(fmt, ...args) ; __h_put(cg, ab) (copy model)
// or __slab (a SharedArrayBuffer / ArrayBuffer) for the slab model.
const PRELUDE = (model) => `
const __model = ${JSON.stringify(model)};
const __dirty = [];
class cgstats_value {
  constructor(dv, off, cg) { this.__dv = dv; this.__off = off; this.__cg = cg; this.__d = false; }
  get wait_ns() { return this.__dv.getBigUint64(this.__off, true); }
  set wait_ns(v) { this.__dv.setBigUint64(this.__off, v, true); this.__mark(); }
  get run_ns() { return this.__dv.getBigUint64(this.__off + 8, true); }
  set run_ns(v) { this.__dv.setBigUint64(this.__off + 8, v, true); this.__mark(); }
  get reads() { return this.__dv.getBigUint64(this.__off + 16, true); }
  set reads(v) { this.__dv.setBigUint64(this.__off + 16, v, true); this.__mark(); }
  get last_ns() { return this.__dv.getBigUint64(this.__off + 24, true); }
  set last_ns(v) { this.__dv.setBigUint64(this.__off + 24, v, true); this.__mark(); }
  __mark() { if (__model === 'copy' && !this.__d) { this.__d = true; __dirty.push(this); } }
}
const __slabdv = (typeof __slab !== 'undefined') ? new DataView(__slab) : null;
const cgstats = { type: 'cgrp_storage', value: cgstats_value };
function bpf_cgrp_storage_get(map, cgroup, init, flags) {
  if (__model === 'copy') { const ab = __h_get(cgroup, flags | 0); return ab === null ? null : new cgstats_value(new DataView(ab), 0, cgroup); }
  const off = __h_get(cgroup, flags | 0); return off < 0 ? null : new cgstats_value(__slabdv, off, cgroup);
}
function bpf_seq_printf(seq, fmt, ...args) { return __h_printf(fmt, ...args); }
function bpf_ktime_get_ns() { return 123456789n; }
function __flush() { for (let i = 0; i < __dirty.length; i++) { const v = __dirty[i]; __h_put(v.__cg, v.__dv.buffer); } __dirty.length = 0; }
function __run(prog, cg) { const ctx = { cgroup_id: BigInt(cg), cgroup: cg, seq: 1 }; try { return prog(ctx); } finally { if (__model === 'copy') __flush(); } }
`;

// ---- the program object file's programs, as they come out of the transpiler ----
const PROGRAM = `
// SEC("cgroup_view") int view(ctx)
function view(ctx) {
  const v = bpf_cgrp_storage_get(cgstats, ctx.cgroup, null, 0);
  if (!v) return 0;
  const wait = v.wait_ns, run = v.run_ns;
  v.reads = v.reads + 1n;
  bpf_seq_printf(ctx.seq, "cgroup_id: %8lu\\n", ctx.cgroup_id);
  bpf_seq_printf(ctx.seq, "wait: %lu run: %lu\\n", wait, run);
  return 0;
}
// SEC("tp/timer/tick") int tick(ctx)
function tick(ctx) {
  const v = bpf_cgrp_storage_get(cgstats, ctx.cgroup, null, 1 /* BPF_LOCAL_STORAGE_GET_F_CREATE */);
  if (!v) return 0;
  const now = bpf_ktime_get_ns();
  v.run_ns = v.run_ns + 1000n;
  v.wait_ns = v.wait_ns + 10n;
  v.last_ns = now;
  return 0;
}
function nop(ctx) { return 0; }
// hostile programs for the safety checks
function spin(ctx) { for (;;) {} }
function bomb(ctx) { const a = []; for (;;) a.push(new Array(1 << 20).fill(1.5)); }
function bomb2(ctx) { const a = []; for (let i = 0; ; i++) a.push({ i, s: "x" + i }); }
function esc1(ctx) { return this.constructor.constructor('return process')().pid; }
function esc2(ctx) { return bpf_seq_printf.constructor('return process')().pid; }
function esc3(ctx) { return (function(){}).constructor('return process')().pid; }
function esc4(ctx) { return bpf_cgrp_storage_get.constructor.constructor('return typeof process === "undefined" ? "no process" : process.pid')(); }
function esc5(ctx) { return __h_printf.constructor('return process')().pid; }
function esc6(ctx) { const e = new Error(); Error.prepareStackTrace = (e, s) => s; const st = e.stack; Error.prepareStackTrace = undefined; return typeof st === 'object' && st[0] && st[0].getThis ? String(st.map(f => f.getFunction && f.getFunction()).find(f => f && f.constructor('return process')())) : 'no frames'; }
function esc7(ctx) { return typeof require + '/' + typeof process + '/' + typeof globalThis.process; }
function print10mb(ctx) { const s = 'x'.repeat(1 << 20); let rc = 0; for (let i = 0; i < 10; i++) rc = bpf_seq_printf(ctx.seq, "%s", s); return rc; }
function printloop(ctx) { let n = 0; for (;;) { bpf_seq_printf(ctx.seq, "%s", "0123456789012345678901234567890123456789"); n++; } }
`;
const EXPECT_VIEW = (cg) => `cgroup_id: ${String(cg).padStart(8)}\nwait: ${1000 + cg - 1000} run: ${5000 + cg - 1000}\n`;

function pct(arr, p) { const a = Float64Array.from(arr).sort(); return a[Math.min(a.length - 1, Math.floor(p * a.length))]; }
function summarize(us) { return { p50: +pct(us, 0.5).toFixed(2), p99: +pct(us, 0.99).toFixed(2), mean: +(us.reduce((a, b) => a + b, 0) / us.length).toFixed(2) }; }
function now() { return Number(process.hrtime.bigint()) / 1e3; } // µs

// Largest gap seen by a 1 ms interval timer, plus monitorEventLoopDelay max, while `fn` runs.
async function stallDuring(fn) {
  const { monitorEventLoopDelay } = require('perf_hooks');
  const h = monitorEventLoopDelay({ resolution: 1 }); h.enable();
  let last = now(), maxGap = 0; const iv = setInterval(() => { const t = now(); maxGap = Math.max(maxGap, t - last); last = t; }, 1);
  await new Promise(r => setTimeout(r, 20)); last = now(); maxGap = 0; h.reset();
  const t0 = now(); let result; try { result = await fn(); } catch (e) { result = 'threw: ' + (e && e.message || e); }
  const dur = (now() - t0) / 1e3;
  await new Promise(r => setTimeout(r, 20));
  clearInterval(iv); h.disable();
  return { result, ms: +dur.toFixed(2), maxTimerGapMs: +(maxGap / 1e3).toFixed(2), eldMaxMs: +(h.max / 1e6).toFixed(2) };
}
function rssMB() { return +(process.memoryUsage().rss / 1048576).toFixed(1); }

module.exports = { VALUE_SIZE, NCG, EOVERFLOW, makeStorage, makeSink, seqFormat, seqPrintf, PRELUDE, PROGRAM, EXPECT_VIEW, summarize, now, stallDuring, rssMB };
