/**
 * fs/bpffs: the virtual bpffs as a library, with no FUSE in it. One Bpffs per mount: directories,
 * pins of programs, maps and links, symlinks and hard links with bpffs's rules and errnos; the
 * cgroup_view RFC's directory tags and inherit list; vbpffs's auto-mirror of the cgroup tree; and open
 * files that run iterators and dump maps. The only file of fs/bpffs the rest of fs/ imports.
 */
export { Bpffs, type BpffsOptions, type BpffsStat } from './bpffs';
export type { BpffsStatfs } from './libfs';
export { BpfInode, DirInode, ObjInode, SymlinkInode, type Cred, type ViewTag } from './inode';
export type { OpenFile } from './file';
export { isIterLink, bpfLinkSupportInherit, type IterLinkLike, type IterOpenOptions, type IterSession } from './iter-link';
