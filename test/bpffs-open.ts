/**
 * Opening pins (fs/bpffs file.ts): programs and other links are EIO; a map that can show its elements
 * dumps as bpffs_map_fops does; an iterator link runs one session per open; the open flags' errnos;
 * what an open file holds and how its reads go.
 */
import t, { type Test } from 'tap';
import { BpfMapType, O_CREAT, O_DIRECTORY, O_EXCL, O_NOFOLLOW, O_RDONLY } from '../uapi';
import { BPFFS_MAP_HEADER, ValueSchema, createMap } from '../progs';
import { bpffsWorld, type BpffsWorld } from './harness/bpffs';

async function mount(t: Test): Promise<BpffsWorld> {
  const w = await bpffsWorld({ mirror: 'manual' });
  t.teardown(() => w.end());
  return w;
}

const u32 = (n: number): Uint8Array => new Uint8Array(new Uint32Array([n]).buffer);
const u64 = (n: bigint): Uint8Array => new Uint8Array(new BigUint64Array([n]).buffer);

t.test('opening a pinned program is EIO', async (t) => {
  const w = await mount(t);
  w.fs.pin('/p', w.prog());
  t.throws(() => w.fs.open('/p', O_RDONLY), { code: 'EIO' });
});

t.test('opening a pinned link that is not an iterator is EIO', async (t) => {
  const w = await mount(t);
  w.fs.pin('/l', w.tracing());
  t.throws(() => w.fs.open('/l', O_RDONLY), { code: 'EIO' });
});

t.test('opening a pinned map whose type cannot show its elements, or without BTF, is EIO', async (t) => {
  const w = await mount(t);
  w.fs.pin('/s', w.storage());
  w.fs.pin('/h', createMap(w.kernel, { type: BpfMapType.HASH, keySize: 4, valueSize: 8, maxEntries: 4 }).object);
  t.throws(() => w.fs.open('/s', O_RDONLY), { code: 'EIO' });
  t.throws(() => w.fs.open('/h', O_RDONLY), { code: 'EIO' });
});

t.test('a pinned hash map dumps as bpffs_map_fops: the WARNING lines, then one "key: value" line per element', async (t) => {
  const w = await mount(t);
  const m = w.hash();
  m.updateElem(u32(1), u64(42n));
  m.updateElem(u32(7), u64(2n ** 40n));
  w.fs.pin('/m', m);
  const text = await w.readAll('/m');
  t.ok(text.startsWith(BPFFS_MAP_HEADER));
  t.same(text.slice(BPFFS_MAP_HEADER.length).split('\n').filter(Boolean).sort(), ['1: 42', `7: ${2n ** 40n}`]);
  t.equal(await w.readAll('/m', 1), text, 'read a byte at a time, the same text');
});

t.test('a map file walks its elements as reads come to them, as seq_read does', async (t) => {
  const w = await mount(t);
  const m = w.hash();
  w.fs.pin('/m', m);
  const f = w.fs.open('/m', O_RDONLY);
  m.updateElem(u32(1), u64(1n));
  const first = new TextDecoder().decode(await f.read(BPFFS_MAP_HEADER.length));
  t.equal(first, BPFFS_MAP_HEADER, 'a read that the header fills stops there');
  m.updateElem(u32(2), u64(2n));
  const rest = new TextDecoder().decode(await f.read(4096));
  t.equal(rest, '1: 1\n2: 2\n', 'an element added since is seen: the walk had not reached it');
  t.equal((await f.read(4096)).length, 0, 'then the end');
  f.release();
});

t.test('a map file holds one element\'s text at a time, not the whole map\'s', async (t) => {
  const w = await mount(t);
  // 1,000 values of 1 MiB as u32 arrays: about 500 MB of text ("0," per element), 512 KiB a line.
  const values = ValueSchema.define(['u32', 1 << 18]);
  const m = createMap(w.kernel, { type: BpfMapType.ARRAY, keySize: 4, valueSize: values.size, maxEntries: 1000, btf: { key: ValueSchema.define('u32'), value: values } }).object;
  w.fs.pin('/big', m);
  const f = w.fs.open('/big', O_RDONLY);
  const t0 = Date.now();
  const head = new TextDecoder().decode(await f.read(131072));
  t.ok(head.startsWith(`${BPFFS_MAP_HEADER}0: [0,0,0,`), 'the first read answers with the first element\'s text');
  t.ok(Date.now() - t0 < 5000, `in ${Date.now() - t0} ms, without making the other 999`);
  f.release();
});

t.test('opening a pinned iterator link runs one session per open, given the cgroup source', async (t) => {
  const w = await mount(t);
  const [a] = await w.mkcg('/a');
  const walker = w.walker();
  w.fs.pin('/it', walker);
  const refs = walker.refs;
  t.equal(await w.readAll('/it'), `session 1 cgroup_id: 1\nsession 1 cgroup_id: ${a!.id}\n`);
  t.equal(await w.readAll('/it', 3), `session 2 cgroup_id: 1\nsession 2 cgroup_id: ${a!.id}\n`, 'small reads: a second session');
  t.equal(walker.refs, refs, 'each session closed at release');
  w.fs.pin('/stat', w.walker('walk_stat'));
  t.equal(await w.readAll('/stat'), 'cpu.stat: read\ncpu.stat: read\n', 'the walk reads the cgroups\' files from the source');
});

t.test('every readable pin is direct I/O: its size is 0 but a read gives more', async (t) => {
  const w = await mount(t);
  w.fs.pin('/m', w.hash());
  w.fs.pin('/it', w.walker());
  for (const p of ['/m', '/it']) {
    const f = w.fs.open(p, O_RDONLY);
    t.equal(f.directIo, true, p);
    f.release();
  }
});

t.test('a cgroup_view file opened in a tagged directory is given that directory\'s cgroup', async (t) => {
  const w = await mount(t);
  const [a] = await w.mkcg('/a');
  w.fs.pin('/v', w.view());
  w.fs.mkdir('/a', 0o755);
  const refs = a!.refs;
  const f = w.fs.open('/a/v', O_RDONLY);
  t.equal(new TextDecoder().decode(await f.read(4096)), `cgroup_id: ${a!.id} name: a\n`);
  t.equal((await f.read(4096)).length, 0, 'then the end');
  f.release();
  t.equal(a!.refs, refs, 'the session let go of the cgroup');
});

t.test('reading a released file is EBADF, and so is releasing it again', async (t) => {
  const w = await mount(t);
  w.fs.pin('/m', w.hash());
  const f = w.fs.open('/m', O_RDONLY);
  f.release();
  await t.rejects(f.read(10), { code: 'EBADF' });
  t.throws(() => f.release(), { code: 'EBADF' });
});

t.test('an open file holds its pin: an unlinked pin keeps its object until the file is released', async (t) => {
  const w = await mount(t);
  const walker = w.walker();
  w.fs.pin('/it', walker);
  walker.put();
  const f = w.fs.open('/it', O_RDONLY);
  w.fs.unlink('/it');
  t.notOk(walker.released);
  t.ok((await f.read(100)).length > 0, 'and reads on');
  f.release();
  t.ok(walker.released);
});

t.test('an error of the session is the read\'s; later reads go on', async (t) => {
  const w = await mount(t);
  w.fs.pin('/it', w.walker());
  const f = w.fs.open('/it', O_RDONLY);
  w.failWalks(true);
  await t.rejects(f.read(100), { code: 'EIO', message: /told to fail/ });
  w.failWalks(false);
  t.equal(new TextDecoder().decode(await f.read(100)), 'session 1 cgroup_id: 1\n');
  f.release();
});

t.test('an open whose session cannot start fails and holds nothing', async (t) => {
  const w = await mount(t);
  const walker = w.walker();
  w.fs.pin('/it', walker);
  walker.put();
  // A pinned link cannot be released, so its real open does not fail: bpf_iter_new_fd's -ENOMEM
  // (prepare_seq_file) is made here by the one real link's open.
  walker.open = () => {
    throw Object.assign(new Error('ENOMEM'), { code: 'ENOMEM' });
  };
  t.throws(() => w.fs.open('/it', O_RDONLY), { code: 'ENOMEM' });
  w.fs.unlink('/it');
  t.ok(walker.released);
});

t.test('reads of one file are taken in turn', async (t) => {
  const w = await mount(t);
  w.fs.pin('/it', w.walker());
  const f = w.fs.open('/it', O_RDONLY);
  const [a, b, c] = await Promise.all([f.read(2), f.read(2), f.read(2)]);
  t.same([a, b, c].map((x) => new TextDecoder().decode(x)), ['se', 'ss', 'io'], 'of "session 1 cgroup_id: 1"');
  f.release();
});

t.test('open follows symlinks; with O_NOFOLLOW a symlink is ELOOP', async (t) => {
  const w = await mount(t);
  w.fs.pin('/it', w.walker());
  w.fs.symlink('it', '/l');
  const f = w.fs.open('/l', O_RDONLY);
  t.equal(new TextDecoder().decode(await f.read(100)), 'session 1 cgroup_id: 1\n');
  f.release();
  t.throws(() => w.fs.open('/l', O_NOFOLLOW), { code: 'ELOOP' });
});

t.test('open of a directory is EISDIR', async (t) => {
  const w = await mount(t);
  w.fs.mkdir('/d', 0o755);
  t.throws(() => w.fs.open('/d', O_RDONLY), { code: 'EISDIR' });
  t.throws(() => w.fs.open('/', O_RDONLY), { code: 'EISDIR' });
});

t.test('open with O_DIRECTORY of a pin is ENOTDIR', async (t) => {
  const w = await mount(t);
  w.fs.pin('/m', w.hash());
  t.throws(() => w.fs.open('/m', O_DIRECTORY), { code: 'ENOTDIR' });
});

t.test('open of a missing name is ENOENT', async (t) => {
  const w = await mount(t);
  t.throws(() => w.fs.open('/nope', O_RDONLY), { code: 'ENOENT' });
});

t.test('open with O_CREAT | O_EXCL of an existing pin is EEXIST; O_CREAT alone opens it', async (t) => {
  const w = await mount(t);
  w.fs.pin('/m', w.hash());
  t.throws(() => w.fs.open('/m', O_CREAT | O_EXCL), { code: 'EEXIST' });
  const f = w.fs.open('/m', O_CREAT);
  t.ok(new TextDecoder().decode(await f.read(4096)).startsWith(BPFFS_MAP_HEADER));
  f.release();
  t.throws(() => w.fs.open('/', O_CREAT), { code: 'EISDIR' });
});
