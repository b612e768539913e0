/**
 * The bpffs tree (fs/bpffs inode.ts, namei.ts, libfs.ts): directories, symlinks, hard links, what
 * stat reports, the names bpffs refuses and the file types it has not, attributes, statfs, unmount.
 * Pins and rename have their own files; here a map stands in for any pinned object.
 */
import t, { type Test } from 'tap';
import {
  BPF_FS_MAGIC,
  O_CREAT,
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFREG,
  S_IFSOCK,
  S_ISGID,
  S_ISUID,
  S_ISVTX,
} from '../uapi';
import { Bpffs } from '../fs/bpffs';
import { GID, UID, bpffsWorld } from './harness/bpffs';

const OLD = new Date('2001-01-01T00:00:00Z');

async function mount(t: Test, opts = {}) {
  const w = await bpffsWorld({ mirror: 'manual', ...opts });
  t.teardown(() => w.end());
  return w;
}

t.test('the root is S_IFDIR | 01777, inode 1, nlink 2, owned by the mount owner, size 0', async (t) => {
  const { fs } = await mount(t);
  const st = fs.getattr('/');
  t.equal(st.mode, S_IFDIR | S_ISVTX | 0o777);
  t.equal(st.ino, 1);
  t.equal(st.nlink, 2);
  t.equal(st.uid, UID);
  t.equal(st.gid, GID);
  t.equal(st.size, 0);
});

t.test('rootMode sets the root mode (mode= mount option); owners default to this process', async (t) => {
  const w = await mount(t);
  const fs = new Bpffs({ kernel: w.kernel, source: w.source, rootMode: 0o700 });
  t.teardown(() => fs.dispose());
  t.equal(fs.getattr('/').mode, S_IFDIR | 0o700);
  t.equal(fs.getattr('/').uid, process.getuid!());
  t.equal(fs.getattr('/').gid, process.getgid!());
});

t.test('mkdir makes S_IFDIR | mode & ~umask with nlink 2 and counts in the parent nlink', async (t) => {
  const { fs } = await mount(t);
  fs.mkdir('/a', 0o777);
  fs.mkdir('/a/b', 0o1777);
  fs.mkdir('/c', 0o700);
  t.equal(fs.getattr('/a').mode, S_IFDIR | 0o755, 'umask 022');
  t.equal(fs.getattr('/a/b').mode, S_IFDIR | S_ISVTX | 0o755, 'the sticky bit is kept');
  t.equal(fs.getattr('/c').mode, S_IFDIR | 0o700);
  t.equal(fs.getattr('/a/b').nlink, 2);
  t.equal(fs.getattr('/a').nlink, 3);
  t.equal(fs.getattr('/').nlink, 4);
  t.equal(fs.getattr('/a').size, 0);
});

t.test('umask is the mount option: 0 keeps every bit', async (t) => {
  const { fs } = await mount(t, { umask: 0 });
  fs.mkdir('/a', 0o777);
  t.equal(fs.getattr('/a').mode, S_IFDIR | 0o777);
});

t.test('mkdir of an existing name is EEXIST', async (t) => {
  const { fs } = await mount(t);
  fs.mkdir('/a', 0o755);
  t.throws(() => fs.mkdir('/a', 0o755), { code: 'EEXIST' });
  t.throws(() => fs.mkdir('/', 0o755), { code: 'EEXIST' }, 'the root');
  t.throws(() => fs.mkdir('/a/.', 0o755), { code: 'EEXIST' }, '.');
  t.throws(() => fs.mkdir('/a/..', 0o755), { code: 'EEXIST' }, '..');
});

t.test('a missing directory on the way is ENOENT', async (t) => {
  const { fs } = await mount(t);
  t.throws(() => fs.mkdir('/no/a', 0o755), { code: 'ENOENT' });
  t.throws(() => fs.getattr('/no'), { code: 'ENOENT' });
  t.throws(() => fs.readdir('/no'), { code: 'ENOENT' });
});

t.test('a file on the way is ENOTDIR', async (t) => {
  const w = await mount(t);
  w.fs.pin('/m', w.hash());
  t.throws(() => w.fs.getattr('/m/x'), { code: 'ENOTDIR' });
  t.throws(() => w.fs.mkdir('/m/x', 0o755), { code: 'ENOTDIR' });
  t.throws(() => w.fs.readdir('/m'), { code: 'ENOTDIR' });
});

t.test('a name with a dot is EPERM to make or look up: dots are reserved (bpf_lookup)', async (t) => {
  const w = await mount(t);
  t.throws(() => w.fs.mkdir('/a.b', 0o755), { code: 'EPERM' });
  t.throws(() => w.fs.getattr('/a.b'), { code: 'EPERM' }, 'lookup of a missing dotted name');
  t.throws(() => w.fs.symlink('/x', '/l.x'), { code: 'EPERM' });
  t.throws(() => w.fs.pin('/m.x', w.hash()), { code: 'EPERM' });
});

t.test('a directory with no permission bits takes dotted names, which stay reachable afterwards', async (t) => {
  const w = await mount(t);
  w.fs.mkdir('/d', 0o755);
  w.fs.chmod('/d', 0);
  w.fs.mkdir('/d/maps.debug', 0o755);
  w.fs.chmod('/d', 0o755);
  t.equal(w.fs.getattr('/d/maps.debug').mode & S_IFDIR, S_IFDIR, 'an existing dotted name is found');
  t.same(w.fs.readdir('/d'), ['maps.debug']);
  t.throws(() => w.fs.mkdir('/d/progs.debug', 0o755), { code: 'EPERM' }, 'new ones are refused again');
  w.fs.rmdir('/d/maps.debug');
});

t.test('a name longer than NAME_MAX (255 bytes) is ENAMETOOLONG; a path of PATH_MAX bytes too', async (t) => {
  const { fs } = await mount(t);
  fs.mkdir(`/${'a'.repeat(255)}`, 0o755);
  t.throws(() => fs.mkdir(`/${'a'.repeat(256)}`, 0o755), { code: 'ENAMETOOLONG' });
  t.throws(() => fs.mkdir(`/${'é'.repeat(128)}`, 0o755), { code: 'ENAMETOOLONG' }, 'counted in bytes');
  t.throws(() => fs.getattr(`/${'a/'.repeat(2048)}`), { code: 'ENAMETOOLONG' });
});

t.test('a path that is not absolute within the mount is EINVAL; an empty one ENOENT', async (t) => {
  const { fs } = await mount(t);
  t.throws(() => fs.getattr('a'), { code: 'EINVAL' });
  t.throws(() => fs.getattr(''), { code: 'ENOENT' });
});

t.test('. and .. are resolved; .. at the root stays at the root', async (t) => {
  const { fs } = await mount(t);
  fs.mkdir('/a', 0o755);
  fs.mkdir('/a/b', 0o755);
  t.equal(fs.getattr('/a/b/..').ino, fs.getattr('/a').ino);
  t.equal(fs.getattr('/a/./b').ino, fs.getattr('/a/b').ino);
  t.equal(fs.getattr('/..').ino, 1);
  t.equal(fs.getattr('/a/b/../..').ino, 1);
});

t.test('readdir lists names newest first (dcache_readdir), without . and ..', async (t) => {
  const w = await mount(t);
  w.fs.mkdir('/a', 0o755);
  w.fs.pin('/m', w.hash());
  w.fs.symlink('a', '/l');
  t.same(w.fs.readdir('/'), ['l', 'm', 'a']);
  t.same(w.fs.readdir('/a'), []);
});

t.test('inode numbers come from a counter and are never reused while the mount lives', async (t) => {
  const { fs } = await mount(t);
  fs.mkdir('/a', 0o755);
  const a = fs.getattr('/a').ino;
  fs.rmdir('/a');
  fs.mkdir('/a', 0o755);
  fs.mkdir('/b', 0o755);
  const again = fs.getattr('/a').ino;
  t.ok(again > a, 'a new inode gets a new number');
  t.equal(fs.getattr('/b').ino, again + 1);
  t.equal(fs.getattr('/a').ino, again, 'stable per inode');
});

t.test('each mount is a separate instance', async (t) => {
  const w = await mount(t);
  const other = new Bpffs({ kernel: w.kernel, source: w.source });
  t.teardown(() => other.dispose());
  w.fs.mkdir('/a', 0o755);
  t.throws(() => other.getattr('/a'), { code: 'ENOENT' });
  t.equal(other.getattr('/').ino, 1);
});

t.test('rmdir removes an empty directory and drops the parent nlink', async (t) => {
  const { fs } = await mount(t);
  fs.mkdir('/a', 0o755);
  fs.mkdir('/a/b', 0o755);
  fs.rmdir('/a/b');
  t.equal(fs.getattr('/a').nlink, 2);
  fs.rmdir('/a');
  t.equal(fs.getattr('/').nlink, 2);
  t.same(fs.readdir('/'), []);
});

t.test('rmdir of a directory that is not empty is ENOTEMPTY', async (t) => {
  const w = await mount(t);
  w.fs.mkdir('/a', 0o755);
  w.fs.pin('/a/m', w.hash());
  t.throws(() => w.fs.rmdir('/a'), { code: 'ENOTEMPTY' });
  t.throws(() => w.fs.rmdir('/a/..'), { code: 'ENOTEMPTY' }, '..');
});

t.test('rmdir of a file is ENOTDIR, of the root EBUSY, of . EINVAL, of a missing name ENOENT', async (t) => {
  const w = await mount(t);
  w.fs.pin('/m', w.hash());
  w.fs.mkdir('/a', 0o755);
  t.throws(() => w.fs.rmdir('/m'), { code: 'ENOTDIR' });
  t.throws(() => w.fs.rmdir('/'), { code: 'EBUSY' });
  t.throws(() => w.fs.rmdir('/a/.'), { code: 'EINVAL' });
  t.throws(() => w.fs.rmdir('/nope'), { code: 'ENOENT' });
});

t.test('unlink of a directory is EISDIR; of a missing name ENOENT', async (t) => {
  const { fs } = await mount(t);
  fs.mkdir('/a', 0o755);
  t.throws(() => fs.unlink('/a'), { code: 'EISDIR' });
  t.throws(() => fs.unlink('/'), { code: 'EISDIR' });
  t.throws(() => fs.unlink('/a/.'), { code: 'EISDIR' });
  t.throws(() => fs.unlink('/nope'), { code: 'ENOENT' });
});

t.test('a new entry sets its directory mtime and ctime; unlink too, and the inode ctime', async (t) => {
  const w = await mount(t);
  w.fs.mkdir('/a', 0o755);
  w.fs.utimens('/a', OLD, OLD);
  const before = w.fs.getattr('/a');
  t.same(before.mtime, OLD);
  w.fs.pin('/a/m', w.hash());
  const created = w.fs.getattr('/a');
  t.ok(created.mtime > OLD && created.ctime > OLD, 'pin');
  t.same(created.atime, OLD, 'atime is not a create time');
  for (const [what, make] of [
    ['mkdir', () => w.fs.mkdir('/a/d', 0o755)],
    ['symlink', () => w.fs.symlink('m', '/a/l')],
    ['link', () => w.fs.link('/a/m', '/a/m2')],
    ['unlink', () => w.fs.unlink('/a/m2')],
    ['rmdir', () => w.fs.rmdir('/a/d')],
  ] as const) {
    w.fs.utimens('/a', OLD, OLD);
    make();
    t.ok(w.fs.getattr('/a').mtime > OLD, `${what} sets the directory mtime`);
  }
  w.fs.utimens('/a/m', OLD, OLD);
  w.fs.link('/a/m', '/a/m3');
  t.ok(w.fs.getattr('/a/m').ctime > OLD, 'link sets the inode ctime');
  t.same(w.fs.getattr('/a/m').mtime, OLD, 'and not its mtime');
});

t.test('a new inode has its three times set to the same instant', async (t) => {
  const w = await mount(t);
  w.fs.pin('/m', w.hash());
  const st = w.fs.getattr('/m');
  t.same(st.atime, st.mtime);
  t.same(st.mtime, st.ctime);
});

t.test('symlink makes S_IFLNK | 0777 whose size is the target length; readlink gives the target', async (t) => {
  const { fs } = await mount(t);
  fs.symlink('/some/where/é', '/l', { uid: 7, gid: 8 });
  const st = fs.getattr('/l');
  t.equal(st.mode, S_IFLNK | 0o777);
  t.equal(st.size, Buffer.byteLength('/some/where/é'));
  t.equal(st.uid, 7);
  t.equal(st.gid, 8);
  t.equal(st.nlink, 1);
  t.equal(fs.readlink('/l'), '/some/where/é');
});

t.test('getattr does not follow a symlink (lstat); readdir follows one to a directory', async (t) => {
  const { fs } = await mount(t);
  fs.mkdir('/a', 0o755);
  fs.mkdir('/a/x', 0o755);
  fs.symlink('a', '/l');
  t.equal(fs.getattr('/l').mode, S_IFLNK | 0o777);
  t.same(fs.readdir('/l'), ['x']);
  t.equal(fs.getattr('/l/x').ino, fs.getattr('/a/x').ino, 'a symlink on the way is followed');
});

t.test('symlink of an existing name is EEXIST; an empty target ENOENT; a target of PATH_MAX bytes ENAMETOOLONG', async (t) => {
  const { fs } = await mount(t);
  fs.mkdir('/a', 0o755);
  t.throws(() => fs.symlink('x', '/a'), { code: 'EEXIST' });
  t.throws(() => fs.symlink('x', '/'), { code: 'EEXIST' });
  t.throws(() => fs.symlink('', '/l'), { code: 'ENOENT' });
  t.throws(() => fs.symlink('x'.repeat(4096), '/l'), { code: 'ENAMETOOLONG' });
  fs.symlink('x'.repeat(4095), '/l');
});

t.test('readlink of anything but a symlink is EINVAL', async (t) => {
  const { fs } = await mount(t);
  fs.mkdir('/a', 0o755);
  t.throws(() => fs.readlink('/a'), { code: 'EINVAL' });
});

t.test('a loop of symlinks is ELOOP after 40 links', async (t) => {
  const { fs } = await mount(t);
  fs.symlink('b', '/a');
  fs.symlink('a', '/b');
  t.throws(() => fs.readdir('/a'), { code: 'ELOOP' });
  t.throws(() => fs.getattr('/a/x'), { code: 'ELOOP' });
});

t.test('link gives a pin a second name: one inode, nlink 2, and unlinking one name keeps the other', async (t) => {
  const w = await mount(t);
  w.fs.pin('/m', w.hash());
  w.fs.mkdir('/d', 0o755);
  w.fs.link('/m', '/d/m2');
  t.equal(w.fs.getattr('/d/m2').ino, w.fs.getattr('/m').ino);
  t.equal(w.fs.getattr('/m').nlink, 2);
  w.fs.unlink('/m');
  t.equal(w.fs.getattr('/d/m2').nlink, 1);
});

t.test('link of a symlink links the symlink itself (not followed)', async (t) => {
  const w = await mount(t);
  w.fs.pin('/m', w.hash());
  w.fs.symlink('m', '/l');
  w.fs.link('/l', '/l2');
  t.equal(w.fs.getattr('/l2').mode, S_IFLNK | 0o777);
  t.equal(w.fs.getattr('/l').nlink, 2);
});

t.test('link of a directory is EPERM', async (t) => {
  const { fs } = await mount(t);
  fs.mkdir('/a', 0o755);
  t.throws(() => fs.link('/a', '/b'), { code: 'EPERM' });
});

t.test('link onto an existing name is EEXIST; from a missing one ENOENT', async (t) => {
  const w = await mount(t);
  w.fs.pin('/m', w.hash());
  w.fs.pin('/n', w.hash());
  t.throws(() => w.fs.link('/m', '/n'), { code: 'EEXIST' });
  t.throws(() => w.fs.link('/nope', '/x'), { code: 'ENOENT' });
  t.throws(() => w.fs.link('/m', '/x.y'), { code: 'EPERM' });
});

t.test('create is EACCES: bpffs directories have no regular files', async (t) => {
  const { fs } = await mount(t);
  t.throws(() => fs.create('/f', 0o644), { code: 'EACCES' });
  t.throws(() => fs.open('/f', O_CREAT), { code: 'EACCES' }, 'open(O_CREAT) of a new name');
  t.same(fs.readdir('/'), [], 'nothing is made');
});

t.test('create of an existing name is EEXIST, of a dotted one EPERM, of the root EISDIR', async (t) => {
  const { fs } = await mount(t);
  fs.mkdir('/a', 0o755);
  t.throws(() => fs.create('/a', 0o644), { code: 'EEXIST' });
  t.throws(() => fs.create('/f.txt', 0o644), { code: 'EPERM' });
  t.throws(() => fs.create('/', 0o644), { code: 'EISDIR' });
});

t.test('mknod of a FIFO, socket or device node is EPERM', async (t) => {
  const { fs } = await mount(t);
  for (const type of [S_IFIFO, S_IFCHR, S_IFBLK, S_IFSOCK]) t.throws(() => fs.mknod('/n', type | 0o644), { code: 'EPERM' });
  t.same(fs.readdir('/'), []);
});

t.test('mknod of a regular file is EACCES (vfs_create without ->create)', async (t) => {
  const { fs } = await mount(t);
  t.throws(() => fs.mknod('/n', S_IFREG | 0o644), { code: 'EACCES' });
  t.throws(() => fs.mknod('/n', 0o644), { code: 'EACCES' }, 'type 0 is a regular file');
});

t.test('mknod of a directory type is EPERM and of an unknown type EINVAL, before the path is looked at', async (t) => {
  const { fs } = await mount(t);
  t.throws(() => fs.mknod('/no/n', S_IFDIR | 0o755), { code: 'EPERM' });
  t.throws(() => fs.mknod('/no/n', 0o170000), { code: 'EINVAL' });
  t.throws(() => fs.mknod('/no/n', S_IFIFO), { code: 'ENOENT' }, 'a valid type then meets the path');
  fs.mkdir('/a', 0o755);
  t.throws(() => fs.mknod('/a', S_IFIFO), { code: 'EEXIST' });
});

t.test('chmod changes the permission bits and the ctime, never the type', async (t) => {
  const w = await mount(t);
  w.fs.pin('/m', w.hash());
  w.fs.utimens('/m', OLD, OLD);
  w.fs.chmod('/m', S_IFDIR | 0o4644);
  const st = w.fs.getattr('/m');
  t.equal(st.mode, S_IFREG | S_ISUID | 0o644);
  t.ok(st.ctime > OLD);
  t.same(st.mtime, OLD);
});

t.test('chmod of a symlink is EOPNOTSUPP', async (t) => {
  const { fs } = await mount(t);
  fs.symlink('x', '/l');
  t.throws(() => fs.chmod('/l', 0o600), { code: 'EOPNOTSUPP' });
});

t.test('chown sets uid and gid, -1 keeps one; a pin loses setuid, and setgid when group-executable', async (t) => {
  const w = await mount(t);
  w.fs.pin('/m', w.hash());
  w.fs.chmod('/m', S_ISUID | S_ISGID | 0o610);
  w.fs.chown('/m', 5, -1);
  let st = w.fs.getattr('/m');
  t.equal(st.uid, 5);
  t.equal(st.gid, GID);
  t.equal(st.mode, S_IFREG | 0o610);
  w.fs.chmod('/m', S_ISGID | 0o600);
  w.fs.chown('/m', 0xffffffff, 6);
  st = w.fs.getattr('/m');
  t.equal(st.uid, 5);
  t.equal(st.gid, 6);
  t.equal(st.mode, S_IFREG | S_ISGID | 0o600, 'setgid without group execute stays (mandatory locking bit)');
  w.fs.mkdir('/d', 0o755);
  w.fs.chmod('/d', S_ISGID | 0o775);
  w.fs.chown('/d', 1, 2);
  t.equal(w.fs.getattr('/d').mode, S_IFDIR | S_ISGID | 0o775, 'a directory keeps its bits');
  w.fs.chown('/d', -1, -1);
  t.equal(w.fs.getattr('/d').uid, 1);
  w.fs.symlink('m', '/l');
  w.fs.chown('/l', 9, 9);
  t.equal(w.fs.getattr('/l').uid, 9, 'a symlink is chowned itself (lchown)');
  t.equal(w.fs.getattr('/m').uid, 5);
});

t.test('utimens sets atime and mtime and the ctime to now', async (t) => {
  const w = await mount(t);
  w.fs.pin('/m', w.hash());
  const at = new Date('2020-02-02T00:00:00Z');
  w.fs.utimens('/m', at, OLD);
  const st = w.fs.getattr('/m');
  t.same(st.atime, at);
  t.same(st.mtime, OLD);
  t.ok(st.ctime > at);
});

t.test('what getattr returns is a copy: changing it changes nothing', async (t) => {
  const { fs } = await mount(t);
  const st = fs.getattr('/');
  st.mtime.setTime(0);
  t.not(fs.getattr('/').mtime.getTime(), 0);
});

t.test('mkdir in a setgid directory: the group is the directory\'s and the new directory is setgid too', async (t) => {
  const w = await mount(t);
  w.fs.mkdir('/g', 0o755);
  w.fs.chown('/g', UID, 4242);
  w.fs.chmod('/g', S_ISGID | 0o775);
  w.fs.mkdir('/g/d', 0o755, { uid: 7, gid: 8 });
  w.fs.pin('/g/m', w.hash(), { uid: 7, gid: 8 });
  w.fs.symlink('m', '/g/l', { uid: 7, gid: 8 });
  t.equal(w.fs.getattr('/g/d').gid, 4242);
  t.equal(w.fs.getattr('/g/d').uid, 7);
  t.equal(w.fs.getattr('/g/d').mode, S_IFDIR | S_ISGID | 0o755);
  t.equal(w.fs.getattr('/g/m').gid, 4242);
  t.equal(w.fs.getattr('/g/m').mode, S_IFREG | 0o600, 'a file is not made setgid');
  t.equal(w.fs.getattr('/g/l').gid, 4242);
});

t.test('mkdir takes the caller as owner; without a Cred the mount owner', async (t) => {
  const { fs } = await mount(t);
  fs.mkdir('/a', 0o755, { uid: 7, gid: 8 });
  fs.mkdir('/b', 0o755);
  t.equal(fs.getattr('/a').uid, 7);
  t.equal(fs.getattr('/a').gid, 8);
  t.equal(fs.getattr('/b').uid, UID);
});

t.test('statfs is simple_statfs: BPF_FS_MAGIC, 4096-byte blocks, NAME_MAX, no counts', async (t) => {
  const { fs } = await mount(t);
  t.same(fs.statfs(), { bsize: 4096, blocks: 0, bfree: 0, bavail: 0, files: 0, ffree: 0, namemax: 255, type: BPF_FS_MAGIC });
  t.equal(BPF_FS_MAGIC, 0xcafe4a11);
});

t.test('after dispose every call is ENODEV; a second dispose does nothing', async (t) => {
  const w = await bpffsWorld({ mirror: 'manual' });
  w.fs.mkdir('/a', 0o755);
  w.end();
  t.throws(() => w.fs.getattr('/'), { code: 'ENODEV' });
  t.throws(() => w.fs.statfs(), { code: 'ENODEV' });
  t.throws(() => w.fs.mkdir('/b', 0o755), { code: 'ENODEV' });
  w.fs.dispose();
});
