/**
 * The engine's control operations in-process (no FUSE, no socket): what the CLI's object commands
 * do, the checks made before anything is journalled, the `failed` records of operations the
 * kernel's rules refuse, and replay on a new engine over the same state directory.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { Engine } from '../fs/engine/engine';
import type { SimCgroupSource } from '../tags';
import { examplePath } from '../progs/examples';
import { counterObject } from './harness/cgroup-progs';

const ITER = `import { SEC, bpf_seq_printf } from 'vbpffs/bpf';
export const first = SEC('iter/cgroup', (ctx) => { if (ctx.cgroup !== null) bpf_seq_printf(ctx.meta.seq, 'first\\n'); return 0; });
export const second = SEC('iter/cgroup', (ctx) => { if (ctx.cgroup !== null) bpf_seq_printf(ctx.meta.seq, 'second\\n'); return 0; });
`;

async function readAll(e: Engine, p: string): Promise<string> {
  const fh = await e.open(p, 0);
  try {
    return Buffer.from(await e.read(fh, 65536)).toString();
  } finally {
    await e.release(fh);
  }
}

t.test('control operations: made, checked, journalled, replayed', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'vbpffs-ec-'));
  const state = dir;
  const file = (name: string, text: string): string => {
    const f = path.join(dir, name);
    writeFileSync(f, text);
    return f;
  };
  const allow = file('allow.ts', counterObject([{ val: 1n, verdict: 1 }]));
  const deny = file('deny.ts', counterObject([{ val: 10n, verdict: 0 }]));
  const iters = file('iters.ts', ITER);
  const noProg = file('none.ts', "import { map, BPF_MAP_TYPE_ARRAY } from 'vbpffs/bpf';\nexport const m = map({ type: BPF_MAP_TYPE_ARRAY, key: 'u32', value: 'u32', maxEntries: 1 });\n");
  const journal = (): { op: string; index?: number; path?: string }[] =>
    readFileSync(path.join(state, 'journal.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { op: string });

  const e = await Engine.start({ sim: 'demo', stateDir: state });
  let stopped = false;
  t.teardown(() => (stopped ? undefined : e.stop()));

  // prog load and pins
  const a = await e.progLoad(allow, '/allow');
  t.match(a, { id: Number, name: 'p0' });
  const d = await e.progLoad(deny, '/deny');
  await t.rejects(e.progLoad(noProg, '/none'), { code: 'EINVAL', message: /declares no program/ });
  t.match(journal().slice(-2), [{ op: 'progLoad', path: '/none' }, { op: 'failed', index: 2 }], 'a refused load is marked failed');
  await e.objPin('prog', { id: a.id }, '/allow2');
  await t.rejects(e.objPin('prog', { pinned: '/allow' }, '/a/../b'), { code: 'EINVAL' });
  await t.rejects(e.objPin('frob' as never, { id: 1 }, '/x'), { code: 'EINVAL', message: /cannot pin a 'frob'/ });
  t.same(e.progShow({ pinned: '/allow2' }).map((p) => p.id), [a.id]);
  t.equal(e.progShow().length, 2);

  // maps
  const m = await e.mapCreate('/m', { type: 'hash', key: 4, value: 8, entries: 2, name: 'm', keyType: 'u32', valueType: { a: 'u32', b: 'u32' } });
  t.same(e.mapShow({ id: m.id }), [{ id: m.id, type: 'hash', name: 'm', key: 4, value: 8, max_entries: 2, flags: 0 }]);
  const before = journal().length;
  await t.rejects(e.mapCreate('/bad', { type: 'hash', key: 4, value: 8, entries: 0, name: 'bad' }), { code: 'EINVAL' });
  t.equal(journal().length, before, 'a spec createMap refuses is not journalled');
  const arr = await e.mapCreate('/arr', { type: 'array', key: 4, value: 4, entries: 2, name: 'arr' });
  await e.mapCreate('/cs', { type: 'cgrp_storage', keyType: 'u32', valueType: 'u64', entries: 0, name: 'cs', flags: 1 });
  await e.mapUpdate({ pinned: '/m' }, { hex: '01000000' }, { json: { a: 42, b: 7 } });
  await e.mapUpdate({ id: m.id }, { json: 2 }, { hex: '0500000000000000' }, 1);
  await e.mapUpdate({ pinned: '/cs' }, { cgroup: '/sys/fs/cgroup/system.slice' }, { json: 9 });
  await e.mapUpdate({ id: arr.id }, { hex: '01000000' }, { hex: '03000000' }, 2);
  t.same(e.mapLookup({ pinned: '/m' }, { json: 1 }).formatted, { key: 1, value: { a: 42, b: 7 } });
  t.same(e.mapLookup({ pinned: '/cs' }, { cgroup: '/system.slice' }), { key: [], cgroup: '/system.slice', value: ['0x09', '0x00', '0x00', '0x00', '0x00', '0x00', '0x00', '0x00'], formatted: { value: 9 } });
  t.same(e.mapLookup({ id: arr.id }, { hex: '01000000' }), { key: ['0x01', '0x00', '0x00', '0x00'], value: ['0x03', '0x00', '0x00', '0x00'] }, 'no types: bytes only');
  t.same(e.mapGetNext({ pinned: '/m' }), { key: null, next_key: ['0x01', '0x00', '0x00', '0x00'] });
  t.same(e.mapGetNext({ pinned: '/m' }, { json: 1 }).key, ['0x01', '0x00', '0x00', '0x00']);
  t.equal((e.mapDump({ pinned: '/m' }) as unknown[]).length, 2);
  t.equal((e.mapDump(m.id) as unknown[]).length, 2, 'a bare id, as older CLIs send it');
  await e.objPin('map', { id: m.id }, '/m2');

  const mark = journal().length;
  const refusals: [Promise<unknown>, RegExp, string][] = [
    [e.mapUpdate({ pinned: '/m' }, { hex: '01' }, { hex: '00' }), /the key is 4 bytes, got 1/, 'EINVAL'],
    [e.mapUpdate({ pinned: '/m' }, { hex: '01000000' }, { hex: '00' }), /the value is 8 bytes, got 1/, 'EINVAL'],
    [e.mapUpdate({ pinned: '/m' }, { hex: '01000000' }, { json: {} }, 1), /has this key already/, 'EEXIST'],
    [e.mapUpdate({ pinned: '/m' }, { hex: '09000000' }, { json: {} }, 2), /has no such key \(exist\)/, 'ENOENT'],
    [e.mapUpdate({ pinned: '/m' }, { hex: '09000000' }, { json: {} }, 7), /update flags are/, 'EINVAL'],
    [e.mapUpdate({ pinned: '/m' }, { cgroup: '/' }, { json: {} }), /is not keyed by cgroup/, 'EINVAL'],
    [e.mapUpdate({ pinned: '/cs' }, { hex: '01000000' }, { json: 1 }), /is keyed by cgroup/, 'EINVAL'],
    [e.mapUpdate({ pinned: '/cs' }, { cgroup: '/nope' }, { json: 1 }), /no cgroup \/nope/, 'ENOENT'],
    [e.mapUpdate({ pinned: '/allow' }, { hex: '01000000' }, { json: 1 }), /\/allow is a pinned prog, not a map/, 'EINVAL'],
    [e.mapUpdate({ id: 9999 }, { hex: '01000000' }, { json: 1 }), /no map with id 9999/, 'ENOENT'],
    [e.mapDelete({ pinned: '/m' }, { hex: '09000000' }), /has no such key/, 'ENOENT'],
    [e.mapDelete({ id: arr.id }, { hex: '01000000' }), /array elements cannot be deleted/, 'EINVAL'],
    [e.linkUpdate({ id: 9999 }, { id: a.id }), /no link with id 9999/, 'ENOENT'],
    [e.cgroupAttach('/system.slice', 'ingress', { id: a.id }), /cannot attach|loaded for attach type/, 'EINVAL'],
    [e.cgroupAttach('/system.slice', 'frob', { id: a.id }), /'frob' is not a cgroup attach type/, 'EINVAL'],
    [e.cgroupAttach('/system.slice', 'egress', { id: a.id }, 4), /an attach mode is multi or override/, 'EINVAL'],
    [e.cgroupAttach('/../x', 'egress', { id: a.id }), /leaves the cgroup hierarchy/, 'EINVAL'],
    [e.cgroupDetach('/system.slice', 'egress', { id: a.id }), /is not attached to \/system.slice at egress/, 'ENOENT'],
    // bpf_prog_get_type in cgroup_bpf_prog_detach: a program of the wrong type is EINVAL before the lookup's ENOENT.
    [e.cgroupDetach('/system.slice', 'ingress', { id: a.id }), /cannot attach|loaded for attach type/, 'EINVAL'],
  ];
  for (const [p, message, code] of refusals) await t.rejects(p, { code, message });
  await t.rejects(e.cgroupRun('/', 'egress', [1]), { code: 'EINVAL', message: /ctx is a JSON object/ });
  t.equal(journal().length, mark, 'nothing refused was journalled');

  await e.mapDelete({ pinned: '/m' }, { json: 2 });
  t.throws(() => e.mapGetNext({ pinned: '/m' }, { json: 1 }), { code: 'ENOENT' }, 'key 2 is gone');

  // cgroups
  await e.cgroupAttach('/system.slice', 'egress', { pinned: '/allow' }, 2);
  await e.cgroupAttach('/sys/fs/cgroup/system.slice', 'egress', { id: d.id }, 2);
  t.same(e.cgroupShow('/system.slice'), [
    { id: a.id, attach_type: 'egress', name: 'p0', attach_flags: 'multi' },
    { id: d.id, attach_type: 'egress', name: 'p0', attach_flags: 'multi' },
  ]);
  t.same(e.cgroupShow('/system.slice/cron.service', true).map((r) => r.id), [a.id, d.id], 'effective: inherited');
  t.same(await e.cgroupRun('/system.slice/cron.service', 'egress', { len: 84 }), {
    progs: [{ id: a.id, name: 'p0', ret: 1 }, { id: d.id, name: 'p0', ret: 0 }],
    retval: -1,
    verdict: 'deny',
    flags: 0,
  });
  t.same(await e.cgroupRun('/user.slice', 'egress'), { progs: [], retval: 0, verdict: 'allow', flags: 0 });
  const failedAt = journal().length;
  await t.rejects(e.cgroupAttach('/system.slice', 'egress', { id: a.id }, 1), { code: 'EPERM' }, 'a mode conflict is the kernel refusing');
  t.same(journal().slice(failedAt).map((r) => r.op), ['cgroupAttach', 'failed']);
  t.equal(journal().at(-1)!.index, failedAt, 'the failed record names the refused one');
  await e.cgroupDetach('/system.slice', 'egress', { pinned: '/deny' });
  // find_detach_entry: without BPF_F_ALLOW_MULTI a detach takes the one attached program, whichever is named.
  await e.cgroupAttach('/user.slice', 'egress', { pinned: '/allow' });
  await e.cgroupDetach('/user.slice', 'egress', { pinned: '/deny' });
  t.same(e.cgroupShow('/user.slice'), [], 'the program attached without multi is detached');

  // iterators and links
  const it = await e.progLoad(iters, '/it');
  const walk = await e.iterPin({ pinned: '/it' }, '/walk', { order: 'self_only' });
  t.match(walk, { progId: it.id, target: 'cgroup' });
  await t.rejects(e.iterPin({ pinned: '/allow' }, '/w2', {}), { code: 'EINVAL', message: /is not an iterator program/ });
  t.equal(await readAll(e, '/walk'), 'first\n');
  const [second] = (await e.progLoadAll(iters, '/its')).filter((p) => p.name === 'second');
  await e.linkUpdate({ pinned: '/walk' }, { pinned: '/its/second' });
  await e.objPin('link', { id: walk.linkId }, '/walk2');
  t.equal(await readAll(e, '/walk2'), 'second\n');
  t.match(e.linkShow({ pinned: '/walk' }), [{ id: walk.linkId, prog_id: second!.id }]);
  await t.rejects(e.linkDetach({ pinned: '/walk' }), { code: 'EOPNOTSUPP' });
  t.equal(journal().at(-1)!.op, 'failed');

  await e.stop();
  stopped = true;

  // A new engine on the same state: everything back, with the same ids.
  const b = await Engine.start({ sim: 'demo', stateDir: state });
  t.teardown(() => b.stop());
  t.same(b.status().journal!.failed, [], 'every record replays; the failed ones are skipped');
  t.same(b.mapLookup({ id: m.id }, { json: 1 }).formatted, { key: 1, value: { a: 42, b: 7 } }, 'the map has its id and values back');
  t.throws(() => b.mapLookup({ pinned: '/m2' }, { json: 2 }), { code: 'ENOENT' }, 'and its deletes');
  t.same(b.mapLookup({ pinned: '/cs' }, { cgroup: '/system.slice' }).formatted, { value: 9 });
  t.same(b.mapLookup({ pinned: '/arr' }, { hex: '01000000' }).value, ['0x03', '0x00', '0x00', '0x00']);
  t.same(b.cgroupShow('/system.slice'), [{ id: a.id, attach_type: 'egress', name: 'p0', attach_flags: 'multi' }]);
  t.equal(await readAll(b, '/walk2'), 'second\n');
  t.same((await b.readdir('/')).sort(), ['allow', 'allow2', 'arr', 'cs', 'deny', 'it', 'its', 'm', 'm2', 'walk', 'walk2']);
});

t.test('cgroupReconcile (vbpffs cgroup reconcile) repairs what the source missed, and says what it did', async (t) => {
  const e = await Engine.start({ sim: 'demo' });
  t.teardown(() => e.stop());
  const sim = e.source as SimCgroupSource;
  t.same(await e.cgroupReconcile(), { added: 0, removed: 0 }, 'nothing missed: nothing to do');
  // Made while tracking is paused: the source misses it, as a daemon misses a lost inotify event.
  await sim.pause();
  sim.cgroupfs.mkdir('/missed');
  t.equal(sim.hierarchy.cgroupByPath('/missed'), undefined);
  t.same(await e.cgroupReconcile(), { added: 1, removed: 0 });
  t.ok(sim.hierarchy.cgroupByPath('/missed'), 'the hierarchy (and so the mirror) has it after the reconcile');
});

t.test('an open file outlives its name: getattr by the path it was opened through, libfuse\'s hidden rename as the unlink', async (t) => {
  const state = mkdtempSync(path.join(tmpdir(), 'vbpffs-ec-'));
  const e = await Engine.start({ sim: 'demo', stateDir: state });
  t.teardown(() => e.stop());
  await e.iterPin(examplePath('procs'), '/procs');
  const ino = (await e.getattr('/procs')).ino;
  const fh = await e.open('/procs', 0);
  await e.unlink('/procs');
  t.equal((await e.getattr('/procs')).ino, ino, 'fstat of the unlinked pin (FUSE asks by its old path) is its inode');
  await t.rejects(e.getattr('/nope'), { code: 'ENOENT' }, 'a path no open file was opened through is still ENOENT');
  await t.rejects(e.getattr('/.nope'), { code: 'EPERM' }, 'and a dotted one still bpffs\'s EPERM');
  await e.release(fh);
  await t.rejects(e.getattr('/procs'), { code: 'ENOENT' }, 'once released, the name is gone for good');

  const hidden = '/system.slice/.fuse_hidden0000000a00000001';
  await t.rejects(e.getattr(hidden), { code: 'ENOENT' }, 'a free hidden name is ENOENT, which libfuse looks for');
  const held = await e.open('/system.slice/procs', 0);
  await e.rename('/system.slice/procs', hidden, 0);
  t.notOk((await e.readdir('/system.slice')).includes('procs'), 'the hide is the unlink');
  t.notOk((await e.readdir('/system.slice')).some((n) => n.startsWith('.fuse_hidden')), 'and the hidden name is nowhere in the tree');
  t.equal((await e.getattr(hidden)).mode & 0o170000, 0o100000, 'getattr of the hidden name is the open file\'s');
  t.match(Buffer.from(await e.read(held, 4096)).toString(), /^procs +\d+\nthreads +\d+\n$/, 'which reads on');
  await e.release(held);
  await e.unlink(hidden);
  t.pass('libfuse\'s unlink of the hidden name after the release succeeds');
  const ops = readFileSync(path.join(state, 'journal.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { op: string; path?: string });
  t.same(ops.filter((o) => o.op !== 'iterPin'), [{ op: 'unlink', path: '/procs' }, { op: 'unlink', path: '/system.slice/procs' }], 'journalled as the two unlinks they are');
});
