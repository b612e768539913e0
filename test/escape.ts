/**
 * The escape suite: hostile programs, loaded WITHOUT the verifier (it is a linter that gives early
 * errors; the isolate is the boundary), must neither reach the host nor stop the kernel from running
 * other programs. After each attempt a well-behaved program of another object still gives exactly
 * its output.
 */
import t, { type Test } from 'tap';
import { isBpfError } from '../uapi';
import type { ArrayMap, Collection } from '../progs';
import { iterCtx, load, loadUnverified, world, type World } from './harness/progs';
import { CONSTRUCTOR_CHAINS, ESCAPE_HEADER, HOST_GLOBALS, PROTOTYPE_POLLUTION, escapeObject } from './harness/escape-cases';

const HEADER = ESCAPE_HEADER;

/** A hostile program `body` (a cgroup_view function body), loaded unverified. */
const hostile = (w: World, body: string, limits = {}): Collection => loadUnverified(w.kernel, escapeObject(body), { limits });

/** Runs p; its output, or the error's errno name and message. */
function attempt(c: Collection, w: World): { out?: string; code?: string; message?: string } {
  const { ctx, sink } = iterCtx(w.root);
  try {
    c.program('p').run(ctx);
    return { out: sink.text() };
  } catch (e) {
    if (!isBpfError(e)) throw e;
    return { code: e.code, message: e.message };
  }
}

/** A good program, in its own object, still runs and prints what it should. */
function stillServing(t: Test, w: World): void {
  const c = load(w.kernel, HEADER + `export const p = SEC('cgroup_view', (ctx) => { bpf_seq_printf(ctx.meta.seq, 'ok %d\\n', 42); return 0; });`);
  const { ctx, sink } = iterCtx(w.root);
  t.equal(c.program('p').run(ctx), 0);
  t.equal(sink.text(), 'ok 42\n', 'another object\'s program still runs');
  c.close();
}

t.test('escape: constructor chains reach only constructors that refuse to make code', async (t) => {
  const w = world();
  const c = hostile(w, CONSTRUCTOR_CHAINS.body);
  const r = attempt(c, w);
  t.equal(r.out, CONSTRUCTOR_CHAINS.out,
    'every function constructor throws EvalError, and a handle\'s prototype leads to Object alone');
  c.close();
  stillServing(t, w);
});

t.test('escape: prototype pollution cannot change what helpers do (intrinsics and globals are frozen)', async (t) => {
  const w = world();
  const c = hostile(w, PROTOTYPE_POLLUTION.body);
  t.equal(attempt(c, w).out, PROTOTYPE_POLLUTION.out);
  c.close();
  stillServing(t, w);
});

t.test('escape: WebAssembly, Atomics, gc and eval are not there', async (t) => {
  const w = world();
  const c = hostile(w, HOST_GLOBALS.body);
  t.equal(attempt(c, w).out, HOST_GLOBALS.out, 'gc, which V8 gives isolates when the host runs --expose-gc as this test does, is shadowed');
  c.close();
  stillServing(t, w);
});

t.test('escape: an infinite loop fails its run with EIO at the deadline', async (t) => {
  const w = world();
  const c = hostile(w, `for (;;) {}`, { deadlineMs: 5 });
  t.match(attempt(c, w), { code: 'EIO', message: /deadline of 5 ms/ });
  t.match(attempt(c, w), { code: 'EIO', message: /deadline/ }, 'and every time');
  c.close();
  stillServing(t, w);
});

t.test('escape: a memory bomb (objects, or one huge buffer) fails its run with EIO, not the host', async (t) => {
  const w = world();
  const objects = hostile(w, `const a: unknown[] = []; for (;;) a.push({ a: [1, 2, 3], s: 'x'.repeat(100) });`, { memoryMiB: 16, deadlineMs: 5000 });
  t.match(attempt(objects, w), { code: 'EIO', message: /memory limit of 16 MiB/ });
  objects.close();
  const buffer = hostile(w, `const b = new Uint8Array(2 ** 30); b[b.length - 1] = 1; return 0;`, { memoryMiB: 16, deadlineMs: 5000 });
  t.match(attempt(buffer, w), { code: 'EIO' }, 'a 1 GiB buffer is refused inside the isolate');
  buffer.close();
  stillServing(t, w);
});

t.test('escape: 10 MB of output is cut at the seq buffer; the run ends by its deadline or returns', async (t) => {
  const w = world();
  const c = hostile(w, `let fails = 0; for (let i = 0; i < 100000; i++) if (bpf_seq_printf(ctx.meta.seq, '%0100d', i) !== 0) fails++; return fails > 0 ? 0 : 1;`, { deadlineMs: 2000 });
  const { ctx, sink } = iterCtx(w.root);
  try {
    t.equal(c.program('p').run(ctx), 0, 'every print past the buffer returned -EOVERFLOW');
  } catch (e) {
    t.match(e, { code: 'EIO', message: /deadline/ });
  }
  t.ok(sink.overflowed, 'the seq buffer overflowed');
  t.ok(sink.contents().length < 32768, 'it never holds more than its 32 KiB');
  c.close();
  stillServing(t, w);
});

t.test('escape: a view\'s .buffer exposes only its own map\'s slab, never another map\'s values', async (t) => {
  const w = world();
  const c = loadUnverified(w.kernel, HEADER + `export const mine = map({ type: BPF_MAP_TYPE_ARRAY, key: 'u32', value: ['u8', 8], maxEntries: 1 });
export const other = map({ type: BPF_MAP_TYPE_ARRAY, key: 'u32', value: ['u8', 8], maxEntries: 1 });
export const p = SEC('cgroup_view', (ctx: any): any => {
  const v: any = bpf_map_lookup_elem(mine, 0);
  const all = new Uint8Array(v.value ? v.value.buffer : v.buffer);
  let found = 0;
  for (let i = 0; i + 3 < all.length; i++) if (all[i] === 0xde && all[i + 1] === 0xad && all[i + 2] === 0xbe && all[i + 3] === 0xef) found++;
  bpf_seq_printf(ctx.meta.seq, '%d %d', all.length, found);
  return 0;
});`);
  c.map<ArrayMap>('other').updateElem(0, new Uint8Array([0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0]));
  t.equal(attempt(c, w).out, '8 0', 'the buffer is the map\'s own 8 bytes; the secret in the other map is not in it');
  c.close();
  stillServing(t, w);
});

t.test('escape: the isolate has no host timers or task queues to run code outside a run', async (t) => {
  const w = world();
  const c = hostile(w, `const out = [typeof (globalThis as any).setTimeout, typeof (globalThis as any).queueMicrotask];
  let later = 0;
  Promise.resolve().then(() => { later = 1; });
  bpf_seq_printf(ctx.meta.seq, '%s %s %d', out[0], out[1], later);
  return 0;`);
  t.equal(attempt(c, w).out, 'undefined undefined 0');
  c.close();
  stillServing(t, w);
});
