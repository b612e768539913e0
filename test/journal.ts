import t from 'tap';
import { appendFileSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Journal } from '../fs/state/journal';

t.test('journal: records are appended, flushed and read back in order', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'vbpffs-j-'));
  const j = new Journal(dir);
  t.same(await j.load(), { records: [] }, 'no journal yet: nothing to replay');
  await j.append({ op: 'mkdir', path: '/a', mode: 0o755 });
  await j.append({ op: 'iterPin', filename: '/x/cpu.ts', source: 'export {}', pinPath: '/a/cpu', opts: {} });
  await j.close();
  t.same((await new Journal(dir).load()).records.map((r) => r.op), ['mkdir', 'iterPin']);
});

t.test('journal: a torn or corrupted line ends the replay there, and the file is rewritten without it', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'vbpffs-j-'));
  const j = new Journal(dir);
  await j.append({ op: 'mkdir', path: '/a', mode: 0o755 });
  await j.close();
  appendFileSync(j.file, '{"op": "unlink", "pa');
  appendFileSync(j.file, '\n{"op": "rmdir", "path": "/a"}\n');
  const loaded = await new Journal(dir).load();
  t.same(loaded.records, [{ op: 'mkdir', path: '/a', mode: 0o755 }]);
  t.match(loaded.damaged, /journal\.jsonl:2: not a journal record; 2 line\(s\) from there are dropped/);
  t.equal(readFileSync(j.file, 'utf8'), '{"op":"mkdir","path":"/a","mode":493}\n', 'only the good prefix is kept');
});

t.test('journal: a state directory that cannot be written fails the append with the errno', async (t) => {
  const j = new Journal('/nonexistent-vbpffs-state');
  await t.rejects(j.append({ op: 'rmdir', path: '/a' }), { code: 'ENOENT', message: /writing the journal/ });
});
