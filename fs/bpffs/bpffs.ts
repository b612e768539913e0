/**
 * Bpffs: one mount of the virtual bpffs, as a library (the FUSE adapter is a thin layer over it).
 * Each method is one VFS entry point: the VFS's checks on the path, then the bpffs or libfs operation
 * the kernel's bpf_dir_iops names. Errors are BpfErrors with the kernel's errno.
 *
 * Each mount is a separate instance (mount_nodev): its own inodes, pins and tags. Permission checks
 * (mode bits, the sticky root) are the VFS's and are left to it: FUSE's default_permissions makes
 * them from what getattr reports.
 */
import {
  O_CREAT,
  O_DIRECTORY,
  O_EXCL,
  O_NOFOLLOW,
  PATH_MAX,
  S_IALLUGO,
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFMT,
  S_IFREG,
  S_IFSOCK,
  S_ISGID,
  S_ISUID,
  S_ISVTX,
  S_IXGRP,
  bpfError,
  isBpfError,
} from '../../uapi';
import type { BpfMap, BpfObject, Handle, Kernel, MapPins } from '../../progs';
import type { CgroupSource } from '../../tags';
import { bpffsOpen, type OpenFile } from './file';
import { DirInode, ObjInode, SuperBlock, SymlinkInode, type BpfInode, type Cred } from './inode';
import { dInstantiate, simpleLink, simpleRecursiveRemoval, simpleStatfs, simpleUnlink, type BpffsStatfs } from './libfs';
import { Mirror } from './mirror';
import { CREATE_NOT_NORM, checkNewName, lookup, requireNorm, walk, walkParent } from './namei';
import { bpfObjGet, bpfObjPin } from './pin';
import { bpfRename } from './rename';
import { bpfMkdir, bpfRmdir } from './tags';

export interface BpffsOptions {
  kernel: Kernel;
  /** Already started by the caller: its hierarchy gives tags their cgroups and the mirror its children. */
  source: CgroupSource;
  /** 'auto' (the default) mirrors each tagged directory's child cgroups; 'manual' is the RFC's behaviour. */
  mirror?: 'auto' | 'manual';
  /** Default 0o022. */
  umask?: number;
  /** Owner of what is created without a caller's Cred, and of the root (default: this process's). */
  uid?: number;
  gid?: number;
  /** Default 0o1777 (S_ISVTX | 0777), as bpf_fill_super makes it. */
  rootMode?: number;
  /**
   * Where the mount is, for absolute symlink targets (BPF_OBJ_GET and open follow symlinks). Without
   * it, an absolute target is taken from the mount's root.
   */
  mountPoint?: string;
}

export interface BpffsStat {
  ino: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  size: number;
  atime: Date;
  mtime: Date;
  ctime: Date;
}

function statOf(inode: BpfInode): BpffsStat {
  return {
    ino: inode.ino,
    mode: inode.mode,
    nlink: inode.nlink,
    uid: inode.uid,
    gid: inode.gid,
    size: inode.size,
    atime: new Date(inode.atime),
    mtime: new Date(inode.mtime),
    ctime: new Date(inode.ctime),
  };
}

/** A chown argument that leaves the id as it is (-1, or (uid_t)-1 as FUSE passes it). */
const keepId = (id: number): boolean => id === -1 || id === 0xffffffff;

export class Bpffs {
  readonly #sb: SuperBlock;
  readonly #mirror: Mirror | null;
  #disposed = false;

  constructor(opts: BpffsOptions) {
    this.#sb = new SuperBlock({
      kernel: opts.kernel,
      source: opts.source,
      umask: opts.umask ?? 0o022,
      uid: opts.uid ?? process.getuid!(),
      gid: opts.gid ?? process.getgid!(),
      rootMode: opts.rootMode ?? (S_ISVTX | 0o777),
      mountPoint: opts.mountPoint,
    });
    this.#mirror = (opts.mirror ?? 'auto') === 'auto' ? new Mirror(this.#sb) : null;
  }

  /** The super block, ENODEV once the mount is gone. */
  get #live(): SuperBlock {
    if (this.#disposed) throw bpfError('ENODEV', 'bpffs is unmounted');
    return this.#sb;
  }

  /** lstat: a symlink is not followed. */
  getattr(path: string): BpffsStat {
    return statOf(walk(this.#live, path, false).inode);
  }

  /** fstat: an open file's inode, whether or not a name still leads to it. */
  fstat(file: OpenFile): BpffsStat {
    return statOf(file.inode);
  }

  /** The names of a directory, newest first as dcache_readdir lists them, without "." and "..". */
  readdir(path: string): string[] {
    const { inode } = walk(this.#live, path, true);
    if (!(inode instanceof DirInode)) throw bpfError('ENOTDIR', `${path}: not a directory`);
    return [...inode.entries.keys()].reverse();
  }

  /** bpf_mkdir: mode & ~umask; in a tagged directory the name must be a live child cgroup. */
  mkdir(path: string, mode: number, cred?: Cred): void {
    const sb = this.#live;
    const p = walkParent(sb, path);
    requireNorm(p, CREATE_NOT_NORM);
    const dir = bpfMkdir(sb, p.dir, p.name, mode & (S_ISVTX | 0o777) & ~sb.umask, cred ?? sb.owner);
    if (dir.tag !== null) this.#mirror?.fill(dir);
  }

  rmdir(path: string): void {
    const p = walkParent(this.#live, path);
    requireNorm(p, { root: 'EBUSY', dot: 'EINVAL', dotdot: 'ENOTEMPTY' });
    const victim = lookup(p.dir, p.name);
    if (!(victim instanceof DirInode)) throw bpfError('ENOTDIR', `${path}: not a directory`);
    bpfRmdir(p.dir, p.name, victim);
  }

  /** simple_unlink; the inherit list is left alone. */
  unlink(path: string): void {
    const p = walkParent(this.#live, path);
    requireNorm(p, { root: 'EISDIR', dot: 'EISDIR', dotdot: 'EISDIR' });
    const inode = lookup(p.dir, p.name);
    if (inode instanceof DirInode) throw bpfError('EISDIR', `${path}: is a directory`);
    simpleUnlink(p.dir, p.name, inode);
  }

  /** renameat2 with RENAME_NOREPLACE (1) or RENAME_EXCHANGE (2); other flags EINVAL. */
  rename(from: string, to: string, flags = 0): void {
    bpfRename(this.#live, from, to, flags);
  }

  /** simple_link: the existing name is not followed; a directory cannot be linked (EPERM). */
  link(existing: string, newPath: string): void {
    const sb = this.#live;
    const { inode } = walk(sb, existing, false);
    const p = walkParent(sb, newPath);
    requireNorm(p, CREATE_NOT_NORM);
    checkNewName(p.dir, p.name);
    if (inode instanceof DirInode) throw bpfError('EPERM', `${existing}: cannot hard-link a directory`);
    simpleLink(inode, p.dir, p.name);
  }

  /** bpf_symlink: mode S_IFLNK | 0777, the target kept as given. */
  symlink(target: string, path: string, cred?: Cred): void {
    const sb = this.#live;
    if (target === '') throw bpfError('ENOENT', 'empty symlink target');
    if (Buffer.byteLength(target) >= PATH_MAX) throw bpfError('ENAMETOOLONG', `symlink target longer than ${PATH_MAX - 1} bytes`);
    const p = walkParent(sb, path);
    requireNorm(p, CREATE_NOT_NORM);
    checkNewName(p.dir, p.name);
    dInstantiate(p.dir, p.name, sb.newSymlink(p.dir, target, cred ?? sb.owner));
  }

  readlink(path: string): string {
    const { inode } = walk(this.#live, path, false);
    if (!(inode instanceof SymlinkInode)) throw bpfError('EINVAL', `${path}: not a symlink`);
    inode.atime = new Date();
    return inode.target;
  }

  /** open(O_CREAT) of a new name: bpffs directories have no ->create (EACCES). */
  create(path: string, _mode: number): never {
    const p = walkParent(this.#live, path);
    requireNorm(p, { root: 'EISDIR', dot: 'EISDIR', dotdot: 'EISDIR' });
    checkNewName(p.dir, p.name);
    throw bpfError('EACCES', `${path}: bpffs has no regular files`);
  }

  /**
   * mknod: a directory type is EPERM and an unknown one EINVAL before the path is looked at
   * (may_mknod); then a regular file is EACCES (no ->create) and a FIFO, socket or device EPERM
   * (no ->mknod).
   */
  mknod(path: string, mode: number): never {
    const type = mode & S_IFMT;
    if (type === S_IFDIR) throw bpfError('EPERM', 'mknod cannot make a directory');
    if (![0, S_IFREG, S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK].includes(type)) throw bpfError('EINVAL', `mknod: file type 0${type.toString(8)}`);
    const p = walkParent(this.#live, path);
    requireNorm(p, CREATE_NOT_NORM);
    checkNewName(p.dir, p.name);
    if (type === 0 || type === S_IFREG) throw bpfError('EACCES', `${path}: bpffs has no regular files`);
    throw bpfError('EPERM', `${path}: bpffs has no FIFOs, sockets or device nodes`);
  }

  /** The permission bits change; a symlink's cannot (EOPNOTSUPP, as fchmodat(AT_SYMLINK_NOFOLLOW)). */
  chmod(path: string, mode: number): void {
    const { inode } = walk(this.#live, path, false);
    if (inode instanceof SymlinkInode) throw bpfError('EOPNOTSUPP', `${path}: a symlink's mode cannot change`);
    inode.mode = (inode.mode & S_IFMT) | (mode & S_IALLUGO);
    inode.touchCtime();
  }

  /** -1 leaves an id as it is; a non-directory that changes owner loses setuid (and setgid with group x). */
  chown(path: string, uid: number, gid: number): void {
    const { inode } = walk(this.#live, path, false);
    if (!keepId(uid)) inode.uid = uid;
    if (!keepId(gid)) inode.gid = gid;
    if ((!keepId(uid) || !keepId(gid)) && !(inode instanceof DirInode)) {
      inode.mode &= ~S_ISUID;
      if ((inode.mode & (S_ISGID | S_IXGRP)) === (S_ISGID | S_IXGRP)) inode.mode &= ~S_ISGID;
    }
    inode.touchCtime();
  }

  utimens(path: string, atime: Date, mtime: Date): void {
    const { inode } = walk(this.#live, path, false);
    inode.atime = new Date(atime);
    inode.mtime = new Date(mtime);
    inode.touchCtime();
  }

  /** BPF_OBJ_PIN: the pin takes its own reference; a cgroup_view link tags or joins (tags.ts). */
  pin(path: string, obj: BpfObject, cred?: Cred): void {
    const sb = this.#live;
    const r = bpfObjPin(sb, path, obj, cred ?? sb.owner);
    if (r.inherit === 'tagged') this.#mirror?.fill(r.dir);
    if (r.inherit === 'appended') this.#mirror?.propagate(r.dir, r.name);
  }

  /** BPF_OBJ_GET: a new handle on the object pinned at path, symlinks followed. */
  get(path: string): Handle<BpfObject> {
    return bpfObjGet(this.#live, path);
  }

  /**
   * libbpf's pin_root_path for maps declared `pinning: 'by_name'` (loadCollection's MapPins): a map
   * pinned as `dir/NAME` is reused, a new one pinned there. A pin of something else under the name
   * is EINVAL, as libbpf refuses to reuse it.
   */
  mapPins(dir = '/'): MapPins {
    const at = (name: string): string => `${dir.replace(/\/+$/, '')}/${name}`;
    return {
      get: (name) => {
        let h: Handle<BpfObject>;
        try {
          h = this.get(at(name));
        } catch (e) {
          if (isBpfError(e, 'ENOENT')) return undefined;
          throw e;
        }
        const kind = h.object.kind;
        if (kind === 'map') return h as Handle<BpfMap>;
        h.close();
        throw bpfError('EINVAL', `${at(name)}: a pinned ${kind}, not a map`);
      },
      pin: (name, map) => this.pin(at(name), map),
    };
  }

  /**
   * Opens a pin (symlinks followed unless O_NOFOLLOW, then ELOOP). O_CREAT makes nothing (EACCES for
   * a new name); O_CREAT | O_EXCL on an existing one is EEXIST. A directory is EISDIR: its entries are
   * readdir's.
   */
  open(path: string, flags: number): OpenFile {
    const sb = this.#live;
    if (flags & O_CREAT) {
      const p = walkParent(sb, path);
      if (p.type === 'norm' && !p.dir.entries.has(p.name)) this.create(path, 0);
      if (flags & O_EXCL) throw bpfError('EEXIST', `${path} exists`);
    }
    const { inode, parent } = walk(sb, path, !(flags & O_NOFOLLOW));
    if (inode instanceof SymlinkInode) throw bpfError('ELOOP', `${path}: a symlink, with O_NOFOLLOW`);
    if (!(inode instanceof ObjInode)) throw bpfError('EISDIR', `${path}: is a directory`);
    if (flags & O_DIRECTORY) throw bpfError('ENOTDIR', `${path}: not a directory`);
    return bpffsOpen(sb, parent!, inode);
  }

  /**
   * The root directory's inode, for checkers that walk the tree as it is (the fuzzer's invariants:
   * tags, inherit lists, which inodes pin what). Not a VFS call; callers must not change it.
   */
  get rootInode(): DirInode {
    return this.#live.root;
  }

  statfs(): BpffsStatfs {
    this.#live;
    return simpleStatfs();
  }

  /** kill_litter_super: every name goes (pins drop their objects, tags their lists), the mirror stops. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#mirror?.dispose();
    simpleRecursiveRemoval(this.#sb.root);
    this.#sb.root.clearNlink();
  }
}
