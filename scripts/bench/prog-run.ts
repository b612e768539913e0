/**
 * Bench of a program run, in-process, for the runtime vbpffs uses (isolated-vm, through the real
 * BpfProg.run) and the ones it rejected (docs/DECISIONS.md), side by side in one run:
 *   - trivial: a cgroup_view program that returns 0;
 *   - view: a cgroup_view that gets a cgroup storage value, updates it and prints two lines;
 *   - sample: a tp/sched/sample program adding a sample's wait to task storage, and what running it
 *     for 1,000 tasks a second costs, as a share of one core (runs only; the sample source's own
 *     cost is the sched-sample bench's).
 * The rejected runtimes run the same JavaScript with host functions standing in for the helpers
 * (below): they show each boundary's cost, not a second implementation of vbpffs. Every runtime has
 * the same 50 ms deadline. quickjs-emscripten is a devDependency; when
 * it is missing its rows say so.
 */
import { Worker } from 'node:worker_threads';
import vm from 'node:vm';
import { BufferSeqSink, Kernel, bpf_seq_printf, loadCollection } from '../../progs';
import { CgroupHierarchy, Task } from '../../tags';

const RUNS = 20_000;
const WARMUP = 2_000;

interface Row {
  runtime: string;
  trivial: number[];
  view: number[];
  sample: number[];
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!;
}

/** Per-run times in µs, sorted. */
function time(run: () => void, runs = RUNS): number[] {
  for (let i = 0; i < WARMUP; i++) run();
  const out = new Array<number>(runs);
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    run();
    out[i] = Number(process.hrtime.bigint() - t0) / 1000;
  }
  return out.sort((a, b) => a - b);
}

async function timeAsync(run: () => Promise<void>, runs = RUNS / 4): Promise<number[]> {
  for (let i = 0; i < WARMUP / 4; i++) await run();
  const out: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    await run();
    out.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  return out.sort((a, b) => a - b);
}

const OBJECT = `import { SEC, map, bpf_cgrp_storage_get, bpf_task_storage_get, bpf_seq_printf, BPF_MAP_TYPE_CGRP_STORAGE,
  BPF_MAP_TYPE_TASK_STORAGE, BPF_F_NO_PREALLOC, BPF_LOCAL_STORAGE_GET_F_CREATE } from 'vbpffs/bpf';
export const cg = map({ type: BPF_MAP_TYPE_CGRP_STORAGE, flags: BPF_F_NO_PREALLOC, key: 'u32', value: { reads: 'u64', wait: 'u64', last: 'u64', n: 'u32' } });
export const ts = map({ type: BPF_MAP_TYPE_TASK_STORAGE, flags: BPF_F_NO_PREALLOC, key: 'u32', value: { wait: 'u64' } });
export const trivial = SEC('cgroup_view', (ctx) => 0);
export const view = SEC('cgroup_view', (ctx) => {
  const v = bpf_cgrp_storage_get(cg, ctx.cgroup, null, BPF_LOCAL_STORAGE_GET_F_CREATE);
  if (v === null) return 0;
  v.reads += 1n;
  bpf_seq_printf(ctx.meta.seq, 'reads %llu wait %llu\\n', v.reads, v.wait);
  bpf_seq_printf(ctx.meta.seq, 'last %llu\\n', v.last);
  return 0;
});
export const sample = SEC('tp/sched/sample', (ctx) => {
  const v = bpf_task_storage_get(ts, ctx.task, null, BPF_LOCAL_STORAGE_GET_F_CREATE);
  if (v !== null) v.wait += ctx.wait_ns;
  return 0;
});`;

async function isolatedVm(): Promise<Row> {
  const h = new CgroupHierarchy(1);
  const k = new Kernel({ cgroups: h });
  const c = await loadCollection(k, { source: OBJECT, filename: 'bench.ts' });
  const sink = new BufferSeqSink();
  const viewCtx = { meta: { seq: sink, sessionId: 1n, seqNum: 0n }, cgroup: h.root };
  const task = new Task(1234, 'bench', h.root);
  const sampleCtx = { task, cgroup: h.root, run_ns: 10n, wait_ns: 5n, slices: 1n };
  const [trivial, view, sample] = [c.program('trivial'), c.program('view'), c.program('sample')];
  // A run past its 50 ms wall-clock deadline (a machine busy enough to deschedule us that long)
  // faults: count it rather than stop the bench, and say so below.
  const faults: string[] = [];
  const guarded = (f: () => void) => (): void => {
    try {
      f();
    } catch (e) {
      faults.push((e as Error).message);
    }
  };
  const row = {
    runtime: 'isolated-vm 5.0.4 (vbpffs)',
    trivial: time(guarded(() => void trivial.run(viewCtx))),
    view: time(
      guarded(() => {
        sink.clear();
        view.run(viewCtx);
      }),
    ),
    sample: time(guarded(() => void sample.run(sampleCtx))),
  };
  if (faults.length > 0) console.log(`isolated-vm: ${faults.length} runs faulted, e.g. ${faults[0]}`);
  c.close();
  task.exit();
  return row;
}

/**
 * The same programs for the rejected runtimes, calling host functions for their helpers as vbpffs's
 * programs do (h_get: a value's index in a shared BigUint64Array slab, or for QuickJS, which cannot
 * share memory, h_add: the host adds and returns; h_printf: bpf_seq_printf into a seq buffer), so
 * each crosses its boundary as often as the isolated-vm program does: once per run and once per
 * helper call. In the worker the helpers are local: the round trip is its boundary.
 */
const PLAIN = `
function trivial(ctx) { return 0; }
function view(ctx) {
  const i = h_get(ctx.cgroup);
  slab[i] += 1n;
  h_printf('reads %llu wait %llu\\n', slab[i], slab[i + 1]);
  h_printf('last %llu\\n', slab[i + 2]);
  return 0;
}
function sample(ctx) {
  const i = h_get(ctx.pid);
  slab[i] += ctx.wait_ns;
  return 0;
}`;

const QJS_PLAIN = `
function trivial(id) { return 0; }
function view(id) {
  const reads = h_add(id, 0, 1n);
  h_printf('reads %llu wait %llu\\n', reads, h_add(id, 1, 0n));
  h_printf('last %llu\\n', h_add(id, 2, 0n));
  return 0;
}
function sample(id) {
  h_add(id, 0, 5n);
  return 0;
}`;

/** The host side of the stand-ins: a slab of u64 fields, four per owner, and a seq buffer. */
function hostHelpers(): { slab: BigUint64Array; get: (id: number) => number; printf: (fmt: string, ...a: (number | bigint | string)[]) => number } {
  const slab = new BigUint64Array(new SharedArrayBuffer(8 * 4 * 4096));
  const index = new Map<number, number>();
  const sink = new BufferSeqSink();
  return {
    slab,
    get: (id) => {
      let i = index.get(id);
      if (i === undefined) index.set(id, (i = index.size * 4));
      return i;
    },
    printf: (fmt, ...a) => {
      if (sink.count > 16384) sink.clear();
      return bpf_seq_printf(sink, fmt, ...a);
    },
  };
}

function nodeVm(): Row {
  const h = hostHelpers();
  const context = vm.createContext({ slab: h.slab, h_get: h.get, h_printf: h.printf });
  new vm.Script(PLAIN).runInContext(context);
  const call = new vm.Script('globalThis[__name](__ctx)');
  const run = (name: string, ctx: object) => (): void => {
    context.__name = name;
    context.__ctx = ctx;
    call.runInContext(context, { timeout: 50 });
  };
  return {
    runtime: 'node:vm, in process, timeout 50 ms',
    trivial: time(run('trivial', { cgroup: 1 })),
    view: time(run('view', { cgroup: 1 })),
    sample: time(run('sample', { pid: 1234, wait_ns: 5n })),
  };
}

async function workerVm(): Promise<Row> {
  const worker = new Worker(
    `const { parentPort } = require('node:worker_threads'); const vm = require('node:vm');
     const slab = new BigUint64Array(4096); const index = new Map(); let out = '';
     const h_get = (id) => { let i = index.get(id); if (i === undefined) index.set(id, (i = index.size * 4)); return i; };
     const h_printf = (fmt, ...a) => { out += fmt + a.join(' '); if (out.length > 16384) out = ''; return 0; };
     const context = vm.createContext({ slab, h_get, h_printf }); new vm.Script(${JSON.stringify(PLAIN)}).runInContext(context);
     parentPort.on('message', ([name, ctx]) => parentPort.postMessage(context[name](ctx)));`,
    { eval: true },
  );
  const run = (name: string, ctx: object) => (): Promise<void> =>
    new Promise((resolve) => {
      worker.once('message', () => resolve());
      worker.postMessage([name, ctx]);
    });
  const row = {
    runtime: 'worker_threads + node:vm (round trip)',
    trivial: await timeAsync(run('trivial', { cgroup: 1 })),
    view: await timeAsync(run('view', { cgroup: 1 })),
    sample: await timeAsync(run('sample', { pid: 1234, wait_ns: 5n })),
  };
  await worker.terminate();
  return row;
}

async function quickjs(): Promise<Row | string> {
  let q: typeof import('quickjs-emscripten');
  try {
    q = await import('quickjs-emscripten');
  } catch {
    return 'quickjs-emscripten is not installed (a devDependency: npm ci installs it)';
  }
  const h = hostHelpers();
  const module = await q.getQuickJS();
  const rt = module.newRuntime();
  rt.setMemoryLimit(64 << 20);
  const ctx = rt.newContext();
  const def = (name: string, fn: (...a: import('quickjs-emscripten').QuickJSHandle[]) => import('quickjs-emscripten').QuickJSHandle): void => {
    const f = ctx.newFunction(name, fn);
    ctx.setProp(ctx.global, name, f);
    f.dispose();
  };
  def('h_add', (id, field, delta) => {
    const i = h.get(ctx.getNumber(id)) + ctx.getNumber(field);
    h.slab[i] = h.slab[i]! + ctx.getBigInt(delta);
    return ctx.newBigInt(h.slab[i]!);
  });
  def('h_printf', (fmt, ...a) => ctx.newNumber(h.printf(ctx.getString(fmt), ...a.map((x) => (ctx.typeof(x) === 'bigint' ? ctx.getBigInt(x) : ctx.getNumber(x))))));
  ctx.unwrapResult(ctx.evalCode(QJS_PLAIN)).dispose();
  const fns = Object.fromEntries(['trivial', 'view', 'sample'].map((n) => [n, ctx.getProp(ctx.global, n)]));
  const arg = ctx.newNumber(1);
  const run = (name: string) => (): void => {
    rt.setInterruptHandler(q.shouldInterruptAfterDeadline(Date.now() + 50));
    ctx.unwrapResult(ctx.callFunction(fns[name]!, ctx.undefined, arg)).dispose();
  };
  const row = { runtime: 'quickjs-emscripten 0.32 (wasm)', trivial: time(run('trivial')), view: time(run('view')), sample: time(run('sample')) };
  arg.dispose();
  for (const f of Object.values(fns)) f.dispose();
  ctx.dispose();
  rt.dispose();
  return row;
}

export async function run(): Promise<void> {
  const rows: (Row | string)[] = [await isolatedVm(), nodeVm(), await workerVm(), await quickjs()];
  const base = rows[0] as Row;
  const f = (n: number): string => n.toFixed(1).padStart(7);
  console.log(`µs per run, ${RUNS} runs each (worker: ${RUNS / 4}); ratio = p50 / isolated-vm's p50; sample at 1k/s = share of one core`);
  console.log(`${'runtime'.padEnd(40)} ${'trivial p50'.padStart(11)} ${'p99'.padStart(7)} ${'view p50'.padStart(9)} ${'p99'.padStart(7)} ${'ratio'.padStart(6)} ${'sample p50'.padStart(10)} ${'1k/s'.padStart(6)}`);
  for (const r of rows) {
    if (typeof r === 'string') {
      console.log(`${'quickjs-emscripten'.padEnd(40)} skipped: ${r}`);
      continue;
    }
    const ratio = pct(r.view, 50) / pct(base.view, 50);
    const core = (pct(r.sample, 50) * 1000) / 1e6 * 100;
    console.log(
      `${r.runtime.padEnd(40)} ${f(pct(r.trivial, 50)).padStart(11)} ${f(pct(r.trivial, 99))} ${f(pct(r.view, 50)).padStart(9)} ${f(pct(r.view, 99))} ${ratio.toFixed(2).padStart(6)} ${f(pct(r.sample, 50)).padStart(10)} ${(core.toFixed(2) + '%').padStart(6)}`,
    );
  }
  console.log('isolation: only isolated-vm is a security boundary with a working memory limit (docs/DECISIONS.md, test/escape.ts)');
}
