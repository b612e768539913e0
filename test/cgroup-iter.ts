/**
 * The cgroup iterator (iter/targets/cgroup.ts). First a port of the kernel selftest
 * prog_tests/cgroup_iter.c with its program progs/cgroup_iter.c, byte for byte, on the simulated
 * source and on real cgroups (skipped with the reason where cgroup2 or root is missing); then the
 * target's own rules: the CHILDREN order, dead cgroups, references, walks that continue across reads
 * (where the kernel fails with EOPNOTSUPP), interface files, overflow and faults.
 */
import t, { type Test } from 'tap';
import { BpfCgroupIterOrder } from '../uapi';
import { type BpfProg, type Collection } from '../progs';
import type { KernfsNode, SimCgroupSource } from '../tags';
import { bpfIterLinkCreate, type IterSession } from '../iter';
import { load } from './harness/progs';
import { cgroupSkipReason } from './harness/cgroup-tree';
import { hostEnv, simEnv, type IterEnv } from './harness/iter-env';

const { SELF_ONLY, DESCENDANTS_PRE, DESCENDANTS_POST, ANCESTORS_UP, CHILDREN } = BpfCgroupIterOrder;

/**
 * progs/cgroup_iter.c. Its globals terminate_early and terminal_cgroup live in the object's .bss,
 * which is an array map the skeleton writes; here that map is `bss`.
 */
const CGROUP_ITER = `import { SEC, map, BPF_MAP_TYPE_ARRAY, bpf_map_lookup_elem, bpf_seq_printf, vbpffs_cgroup_id } from 'vbpffs/bpf';
export const bss = map({ type: BPF_MAP_TYPE_ARRAY, key: 'u32', value: { terminate_early: 'u32', terminal_cgroup: 'u64' }, maxEntries: 1 });

export const cgroup_id_printer = SEC('iter/cgroup', (ctx) => {
  const seq = ctx.meta.seq;
  const cgrp = ctx.cgroup;

  /* epilogue */
  if (cgrp === null) {
    bpf_seq_printf(seq, "epilogue\\n");
    return 0;
  }

  /* prologue */
  if (ctx.meta.seq_num === 0n) bpf_seq_printf(seq, "prologue\\n");

  bpf_seq_printf(seq, "%8llu\\n", vbpffs_cgroup_id(cgrp));

  const g = bpf_map_lookup_elem(bss, 0);
  if (g !== null && g.terminal_cgroup === vbpffs_cgroup_id(cgrp)) return 1;
  return g !== null && g.terminate_early !== 0 ? 1 : 0;
});`;

const PROLOGUE = 'prologue\n';
const EPILOGUE = 'epilogue\n';
const id8 = (cg: KernfsNode): string => `${String(cg.id).padStart(8)}\n`;
const text = (b: Uint8Array): string => Buffer.from(b).toString('utf8');

/** read_from_cgroup_iter's loop: reads into what is left of a 128-byte buffer until 0. */
async function read128(s: IterSession): Promise<{ out: string; lastLen: number }> {
  let left = 128;
  let out = '';
  for (;;) {
    const b = await s.read(left);
    if (b.length === 0) return { out, lastLen: 0 };
    out += text(b);
    left -= b.length;
  }
}

/** Reads a session to EOF with reads of `size` bytes and closes it. */
async function readAll(s: IterSession, size: number): Promise<string> {
  let out = '';
  try {
    for (let b = await s.read(size); b.length > 0; b = await s.read(size)) out += text(b);
  } finally {
    s.close();
  }
  return out;
}

interface Selftest {
  env: IterEnv;
  coll: Collection;
  prog: BpfProg;
  /** cg_id[]: ROOT (the work dir, the selftest's "/"), PARENT, CHILD1, CHILD2 */
  root: KernfsNode;
  parent: KernfsNode;
  child1: KernfsNode;
  child2: KernfsNode;
  setBss(v: { terminate_early?: number; terminal_cgroup?: number }): void;
}

async function setup(t: Test, env: IterEnv): Promise<Selftest> {
  const coll = load(env.kernel, CGROUP_ITER);
  t.teardown(() => coll.close());
  const parent = await env.mkdir('parent');
  const child1 = await env.mkdir('parent/child1');
  const child2 = await env.mkdir('parent/child2');
  const bss = coll.map('bss');
  return {
    env,
    coll,
    prog: coll.program('cgroup_id_printer'),
    root: env.base,
    parent,
    child1,
    child2,
    setBss: (v) => bss.updateElem(0, bss.valueSchema!.fromJson({ terminate_early: 0, terminal_cgroup: 0, ...v })),
  };
}

/** read_from_cgroup_iter: attach with (cgroup, order), create the iterator, read it in one 128-byte buffer. */
async function readFromCgroupIter(t: Test, s: Selftest, cgroup: KernfsNode, order: BpfCgroupIterOrder, expected: string, testname: string): Promise<void> {
  const link = bpfIterLinkCreate(s.env.kernel, s.prog, { cgroup: { cgroup, order } });
  const it = link.object.open({ source: s.env.source });
  const { out, lastLen } = await read128(it);
  t.equal(out, expected, testname);
  // "read() after iter finishes should be ok."
  if (lastLen === 0) t.equal((await it.read(128)).length, 0, `${testname}: second_read`);
  it.close();
  link.close();
}

/** test_cgroup_iter's subtests, in its order, on one environment. */
async function selftest(t: Test, env: IterEnv): Promise<void> {
  const s = await setup(t, env);
  const { root, parent, child1, child2 } = s;

  t.test('cgroup_iter__invalid_cgroup: a start cgroup that is no cgroup (cgroup_fd (__u32)-1) fails the attach with EBADF', async (t) => {
    t.throws(() => bpfIterLinkCreate(env.kernel, s.prog, { cgroup: { order: DESCENDANTS_PRE, cgroup: -1 as unknown as KernfsNode } }), { code: 'EBADF' });
  });

  t.test('cgroup_iter__invalid_cgroup_spec: both cgroup_fd and cgroup_id fail the attach with EINVAL', async (t) => {
    t.throws(() => bpfIterLinkCreate(env.kernel, s.prog, { cgroup: { order: DESCENDANTS_PRE, cgroup: parent, id: parent.id } }), { code: 'EINVAL' });
  });

  t.test('cgroup_iter__preorder: parent, child1, child2 between the prologue and the epilogue', async (t) => {
    await readFromCgroupIter(t, s, parent, DESCENDANTS_PRE, PROLOGUE + id8(parent) + id8(child1) + id8(child2) + EPILOGUE, 'preorder');
  });

  t.test('cgroup_iter__postorder: child1, child2, then parent', async (t) => {
    await readFromCgroupIter(t, s, parent, DESCENDANTS_POST, PROLOGUE + id8(child1) + id8(child2) + id8(parent) + EPILOGUE, 'postorder');
  });

  t.test('cgroup_iter__ancestors_up_walk: parent then the root, where the program ends the walk', async (t) => {
    // terminate the walk when ROOT is met.
    s.setBss({ terminal_cgroup: root.id });
    await readFromCgroupIter(t, s, parent, ANCESTORS_UP, PROLOGUE + id8(parent) + id8(root) + EPILOGUE, 'ancestors_up');
    s.setBss({});
  });

  t.test('cgroup_iter__early_termination: a non-zero return after the first cgroup ends the walk, the epilogue still runs', async (t) => {
    // terminate the walk after the first element is processed.
    s.setBss({ terminate_early: 1 });
    await readFromCgroupIter(t, s, parent, DESCENDANTS_PRE, PROLOGUE + id8(parent) + EPILOGUE, 'early_termination');
    s.setBss({});
  });

  t.test('cgroup_iter__self_only: the start cgroup only', async (t) => {
    await readFromCgroupIter(t, s, parent, SELF_ONLY, PROLOGUE + id8(parent) + EPILOGUE, 'self_only');
  });

  t.test('cgroup_iter__dead_self_only: a start cgroup removed after the link was made reads as the epilogue only', async (t) => {
    const dead = await env.mkdir('dead');
    const link = bpfIterLinkCreate(env.kernel, s.prog, { cgroup: { cgroup: dead, order: SELF_ONLY } });
    const it = link.object.open({ source: env.source });
    // Close link fd and cgroup fd; remove cgroup to mark it as dead
    link.close();
    await env.rmdir('dead');
    t.ok(dead.dying, 'the session still holds the cgroup: dead, not released');
    const { out, lastLen } = await read128(it);
    t.equal(out, EPILOGUE, 'dead cgroup output');
    if (lastLen === 0) t.equal((await it.read(128)).length, 0, 'second_read');
    it.close();
    t.ok(dead.released, 'the last reference went with the session');
  });

  t.test('children (vbpffs has BPF_CGROUP_ITER_CHILDREN): the start cgroup\'s children only', async (t) => {
    await readFromCgroupIter(t, s, parent, CHILDREN, PROLOGUE + id8(child1) + id8(child2) + EPILOGUE, 'children');
    await readFromCgroupIter(t, s, child1, CHILDREN, EPILOGUE, 'children of a leaf: the epilogue only');
  });
}

t.test('the kernel selftest cgroup_iter on the simulated source', async (t) => {
  await selftest(t, await simEnv());
});

void (async () => {
  const skip = await cgroupSkipReason();
  t.test('the kernel selftest cgroup_iter on real cgroups', skip === false ? {} : { skip }, async (t) => {
    await selftest(t, await hostEnv(t));
  });
})();

// ---------------------------------------------------------------------------------------------------
// The target's own rules, on the simulated source.

/** Prints "<seq_num> <id>\n" per cgroup and "end <seq_num>\n" on the NULL call. */
const SEQ_PRINTER = `import { SEC, bpf_seq_printf, vbpffs_cgroup_id } from 'vbpffs/bpf';
export const seq_printer = SEC('iter/cgroup', (ctx) => {
  if (ctx.cgroup === null) {
    bpf_seq_printf(ctx.meta.seq, "end %llu\\n", ctx.meta.seq_num);
    return 0;
  }
  bpf_seq_printf(ctx.meta.seq, "%llu %llu\\n", ctx.meta.seq_num, vbpffs_cgroup_id(ctx.cgroup));
  return 0;
});
/** The same with 48-byte lines. */
export const wide_printer = SEC('iter/cgroup', (ctx) => {
  if (ctx.cgroup === null) return 0;
  bpf_seq_printf(ctx.meta.seq, "%6llu %40llu\\n", ctx.meta.seq_num, vbpffs_cgroup_id(ctx.cgroup));
  return 0;
});`;

async function seqPrinter(t: Test, name = 'seq_printer'): Promise<{ env: IterEnv; prog: BpfProg }> {
  const env = await simEnv();
  const coll = load(env.kernel, SEQ_PRINTER);
  t.teardown(() => coll.close());
  return { env, prog: coll.program(name) };
}

async function walk(env: IterEnv, prog: BpfProg, order: BpfCgroupIterOrder, cgroup: KernfsNode, size = 4096): Promise<string> {
  const link = bpfIterLinkCreate(env.kernel, prog, { cgroup: { order, cgroup } });
  try {
    return await readAll(link.object.open({ source: env.source }), size);
  } finally {
    link.close();
  }
}

t.test('children come in creation order, and the walks go below the start cgroup only', async (t) => {
  const { env, prog } = await seqPrinter(t);
  const a = await env.mkdir('a');
  const z = await env.mkdir('z');
  const b = await env.mkdir('b');
  const a1 = await env.mkdir('a/1');
  const a1x = await env.mkdir('a/1/x');
  const a2 = await env.mkdir('a/2');
  const lines = (...cgs: KernfsNode[]): string => cgs.map((c, i) => `${i} ${c.id}\n`).join('') + `end ${Math.max(cgs.length - 1, 0)}\n`;
  t.equal(await walk(env, prog, DESCENDANTS_PRE, env.base), lines(env.base, a, a1, a1x, a2, z, b), 'pre-order; the end call sees the last seq_num');
  t.equal(await walk(env, prog, DESCENDANTS_POST, env.base), lines(a1x, a1, a2, a, z, b, env.base), 'post-order');
  t.equal(await walk(env, prog, DESCENDANTS_PRE, a), lines(a, a1, a1x, a2), 'pre-order from a: not its siblings');
  t.equal(await walk(env, prog, DESCENDANTS_POST, a1x), lines(a1x), 'post-order from a leaf');
  t.equal(await walk(env, prog, CHILDREN, env.base), lines(a, z, b), 'children of the work dir');
  t.equal(await walk(env, prog, ANCESTORS_UP, a1x), lines(a1x, a1, a, env.base, env.source.hierarchy.root), 'ancestors up to the hierarchy root');
});

t.test('a dead cgroup is skipped but takes its seq_num; its live ancestors and their other children are still walked', async (t) => {
  const { env, prog } = await seqPrinter(t);
  const a = await env.mkdir('a');
  const gone = await env.mkdir('a/gone');
  const b = await env.mkdir('b');
  t.ok(gone.tryGet(), 'something still holds the removed cgroup');
  t.teardown(() => gone.put());
  await env.rmdir('a/gone');
  t.equal(await walk(env, prog, DESCENDANTS_PRE, env.base), `0 ${env.base.id}\n1 ${a.id}\n3 ${b.id}\nend 3\n`, 'seq_num 2 went to the dead cgroup');
  t.equal(await walk(env, prog, CHILDREN, a), 'end 0\n', 'a dead only child: the end call only');
});

t.test('the link and each session hold the start cgroup; the walk holds the cgroup it stands on only while it stands there', async (t) => {
  const { env, prog } = await seqPrinter(t);
  const a = await env.mkdir('a');
  const b = await env.mkdir('a/b');
  const refs = [a.refs, b.refs];
  const link = bpfIterLinkCreate(env.kernel, prog, { cgroup: { order: DESCENDANTS_PRE, cgroup: a } });
  t.equal(a.refs, refs[0]! + 1, 'the link holds the start cgroup');
  const s = link.object.open({ source: env.source });
  t.equal(a.refs, refs[0]! + 2, 'and so does the session');
  // A read of 1 byte stops after the first cgroup, standing on the next one (b).
  t.equal((await s.read(1)).length, 1);
  t.equal(b.refs, refs[1]! + 1, 'the walk holds the cgroup it stopped at');
  await readAll(s, 4096);
  t.same([a.refs, b.refs], [refs[0]! + 1, refs[1]], 'after close only the link holds the start cgroup');
  link.close();
  t.equal(a.refs, refs[0], 'the link\'s release drops it');
});

t.test('a walk continues across reads (the kernel fails with EOPNOTSUPP): any read size gives the same output', async (t) => {
  const { env, prog } = await seqPrinter(t, 'wide_printer');
  for (let i = 0; i < 40; i++) {
    const g = await env.mkdir(`g${i}`);
    for (let j = 0; j < 30; j++) await env.mkdir(`${g.name}/c${j}`);
  }
  const whole = await walk(env, prog, DESCENDANTS_PRE, env.base, 1 << 20);
  t.ok(whole.length > 32768, `the output (${whole.length} bytes) is more than one 32 KiB buffer`);
  t.equal(whole.split('\n').length - 1, 1241, 'a line for every cgroup');
  for (const size of [4096, 100, 7]) t.equal(await walk(env, prog, DESCENDANTS_PRE, env.base, size), whole, `reads of ${size} bytes`);
  for (const order of [DESCENDANTS_POST, CHILDREN]) {
    t.equal(await walk(env, prog, order, env.base, 13), await walk(env, prog, order, env.base, 1 << 20), `${order}: reads of 13 bytes`);
  }
});

t.test('one byte at a time reproduces the whole output of every order', async (t) => {
  const { env, prog } = await seqPrinter(t);
  const a = await env.mkdir('a');
  await env.mkdir('a/b');
  await env.mkdir('c');
  for (const order of [SELF_ONLY, DESCENDANTS_PRE, DESCENDANTS_POST, ANCESTORS_UP, CHILDREN]) {
    const start = order === ANCESTORS_UP ? a : env.base;
    t.equal(await walk(env, prog, order, start, 1), await walk(env, prog, order, start, 4096), `order ${order}`);
  }
});

t.test('a walk resumed after the tree changed: new cgroups after the position are visited, removed ones are skipped', async (t) => {
  const { env, prog } = await seqPrinter(t);
  const a = await env.mkdir('a');
  const a1 = await env.mkdir('a/1');
  const b = await env.mkdir('b');
  const link = bpfIterLinkCreate(env.kernel, prog, { cgroup: { order: DESCENDANTS_PRE, cgroup: env.base } });
  t.teardown(() => link.close());
  const s = link.object.open({ source: env.source });
  // The first line is the work dir's; the read then stands on a.
  t.equal(text(await s.read(1)), '0');
  t.equal(text(await s.read(100)), ` ${env.base.id}\n`, 'what the first read buffered is served first');
  const a2 = await env.mkdir('a/2');
  await env.rmdir('a/1');
  t.ok(a1.released, 'nothing held a/1');
  const c = await env.mkdir('later'); // a new child of the work dir: after everything in creation order
  const rest = await readAll(s, 4096);
  t.equal(rest, `1 ${a.id}\n2 ${a2.id}\n3 ${b.id}\n4 ${c.id}\nend 4\n`);
});

t.test('the cgroup a paused walk stands on may be removed: it is skipped, keeps its seq_num, and the walk goes on from it', async (t) => {
  const { env, prog } = await seqPrinter(t);
  const a = await env.mkdir('a');
  const b = await env.mkdir('b');
  const c = await env.mkdir('c');
  const link = bpfIterLinkCreate(env.kernel, prog, { cgroup: { order: DESCENDANTS_PRE, cgroup: env.base } });
  t.teardown(() => link.close());
  const s = link.object.open({ source: env.source });
  t.equal(text(await s.read(2)), '0 ', 'the first read shows the work dir and stops on a');
  await env.rmdir('a');
  t.equal(a.state, 'dying', 'the paused walk holds a');
  t.equal(await readAll(s, 4096), `${env.base.id}\n2 ${b.id}\n3 ${c.id}\nend 3\n`);
  t.ok(a.released, 'and lets it go when it moves on');
});

t.test('the bpf_iter overflow scenario on the cgroup iterator: the second cgroup\'s output is rolled back and shown by the next read with the same seq_num', async (t) => {
  const env = await simEnv();
  const coll = load(env.kernel, OVERFLOW);
  t.teardown(() => coll.close());
  const first = await env.mkdir('first');
  const second = await env.mkdir('second');
  const stats = coll.map('stats');
  const link = bpfIterLinkCreate(env.kernel, coll.program('dump'), { cgroup: { order: CHILDREN, cgroup: env.base } });
  t.teardown(() => link.close());
  const s = link.object.open({ source: env.source });
  const lens: number[] = [];
  for (let b = await s.read(65520); b.length > 0; b = await s.read(65520)) lens.push(b.length);
  s.close();
  t.same(lens, [32760, 32760], 'each read returns one cgroup\'s 32760 bytes');
  const st = stats.valueSchema!.toJson(stats.lookupElem(0)) as Record<string, number>;
  t.same(st, { first_accessed: 1, second_accessed: 2, second_seqnum1: 1, second_seqnum2: 1 });
  t.ok(first && second);
});

/** bpf_iter_test_kern4.c on the cgroup iterator: "first" fills the buffer to 32760 bytes, "second" overflows it. */
const OVERFLOW = `import { SEC, map, BPF_MAP_TYPE_ARRAY, bpf_map_lookup_elem, bpf_seq_write, vbpffs_cgroup_name } from 'vbpffs/bpf';
export const stats = map({ type: BPF_MAP_TYPE_ARRAY, key: 'u32', maxEntries: 1,
  value: { first_accessed: 'u32', second_accessed: 'u32', second_seqnum1: 'u32', second_seqnum2: 'u32' } });
export const dump = SEC('iter/cgroup', (ctx) => {
  if (ctx.cgroup === null) return 0;
  const st = bpf_map_lookup_elem(stats, 0);
  if (st === null) return 0;
  const seq_num = Number(ctx.meta.seq_num);
  const name = vbpffs_cgroup_name(ctx.cgroup);
  if (name === 'first') st.first_accessed++;
  if (name === 'second') {
    if (st.second_accessed === 0) st.second_seqnum1 = seq_num;
    else st.second_seqnum2 = seq_num;
    st.second_accessed++;
  }
  const eight = new Uint8Array(8);
  for (let i = 0; i < 4095; i++) bpf_seq_write(ctx.meta.seq, eight);
  return 0;
});`;

const FILES = `import { SEC, bpf_seq_printf, vbpffs_cgroup_name, vbpffs_cgroup_read } from 'vbpffs/bpf';
export const procs = SEC('iter/cgroup', (ctx) => {
  if (ctx.cgroup === null) return 0;
  const p = vbpffs_cgroup_read(ctx.cgroup, 'cgroup.procs');
  bpf_seq_printf(ctx.meta.seq, "%s %s\\n", vbpffs_cgroup_name(ctx.cgroup), p === null ? '-' : String(p.lines));
  return 0;
});`;

t.test('each cgroup\'s interface files are read before its run, from the session\'s source; without one a program reads none', async (t) => {
  const env = await simEnv();
  const coll = load(env.kernel, FILES);
  t.teardown(() => coll.close());
  const a = await env.mkdir('a');
  const b = await env.mkdir('b');
  const wl = (env.source as SimCgroupSource).workload;
  wl.spawn({ cgroup: a });
  wl.spawn({ cgroup: a });
  wl.spawn({ cgroup: b });
  const link = bpfIterLinkCreate(env.kernel, coll.program('procs'), { cgroup: { order: CHILDREN, cgroup: env.base } });
  t.teardown(() => link.close());
  t.equal(await readAll(link.object.open({ source: env.source }), 4096), 'a 2\nb 1\n');
  t.equal(await readAll(link.object.open(), 4096), 'a -\nb -\n', 'no source: the files read as absent');
});

const BIG = `import { SEC, bpf_seq_write, vbpffs_cgroup_name } from 'vbpffs/bpf';
export const big = SEC('iter/cgroup', (ctx) => {
  const line = new Uint8Array(1024);
  if (ctx.cgroup === null) return 0;
  const n = vbpffs_cgroup_name(ctx.cgroup) === 'big' ? 33 : 1;
  for (let i = 0; i < n; i++) bpf_seq_write(ctx.meta.seq, line);
  return 0;
});
export const faulty = SEC('iter/cgroup', (ctx) => {
  if (ctx.cgroup === null) return 0;
  if (vbpffs_cgroup_name(ctx.cgroup) === 'bad') throw new Error('bad cgroup');
  bpf_seq_write(ctx.meta.seq, vbpffs_cgroup_name(ctx.cgroup) + '\\n');
  return 0;
});`;

t.test('a cgroup whose output overflows the buffer: E2BIG when it is the read\'s first, else the read ends before it', async (t) => {
  const env = await simEnv();
  const coll = load(env.kernel, BIG);
  t.teardown(() => coll.close());
  const big = await env.mkdir('big');
  const link = bpfIterLinkCreate(env.kernel, coll.program('big'), { cgroup: { order: SELF_ONLY, cgroup: big } });
  t.teardown(() => link.close());
  const s = link.object.open();
  await t.rejects(s.read(1 << 20), { code: 'E2BIG' });
  await t.rejects(s.read(1 << 20), { code: 'E2BIG' }, 'and again: the cgroup is tried again');
  s.close();
  const pre = bpfIterLinkCreate(env.kernel, coll.program('big'), { cgroup: { order: DESCENDANTS_PRE, cgroup: env.base } });
  t.teardown(() => pre.close());
  const s2 = pre.object.open();
  t.equal((await s2.read(1 << 20)).length, 1024, 'the work dir\'s kilobyte');
  await t.rejects(s2.read(1 << 20), { code: 'E2BIG' }, 'then big, first of its read');
  s2.close();
});

t.test('a faulting program fails the read with EIO, after the output of the cgroups before it', async (t) => {
  const env = await simEnv();
  const coll = load(env.kernel, BIG);
  t.teardown(() => coll.close());
  await env.mkdir('ok');
  const bad = await env.mkdir('bad');
  const link = bpfIterLinkCreate(env.kernel, coll.program('faulty'), { cgroup: { order: CHILDREN, cgroup: env.base } });
  t.teardown(() => link.close());
  const s = link.object.open();
  t.equal(text(await s.read(4096)), 'ok\n');
  await t.rejects(s.read(4096), { code: 'EIO', message: /bad cgroup/ });
  await t.rejects(s.read(4096), { code: 'EIO' }, 'the faulting cgroup is tried again on the next read');
  s.close();
  const self = bpfIterLinkCreate(env.kernel, coll.program('faulty'), { cgroup: { order: SELF_ONLY, cgroup: bad } });
  t.teardown(() => self.close());
  const s2 = self.object.open();
  await t.rejects(s2.read(4096), { code: 'EIO' }, 'first in its read: EIO at once');
  s2.close();
});
