/**
 * The FUSE operations: one small function each, from fuse-native's callback shape to the backend's
 * promises. The errno mapping happens here and nowhere else: a BpfError becomes its negative errno,
 * anything else (a bug) is logged and becomes -EIO, so a broken operation fails one request, never
 * the daemon. Every operation is asynchronous: the serving loop only forwards.
 */
import createDebug from 'debug';
import type { FuseOps, FuseStat } from 'fuse-native';
import { ERRNO, isBpfError } from '../../uapi';
import type { VfsBackend, VfsStat } from './backend';

const debug = createDebug('vbpffs:fs');

/** The negative errno a failed operation answers with. */
export function fuseErrno(e: unknown, op: string, path: string): number {
  if (isBpfError(e)) return e.negative;
  debug('%s %s failed unexpectedly: %O', op, path, e);
  return -ERRNO.EIO;
}

const toFuseStat = (s: VfsStat): FuseStat => ({ ...s });

/** fuse-native's rename has no flags argument: RENAME_NOREPLACE/EXCHANGE come as plain renames. */
export function fuseOps(backend: VfsBackend): FuseOps {
  const reply =
    <T>(op: string, path: string, run: () => Promise<T>, ok: (v: T) => void, fail: (errno: number) => void): void => {
      run().then(ok, (e: unknown) => fail(fuseErrno(e, op, path)));
    };
  const plain = (op: string, path: string, run: () => Promise<void>, cb: (err: number) => void): void =>
    reply(op, path, run, () => cb(0), cb);
  return {
    init: (cb) => cb(0),
    statfs: (path, cb) =>
      reply('statfs', path, () => backend.statfs(), (s) => cb(0, { ...s, frsize: s.bsize, favail: s.ffree, fsid: 0, flag: 0 }), (e) => cb(e, undefined as never)),
    getattr: (path, cb) => reply('getattr', path, () => backend.getattr(path), (s) => cb(0, toFuseStat(s)), (e) => cb(e)),
    readdir: (path, cb) => reply('readdir', path, () => backend.readdir(path), (names) => cb(0, names), (e) => cb(e)),
    readlink: (path, cb) => reply('readlink', path, () => backend.readlink(path), (t) => cb(0, t), (e) => cb(e)),
    mkdir: (path, mode, cb) => plain('mkdir', path, () => backend.mkdir(path, mode), cb),
    rmdir: (path, cb) => plain('rmdir', path, () => backend.rmdir(path), cb),
    unlink: (path, cb) => plain('unlink', path, () => backend.unlink(path), cb),
    rename: (src, dest, cb) => plain('rename', src, () => backend.rename(src, dest, 0), cb),
    link: (src, dest, cb) => plain('link', dest, () => backend.link(src, dest), cb),
    symlink: (target, path, cb) => plain('symlink', path, () => backend.symlink(target, path), cb),
    create: (path, mode, cb) => reply('create', path, () => backend.create(path, mode), () => cb(0, 0), (e) => cb(e)),
    mknod: (path, mode, _dev, cb) => plain('mknod', path, () => backend.mknod(path, mode), cb),
    chmod: (path, mode, cb) => plain('chmod', path, () => backend.chmod(path, mode), cb),
    chown: (path, uid, gid, cb) => plain('chown', path, () => backend.chown(path, uid, gid), cb),
    utimens: (path, atime, mtime, cb) => plain('utimens', path, () => backend.utimens(path, atime, mtime), cb),
    open: (path, flags, cb) => reply('open', path, () => backend.open(path, flags), (fh) => cb(0, fh), (e) => cb(e)),
    read: (path, fh, buf, len, _pos, cb) =>
      reply(
        'read',
        path,
        () => backend.read(fh, len),
        (bytes) => {
          buf.set(bytes.subarray(0, len));
          cb(Math.min(bytes.length, len));
        },
        cb,
      ),
    release: (path, fh, cb) => plain('release', path, () => backend.release(fh), cb),
    // Nothing is written through files in bpffs.
    write: (_path, _fh, _buf, _len, _pos, cb) => cb(-ERRNO.EINVAL),
    truncate: (_path, _size, cb) => cb(-ERRNO.EINVAL),
  };
}
