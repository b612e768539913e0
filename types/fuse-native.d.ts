/**
 * Our declarations for the part of fuse-native 2.2 vbpffs uses (it ships none). Only fs/fuse/host.ts
 * imports the package: everything else sees fs/fuse's own interface, so the binding can be replaced.
 */
declare module 'fuse-native' {
  /** A stat as fuse-native packs it (getStatArray): times as Dates, sizes as numbers. */
  export interface FuseStat {
    mode: number;
    uid: number;
    gid: number;
    size: number;
    nlink: number;
    ino: number;
    atime: Date;
    mtime: Date;
    ctime: Date;
    dev?: number;
    rdev?: number;
    blksize?: number;
    blocks?: number;
  }

  export interface FuseStatfs {
    bsize: number;
    frsize: number;
    blocks: number;
    bfree: number;
    bavail: number;
    files: number;
    ffree: number;
    favail: number;
    fsid: number;
    flag: number;
    namemax: number;
  }

  /** Callbacks take a negative errno (or 0) first. */
  type Cb<T extends unknown[] = []> = (err: number, ...result: T) => void;

  export interface FuseOps {
    init?(cb: Cb): void;
    statfs?(path: string, cb: Cb<[FuseStatfs]>): void;
    getattr?(path: string, cb: Cb<[FuseStat?]>): void;
    fgetattr?(path: string, fd: number, cb: Cb<[FuseStat?]>): void;
    access?(path: string, mode: number, cb: Cb): void;
    readdir?(path: string, cb: Cb<[string[]?, FuseStat[]?]>): void;
    readlink?(path: string, cb: Cb<[string?]>): void;
    open?(path: string, flags: number, cb: Cb<[number?]>): void;
    opendir?(path: string, flags: number, cb: Cb<[number?]>): void;
    read?(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (bytesOrErr: number) => void): void;
    write?(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (bytesOrErr: number) => void): void;
    release?(path: string, fd: number, cb: Cb): void;
    releasedir?(path: string, fd: number, cb: Cb): void;
    create?(path: string, mode: number, cb: Cb<[number?]>): void;
    mknod?(path: string, mode: number, dev: number, cb: Cb): void;
    unlink?(path: string, cb: Cb): void;
    rename?(src: string, dest: string, cb: Cb): void;
    link?(src: string, dest: string, cb: Cb): void;
    symlink?(src: string, dest: string, cb: Cb): void;
    mkdir?(path: string, mode: number, cb: Cb): void;
    rmdir?(path: string, cb: Cb): void;
    chmod?(path: string, mode: number, cb: Cb): void;
    chown?(path: string, uid: number, gid: number, cb: Cb): void;
    utimens?(path: string, atime: Date, mtime: Date, cb: Cb): void;
    truncate?(path: string, size: number, cb: Cb): void;
    ftruncate?(path: string, fd: number, size: number, cb: Cb): void;
    flush?(path: string, fd: number, cb: Cb): void;
  }

  export interface FuseOptions {
    force?: boolean;
    mkdir?: boolean;
    autoUnmount?: boolean;
    allowOther?: boolean;
    defaultPermissions?: boolean;
    /** libfuse reads further options from this string: 'vbpffs,direct_io,use_ino' works. */
    fsname?: string;
    subtype?: string;
    /** Seconds, or a string (a number 0 is dropped by fuse-native). */
    entryTimeout?: number | string;
    attrTimeout?: number | string;
    /** fuse-native's own per-operation timeout in ms (false: none). */
    timeout?: number | false;
    debug?: boolean;
  }

  export default class Fuse {
    constructor(mnt: string, ops: FuseOps, opts?: FuseOptions);
    readonly mnt: string;
    mount(cb: (err: Error | null) => void): void;
    unmount(cb: (err: Error | null) => void): void;
    static unmount(mnt: string, cb: (err: Error | null) => void): void;
    static isConfigured(cb: (err: Error | null, configured: boolean) => void): void;
  }
}
