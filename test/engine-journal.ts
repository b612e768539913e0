/**
 * A damaged journal and a full state disk, in-process (the engine on this thread, and a mount for
 * what `vbpffs mount` and `vbpffs status` say): the engine starts with what the journal's whole
 * records restore, reports the damage and the records that failed on replay, and goes on taking
 * changes; a change that cannot be journalled fails with ENOSPC and changes nothing.
 * test/crash-consistency.ts does the same through real processes.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { Engine } from '../fs/engine/engine';
import { journalReport, mountForeground } from '../fs/cli-daemon';
import { printStatus } from '../fs/cli-objects';
import { controlCall } from '../fs/control/client';
import type { JournalRecord } from '../fs/state/journal';
import { fuseSkipReason } from './harness/mount';
import { smallTmpfs, tmpfsSkipReason } from './harness/tmpfs';
import { counterObject } from './harness/cgroup-progs';

const run = promisify(execFile);
const tmp = (): string => mkdtempSync(path.join(tmpdir(), 'vbpffs-ej-'));
const jsonl = (recs: (JournalRecord | string)[]): string => recs.map((r) => (typeof r === 'string' ? r : JSON.stringify(r)) + '\n').join('');
const HASH = { type: 'hash', key: 4, value: 4, entries: 8, name: 'm', keyType: 'u32', valueType: 'u32' };
const IDS = { prog: 1, map: 1, link: 1 };

t.test('a damaged journal: the engine starts with what came before the damage, reports it, and takes new changes', async (t) => {
  const dir = tmp();
  writeFileSync(
    path.join(dir, 'journal.jsonl'),
    jsonl([
      { op: 'mkdir', path: '/a', mode: 0o755 },
      { op: 'mapCreate', path: '/a/m', spec: HASH, ids: IDS },
      { op: 'mapUpdate', map: { pinned: '/a/m' }, key: { hex: '01000000' }, value: '2a000000', flags: 0 },
      // Well-formed, but naming a map that never was: it fails on replay and the replay goes on.
      { op: 'mapUpdate', map: { id: 77 }, key: { hex: '01000000' }, value: '00000000', flags: 0 },
      { op: 'mkdir', path: '/b', mode: 0o755 },
      '{"op":"mkdir","path":"/c"}',
      { op: 'mkdir', path: '/d', mode: 0o755 },
    ]),
  );
  let e = await Engine.start({ sim: 'demo', stateDir: dir });
  const j = e.status().journal!;
  t.equal(j.records, 5);
  t.same(j.failed, ['mapUpdate: ENOENT: no map with id 77']);
  t.match(j.damaged, /journal\.jsonl:6: mkdir: mode is missing or not what it should be \(missing\); the replay stopped there: 5 record\(s\) restored, 2 line\(s\) from there on not replayed; the journal as it was is kept as /);
  t.same((await e.readdir('/')).sort(), ['a', 'b'], 'what came before the damage is served, nothing after it');
  t.match(e.mapDump({ pinned: '/a/m' }), [{ formatted: { key: 1, value: 42 } }]);
  await e.mkdir('/e', 0o755);
  await e.mapUpdate({ pinned: '/a/m' }, { json: 2 }, { json: 3 });
  await e.stop();
  t.equal(readdirSync(dir).filter((f) => f.includes('damaged')).length, 1, 'the damaged journal is kept aside');

  e = await Engine.start({ sim: 'demo', stateDir: dir });
  t.teardown(() => e.stop());
  t.same((await e.readdir('/')).sort(), ['a', 'b', 'e'], 'a restart replays the restored records and the new ones');
  t.equal(e.status().journal!.damaged, undefined, 'the damage is reported once, by the start that found it');
  t.same(e.status().journal!.failed, ['mapUpdate: ENOENT: no map with id 77'], 'a record that fails on replay stays in the journal and fails again');
  t.match(e.mapDump({ pinned: '/a/m' }), [{ formatted: { key: 1, value: 42 } }, { formatted: { key: 2, value: 3 } }]);
});

t.test('a journal that cannot be read: the engine starts empty, says why, and journals anew', async (t) => {
  const dir = tmp();
  mkdirSync(path.join(dir, 'journal.jsonl'));
  let e = await Engine.start({ sim: 'demo', stateDir: dir });
  t.match(e.status().journal, { records: 0, failed: [], damaged: /cannot read .*journal\.jsonl \(EISDIR\): nothing was restored/ });
  await e.mkdir('/x', 0o755);
  await e.stop();
  e = await Engine.start({ sim: 'demo', stateDir: dir });
  t.teardown(() => e.stop());
  t.same(await e.readdir('/'), ['x']);
});

t.test('a full state disk', async (t) => {
  const skip = await tmpfsSkipReason();
  t.test('(tmpfs)', { skip }, async (t) => {
    const dir = await smallTmpfs(t, '64k');
    const fill = path.join(dir, 'fill');
    const file = path.join(dir, 'journal.jsonl');
    // The journal's last page is filled to where a pin's record still fits but the `failed` record
    // its refusal adds does not: the refusal (EEXIST) must be what the caller hears.
    const pin = JSON.stringify({ op: 'objPin', kind: 'map', ref: { pinned: '/m' }, path: '/m' }) + '\n';
    const recs: JournalRecord[] = [
      { op: 'mapCreate', path: '/m', spec: HASH, ids: IDS },
      { op: 'mapUpdate', map: { pinned: '/m' }, key: { hex: '01000000' }, value: '0a000000', flags: 0 },
    ];
    const want = 4096 - pin.length - 4;
    for (let rem = want - jsonl(recs).length; rem > 0; rem = want - jsonl(recs).length) {
      const name = `${recs.length}-`;
      const n = rem > 240 ? 150 : rem - '{"op":"mkdir","path":"/","mode":493}\n'.length - name.length;
      recs.push({ op: 'mkdir', path: `/${name}${'p'.repeat(n)}`, mode: 0o755 });
    }
    writeFileSync(file, jsonl(recs));
    t.equal(statSync(file).size, want, 'the journal ends where planned');
    const e = await Engine.start({ sim: 'demo', stateDir: dir });
    t.teardown(() => e.stop());
    await run('sh', ['-c', `cat /dev/zero > ${fill} 2>/dev/null; true`]);

    await t.rejects(e.objPin('map', { pinned: '/m' }, '/m'), { code: 'EEXIST' }, 'the refusal, not the marker that could not be written');
    const size = statSync(file).size;
    await t.rejects(e.mapUpdate({ pinned: '/m' }, { json: 1 }, { json: 11 }), { code: 'ENOSPC', message: /the state directory is full: .*journal\.jsonl cannot record this change, so it was not made/ });
    await t.rejects(e.mkdir('/new', 0o755), { code: 'ENOSPC' });
    t.equal(statSync(file).size, size, 'nothing of the refused changes is in the journal');
    t.match(e.mapDump({ pinned: '/m' }), [{ formatted: { key: 1, value: 10 } }], 'the map is unchanged');
    await t.rejects(e.getattr('/new'), { code: 'ENOENT' }, 'no directory was made');

    rmSync(fill);
    await e.mapUpdate({ pinned: '/m' }, { json: 1 }, { json: 12 });
    await e.mkdir('/new', 0o755);
    const again = await Engine.start({ sim: 'demo', stateDir: dir });
    t.teardown(() => again.stop());
    t.match(again.mapDump({ pinned: '/m' }), [{ formatted: { key: 1, value: 12 } }], 'a restart replays what was made, and only that');
    t.ok((await again.readdir('/')).includes('new'));
    t.same(again.status().journal!.failed, ['objPin: EEXIST: m exists'], "the pin whose `failed` record was not written fails again on replay, changing nothing");
    t.match(JSON.parse(readFileSync(file, 'utf8').trim().split('\n').at(-1)!), { op: 'mkdir', path: '/new' });
  });
});

t.test('vbpffs mount and status say what went wrong restoring the journal', async (t) => {
  const skip = await fuseSkipReason();
  t.test('(mounted)', { skip }, async (t) => {
    const base = tmp();
    const state = path.join(base, 'state');
    mkdirSync(state);
    writeFileSync(path.join(state, 'journal.jsonl'), jsonl([{ op: 'rmdir', path: '/nothing' }, '\u0000garbage', { op: 'mkdir', path: '/a', mode: 0o755 }]));
    const lines: string[] = [];
    const up = mountForeground({ mountPoint: path.join(base, 'mnt'), sim: 'demo', state, foreground: true, allowOther: false }, (l) => lines.push(l));
    for (let i = 0; i < 600 && lines.length < 4; i++) await new Promise((r) => setTimeout(r, 50));
    t.match(lines[0], /^vbpffs mounted at /);
    t.equal(lines[1], `warning: journal: 1 record(s) replayed, 1 failed (${state}/journal.jsonl)`);
    t.match(lines[2], /^warning: journal damaged: .*journal\.jsonl:2: not JSON; the replay stopped there: 1 record\(s\) restored, 2 line\(s\) from there on not replayed; the journal as it was is kept as \S+journal\.jsonl\.damaged-\S+$/);
    t.equal(lines[3], 'warning: journal replay failed: rmdir: ENOENT: nothing: no such file or directory');
    const status = await controlCall<Record<string, unknown>>(path.join(state, 'control.sock'), 'status');
    const out: string[] = [];
    printStatus([{ state: 'running', ...status }, { mountPoint: '/gone', pid: 1, state: 'dead' }], { json: false, pretty: false, out: (l) => out.push(l) });
    t.equal(out.pop(), '/gone  pid 1  dead', 'a dead mount has no journal to report');
    t.same(out.slice(2), lines.slice(1).map((l) => `\t${l.replace(/^warning: /, '')}`), 'status says the same after the fact');
    await controlCall(path.join(state, 'control.sock'), 'shutdown');
    await up;
  });
});

t.test('the journal lines of mount and status: none for a clean replay, one per failed record otherwise', async (t) => {
  const file = '/run/vbpffs/x/journal.jsonl';
  t.same(journalReport(null), [], 'no state directory');
  t.same(journalReport({ file, records: 3, failed: [] }), [], 'a clean replay says nothing');
  t.same(journalReport({ file, records: 3, failed: ['unlink: ENOENT: a: no such file or directory'] }), [
    `journal: 3 record(s) replayed, 1 failed (${file})`,
    'journal replay failed: unlink: ENOENT: a: no such file or directory',
  ]);
});

t.test('objects made by concurrent commands get the ids they had on replay: creations run one at a time, each journalled with the id cursors it started from', async (t) => {
  const dir = tmp();
  // Two programs: the second is released when the load closes its collection, freeing its id.
  const iters = path.join(dir, 'iters.ts');
  writeFileSync(iters, ["import { SEC } from 'vbpffs/bpf';", "export const first = SEC('iter/cgroup', () => 0);", "export const second = SEC('iter/cgroup', () => 0);", ''].join('\n'));
  const allow = path.join(dir, 'allow.ts');
  writeFileSync(allow, counterObject([{ val: 1n, verdict: 1 }]));
  let e = await Engine.start({ sim: 'demo', stateDir: dir });
  const made = await Promise.all([e.progLoad(iters, '/iters'), e.progLoad(allow, '/allow'), e.mapCreate('/m', HASH), e.iterPin(iters, '/walk')]);
  // What later commands name by id must name the same objects after a restart.
  await Promise.all([e.objPin('prog', { id: made[1].id }, '/allow2'), e.objPin('map', { id: made[2].id }, '/m2'), e.objPin('link', { id: made[3].linkId }, '/walk2')]);
  const ids = (en: Engine): unknown[] =>
    ['/iters', '/allow', '/allow2'].map((p) => en.progShow({ pinned: p })[0]!.id).concat(
      ['/m', '/m2'].map((p) => en.mapShow({ pinned: p })[0]!.id),
      ['/walk', '/walk2'].map((p) => en.linkShow({ pinned: p })[0]!.id),
    );
  const before = ids(e);
  t.same(before.slice(1, 3), [made[1].id, made[1].id]);
  await e.stop();
  e = await Engine.start({ sim: 'demo', stateDir: dir });
  t.teardown(() => e.stop());
  t.same(e.status().journal!.failed, [], 'every record replays');
  t.same(ids(e), before, 'programs, maps and links have the ids they had');
});
