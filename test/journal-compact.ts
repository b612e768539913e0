/**
 * The journal records exactly what happened (issue 14): only operations that succeeded, every
 * metadata change the mount accepts, no path a file name cannot hold, and it is compacted so its
 * size follows the state, not the history; loading streams it. In-process: the engine on this
 * thread over the simulated `demo` tree, restarted on the same state directory.
 * test/journal-mount.ts does the same through a real mount and kill -9.
 */
import { closeSync, mkdtempSync, openSync, readFileSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { Engine } from '../fs/engine/engine';
import { prune, type Entry } from '../fs/state/compact';
import { recordPaths, type JournalRecord } from '../fs/state/journal';
import { cgroupArg, MountPath, objectFile, parseIterPin, parseMapCommand } from '../fs/cli-args';
import { examplePath } from '../progs/examples';

const tmp = (): string => mkdtempSync(path.join(tmpdir(), 'vbpffs-jc-'));
const lines = (dir: string): JournalRecord[] =>
  readFileSync(path.join(dir, 'journal.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as JournalRecord);
const VIEW = examplePath('procs');
const HASH = { type: 'hash', key: 4, value: 4, entries: 64, name: 'm', keyType: 'u32', valueType: 'u32' };
const ITER_SRC = [
  "import { SEC } from 'vbpffs/bpf';",
  "export const walk = SEC('iter/cgroup', (ctx) => { if (ctx.cgroup !== null) ctx.seq.printf('%d\\n', ctx.cgroup.id); return 0; });",
].join('\n');
const refusal = async (p: Promise<unknown>): Promise<string> => {
  try {
    await p;
    return 'succeeded';
  } catch (e) {
    return (e as { code: string }).code;
  }
};

/** A map's elements in key order: an element's place in a hash map's listing is its last update's, which compaction may reorder. */
const sortedDump = (e: Engine): unknown => (e.mapDump({ pinned: '/keep/m' }) as { formatted: { key: number } }[]).sort((a, b) => a.formatted.key - b.formatted.key);

/** The tree below p as `type path mode uid:gid` lines (what a restart must give back). */
async function tree(e: Engine, p = '/'): Promise<string[]> {
  const out: string[] = [];
  for (const n of (await e.readdir(p)).sort()) {
    const q = p === '/' ? `/${n}` : `${p}/${n}`;
    const st = await e.getattr(q);
    const dir = (st.mode & 0o170000) === 0o040000;
    out.push(`${dir ? 'd' : 'f'} ${q} ${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}`);
    if (dir) out.push(...(await tree(e, q)));
  }
  return out;
}

t.test('the journal records only operations that succeeded: refused mkdir, rmdir and others leave nothing to replay', async (t) => {
  const dir = tmp();
  let e = await Engine.start({ sim: 'demo', stateDir: dir });
  await e.mkdir('/plain', 0o755);
  await e.mkdir('/plain/sub', 0o755);
  await e.mkdir('/t', 0o755);
  await e.iterPin(VIEW, '/t/procs'); // tags /t with the cgroup root: the mirror fills it
  await e.symlink('/plain', '/plain-link');
  const refused = {
    'mkdir of a name no cgroup has, in a tagged directory': await refusal(e.mkdir('/t/nosuch', 0o755)),
    'rmdir of a non-empty directory': await refusal(e.rmdir('/plain')),
    'rmdir of a tagged directory with child cgroups (its inherited file goes, the rmdir is refused)': await refusal(e.rmdir('/t/system.slice')),
    'rmdir of the root': await refusal(e.rmdir('/')),
    'unlink of a directory': await refusal(e.unlink('/plain/sub')),
    'rename onto a non-empty directory': await refusal(e.rename('/t/user.slice', '/plain', 0)),
    'link of a directory': await refusal(e.link('/plain', '/plain2')),
    'chmod of a symlink': await refusal(e.chmod('/plain-link', 0o700)),
    'chown of a missing name': await refusal(e.chown('/missing', 1, 1)),
    'utimens of a missing name': await refusal(e.utimens('/missing', new Date(0), new Date(0))),
  };
  t.same(Object.values(refused), ['ENOENT', 'ENOTEMPTY', 'ENOTEMPTY', 'EBUSY', 'EISDIR', 'ENOTEMPTY', 'EPERM', 'EOPNOTSUPP', 'ENOENT', 'ENOENT'], JSON.stringify(refused));
  t.same(await e.readdir('/t/system.slice'), ['postgres.service', 'cron.service'].filter((n) => n), 'the refused rmdir unlinked the inherited file');
  const live = await tree(e);
  await e.stop();

  e = await Engine.start({ sim: 'demo', stateDir: dir });
  t.same(e.status().journal!.failed, [], 'no record fails on replay: none of the refusals was replayed');
  t.same(await tree(e), live, 'the restart gives the tree as it was, the refused rmdir unlinked file included');
  t.notOk((await e.readdir('/t')).includes('nosuch'));
  await e.compact();
  const recs = lines(dir);
  t.notOk(
    recs.some((r) => r.op === 'failed' || ('path' in r && ['/t/nosuch', '/plain', '/', '/plain/sub', '/missing'].includes(r.path) && r.op !== 'mkdir' && r.op !== 'symlink')),
    'after compaction no refused operation is in the journal at all',
  );
  await e.stop();
  e = await Engine.start({ sim: 'demo', stateDir: dir });
  t.teardown(() => e.stop());
  t.same(await tree(e), live, 'and the compacted journal replays to the same tree');
});

t.test('a refused mkdir in manual mirror mode is never made by a later replay, whatever cgroups exist then', async (t) => {
  const dir = tmp();
  let e = await Engine.start({ sim: 'demo', stateDir: dir, mirror: 'manual' });
  await e.mkdir('/t', 0o755);
  await e.iterPin(VIEW, '/t/procs');
  t.equal(await refusal(e.mkdir('/t/later', 0o755)), 'ENOENT');
  await e.stop();
  const recs = lines(dir);
  const i = recs.findIndex((r) => r.op === 'mkdir' && r.path === '/t/later');
  t.ok(
    recs.some((r) => r.op === 'failed' && r.index === i),
    'the refused mkdir is marked failed, so replay skips it even once a cgroup of its name exists',
  );
  // Give the journal a cgroup of that name to find: the simulated tree is made anew at each start,
  // so the refused record is renamed to an existing cgroup instead.
  writeFileSync(path.join(dir, 'journal.jsonl'), recs.map((r) => JSON.stringify(r.op === 'mkdir' && r.path === '/t/later' ? { ...r, path: '/t/system.slice' } : r) + '\n').join(''));
  e = await Engine.start({ sim: 'demo', stateDir: dir, mirror: 'manual' });
  t.teardown(() => e.stop());
  t.same(await e.readdir('/t'), ['procs'], 'the directory the user was refused is not made');
  t.same(e.status().journal!.failed, []);
});

t.test('every metadata change the mount accepts is journalled: chown, chmod and utimens survive a restart', async (t) => {
  const dir = tmp();
  let e = await Engine.start({ sim: 'demo', stateDir: dir });
  await e.mkdir('/d', 0o755);
  await e.mapCreate('/d/m', HASH);
  await e.symlink('/d/m', '/d/link');
  await e.chown('/d', 1234, 5678);
  await e.chown('/d/m', 42, -1); // -1 leaves the group as it is
  await e.chown('/d/link', 7, 8); // lchown: the symlink's own owner
  await e.chmod('/d/m', 0o640);
  await e.utimens('/d/m', new Date(1_000_000), new Date(2_000_000));
  const want = await Promise.all(['/d', '/d/m', '/d/link'].map((p) => e.getattr(p)));
  await e.stop();
  e = await Engine.start({ sim: 'demo', stateDir: dir });
  t.teardown(() => e.stop());
  const got = await Promise.all(['/d', '/d/m', '/d/link'].map((p) => e.getattr(p)));
  t.same(
    got.map((s) => [s.uid, s.gid, s.mode]),
    want.map((s) => [s.uid, s.gid, s.mode]),
    'owners and modes as they were',
  );
  t.same([got[0]!.uid, got[0]!.gid, got[1]!.uid, got[1]!.gid, got[2]!.uid], [1234, 5678, 42, want[1]!.gid, 7]);
  t.same([got[1]!.atime.getTime(), got[1]!.mtime.getTime()], [1_000_000, 2_000_000], 'times as set');
  t.same(e.status().journal!.failed, []);
});

t.test('paths no file name can hold (NUL, a lone surrogate) are refused with EINVAL, and nothing is journalled', async (t) => {
  const dir = tmp();
  const e = await Engine.start({ sim: 'demo', stateDir: dir });
  t.teardown(() => e.stop());
  await e.mkdir('/ok', 0o755);
  const bad = ['/ok/a\0b', '/ok/\0', '/ok/x\ud800', '/ok/\udc00y'];
  for (const p of bad) {
    t.equal(await refusal(e.iterPin(VIEW, p)), 'EINVAL', `iter pin at ${JSON.stringify(p)}`);
    t.equal(await refusal(e.mapCreate(p, HASH)), 'EINVAL', `map create at ${JSON.stringify(p)}`);
    t.equal(await refusal(e.progLoadAll(VIEW, p)), 'EINVAL', `prog loadall into ${JSON.stringify(p)}`);
    t.equal(await refusal(e.progLoad(VIEW, p)), 'EINVAL', `prog load at ${JSON.stringify(p)}`);
    t.equal(await refusal(e.objPin('map', { pinned: p }, '/ok/x')), 'EINVAL', `pinned ${JSON.stringify(p)}`);
    t.equal(await refusal(e.iterPin(p.replace('/ok', '/tmp'), '/ok/v')), 'EINVAL', `an object file ${JSON.stringify(p)}`);
    t.equal(await refusal(e.cgroupAttach(p, 'cgroup_inet_ingress', { id: 1 })), 'EINVAL', `cgroup ${JSON.stringify(p)}`);
    t.equal(await refusal(e.iterPin(VIEW, '/ok/v', { cgroup: p })), 'EINVAL', `iterator start cgroup ${JSON.stringify(p)}`);
  }
  t.same(await e.readdir('/ok'), [], 'nothing was made');
  t.same(
    lines(dir).map((r) => r.op),
    ['mkdir'],
    'nothing was journalled',
  );
});

t.test('journal replay refuses a path no file name can hold (EINVAL) and goes on; compaction drops it', async (t) => {
  const dir = tmp();
  const recs: JournalRecord[] = [
    { op: 'mkdir', path: '/a\u0000b', mode: 0o755 },
    { op: 'mkdir', path: '/good', mode: 0o755 },
    { op: 'mapCreate', path: '/good/m\ud800', spec: HASH, ids: { prog: 1, map: 1, link: 1 } },
    { op: 'symlink', target: '/x\u0000', path: '/good/l' },
  ];
  writeFileSync(path.join(dir, 'journal.jsonl'), recs.map((r) => JSON.stringify(r) + '\n').join(''));
  t.ok(recs.every((r) => recordPaths(r).length > 0));
  let e = await Engine.start({ sim: 'demo', stateDir: dir });
  t.same((await e.readdir('/')).sort(), ['good'], 'only the good record is made');
  t.same(await e.readdir('/good'), []);
  t.equal(e.status().journal!.failed.length, 3);
  t.match(e.status().journal!.failed, [/mkdir: EINVAL: .*NUL byte/, /mapCreate: EINVAL: .*lone UTF-16 surrogate/, /symlink: EINVAL: .*NUL byte/]);
  await e.compact();
  t.same(lines(dir), [recs[1]], 'compaction keeps only what happened');
  await e.stop();
  e = await Engine.start({ sim: 'demo', stateDir: dir });
  t.teardown(() => e.stop());
  t.same(e.status().journal!.failed, [], 'and the next start replays without a failure');
});

t.test("the CLI's argument parsing refuses paths no file name can hold", async (t) => {
  for (const p of ['a\0b', '/x/\ud800']) {
    t.throws(() => new MountPath(p), { code: 'EINVAL' }, `a mount path ${JSON.stringify(p)}`);
    t.throws(() => objectFile(p), { code: 'EINVAL' }, `an object file ${JSON.stringify(p)}`);
    t.throws(() => cgroupArg(p), { code: 'EINVAL' }, `a cgroup ${JSON.stringify(p)}`);
    t.throws(() => parseIterPin(['/obj.ts', p]), { code: 'EINVAL' }, 'iter pin PATH');
    t.throws(() => parseIterPin(['/obj.ts', '/v', 'cgroup', p]), { code: 'EINVAL' }, 'iter pin ... cgroup CGROUP');
    t.throws(() => parseMapCommand('pin', ['pinned', p, '/m']), { code: 'EINVAL' }, 'map pin pinned PATH');
  }
  t.equal(new MountPath('/plain/π').raw, '/plain/π', 'other characters are file names like any');
});

t.test('prune: what compaction keeps', async (t) => {
  const fp = (o: Partial<Entry['fp']> = {}): Entry['fp'] => ({ creates: [], touches: [], walks: [], ...o });
  const e = (path: string, o: Partial<Entry['fp']>): Entry => ({ rec: { op: 'mkdir', path, mode: 0o755 }, fp: fp(o) });
  const names = (es: Entry[]): string[] => es.map((x) => ('path' in x.rec ? x.rec.path : x.rec.op));
  const live = (...keys: string[]) => (k: string) => keys.includes(k);
  t.same(names(prune([e('mk a', { creates: ['i2'] }), e('rm a', { touches: ['i2'] })], live())), [], 'a directory made and removed: both go');
  t.same(names(prune([e('mk a', { creates: ['i2'] }), e('chmod a', { touches: ['i2'] })], live('i2'))), ['mk a', 'chmod a'], 'a live one keeps its history');
  t.same(
    names(prune([e('mk a', { creates: ['i2'] }), e('mk a/b', { creates: ['i3'], walks: ['i2'] }), e('mv a/b c', { touches: ['i3'], walks: ['i2'] }), e('rm a', { touches: ['i2'] })], live('i3'))),
    ['mk a', 'mk a/b', 'mv a/b c', 'rm a'],
    'a dead directory a live one was made in comes back with its removal',
  );
  t.same(names(prune([e('rm mirrored', { touches: ['i9'] })], live())), ['rm mirrored'], 'removing what no record made (the mirror did) is kept');
  t.same(names(prune([e('mk a', { creates: ['i2'] }), e('ln -s', { creates: ['i3'], barrier: true }), e('rm a', { touches: ['i2'] })], live('i3'))), ['mk a', 'ln -s', 'rm a'], 'a barrier keeps what came before it, and so what acted on that');
  const upd = (v: string, flags: number, el = '1:k'): Entry => ({ rec: { op: 'mapUpdate', map: { id: 1 }, key: { hex: '00' }, value: v, flags }, fp: fp({ touches: ['omap1'], element: el }) });
  const del: Entry = { rec: { op: 'mapDelete', map: { id: 1 }, key: { hex: '00' } }, fp: fp({ touches: ['omap1'], element: '1:k' }) };
  const mk: Entry = { rec: { op: 'mapCreate', path: '/m', spec: {} }, fp: fp({ creates: ['omap1', 'i5'] }) };
  t.same(
    prune([mk, upd('01', 1), upd('02', 2), upd('03', 0, '1:j')], live('omap1', 'i5')).map((x) => x.rec),
    [mk.rec, { ...upd('02', 0).rec }, upd('03', 0, '1:j').rec],
    "an element's last update stays, as BPF_ANY",
  );
  t.same(prune([mk, upd('01', 1), del], live('omap1', 'i5')).map((x) => x.rec), [mk.rec], 'an element deleted last: none of its records');
  t.same(prune([mk, upd('01', 1)], live()), [], "a dead map's records all go");
});

t.test('compaction: the journal follows the state, not the history, and replays to the same state', async (t) => {
  const dir = tmp();
  const iter = path.join(dir, 'walk.ts');
  writeFileSync(iter, ITER_SRC);
  // Compacts itself every 40 records.
  let e = await Engine.start({ sim: 'demo', stateDir: dir, compact: { records: 40, bytes: 1 << 30 } });
  await e.mkdir('/keep', 0o755);
  await e.mapCreate('/keep/m', HASH);
  await e.iterPin(iter, '/keep/it');
  await e.iterPin(VIEW, '/keep/view');
  await e.progLoad(iter, '/keep/prog');
  for (let i = 0; i < 60; i++) {
    await e.mkdir(`/tmp${i}`, 0o755);
    await e.mkdir(`/tmp${i}/x`, 0o755);
    await e.chown(`/tmp${i}/x`, i, i);
    await e.rename(`/tmp${i}/x`, `/tmp${i}/y`, 0);
    await e.rmdir(`/tmp${i}/y`);
    await e.rmdir(`/tmp${i}`);
    await e.mapUpdate({ pinned: '/keep/m' }, { json: i % 5 }, { json: i }, i < 5 ? 1 : 2 - (i % 2) * 2);
    if (i % 10 === 0) {
      await e.iterPin(iter, '/gone'); // an iterator, its program and source, pinned and unpinned
      await e.unlink('/gone');
      await e.mapCreate('/m2', HASH);
      await e.mapUpdate({ pinned: '/m2' }, { json: 1 }, { json: 1 });
      await e.unlink('/m2');
    }
  }
  await e.mapDelete({ pinned: '/keep/m' }, { json: 4 });
  await e.objPin('prog', { pinned: '/keep/prog' }, '/keep/prog2');
  await e.unlink('/keep/prog');
  await e.mkdir('/p2', 0o755);
  await e.mkdir('/p2/moved', 0o755);
  await e.rename('/p2/moved', '/moved', 0);
  await e.rmdir('/p2');
  const want = { tree: await tree(e), dump: sortedDump(e), progs: e.progShow().map((p) => [p.id, p.name]), maps: e.mapShow().map((m) => m.id), links: e.linkShow().map((l) => [l.id, l.prog_id]) };
  await e.stop();
  const recs = lines(dir);
  t.ok(recs.length < 60, `${recs.length} records for ${60 * 7 + 40} operations: compacted as it went`);
  e = await Engine.start({ sim: 'demo', stateDir: dir, compact: { records: 1, bytes: 1 << 30 } });
  const got = { tree: await tree(e), dump: sortedDump(e), progs: e.progShow().map((p) => [p.id, p.name]), maps: e.mapShow().map((m) => m.id), links: e.linkShow().map((l) => [l.id, l.prog_id]) };
  t.same(got, want, 'the restart gives the same tree, map contents and object ids');
  t.same(e.status().journal!.failed, [], 'and no record of the snapshot fails');
  await e.stop();
  const after = lines(dir);
  t.ok(after.length <= 15, `compacted at start: ${after.length} records (${after.map((r) => r.op).join(' ')})`);
  t.notOk(after.some((r) => 'source' in r && r.op === 'iterPin' && r.pinPath === '/gone'), 'no unpinned program source is kept');
  e = await Engine.start({ sim: 'demo', stateDir: dir });
  t.teardown(() => e.stop());
  t.same({ tree: await tree(e), dump: sortedDump(e), progs: e.progShow().map((p) => [p.id, p.name]), maps: e.mapShow().map((m) => m.id), links: e.linkShow().map((l) => [l.id, l.prog_id]) }, want, 'a second restart, from the snapshot alone, the same');
});

t.test('a journal larger than the longest string V8 makes is streamed, replayed and compacted', { timeout: 300_000 }, async (t) => {
  const dir = tmp();
  const file = path.join(dir, 'journal.jsonl');
  const fd = openSync(file, 'w');
  writeSync(fd, JSON.stringify({ op: 'mkdir', path: '/first', mode: 0o755 }) + '\n');
  // 600 records of 1 MiB of source each, every one refused and marked failed: 600 MiB, past the
  // ~512 MiB a string can hold, cheap to replay (nothing is loaded).
  const source = 'x'.repeat(1 << 20);
  for (let i = 0; i < 600; i++) {
    writeSync(fd, JSON.stringify({ op: 'progLoad', filename: '/x.ts', source, path: `/p${i}`, ids: { prog: 1, map: 1, link: 1 } }) + '\n');
    writeSync(fd, JSON.stringify({ op: 'failed', index: 1 + 2 * i }) + '\n');
  }
  writeSync(fd, JSON.stringify({ op: 'mkdir', path: '/last', mode: 0o755 }) + '\n');
  closeSync(fd);
  t.ok(statSync(file).size > 600 * (1 << 20));
  const e = await Engine.start({ sim: 'demo', stateDir: dir });
  t.teardown(() => e.stop());
  t.same((await e.readdir('/')).sort(), ['first', 'last'], 'every record replayed, the last one included');
  t.equal(e.status().journal!.damaged, undefined, 'nothing reported damaged');
  t.ok(statSync(file).size < 1024, `compacted at start to ${statSync(file).size} bytes`);
  t.same(lines(dir).map((r) => ('path' in r ? r.path : r.op)), ['/first', '/last']);
});
