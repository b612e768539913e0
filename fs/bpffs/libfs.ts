/**
 * fs/libfs.c's simple_* operations, which bpffs uses for everything but mkdir, symlink and pins:
 * entries, link counts and the timestamps they set. The VFS's checks before them are the callers'.
 *
 * Link counts: a directory has 2 + its subdirectories, any other inode one per name. Timestamps:
 * a new entry sets its directory's mtime and ctime (bpf_dentry_finalize); unlink and link set the
 * directory's mtime and ctime and the inode's ctime; rename sets both directories' and the moved
 * (and replaced) inodes' ctime.
 */
import { BPF_FS_MAGIC, NAME_MAX, RENAME_EXCHANGE, bpfError } from '../../uapi';
import { DirInode, type BpfInode } from './inode';

function touchDir(dir: DirInode, now: Date): void {
  dir.mtime = now;
  dir.ctime = now;
}

/** bpf_dentry_finalize (d_instantiate): a new inode gets its name; a new directory counts in its parent. */
export function dInstantiate(dir: DirInode, name: string, inode: BpfInode): void {
  dir.entries.set(name, inode);
  if (inode instanceof DirInode) {
    inode.name = name;
    dir.nlink++;
  }
  touchDir(dir, new Date());
}

/** simple_unlink: the name goes; the inode goes with its last name (a pin drops its object then). */
export function simpleUnlink(dir: DirInode, name: string, inode: BpfInode): void {
  const now = new Date();
  touchDir(dir, now);
  inode.touchCtime(now);
  dir.entries.delete(name);
  inode.dropNlink();
}

/** simple_rmdir: ENOTEMPTY unless empty; the directory is evicted, which destroys its tag. */
export function simpleRmdir(dir: DirInode, name: string, victim: DirInode): void {
  if (victim.entries.size > 0) throw bpfError('ENOTEMPTY', `${name}: directory not empty`);
  victim.nlink--;
  simpleUnlink(dir, name, victim);
  dir.nlink--;
}

/** simple_link: one more name for an inode (never a directory: the VFS refuses that first). */
export function simpleLink(inode: BpfInode, dir: DirInode, name: string): void {
  const now = new Date();
  inode.touchCtime(now);
  touchDir(dir, now);
  inode.nlink++;
  dir.entries.set(name, inode);
}

function simpleRenameTimestamp(oldDir: DirInode, inode: BpfInode, newDir: DirInode, target: BpfInode | undefined): void {
  const now = new Date();
  touchDir(oldDir, now);
  touchDir(newDir, now);
  inode.touchCtime(now);
  target?.touchCtime(now);
}

/** Moves an entry; the moved name is the newest of its directory, as d_move puts it first. */
function dMove(oldDir: DirInode, oldName: string, newDir: DirInode, newName: string, inode: BpfInode): void {
  if (oldDir.entries.get(oldName) === inode) oldDir.entries.delete(oldName);
  newDir.entries.delete(newName);
  newDir.entries.set(newName, inode);
  if (inode instanceof DirInode) {
    inode.parent = newDir;
    inode.name = newName;
  }
}

/** simple_rename_exchange: the two names swap inodes; link counts follow a directory that changes parent. */
function simpleRenameExchange(oldDir: DirInode, oldName: string, inode: BpfInode, newDir: DirInode, newName: string, target: BpfInode): void {
  const oldIsDir = inode instanceof DirInode;
  if (oldDir !== newDir && oldIsDir !== target instanceof DirInode) {
    if (oldIsDir) {
      oldDir.nlink--;
      newDir.nlink++;
    } else {
      newDir.nlink--;
      oldDir.nlink++;
    }
  }
  dMove(oldDir, oldName, newDir, newName, inode);
  dMove(newDir, newName, oldDir, oldName, target);
  simpleRenameTimestamp(oldDir, inode, newDir, target);
}

/**
 * simple_rename: RENAME_EXCHANGE swaps; otherwise the name moves, replacing what the new name had
 * (which goes as an unlink would: a replaced pin drops its object), ENOTEMPTY for a directory that
 * is not empty. The VFS has already refused the flags libfs does not take and the type mismatches.
 */
export function simpleRename(
  oldDir: DirInode,
  oldName: string,
  inode: BpfInode,
  newDir: DirInode,
  newName: string,
  target: BpfInode | undefined,
  flags: number,
): void {
  if (flags & RENAME_EXCHANGE) return simpleRenameExchange(oldDir, oldName, inode, newDir, newName, target!);
  if (target instanceof DirInode && target.entries.size > 0) throw bpfError('ENOTEMPTY', `${newName}: directory not empty`);
  const theyAreDirs = inode instanceof DirInode;
  if (target !== undefined) {
    if (theyAreDirs) target.nlink--;
    simpleUnlink(newDir, newName, target);
    if (theyAreDirs) oldDir.nlink--;
  } else if (theyAreDirs) {
    oldDir.nlink--;
    newDir.nlink++;
  }
  dMove(oldDir, oldName, newDir, newName, inode);
  simpleRenameTimestamp(oldDir, inode, newDir, target);
}

/** Every name below dir goes, deepest first (kill_litter_super's d_genocide): pins drop their objects. */
export function simpleRecursiveRemoval(dir: DirInode): void {
  for (const [name, inode] of [...dir.entries]) {
    if (inode instanceof DirInode) {
      simpleRecursiveRemoval(inode);
      simpleRmdir(dir, name, inode);
    } else {
      simpleUnlink(dir, name, inode);
    }
  }
}

export interface BpffsStatfs {
  bsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  namemax: number;
  /** BPF_FS_MAGIC */
  type: number;
}

/** simple_statfs: the magic, a page as the block size, NAME_MAX; no blocks or inode counts. */
export function simpleStatfs(): BpffsStatfs {
  return { bsize: 4096, blocks: 0, bfree: 0, bavail: 0, files: 0, ffree: 0, namemax: NAME_MAX, type: BPF_FS_MAGIC };
}
