/**
 * rename and renameat2 down to simple_rename: do_renameat2's and vfs_rename's checks, in their order.
 *
 * Flags: RENAME_NOREPLACE (EEXIST if the new name exists) and RENAME_EXCHANGE (both must exist; they
 * swap). Anything else, or both together, is EINVAL (simple_rename takes no RENAME_WHITEOUT). A
 * directory cannot move below itself (EINVAL) nor replace one of its own ancestors (ENOTEMPTY, EINVAL
 * when exchanging); a directory replaces only a directory (ENOTDIR) and a non-directory only a
 * non-directory (EISDIR); two names of one inode: nothing happens. Not tag-aware (spec 1.3.12): a
 * renamed tagged directory keeps its cgroup.
 */
import { RENAME_EXCHANGE, RENAME_NOREPLACE, bpfError } from '../../uapi';
import { DirInode, type SuperBlock } from './inode';
import { simpleRename } from './libfs';
import { lookup, negativeLookupError, requireNorm, walkParent } from './namei';

export function bpfRename(sb: SuperBlock, from: string, to: string, flags: number): void {
  if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) throw bpfError('EINVAL', `rename flags 0x${flags.toString(16)}`);
  if (flags & RENAME_NOREPLACE && flags & RENAME_EXCHANGE) throw bpfError('EINVAL', 'RENAME_NOREPLACE with RENAME_EXCHANGE');
  const exchange = (flags & RENAME_EXCHANGE) !== 0;
  const op = walkParent(sb, from);
  const np = walkParent(sb, to);
  requireNorm(op, { root: 'EBUSY', dot: 'EBUSY', dotdot: 'EBUSY' });
  const notNorm = flags & RENAME_NOREPLACE ? 'EEXIST' : 'EBUSY';
  requireNorm(np, { root: notNorm, dot: notNorm, dotdot: notNorm });

  const inode = lookup(op.dir, op.name);
  const target = np.dir.entries.get(np.name);
  if (target === undefined) {
    const err = negativeLookupError(np.dir, np.name);
    if (err !== null) throw err;
    if (exchange) throw bpfError('ENOENT', `${to}: no such file or directory`);
  } else if (flags & RENAME_NOREPLACE) {
    throw bpfError('EEXIST', `${to} exists`);
  }

  // lock_rename's trap: neither name may be an ancestor of the other's directory.
  if (inode instanceof DirInode && np.dir.isDescendantOf(inode)) throw bpfError('EINVAL', `${from}: cannot move a directory below itself`);
  if (target instanceof DirInode && op.dir.isDescendantOf(target)) {
    throw bpfError(exchange ? 'EINVAL' : 'ENOTEMPTY', `${to}: an ancestor of ${from}`);
  }
  if (inode === target) return;
  if (target !== undefined && !exchange) {
    if (inode instanceof DirInode && !(target instanceof DirInode)) throw bpfError('ENOTDIR', `${to}: not a directory`);
    if (!(inode instanceof DirInode) && target instanceof DirInode) throw bpfError('EISDIR', `${to}: is a directory`);
  }
  simpleRename(op.dir, op.name, inode, np.dir, np.name, target, flags);
}
