'use strict';
// Main-thread side of the worker candidate: one worker holds the runtime; a run is a message round trip;
// the deadline is a main-thread timer that terminates the worker (and a new one is started).
const { Worker } = require('worker_threads');
const path = require('path');
class WorkerRuntime {
  constructor({ kind = 'vm', model = 'slab', sab, timeoutMs = 0, deadlineMs = 10, memMB = 32 }) {
    Object.assign(this, { kind, model, sab, timeoutMs, deadlineMs, memMB, name: `worker+${kind}` });
    this.pending = new Map(); this.seq = 0; this.restarts = 0;
  }
  start() {
    const t0 = process.hrtime.bigint();
    this.w = new Worker(path.join(__dirname, 'worker-host.js'), {
      workerData: { kind: this.kind, model: this.model, sab: this.sab, timeoutMs: this.timeoutMs, memMB: this.memMB },
      resourceLimits: { maxOldGenerationSizeMb: this.memMB, maxYoungGenerationSizeMb: 4, stackSizeMb: 2 } });
    const w = this.w;
    return new Promise((res, rej) => {
      w.on('message', (m) => {
        if (m.ready) { this.startMs = Number(process.hrtime.bigint() - t0) / 1e6; return res(this.startMs); }
        const p = this.pending.get(m.id); if (!p) return; this.pending.delete(m.id); if (p.timer) clearTimeout(p.timer);
        m.err ? p.rej(new Error(m.err)) : p.res(m);
      });
      w.on('error', (e) => { this.lastError = e; for (const p of this.pending.values()) { if (p.timer) clearTimeout(p.timer); p.rej(e); } this.pending.clear(); rej(e); });
      w.on('exit', () => { for (const p of this.pending.values()) { if (p.timer) clearTimeout(p.timer); p.rej(new Error('worker exited')); } this.pending.clear(); });
    });
  }
  run(entry, cg, { deadline = true } = {}) {
    const id = ++this.seq; const w = this.w;
    return new Promise((res, rej) => {
      const p = { res, rej, timer: null };
      if (deadline && this.deadlineMs) p.timer = setTimeout(() => { this.pending.delete(id); w.terminate(); rej(new Error(`deadline ${this.deadlineMs} ms: worker terminated`)); }, this.deadlineMs);
      this.pending.set(id, p); w.postMessage({ id, entry, cg });
    });
  }
  batch(entry, cgs, deadlineMs) {
    const id = ++this.seq; const w = this.w;
    return new Promise((res, rej) => { const p = { res, rej, timer: deadlineMs ? setTimeout(() => { this.pending.delete(id); w.terminate(); rej(new Error('deadline')); }, deadlineMs) : null }; this.pending.set(id, p); w.postMessage({ id, entry, batch: cgs }); });
  }
  async restart() { try { await this.w.terminate(); } catch {} this.restarts++; return this.start(); }
  dispose() { return this.w.terminate(); }
}
module.exports = { WorkerRuntime };
