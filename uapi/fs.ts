/**
 * The file system vocabulary bpffs and its FUSE adapter share with userspace: mode bits
 * (include/uapi/linux/stat.h), open flags (asm-generic/fcntl.h, x86-64 values), rename flags
 * (include/uapi/linux/fs.h), the bpffs magic (include/uapi/linux/magic.h) and the VFS limits.
 */

export const S_IFMT = 0o170000;
export const S_IFSOCK = 0o140000;
export const S_IFLNK = 0o120000;
export const S_IFREG = 0o100000;
export const S_IFBLK = 0o060000;
export const S_IFDIR = 0o040000;
export const S_IFCHR = 0o020000;
export const S_IFIFO = 0o010000;
export const S_ISUID = 0o4000;
export const S_ISGID = 0o2000;
export const S_ISVTX = 0o1000;
export const S_IRWXUGO = 0o777;
/** Every permission bit, setuid, setgid and sticky included. */
export const S_IALLUGO = 0o7777;
export const S_IXGRP = 0o010;

export const O_ACCMODE = 0o3;
export const O_RDONLY = 0o0;
export const O_WRONLY = 0o1;
export const O_RDWR = 0o2;
export const O_CREAT = 0o100;
export const O_EXCL = 0o200;
export const O_TRUNC = 0o1000;
export const O_DIRECTORY = 0o200000;
export const O_NOFOLLOW = 0o400000;

export const RENAME_NOREPLACE = 1 << 0;
export const RENAME_EXCHANGE = 1 << 1;
export const RENAME_WHITEOUT = 1 << 2;

/** statfs f_type of a bpffs mount. */
export const BPF_FS_MAGIC = 0xcafe4a11;

/** Longest name of one directory entry, in bytes. */
export const NAME_MAX = 255;
/** Longest path, in bytes, its terminating NUL included. */
export const PATH_MAX = 4096;
/** How many symlinks one path walk follows before ELOOP. */
export const MAXSYMLINKS = 40;
