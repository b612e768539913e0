/**
 * Path walks within one mount: the part of fs/namei.c a bpffs call meets, with bpffs's own lookup.
 *
 * Paths are absolute within the mount ("/" is its root). A walk follows every symlink met before the
 * last component, and the last one too when asked (stat does not, BPF_OBJ_GET does), at most
 * MAXSYMLINKS in all. A relative target resolves from the symlink's directory; an absolute one from
 * the mount's root when it names a path under `mountPoint` (or, with no mount point known, as if the
 * mount were the process's root); one elsewhere is another file system's, which a bpffs call cannot
 * reach: EXDEV. ".." at the root stays at the root.
 */
import { MAXSYMLINKS, NAME_MAX, PATH_MAX, S_IALLUGO, bpfError, type BpfError, type ErrnoName } from '../../uapi';
import { DirInode, SymlinkInode, type BpfInode, type SuperBlock } from './inode';

/** What the last component of a path is (LAST_NORM, LAST_ROOT, LAST_DOT, LAST_DOTDOT). */
export type LastType = 'norm' | 'root' | 'dot' | 'dotdot';

export interface Parent {
  dir: DirInode;
  name: string;
  type: LastType;
}

export interface Found {
  inode: BpfInode;
  /** The directory the final name is in (what a cgroup_view file's d_parent is); null for the root. */
  parent: DirInode | null;
}

function split(path: string): string[] {
  return path.split('/').filter((c) => c !== '');
}

/** The components of a path given to a call: absolute, shorter than PATH_MAX. */
function components(path: string): string[] {
  if (path === '') throw bpfError('ENOENT', 'empty path');
  if (!path.startsWith('/')) throw bpfError('EINVAL', `${path}: not an absolute path within the mount`);
  if (Buffer.byteLength(path) >= PATH_MAX) throw bpfError('ENAMETOOLONG', `path is longer than ${PATH_MAX - 1} bytes`);
  return split(path);
}

/**
 * Why a name the directory does not have cannot be looked up (bpf_lookup, then simple_lookup), or
 * null when it merely does not exist yet. Existing entries are always found, dots or not: the
 * kernel's dentries of bpffs stay in the dcache, so bpf_lookup only ever sees names that are not
 * there. "Dots in names are reserved for future extensions": EPERM, unless the directory has no
 * permission bits at all (how populate_bpffs() makes maps.debug) or the caller allows the name (a
 * directory named after a cgroup, see tags.ts).
 */
export function negativeLookupError(dir: DirInode, name: string, allowDot = false): BpfError | null {
  if (!allowDot && (dir.mode & S_IALLUGO) !== 0 && name.includes('.')) {
    return bpfError('EPERM', `${name}: dots in bpffs names are reserved`);
  }
  if (Buffer.byteLength(name) > NAME_MAX) return bpfError('ENAMETOOLONG', `${name.slice(0, 16)}...: longer than ${NAME_MAX} bytes`);
  return null;
}

/** The checks a new name passes before anything is created: it is free and it may be looked up. */
export function checkNewName(dir: DirInode, name: string, allowDot = false): void {
  if (dir.entries.has(name)) throw bpfError('EEXIST', `${name} exists`);
  const err = negativeLookupError(dir, name, allowDot);
  if (err !== null) throw err;
}

/**
 * The entry `name` of dir: ENOENT if there is none (EPERM or ENAMETOOLONG if it could not be). A
 * tagged directory's missing name of a live child cgroup is ENOENT even with a dot in it: it is a
 * name bpf_mkdir takes (tags.ts), and the VFS looks a name up before it calls mkdir.
 */
export function lookup(dir: DirInode, name: string): BpfInode {
  const found = dir.entries.get(name);
  if (found !== undefined) return found;
  const cgroupName = dir.tag !== null && dir.tag.node.child(name) !== undefined;
  throw negativeLookupError(dir, name, cgroupName) ?? bpfError('ENOENT', `${name}: no such file or directory`);
}

interface WalkState {
  links: number;
}

function resolve(sb: SuperBlock, start: DirInode, comps: readonly string[], followLast: boolean, state: WalkState): Found {
  let cur: Found = { inode: start, parent: start.parent };
  for (let i = 0; i < comps.length; i++) {
    const dir = cur.inode;
    if (!(dir instanceof DirInode)) throw bpfError('ENOTDIR', `${comps[i - 1]}: not a directory`);
    const name = comps[i]!;
    if (name === '.' || name === '..') {
      const to = name === '.' ? dir : (dir.parent ?? dir);
      cur = { inode: to, parent: to.parent };
      continue;
    }
    const child = lookup(dir, name);
    cur = child instanceof SymlinkInode && (followLast || i < comps.length - 1) ? followLink(sb, dir, child, state) : { inode: child, parent: dir };
  }
  return cur;
}

function followLink(sb: SuperBlock, dir: DirInode, link: SymlinkInode, state: WalkState): Found {
  if (++state.links > MAXSYMLINKS) throw bpfError('ELOOP', `more than ${MAXSYMLINKS} symlinks`);
  const target = link.target;
  if (!target.startsWith('/')) return resolve(sb, dir, split(target), true, state);
  const mp = sb.mountPoint?.replace(/\/+$/, '');
  if (mp === undefined) return resolve(sb, sb.root, split(target), true, state);
  if (target !== mp && !target.startsWith(`${mp}/`)) {
    throw bpfError('EXDEV', `symlink to ${target}: outside the mount at ${sb.mountPoint}`);
  }
  return resolve(sb, sb.root, split(target.slice(mp.length)), true, state);
}

/** path_lookupat: the inode a path names, the last symlink followed or not. */
export function walk(sb: SuperBlock, path: string, followLast: boolean): Found {
  return resolve(sb, sb.root, components(path), followLast, { links: 0 });
}

/** filename_parentat: the directory a path's last component is in, and that component. */
export function walkParent(sb: SuperBlock, path: string): Parent {
  const comps = components(path);
  if (comps.length === 0) return { dir: sb.root, name: '', type: 'root' };
  const name = comps[comps.length - 1]!;
  const { inode } = resolve(sb, sb.root, comps.slice(0, -1), true, { links: 0 });
  if (!(inode instanceof DirInode)) throw bpfError('ENOTDIR', `${path}: a component is not a directory`);
  return { dir: inode, name, type: name === '.' ? 'dot' : name === '..' ? 'dotdot' : 'norm' };
}

/** The errno of each call for a last component that is "/", "." or ".." (LAST_ROOT, LAST_DOT, ...). */
export type NotNormErrnos = Readonly<Record<Exclude<LastType, 'norm'>, ErrnoName>>;

/** Creating calls: filename_create gives EEXIST for "/", "." and "..". */
export const CREATE_NOT_NORM: NotNormErrnos = { root: 'EEXIST', dot: 'EEXIST', dotdot: 'EEXIST' };

/** Throws the call's errno unless the last component is an ordinary name. */
export function requireNorm(p: Parent, errnos: NotNormErrnos): void {
  if (p.type !== 'norm') throw bpfError(errnos[p.type], `${p.type === 'root' ? '/' : p.name}: not a name this call takes`);
}
