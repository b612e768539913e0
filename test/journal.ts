import t from 'tap';
import { execFile } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Journal, recordProblem, type JournalRecord } from '../fs/state/journal';
import { smallTmpfs, tmpfsSkipReason } from './harness/tmpfs';

const run = promisify(execFile);
const tmp = (): string => mkdtempSync(path.join(tmpdir(), 'vbpffs-j-'));
const line = (r: JournalRecord): string => JSON.stringify(r) + '\n';
const aside = (dir: string): string[] => readdirSync(dir).filter((f) => f.startsWith('journal.jsonl.damaged-'));

const MKDIR: JournalRecord = { op: 'mkdir', path: '/a', mode: 0o755 };
const PIN: JournalRecord = { op: 'iterPin', filename: '/x/cpu.ts', source: 'export {}', pinPath: '/a/cpu', opts: {}, ids: { prog: 1, map: 1, link: 1 } };

t.test('journal: records are appended, flushed and read back in order', async (t) => {
  const dir = tmp();
  const j = new Journal(dir);
  t.same(await j.load(), { records: [] }, 'no journal yet: nothing to replay');
  t.equal(await j.append(MKDIR), 0);
  t.equal(await j.append(PIN), 1, 'append resolves with the record index');
  await j.close();
  t.same((await new Journal(dir).load()).records, [MKDIR, PIN]);
});

t.test('journal: appends in flight at once are all kept, each index naming its own line', async (t) => {
  const dir = tmp();
  const j = new Journal(dir);
  await j.load();
  const recs: JournalRecord[] = Array.from({ length: 40 }, (_, i) => ({ op: 'mkdir', path: `/d${i}`, mode: 0o755 }));
  const indexes = await Promise.all(recs.map((r) => j.append(r)));
  await j.close();
  const back = (await new Journal(dir).load()).records;
  t.equal(back.length, recs.length, 'no append wrote over another');
  t.same(indexes.map((i) => back[i]), recs, "each append's index is the line its record is on");
});

t.test('journal: an empty file is an empty journal, not damage', async (t) => {
  const dir = tmp();
  writeFileSync(path.join(dir, 'journal.jsonl'), '');
  t.same(await new Journal(dir).load(), { records: [] });
});

t.test('journal: a torn last record, cut at any byte, replays to the records before it and says so', async (t) => {
  const dir = tmp();
  const file = path.join(dir, 'journal.jsonl');
  const whole = line(MKDIR) + line(PIN);
  const start = Buffer.byteLength(line(MKDIR));
  for (let cut = start + 1; cut < whole.length - 1; cut++) {
    writeFileSync(file, whole.slice(0, cut));
    const j = new Journal(dir);
    const loaded = await j.load();
    t.same(loaded.records, [MKDIR], `cut at byte ${cut}`);
    t.match(loaded.damaged, /journal\.jsonl:2: a torn last record \(a write the daemon was stopped in\) was cut/);
    t.equal(readFileSync(file, 'utf8'), line(MKDIR), 'the file is the whole records only');
    t.equal(await j.append({ op: 'rmdir', path: '/a' }), 1, 'the next record follows them');
    await j.close();
    t.same((await new Journal(dir).load()).records, [MKDIR, { op: 'rmdir', path: '/a' }]);
  }
  t.same(aside(dir), [], 'a torn tail is an interrupted write, not damage worth keeping');
});

t.test('journal: a last record whose newline was not written is whole, and the next one does not join it', async (t) => {
  const dir = tmp();
  const file = path.join(dir, 'journal.jsonl');
  writeFileSync(file, line(MKDIR) + JSON.stringify(PIN));
  const j = new Journal(dir);
  t.same(await j.load(), { records: [MKDIR, PIN] });
  t.equal(await j.append({ op: 'failed', index: 1 }), 2);
  await j.close();
  t.same((await new Journal(dir).load()).records, [MKDIR, PIN, { op: 'failed', index: 1 }]);
});

t.test('journal: damage before the end stops the replay there; the file as it was is kept aside', async (t) => {
  const cases: [string, string, RegExp][] = [
    ['garbage', 'this is not json\n', /:2: not JSON;/],
    ['binary junk', '\u0000\u00ff\u0001\u00fe\ufffd\u0007\n', /:2: not JSON;/],
    ['a JSON array', '[1, 2, 3]\n', /:2: not a JSON object;/],
    ['an unknown operation', '{"op":"format","path":"/"}\n', /:2: unknown operation "format";/],
    ['no operation', '{"path":"/"}\n', /:2: unknown operation undefined;/],
    ['a missing field', '{"op":"mkdir","path":"/b"}\n', /:2: mkdir: mode is missing or not what it should be \(missing\);/],
    ['a field of the wrong type', '{"op":"unlink","path":7}\n', /:2: unlink: path is missing or not what it should be \(7\);/],
    ['a bad reference', '{"op":"mapDelete","map":{"id":"1"},"key":{"hex":"00"}}\n', /:2: mapDelete: map is missing/],
    ['an unexpected field', '{"op":"rmdir","path":"/a","force":true}\n', /:2: rmdir: unexpected field force;/],
    ['bad ids', '{"op":"rmdir","path":"/a","ids":{"prog":1}}\n', /:2: rmdir: ids is not \{prog, map, link\};/],
    ['a failed record naming a later one', '{"op":"failed","index":1}\n', /:2: failed: index 1 names no earlier record;/],
  ];
  for (const [what, bad, why] of cases) {
    const dir = tmp();
    const file = path.join(dir, 'journal.jsonl');
    const text = line(MKDIR) + bad + '\n' + line(PIN);
    writeFileSync(file, text);
    const loaded = await new Journal(dir).load();
    t.same(loaded.records, [MKDIR], `${what}: the records before it are replayed`);
    t.match(loaded.damaged, why, what);
    t.match(loaded.damaged, /the replay stopped there: 1 record\(s\) restored, 2 line\(s\) from there on not replayed; the journal as it was is kept as .*journal\.jsonl\.damaged-/);
    t.equal(readFileSync(file, 'utf8'), line(MKDIR), `${what}: the journal goes on from the restored records`);
    const [kept] = aside(dir);
    t.equal(readFileSync(path.join(dir, kept!), 'utf8'), text, `${what}: nothing is lost for good`);
  }
});

t.test('journal: every operation the engine records passes the record check', async (t) => {
  const ref = { id: 1 };
  const all: JournalRecord[] = [
    MKDIR,
    { op: 'rmdir', path: '/a' },
    { op: 'unlink', path: '/a' },
    { op: 'rename', from: '/a', to: '/b', flags: 0 },
    { op: 'link', existing: '/a', path: '/b' },
    { op: 'symlink', target: 'a', path: '/b' },
    { op: 'chmod', path: '/a', mode: 0o700 },
    PIN,
    { op: 'progLoadAll', filename: '/x.ts', source: '', dir: '/d' },
    { op: 'iterPinProg', prog: { pinned: '/p' }, pinPath: '/i', opts: { order: 'self_only' } },
    { op: 'progLoad', filename: '/x.ts', source: '', path: '/p' },
    { op: 'mapCreate', path: '/m', spec: { type: 'hash' } },
    { op: 'objPin', kind: 'map', ref, path: '/m2' },
    { op: 'mapUpdate', map: ref, key: { hex: '00' }, value: '00', flags: 0 },
    { op: 'mapDelete', map: ref, key: { cgroup: '/system.slice' } },
    { op: 'linkUpdate', link: ref, prog: ref },
    { op: 'linkDetach', link: ref },
    { op: 'cgroupAttach', cgroup: '/', attachType: 'cgroup_inet_ingress', prog: ref, flags: 0 },
    { op: 'cgroupDetach', cgroup: '/', attachType: 'cgroup_inet_ingress', prog: ref },
    { op: 'failed', index: 0 },
  ];
  t.same(
    all.map((r, i) => recordProblem(JSON.parse(JSON.stringify(r)), i + 1)),
    all.map(() => undefined),
  );
  t.equal(recordProblem({ op: 'objPin', kind: 'cgroup', ref, path: '/x' }, 0), 'objPin: kind is missing or not what it should be ("cgroup")');
  t.match(recordProblem({ op: 'linkDetach', link: { id: 1, pinned: '/x' } }, 0), /link is missing or not what it should be/, 'a reference is one of id or pinned');
  t.match(recordProblem({ op: 'mapDelete', map: ref, key: 'ab' }, 0), /key is missing/);
  t.match(recordProblem(null, 0), /not a JSON object/);
});

t.test('journal: one that cannot be read (a directory in its place) is moved aside, and journalling goes on', async (t) => {
  const dir = tmp();
  const file = path.join(dir, 'journal.jsonl');
  mkdirSync(file);
  const j = new Journal(dir);
  const loaded = await j.load();
  t.same(loaded.records, []);
  t.match(loaded.damaged, /cannot read .*journal\.jsonl \(EISDIR\): nothing was restored; the journal as it was is kept as .*journal\.jsonl\.damaged-/);
  t.ok(statSync(path.join(dir, aside(dir)[0]!)).isDirectory(), 'moved aside as it was');
  t.equal(await j.append(MKDIR), 0);
  await j.close();
  t.same((await new Journal(dir).load()).records, [MKDIR]);
});

t.test('journal: a state directory that cannot be written fails the append with the errno', async (t) => {
  const j = new Journal('/nonexistent-vbpffs-state');
  await t.rejects(j.append({ op: 'rmdir', path: '/a' }), { code: 'ENOENT', message: /writing the journal/ });
});

t.test('journal: on a full disk', async (t) => {
  const skip = await tmpfsSkipReason();
  t.test('(tmpfs)', { skip }, async (t) => {
    t.test('an unreadable journal that cannot be moved either is reported, and appends fail clearly', async (t) => {
      const dir = tmp();
      const file = path.join(dir, 'journal.jsonl');
      mkdirSync(file);
      // A mount point cannot be renamed (EBUSY), and reads as a directory (EISDIR).
      await run('mount', ['-t', 'tmpfs', '-o', 'size=4k', 'tmpfs', file]);
      t.teardown(async () => void (await run('umount', ['-l', file])));
      const j = new Journal(dir);
      const loaded = await j.load();
      t.match(loaded.damaged, /\(EISDIR\): nothing was restored; it cannot be moved aside either \(EBUSY\): changes cannot be journalled until it is/);
      await t.rejects(j.append(MKDIR), { code: 'EISDIR', message: /writing the journal/ });
    });

    t.test('a record that does not fit leaves nothing in the file, and the next one lands whole', async (t) => {
      const dir = await smallTmpfs(t, '64k');
      const j = new Journal(dir);
      await j.load();
      await j.append(MKDIR);
      const before = readFileSync(path.join(dir, 'journal.jsonl'), 'utf8');
      // Fill what is left, then free less than a record needs: the record's write is cut short.
      await run('sh', ['-c', `cat /dev/zero > ${dir}/fill 2>/dev/null; true`]);
      const big: JournalRecord = { ...PIN, source: 'x'.repeat(16 * 1024) };
      truncateSync(path.join(dir, 'fill'), statSync(path.join(dir, 'fill')).size - 8192);
      await t.rejects(j.append(big), { code: 'ENOSPC', message: /the state directory is full: .*journal\.jsonl cannot record this change, so it was not made/ });
      t.equal(readFileSync(path.join(dir, 'journal.jsonl'), 'utf8'), before, 'a short write is cut back off');
      rmSync(path.join(dir, 'fill'));
      t.equal(await j.append(big), 1, 'with room again, the record gets the next index');
      await j.close();
      t.same((await new Journal(dir).load()).records, [MKDIR, big], 'no torn record in the middle');
    });
  });
});

t.test('journal: appendFileSync-made tails are read like the daemon writes them', async (t) => {
  const dir = tmp();
  const j = new Journal(dir);
  await j.append(MKDIR);
  await j.close();
  appendFileSync(j.file, '\n\n');
  t.same(await new Journal(dir).load(), { records: [MKDIR] }, 'blank lines are skipped');
  t.notOk(existsSync(`${j.file}.tmp`));
});
