/**
 * What the FUSE adapter serves from: the bpffs operations, asynchronous, path based. The engine
 * (fs/engine) implements it over a Bpffs instance on its own thread; the adapter never sees a BPF
 * object, only stats, names and bytes, so nothing it holds needs to cross a thread.
 */
import type { BpffsStat, BpffsStatfs } from '../bpffs';

/** The stats are bpffs's own: plain data, nothing that needs to cross a thread but numbers and dates. */
export type VfsStat = BpffsStat;
export type VfsStatfs = BpffsStatfs;

/** Every method rejects with a BpfError (the kernel's errno) on failure. */
export interface VfsBackend {
  getattr(path: string): Promise<VfsStat>;
  readdir(path: string): Promise<string[]>;
  readlink(path: string): Promise<string>;
  mkdir(path: string, mode: number): Promise<void>;
  rmdir(path: string): Promise<void>;
  unlink(path: string): Promise<void>;
  rename(from: string, to: string, flags: number): Promise<void>;
  link(existing: string, newPath: string): Promise<void>;
  symlink(target: string, path: string): Promise<void>;
  create(path: string, mode: number): Promise<void>;
  mknod(path: string, mode: number): Promise<void>;
  chmod(path: string, mode: number): Promise<void>;
  chown(path: string, uid: number, gid: number): Promise<void>;
  utimens(path: string, atime: Date, mtime: Date): Promise<void>;
  /** A file handle number for read/release. */
  open(path: string, flags: number): Promise<number>;
  /** The next bytes of an open file (reads are sequential: direct_io); empty at EOF. */
  read(fh: number, size: number): Promise<Uint8Array>;
  release(fh: number): Promise<void>;
  statfs(): Promise<VfsStatfs>;
  /**
   * Optional: read() that also says whether the file is at its end: true only when the next read
   * would return nothing and run nothing. The libfuse3 binding then answers that EOF read itself
   * instead of asking; backends without it are asked for every read.
   */
  readEof?(fh: number, size: number): Promise<{ bytes: Uint8Array; eof: boolean }>;
}
