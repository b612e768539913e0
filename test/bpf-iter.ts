/**
 * The bpf_iter core (iter/bpf-iter.ts): bpf_seq_read's rules and iterator sessions. Most tests use
 * a small target of the kind the kernel's own scenarios use: a list of objects that a read can
 * start again at any position (as the bpf_map iterator restarts at a map id), whose program's
 * non-zero return means "retry this object" and whose stop() makes the end-of-iteration call. Its
 * objects are cgroups, so the programs are ordinary iter/cgroup programs.
 *
 * The kernel selftest bpf_iter's scenarios overflow, overflow-e2big and prog-ret-1
 * (bpf_iter_test_kern4.c over two maps among others) run on that target over cgroups of the
 * simulated source and of the host; file and anon-read-one-char (bpf_iter_test_kern1/2.c) run on
 * cgroup iterator links.
 */
import t, { type Test } from 'tap';
import { BpfCgroupIterOrder, BpfError, bpfError } from '../uapi';
import { bpfLinkUpdate, type BpfObject, type BpfProg, type Collection } from '../progs';
import type { KernfsNode } from '../tags';
import { bpfIterLinkCreate, type IterSession as PublicSession } from '../iter';
import { IterSession, SEQ_ERR_PTR, type BpfIterSeqInfo, type IterOpenOpts, type SeqErrPtr } from '../iter/bpf-iter';
import { load } from './harness/progs';
import { cgroupSkipReason } from './harness/cgroup-tree';
import { hostEnv, simEnv, type IterEnv } from './harness/iter-env';

const text = (b: Uint8Array): string => Buffer.from(b).toString('utf8');

// ---------------------------------------------------------------------------------------------------
// The list target.

interface ListPriv {
  readonly list: readonly KernfsNode[];
  /** The position (bpf_map_seq's map_id): start() shows list[i] again. */
  i: number;
  /** Objects show() skips (returns 1 for, as a seq_file show may). */
  readonly skip: ReadonlySet<KernfsNode>;
  readonly fail: ReadonlyMap<KernfsNode, number>;
  readonly startErr: BpfError | undefined;
  /** What stop() was given, in order. */
  readonly stops: (string | null | SeqErrPtr)[];
}

interface ListAux {
  list: readonly KernfsNode[];
  skip?: ReadonlySet<KernfsNode>;
  /** Objects show() fails with this -errno for, without running the program. */
  fail?: ReadonlyMap<KernfsNode, number>;
  startErr?: BpfError;
}

const listInfo: BpfIterSeqInfo<ListAux, ListPriv, KernfsNode> = {
  seqOps: {
    start(it) {
      if (it.priv.startErr !== undefined) throw it.priv.startErr;
      if (it.seq.index === 0) it.seq.index++;
      return it.priv.list[it.priv.i] ?? null;
    },
    next(it) {
      it.seq.index++;
      return it.priv.list[++it.priv.i] ?? null;
    },
    async stop(it, v) {
      it.priv.stops.push(v === null || v === SEQ_ERR_PTR ? v : v.name);
      // bpf_map_seq_stop: "if (!v) (void)__bpf_map_seq_show(seq, v, true)"
      if (v === null) await it.runProg({ cgroup: null }, true);
    },
    show(it, v) {
      return it.priv.fail.get(v) ?? (it.priv.skip.has(v) ? 1 : it.showRetry({ cgroup: v }));
    },
    prepare(it, v) {
      return it.prepareCgroupFiles(v);
    },
  },
  initSeqPrivate: (aux) => ({ list: aux.list, i: 0, skip: aux.skip ?? new Set(), fail: aux.fail ?? new Map(), startErr: aux.startErr, stops: [] }),
};

function openList(env: IterEnv, prog: BpfProg, aux: ListAux, opts: IterOpenOpts = {}, maxObjects?: number, holder: BpfObject | null = null): IterSession<ListPriv> {
  return new IterSession<ListPriv>(env.kernel, listInfo as BpfIterSeqInfo<unknown, ListPriv, unknown>, aux, prog, { source: env.source, ...opts }, holder, maxObjects);
}

/** Reads to EOF with reads of `size`, returning the text and each read's length. */
async function drain(s: PublicSession, size: number): Promise<{ out: string; lens: number[] }> {
  let out = '';
  const lens: number[] = [];
  for (let b = await s.read(size); b.length > 0; b = await s.read(size)) {
    out += text(b);
    lens.push(b.length);
  }
  return { out, lens };
}

// ---------------------------------------------------------------------------------------------------
// bpf_iter selftest: overflow, overflow-e2big, prog-ret-1.

/**
 * bpf_iter_test_kern4.c: only "map1" and "map2" (here two cgroups, by id) print, print_len u64s of
 * their seq_num each; ret1 makes map2's first run ask for a retry. Its globals are the array map bss.
 */
const KERN4 = `import { SEC, map, BPF_MAP_TYPE_ARRAY, bpf_map_lookup_elem, bpf_seq_write, vbpffs_cgroup_id } from 'vbpffs/bpf';
export const bss = map({ type: BPF_MAP_TYPE_ARRAY, key: 'u32', maxEntries: 1, value: {
  map1_id: 'u64', map2_id: 'u64', map1_accessed: 'u32', map2_accessed: 'u32',
  map1_seqnum: 'u64', map2_seqnum1: 'u64', map2_seqnum2: 'u64', print_len: 'u32', ret1: 'u32' } });

export const dump_bpf_map = SEC('iter/cgroup', (ctx) => {
  const seq = ctx.meta.seq;
  const map = ctx.cgroup;
  let ret = 0;
  if (map === null) return 0;
  const g = bpf_map_lookup_elem(bss, 0);
  if (g === null) return 0;
  const id = vbpffs_cgroup_id(map);
  /* only dump map1_id and map2_id */
  if (id !== g.map1_id && id !== g.map2_id) return 0;
  const seq_num = ctx.meta.seq_num;
  if (id === g.map1_id) {
    g.map1_seqnum = seq_num;
    g.map1_accessed++;
  }
  if (id === g.map2_id) {
    if (g.map2_accessed === 0) {
      g.map2_seqnum1 = seq_num;
      if (g.ret1 !== 0) ret = 1;
    } else {
      g.map2_seqnum2 = seq_num;
    }
    g.map2_accessed++;
  }
  /* fill seq_file buffer */
  const bytes = new Uint8Array(8);
  bytes[0] = Number(seq_num & 0xffn);
  for (let i = 0; i < g.print_len; i++) bpf_seq_write(seq, bytes);
  return ret;
});`;

interface Kern4Bss {
  map1_accessed: number;
  map2_accessed: number;
  map2_seqnum1: number;
  map2_seqnum2: number;
}

/** test_overflow(test_e2big_overflow, ret1) */
async function testOverflow(t: Test, env: IterEnv, e2big: boolean, ret1: boolean): Promise<void> {
  const coll = load(env.kernel, KERN4);
  t.teardown(() => coll.close());
  const names = ['x0', 'map1', 'x1', 'map2', 'x2'];
  const list: KernfsNode[] = [];
  for (const n of names) list.push(await env.mkdir(`${e2big ? 'e' : ret1 ? 'r' : 'o'}-${n}`));
  const iterSize = 4096 << 3;
  const printLen = e2big ? (iterSize + 8) / 8 : ret1 ? 1 : (iterSize - 8) / 8;
  const expectedReadLen = e2big ? 2 * (iterSize + 8) : ret1 ? 2 * 8 : 2 * (iterSize - 8);
  const bss = coll.map('bss');
  bss.updateElem(0, bss.valueSchema!.fromJson({ map1_id: list[1]!.id, map2_id: list[3]!.id, print_len: printLen, ret1: ret1 ? 1 : 0 }));
  const s = openList(env, coll.program('dump_bpf_map'), { list });
  t.teardown(() => s.close());
  let total = 0;
  if (e2big) {
    const err = await s.read(expectedReadLen).then(
      () => null,
      (e: unknown) => e,
    );
    t.match(err, { code: 'E2BIG' }, 'expected ret -1, errno E2BIG');
    return;
  }
  for (let b = await s.read(expectedReadLen); b.length > 0; b = await s.read(expectedReadLen)) total += b.length;
  t.equal(total, expectedReadLen, 'total read length');
  const g = bss.valueSchema!.toJson(bss.lookupElem(0)) as unknown as Kern4Bss;
  t.equal(g.map1_accessed, 1, 'map1_accessed');
  t.equal(g.map2_accessed, 2, 'map2_accessed: rolled back once, shown again');
  t.equal(g.map2_seqnum1, g.map2_seqnum2, 'map2_seqnum: the retry has the same seq_num');
}

/** bpf_iter_test_kern1.c / kern2.c (bpf_iter_test_kern_common.h): four characters over the first four calls. */
const kern = (start: string): string => `import { SEC, bpf_seq_write } from 'vbpffs/bpf';
let count = 0;
export const dump_task = SEC('iter/cgroup', (ctx) => {
  if (count < 4) {
    bpf_seq_write(ctx.meta.seq, String.fromCharCode(${start.charCodeAt(0)} + count));
    count++;
  }
  return 0;
});`;

/** do_read_with_fd: a 16-byte buffer, read whole or one character at a time. */
async function doReadWithFd(s: PublicSession, readOneChar: boolean): Promise<string> {
  let start = 0;
  let out = '';
  let len = readOneChar ? 1 : 16;
  for (let b = await s.read(len); b.length > 0; b = await s.read(len)) {
    start += b.length;
    out += text(b);
    if (start >= 16) throw new Error(`read len ${b.length}`);
    len = readOneChar ? 1 : 16 - start;
  }
  return out;
}

async function fourCgroups(env: IterEnv, prefix: string): Promise<KernfsNode> {
  const top = await env.mkdir(prefix);
  for (const n of ['1', '2', '3']) await env.mkdir(`${prefix}/${n}`);
  return top;
}

/** test_file_iter: a pinned link read "abcd"; after a link update, "ABCD". Then test_anon_iter(read_one_char). */
async function testFileIter(t: Test, env: IterEnv): Promise<void> {
  const top = await fourCgroups(env, 'file');
  const skel1 = load(env.kernel, kern('a'));
  const skel2 = load(env.kernel, kern('A'));
  t.teardown(() => {
    skel1.close();
    skel2.close();
  });
  const link = bpfIterLinkCreate(env.kernel, skel1.program('dump_task'), { cgroup: { order: BpfCgroupIterOrder.DESCENDANTS_PRE, cgroup: top } });
  t.teardown(() => link.close());
  // open(path) of the pin: a new session each time
  const read = async (): Promise<string> => {
    const s = link.object.open({ source: env.source });
    try {
      return await doReadWithFd(s, false);
    } finally {
      s.close();
    }
  };
  const opened = link.object.open();
  t.equal(await read(), 'abcd');
  bpfLinkUpdate(link, skel2.program('dump_task'));
  t.equal(await read(), 'ABCD', 'after the update, a new open runs the new program');
  const before = skel1.program('dump_task').stats.runCnt;
  t.equal(opened.prog, skel1.program('dump_task'), 'a session opened before the update keeps the old program');
  await doReadWithFd(opened, false);
  t.equal(skel1.program('dump_task').stats.runCnt, before + 5, 'and runs it: four cgroups and the end call');
  opened.close();

  const skel3 = load(env.kernel, kern('a'));
  t.teardown(() => skel3.close());
  const anon = bpfIterLinkCreate(env.kernel, skel3.program('dump_task'), { cgroup: { order: BpfCgroupIterOrder.DESCENDANTS_PRE, cgroup: top } });
  t.teardown(() => anon.close());
  const s = anon.object.open();
  t.equal(await doReadWithFd(s, true), 'abcd', 'anon-read-one-char: one byte at a time gives the same');
  s.close();
}

async function scenarios(t: Test, env: IterEnv): Promise<void> {
  t.test('overflow: an object overflowing after another is rolled back and shown by the next read, with the same seq_num', (t) => testOverflow(t, env, false, false));
  t.test('overflow-e2big: an object whose output alone overflows the 32 KiB buffer fails the read with E2BIG', (t) => testOverflow(t, env, true, false));
  t.test('prog-ret-1: a program returning 1 after earlier output has that object retried by the next read, same seq_num', (t) => testOverflow(t, env, false, true));
  t.test('file: each open of a link is a session running the link\'s program of that moment; reading one byte at a time reproduces the output', (t) => testFileIter(t, env));
}

t.test('the bpf_iter selftest scenarios on the simulated source', async (t) => {
  await scenarios(t, await simEnv());
});

void (async () => {
  const skip = await cgroupSkipReason();
  t.test('the bpf_iter selftest scenarios on real cgroups', skip === false ? {} : { skip }, async (t) => {
    await scenarios(t, await hostEnv(t));
  });
})();

// ---------------------------------------------------------------------------------------------------
// bpf_seq_read's rules, one by one, on the simulated source.

const PRINTERS = `import { SEC, bpf_seq_printf, bpf_seq_write, vbpffs_cgroup_name } from 'vbpffs/bpf';
export const printer = SEC('iter/cgroup', (ctx) => {
  if (ctx.cgroup === null) {
    bpf_seq_printf(ctx.meta.seq, "end %llu\\n", ctx.meta.seq_num);
    return 0;
  }
  const name = vbpffs_cgroup_name(ctx.cgroup);
  if (name.startsWith('quiet')) return 0;
  bpf_seq_printf(ctx.meta.seq, "%llu:%s\\n", ctx.meta.seq_num, name);
  return 0;
});
export const big_end = SEC('iter/cgroup', (ctx) => {
  const k = new Uint8Array(1000);
  const n = ctx.cgroup === null ? (ctx.meta.session_id % 2n === 0n ? 40 : 20) : 20;
  for (let i = 0; i < n; i++) bpf_seq_write(ctx.meta.seq, k);
  return 0;
});
export const fault_end = SEC('iter/cgroup', (ctx) => {
  if (ctx.cgroup === null) throw new Error('epilogue fault');
  bpf_seq_write(ctx.meta.seq, 'x');
  return 0;
});
export const meta = SEC('iter/cgroup', (ctx) => {
  if (ctx.cgroup !== null) bpf_seq_printf(ctx.meta.seq, "%llu/%llu ", ctx.meta.session_id, ctx.meta.seq_num);
  return 0;
});`;

interface Rig {
  env: IterEnv;
  coll: Collection;
  prog(name: string): BpfProg;
  list: KernfsNode[];
}

async function rig(t: Test, names = ['a', 'b', 'c']): Promise<Rig> {
  const env = await simEnv();
  const coll = load(env.kernel, PRINTERS);
  t.teardown(() => coll.close());
  const list: KernfsNode[] = [];
  for (const n of names) list.push(await env.mkdir(n));
  return { env, coll, prog: (n) => coll.program(n), list };
}

t.test('leftover bytes are served first, and nothing runs until they are gone', async (t) => {
  const r = await rig(t);
  const p = r.prog('printer');
  const s = openList(r.env, p, { list: r.list });
  t.teardown(() => s.close());
  t.equal(text(await s.read(5)), '0:a\n1', 'a and b are shown; the read stops once 5 bytes are buffered');
  t.equal(p.stats.runCnt, 2);
  t.equal(text(await s.read(100)), ':b\n', 'the next read returns only what was left, even with room for more');
  t.equal(p.stats.runCnt, 2, 'and runs nothing');
  t.equal(text(await s.read(100)), '2:c\nend 2\n', 'then c, fetched by the first read but not shown, and the end-of-iteration call');
  t.same(s.priv.stops, ['c', null], 'stop() was told where the first read paused, then that the iteration ended');
});

t.test('the end-of-iteration call is made once; reads after EOF return 0 and run nothing', async (t) => {
  const r = await rig(t);
  const p = r.prog('printer');
  const s = openList(r.env, p, { list: r.list });
  t.teardown(() => s.close());
  t.equal(text(await s.read(4096)), '0:a\n1:b\n2:c\nend 2\n');
  const runs = p.stats.runCnt;
  for (let i = 0; i < 3; i++) t.equal((await s.read(4096)).length, 0, `read ${i + 1} after EOF`);
  t.equal(p.stats.runCnt, runs, 'no run after the end call');
});

t.test('a read stops once size bytes are buffered: the object next() found is the next read\'s first', async (t) => {
  const r = await rig(t);
  const p = r.prog('printer');
  const s = openList(r.env, p, { list: r.list });
  t.teardown(() => s.close());
  t.equal(text(await s.read(4)), '0:a\n');
  t.equal(p.stats.runCnt, 1, 'b was fetched, not shown');
  t.equal(text(await s.read(4)), '1:b\n', 'b keeps seq_num 1');
});

t.test('a skipped object (show() > 0) gives its seq_num to the next one', async (t) => {
  const r = await rig(t, ['a', 'b', 'c', 'd']);
  const s = openList(r.env, r.prog('printer'), { list: r.list, skip: new Set([r.list[0]!, r.list[2]!]) });
  t.teardown(() => s.close());
  t.equal(text(await s.read(4096)), '0:b\n1:d\nend 1\n', 'a (first of the read) and c (later) are skipped');
  const s2 = openList(r.env, r.prog('printer'), { list: r.list, skip: new Set([r.list[1]!]) });
  t.teardown(() => s2.close());
  t.equal(text(await s2.read(1)) + text(await s2.read(4096)), '0:a\n', 'a read that stops at a skipped object...');
  t.equal(text(await s2.read(4096)), '1:c\n2:d\nend 2\n', '...has the next read skip it too');
});

t.test('objects of one read are capped at MAX_ITER_OBJECTS: EAGAIN with nothing to show yet, else what is buffered', async (t) => {
  const r = await rig(t, ['quiet1', 'quiet2', 'quiet3', 'quiet4', 'a', 'b', 'c', 'd']);
  const s = openList(r.env, r.prog('printer'), { list: r.list }, {}, 3);
  t.teardown(() => s.close());
  await t.rejects(s.read(4096), { code: 'EAGAIN' }, 'three quiet objects: EAGAIN');
  t.equal(text(await s.read(4096)), '4:a\n5:b\n', 'the next read goes on: quiet4, a, b and stops at c');
  t.equal(text(await s.read(4096)), '6:c\n7:d\nend 7\n');
});

t.test('show() failing with a -errno fails the read with it (an errno vbpffs does not name is EIO); after other output, the read ends before it', async (t) => {
  const r = await rig(t, ['a', 'b', 'quiet']);
  const [a, b, quiet] = r.list as [KernfsNode, KernfsNode, KernfsNode];
  const s = openList(r.env, r.prog('printer'), { list: [a, b], fail: new Map([[b, -12]]) });
  t.teardown(() => s.close());
  t.equal(text(await s.read(4096)), '0:a\n');
  await t.rejects(s.read(4096), { code: 'ENOMEM' }, 'b, first of its read');
  const s2 = openList(r.env, r.prog('printer'), { list: [quiet, b], fail: new Map([[b, -9999]]) });
  t.teardown(() => s2.close());
  await t.rejects(s2.read(4096), { code: 'EIO' }, 'after an object that printed nothing, as if first');
});

t.test('start() failing fails the read with its error, and stop() is told of the error', async (t) => {
  const r = await rig(t);
  const s = openList(r.env, r.prog('printer'), { list: r.list, startErr: bpfError('ENOMEM', 'no memory') });
  t.teardown(() => s.close());
  await t.rejects(s.read(4096), { code: 'ENOMEM' });
  t.same(s.priv.stops, [SEQ_ERR_PTR]);
});

t.test('the end-of-iteration call overflowing: E2BIG with nothing else buffered; after earlier output, made again by the next read', async (t) => {
  const r = await rig(t, ['a']);
  const p = r.prog('big_end');
  // Odd session ids write 20000 bytes at the end, even ones 40000 (more than the buffer).
  const odd = openList(r.env, p, { list: r.list });
  const even = openList(r.env, p, { list: [] });
  t.teardown(() => {
    odd.close();
    even.close();
  });
  t.equal(odd.sessionId % 2n, 1n);
  t.same((await drain(odd, 1 << 20)).lens, [20000, 20000], 'a\'s 20000 bytes, then the end call\'s, retried');
  t.equal(p.stats.runCnt, 3, 'a once, the end call twice');
  await t.rejects(even.read(1 << 20), { code: 'E2BIG' }, 'an end call alone overflowing');
  await t.rejects(even.read(1 << 20), { code: 'E2BIG' }, 'is retried, and fails again');
});

t.test('the end-of-iteration call faulting: EIO, after the output before it', async (t) => {
  const r = await rig(t, ['a', 'b']);
  const s = openList(r.env, r.prog('fault_end'), { list: r.list });
  t.teardown(() => s.close());
  t.equal(text(await s.read(4096)), 'xx', 'the objects\' output');
  await t.rejects(s.read(4096), { code: 'EIO', message: /epilogue fault/ }, 'then the end call, made again, faults with nothing buffered');
  const s2 = openList(r.env, r.prog('fault_end'), { list: [] });
  t.teardown(() => s2.close());
  await t.rejects(s2.read(4096), { code: 'EIO' });
});

t.test('each open is a session: session ids count up from 1 per Kernel, seq_num starts at 0 in each', async (t) => {
  const r = await rig(t, ['a', 'b']);
  const sessions = [0, 1, 2].map(() => openList(r.env, r.prog('meta'), { list: r.list }));
  t.same(sessions.map((s) => s.sessionId), [1n, 2n, 3n]);
  t.equal(text(await sessions[1]!.read(4096)), '2/0 2/1 ');
  t.equal(text(await sessions[0]!.read(4096)), '1/0 1/1 ');
  for (const s of sessions) s.close();
  const other = await rig(t, ['a']);
  const s = openList(other.env, other.prog('meta'), { list: other.list });
  t.equal(s.sessionId, 1n, 'another Kernel counts on its own');
  s.close();
});

t.test('reads of one session are served one at a time, in call order', async (t) => {
  const r = await rig(t, ['a', 'b', 'c', 'd']);
  const s = openList(r.env, r.prog('printer'), { list: r.list });
  t.teardown(() => s.close());
  const parts = await Promise.all([s.read(3), s.read(3), s.read(3), s.read(4096), s.read(4096)]);
  t.same(parts.map(text), ['0:a', '\n', '1:b', '\n', '2:c\n3:d\nend 3\n'], 'each read sees the state the one before it left');
});

t.test('a read size must be a byte count (EINVAL); a read of 0 bytes returns nothing but, as in the kernel, shows the first object', async (t) => {
  const r = await rig(t);
  const p = r.prog('printer');
  const s = openList(r.env, p, { list: r.list });
  t.teardown(() => s.close());
  for (const size of [-1, 1.5, Number.NaN, Infinity]) await t.rejects(s.read(size), { code: 'EINVAL' }, String(size));
  t.equal((await s.read(0)).length, 0);
  t.equal(p.stats.runCnt, 1);
  t.equal(text(await s.read(4096)), '0:a\n', 'its output is there for the next read');
});

t.test('a session holds its program (and its link) until close; close while a read runs waits for it; then EBADF', async (t) => {
  const r = await rig(t);
  const p = r.prog('printer');
  const holder = r.prog('meta');
  const refs = [p.refs, holder.refs];
  const s = openList(r.env, p, { list: r.list }, {}, undefined, holder);
  t.same([p.refs, holder.refs], [refs[0]! + 1, refs[1]! + 1], 'the session\'s references on its program and its holder');
  const pending = s.read(4096);
  s.close();
  t.ok(s.closed);
  t.same([p.refs, holder.refs], [refs[0]! + 1, refs[1]! + 1], 'a read in progress keeps them');
  t.equal(text(await pending), '0:a\n1:b\n2:c\nend 2\n', 'the read in progress completes');
  t.same([p.refs, holder.refs], refs, 'released when it ends');
  await t.rejects(s.read(1), { code: 'EBADF' });
  t.throws(() => s.close(), { code: 'EBADF' });
  const idle = openList(r.env, p, { list: r.list });
  idle.close();
  t.equal(p.refs, refs[0], 'an idle session is released at close');
});

t.test('readAll reads to EOF', async (t) => {
  const r = await rig(t);
  const s = openList(r.env, r.prog('printer'), { list: r.list });
  t.teardown(() => s.close());
  t.equal(text(await s.readAll(2)), '0:a\n1:b\n2:c\nend 2\n');
});
