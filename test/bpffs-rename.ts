/**
 * rename and renameat2 on bpffs (fs/bpffs rename.ts, libfs simple_rename): moves, replacing an
 * existing pin, RENAME_NOREPLACE, RENAME_EXCHANGE, and every errno of do_renameat2 and vfs_rename.
 */
import t, { type Test } from 'tap';
import { RENAME_EXCHANGE, RENAME_NOREPLACE, RENAME_WHITEOUT, S_IFDIR, S_IFREG } from '../uapi';
import { bpffsWorld } from './harness/bpffs';

const OLD = new Date('2001-01-01T00:00:00Z');

async function mount(t: Test) {
  const w = await bpffsWorld({ mirror: 'manual' });
  t.teardown(() => w.end());
  return w;
}

t.test('rename moves a name: same inode, the old name gone, the new one newest in readdir', async (t) => {
  const w = await mount(t);
  w.fs.pin('/a', w.hash());
  w.fs.pin('/b', w.hash());
  const ino = w.fs.getattr('/a').ino;
  w.fs.rename('/a', '/c');
  t.equal(w.fs.getattr('/c').ino, ino);
  t.throws(() => w.fs.getattr('/a'), { code: 'ENOENT' });
  t.same(w.fs.readdir('/'), ['c', 'b']);
});

t.test('rename moves a directory between directories: link counts and .. follow it', async (t) => {
  const w = await mount(t);
  w.fs.mkdir('/a', 0o755);
  w.fs.mkdir('/b', 0o755);
  w.fs.mkdir('/a/d', 0o755);
  w.fs.pin('/a/d/m', w.hash());
  w.fs.rename('/a/d', '/b/e');
  t.equal(w.fs.getattr('/a').nlink, 2);
  t.equal(w.fs.getattr('/b').nlink, 3);
  t.equal(w.fs.getattr('/b/e/..').ino, w.fs.getattr('/b').ino);
  t.same(w.fs.readdir('/b/e'), ['m']);
});

t.test('rename onto an existing pin replaces it: the replaced object loses the pin reference', async (t) => {
  const w = await mount(t);
  const a = w.hash();
  const b = w.hash();
  w.fs.pin('/a', a);
  w.fs.pin('/b', b);
  b.put();
  w.fs.rename('/a', '/b');
  t.ok(b.released);
  const h = w.fs.get('/b');
  t.equal(h.object, a);
  h.close();
  t.same(w.fs.readdir('/'), ['b']);
});

t.test('rename of a directory onto an empty directory replaces it', async (t) => {
  const w = await mount(t);
  w.fs.mkdir('/a', 0o755);
  w.fs.mkdir('/b', 0o700);
  w.fs.mkdir('/a/x', 0o755);
  w.fs.rename('/a', '/b');
  t.equal(w.fs.getattr('/b').mode, S_IFDIR | 0o755);
  t.same(w.fs.readdir('/b'), ['x']);
  t.equal(w.fs.getattr('/').nlink, 3);
});

t.test('rename of a directory onto one that is not empty is ENOTEMPTY', async (t) => {
  const w = await mount(t);
  w.fs.mkdir('/a', 0o755);
  w.fs.mkdir('/b', 0o755);
  w.fs.pin('/b/m', w.hash());
  t.throws(() => w.fs.rename('/a', '/b'), { code: 'ENOTEMPTY' });
  t.same(w.fs.readdir('/').sort(), ['a', 'b']);
});

t.test('rename of a directory onto a non-directory is ENOTDIR', async (t) => {
  const w = await mount(t);
  w.fs.mkdir('/a', 0o755);
  w.fs.pin('/m', w.hash());
  t.throws(() => w.fs.rename('/a', '/m'), { code: 'ENOTDIR' });
});

t.test('rename of a non-directory onto a directory is EISDIR', async (t) => {
  const w = await mount(t);
  w.fs.mkdir('/a', 0o755);
  w.fs.pin('/m', w.hash());
  t.throws(() => w.fs.rename('/m', '/a'), { code: 'EISDIR' });
});

t.test('rename of a directory below itself is EINVAL', async (t) => {
  const w = await mount(t);
  w.fs.mkdir('/a', 0o755);
  w.fs.mkdir('/a/b', 0o755);
  t.throws(() => w.fs.rename('/a', '/a/b/c'), { code: 'EINVAL' });
  t.throws(() => w.fs.rename('/a', '/a/c'), { code: 'EINVAL' });
});

t.test('rename onto an ancestor of the source is ENOTEMPTY (EINVAL when exchanging)', async (t) => {
  const w = await mount(t);
  w.fs.mkdir('/a', 0o755);
  w.fs.mkdir('/a/b', 0o755);
  w.fs.pin('/a/b/m', w.hash());
  t.throws(() => w.fs.rename('/a/b/m', '/a'), { code: 'ENOTEMPTY' });
  t.throws(() => w.fs.rename('/a/b/m', '/a', RENAME_EXCHANGE), { code: 'EINVAL' });
});

t.test('rename of two names of one inode does nothing', async (t) => {
  const w = await mount(t);
  w.fs.pin('/a', w.hash());
  w.fs.link('/a', '/b');
  w.fs.rename('/a', '/b');
  t.same(w.fs.readdir('/').sort(), ['a', 'b']);
  t.equal(w.fs.getattr('/a').nlink, 2);
  w.fs.rename('/a', '/a');
  t.same(w.fs.readdir('/').sort(), ['a', 'b']);
});

t.test('rename of a missing name is ENOENT', async (t) => {
  const w = await mount(t);
  t.throws(() => w.fs.rename('/nope', '/x'), { code: 'ENOENT' });
  t.throws(() => w.fs.rename('/no/pe', '/x'), { code: 'ENOENT' });
});

t.test('rename to a name with a dot is EPERM', async (t) => {
  const w = await mount(t);
  w.fs.pin('/a', w.hash());
  t.throws(() => w.fs.rename('/a', '/a.old'), { code: 'EPERM' });
});

t.test('rename of the root, ., or .. is EBUSY, and so is rename onto them', async (t) => {
  const w = await mount(t);
  w.fs.mkdir('/a', 0o755);
  t.throws(() => w.fs.rename('/', '/b'), { code: 'EBUSY' });
  t.throws(() => w.fs.rename('/a/.', '/b'), { code: 'EBUSY' });
  t.throws(() => w.fs.rename('/a/..', '/b'), { code: 'EBUSY' });
  t.throws(() => w.fs.rename('/a', '/'), { code: 'EBUSY' });
  t.throws(() => w.fs.rename('/a', '/a/..'), { code: 'EBUSY' });
});

t.test('RENAME_NOREPLACE onto an existing name is EEXIST (onto . or .. too)', async (t) => {
  const w = await mount(t);
  w.fs.pin('/a', w.hash());
  w.fs.pin('/b', w.hash());
  t.throws(() => w.fs.rename('/a', '/b', RENAME_NOREPLACE), { code: 'EEXIST' });
  t.throws(() => w.fs.rename('/a', '/.', RENAME_NOREPLACE), { code: 'EEXIST' });
  w.fs.rename('/a', '/c', RENAME_NOREPLACE);
  t.same(w.fs.readdir('/').sort(), ['b', 'c']);
});

t.test('RENAME_EXCHANGE swaps two names, a directory and a pin across directories included', async (t) => {
  const w = await mount(t);
  w.fs.mkdir('/a', 0o755);
  w.fs.mkdir('/b', 0o755);
  w.fs.mkdir('/a/d', 0o755);
  w.fs.pin('/b/m', w.hash());
  const d = w.fs.getattr('/a/d').ino;
  const m = w.fs.getattr('/b/m').ino;
  w.fs.rename('/a/d', '/b/m', RENAME_EXCHANGE);
  t.equal(w.fs.getattr('/a/d').ino, m);
  t.equal(w.fs.getattr('/a/d').mode & S_IFREG, S_IFREG);
  t.equal(w.fs.getattr('/b/m').ino, d);
  t.equal(w.fs.getattr('/a').nlink, 2, 'the directory left a');
  t.equal(w.fs.getattr('/b').nlink, 3, 'and is counted in b');
  t.equal(w.fs.getattr('/b/m/..').ino, w.fs.getattr('/b').ino);
  w.fs.rename('/a/d', '/b/m', RENAME_EXCHANGE);
  t.equal(w.fs.getattr('/a/d').ino, d, 'and back, the pin now the source');
  t.equal(w.fs.getattr('/a').nlink, 3);
  t.equal(w.fs.getattr('/b').nlink, 2);
});

t.test('RENAME_EXCHANGE in one directory swaps the inodes of two names', async (t) => {
  const w = await mount(t);
  w.fs.pin('/a', w.hash());
  w.fs.mkdir('/d', 0o755);
  const a = w.fs.getattr('/a').ino;
  w.fs.rename('/a', '/d', RENAME_EXCHANGE);
  t.equal(w.fs.getattr('/d').ino, a);
  t.equal(w.fs.getattr('/a').mode & S_IFDIR, S_IFDIR);
  t.equal(w.fs.getattr('/').nlink, 3);
});

t.test('RENAME_EXCHANGE with a missing target is ENOENT', async (t) => {
  const w = await mount(t);
  w.fs.pin('/a', w.hash());
  t.throws(() => w.fs.rename('/a', '/b', RENAME_EXCHANGE), { code: 'ENOENT' });
});

t.test('rename flags other than NOREPLACE and EXCHANGE, or both, are EINVAL', async (t) => {
  const w = await mount(t);
  w.fs.pin('/a', w.hash());
  t.throws(() => w.fs.rename('/a', '/b', RENAME_WHITEOUT), { code: 'EINVAL' });
  t.throws(() => w.fs.rename('/a', '/b', 8), { code: 'EINVAL' });
  t.throws(() => w.fs.rename('/a', '/b', RENAME_NOREPLACE | RENAME_EXCHANGE), { code: 'EINVAL' });
});

t.test('rename sets both directories\' mtime and ctime, and the moved and replaced inodes\' ctime', async (t) => {
  const w = await mount(t);
  w.fs.mkdir('/a', 0o755);
  w.fs.mkdir('/b', 0o755);
  w.fs.pin('/a/m', w.hash());
  for (const p of ['/a', '/b', '/a/m']) w.fs.utimens(p, OLD, OLD);
  w.fs.rename('/a/m', '/b/m');
  t.ok(w.fs.getattr('/a').mtime > OLD);
  t.ok(w.fs.getattr('/b').ctime > OLD);
  t.ok(w.fs.getattr('/b/m').ctime > OLD);
  t.same(w.fs.getattr('/b/m').mtime, OLD);
});
