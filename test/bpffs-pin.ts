/**
 * BPF_OBJ_PIN and BPF_OBJ_GET on bpffs (fs/bpffs pin.ts): what a pin is, the reference it owns and
 * when that goes, the errnos of both calls, symlinks followed by get, and libbpf's by-name map pins.
 */
import t, { type Test } from 'tap';
import { S_IFREG } from '../uapi';
import { Handle, Kernel, type BpfMap } from '../progs';
import { Bpffs } from '../fs/bpffs';
import { GID, UID, bpffsWorld } from './harness/bpffs';
import { load } from './harness/progs';

async function mount(t: Test, opts = {}) {
  const w = await bpffsWorld({ mirror: 'manual', ...opts });
  t.teardown(() => w.end());
  return w;
}

t.test('a pin is S_IFREG | 0600 & ~umask, size 0, nlink 1, owned by the caller', async (t) => {
  const w = await mount(t);
  w.fs.pin('/m', w.hash(), { uid: 7, gid: 8 });
  w.fs.pin('/p', w.prog());
  w.fs.pin('/l', w.tracing());
  const st = w.fs.getattr('/m');
  t.equal(st.mode, S_IFREG | 0o600);
  t.equal(st.size, 0);
  t.equal(st.nlink, 1);
  t.equal(st.uid, 7);
  t.equal(st.gid, 8);
  t.equal(w.fs.getattr('/p').mode, S_IFREG | 0o600, 'a program');
  t.equal(w.fs.getattr('/l').uid, UID, 'a link, owned by the mount owner without a Cred');
  t.equal(w.fs.getattr('/l').gid, GID);
});

t.test('the umask applies to a pin mode: 0277 gives 0400, 0077 keeps 0600', async (t) => {
  for (const [umask, mode] of [[0o277, 0o400], [0o077, 0o600], [0o777, 0]] as const) {
    const w = await mount(t, { umask });
    w.fs.pin('/m', w.hash());
    t.equal(w.fs.getattr('/m').mode, S_IFREG | mode, `umask 0${umask.toString(8)}`);
  }
});

t.test('the pin takes its own reference; unlink drops it', async (t) => {
  const w = await mount(t);
  const m = w.hash();
  t.equal(m.refs, 1);
  w.fs.pin('/m', m);
  t.equal(m.refs, 2);
  m.put();
  t.notOk(m.released, 'the pin keeps the object after the creator lets go');
  w.fs.unlink('/m');
  t.ok(m.released, 'the last reference goes with the pin');
});

t.test('a pinned object lives while any of its names does (hard links)', async (t) => {
  const w = await mount(t);
  const link = w.tracing();
  w.fs.pin('/l', link);
  w.fs.link('/l', '/l2');
  link.put();
  w.fs.unlink('/l');
  t.notOk(link.released);
  w.fs.unlink('/l2');
  t.ok(link.released);
});

t.test('pin onto an existing name is EEXIST, and the object keeps only its own references', async (t) => {
  const w = await mount(t);
  const m = w.hash();
  w.fs.pin('/m', m);
  w.fs.mkdir('/d', 0o755);
  t.throws(() => w.fs.pin('/m', m), { code: 'EEXIST' });
  t.throws(() => w.fs.pin('/d', m), { code: 'EEXIST' });
  t.throws(() => w.fs.pin('/', m), { code: 'EEXIST' });
  t.throws(() => w.fs.pin('/d/..', m), { code: 'EEXIST' });
  t.equal(m.refs, 2, 'the failed pins dropped what they took');
});

t.test('pin in a missing directory is ENOENT; through a file ENOTDIR', async (t) => {
  const w = await mount(t);
  const m = w.hash();
  w.fs.pin('/m', m);
  t.throws(() => w.fs.pin('/no/m', m), { code: 'ENOENT' });
  t.throws(() => w.fs.pin('/m/x', m), { code: 'ENOTDIR' });
  t.equal(m.refs, 2);
});

t.test('pin of a name with a dot is EPERM', async (t) => {
  const w = await mount(t);
  t.throws(() => w.fs.pin('/a.map', w.hash()), { code: 'EPERM' });
});

t.test('pin of a released object, one of another Kernel or anything else is EINVAL, before the path is looked at', async (t) => {
  const w = await mount(t);
  const m = w.hash();
  m.put();
  t.throws(() => w.fs.pin('/no/m', m), { code: 'EINVAL' }, 'released');
  const other = await bpffsWorld();
  t.teardown(() => other.end());
  t.throws(() => w.fs.pin('/m', other.hash()), { code: 'EINVAL' }, 'another Kernel');
  t.throws(() => w.fs.pin('/m', {} as never), { code: 'EINVAL' }, 'not an object');
  t.same(w.fs.readdir('/'), []);
});

t.test('get gives a new handle on the pinned object and touches the atime', async (t) => {
  const w = await mount(t);
  const m = w.hash();
  w.fs.pin('/m', m);
  w.fs.utimens('/m', new Date(0), new Date(0));
  const h = w.fs.get('/m');
  t.ok(h instanceof Handle);
  t.equal(h.object, m);
  t.equal(m.refs, 3);
  t.ok(w.fs.getattr('/m').atime.getTime() > 0);
  t.equal(w.fs.getattr('/m').mtime.getTime(), 0);
  h.close();
  t.equal(m.refs, 2);
});

t.test('get of a missing name is ENOENT', async (t) => {
  const w = await mount(t);
  t.throws(() => w.fs.get('/nope'), { code: 'ENOENT' });
});

t.test('get of a directory is EACCES: not a pinned object', async (t) => {
  const w = await mount(t);
  w.fs.mkdir('/d', 0o755);
  t.throws(() => w.fs.get('/d'), { code: 'EACCES' });
  t.throws(() => w.fs.get('/'), { code: 'EACCES' });
});

t.test('get follows symlinks, relative and absolute (from the mount root without a mount point)', async (t) => {
  const w = await mount(t);
  const m = w.hash();
  w.fs.mkdir('/d', 0o755);
  w.fs.pin('/d/m', m);
  w.fs.symlink('d/m', '/rel');
  w.fs.symlink('../d/m', '/d/up');
  w.fs.symlink('/d/m', '/abs');
  w.fs.symlink('/d', '/dir');
  for (const p of ['/rel', '/d/up', '/abs', '/dir/m']) {
    const h = w.fs.get(p);
    t.equal(h.object, m, p);
    h.close();
  }
  w.fs.symlink('d', '/todir');
  t.throws(() => w.fs.get('/todir'), { code: 'EACCES' }, 'a symlink to a directory');
  w.fs.symlink('nope', '/dangling');
  t.throws(() => w.fs.get('/dangling'), { code: 'ENOENT' });
});

t.test('with a mount point, an absolute symlink target inside it is followed and one outside it is EXDEV', async (t) => {
  const w = await mount(t, { mountPoint: '/sys/fs/bpf/' });
  const m = w.hash();
  w.fs.pin('/m', m);
  w.fs.symlink('/sys/fs/bpf/m', '/in');
  w.fs.symlink('/sys/fs/bpf', '/root');
  w.fs.symlink('/sys/fs/bpfx/m', '/out');
  const h = w.fs.get('/in');
  t.equal(h.object, m);
  h.close();
  t.equal(w.fs.readdir('/root').length, 4);
  t.throws(() => w.fs.get('/out'), { code: 'EXDEV' });
});

t.test('dispose (kill_litter_super) drops every pin, in every directory', async (t) => {
  const w = await bpffsWorld({ mirror: 'manual' });
  const m = w.hash();
  const p = w.prog();
  w.fs.mkdir('/a', 0o755);
  w.fs.mkdir('/a/b', 0o755);
  w.fs.pin('/a/b/m', m);
  w.fs.pin('/m', m);
  w.fs.pin('/p', p);
  m.put();
  const progRefs = p.refs;
  w.fs.dispose();
  t.ok(m.released);
  t.equal(p.refs, progRefs - 1);
  w.coll.close();
});

const BY_NAME = `import { SEC, map, BPF_MAP_TYPE_ARRAY } from 'vbpffs/bpf';
export const shared = map({ type: BPF_MAP_TYPE_ARRAY, key: 'u32', value: 'u64', maxEntries: 1, pinning: 'by_name' });
export const p = SEC('cgroup_view', (ctx) => 0);
`;

t.test('mapPins: a by_name map is pinned under the directory on first load and reused by the next', async (t) => {
  const w = await mount(t);
  w.fs.mkdir('/maps', 0o755);
  const pins = w.fs.mapPins('/maps/');
  const a = load(w.kernel, BY_NAME, { pins });
  const b = load(w.kernel, BY_NAME, { pins });
  t.teardown(() => {
    a.close();
    b.close();
  });
  const m = a.maps.get('shared')!.object;
  t.equal(b.maps.get('shared')!.object, m);
  const h = w.fs.get('/maps/shared');
  t.equal(h.object, m);
  h.close();
  t.equal(w.fs.mapPins().get('nope'), undefined, 'no pin: undefined');
});

t.test('mapPins: something else pinned under the name is EINVAL; other errors pass through', async (t) => {
  const w = await mount(t);
  w.fs.pin('/shared', w.prog());
  const refs = w.prog().refs;
  t.throws(() => w.fs.mapPins().get('shared'), { code: 'EINVAL' });
  t.equal(w.prog().refs, refs, 'the handle it took is closed');
  w.fs.pin('/f', w.hash());
  t.throws(() => w.fs.mapPins('/f').get('x'), { code: 'ENOTDIR' });
  const m: BpfMap = w.hash();
  w.fs.mapPins('/').pin('x', m);
  t.equal(m.refs, 2);
});

t.test('an object pinned in two mounts is held by each', async (t) => {
  const w = await mount(t);
  const other = new Bpffs({ kernel: w.kernel, source: w.source });
  const m = w.hash();
  w.fs.pin('/m', m);
  other.pin('/m', m);
  t.equal(m.refs, 3);
  other.dispose();
  t.equal(m.refs, 2);
  t.ok(new Kernel() !== w.kernel);
});
