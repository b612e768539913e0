/**
 * Open files of pins: the i_fop bpffs gives each kind of object (bpf_mkprog, bpf_mkmap, bpf_mklink).
 *
 * - a program, a map whose type cannot show its elements, a link that is not an iterator:
 *   bpffs_obj_fops, whose open is EIO;
 * - a map that can (bpf_map_support_seq_show): bpffs_map_fops, the WARNING header then one line
 *   per element, each made when a read reaches it, as seq_read walks;
 * - an iterator link: bpf_iter_fops, one new session per open. A cgroup_view session is given the
 *   cgroup of the directory the file was opened in (its tag); with no tag, or a tag whose cgroup is
 *   removed, the file reads as empty and the program does not run.
 *
 * Every readable pin reports size 0, so every one is direct I/O: a page-cached read would stop at
 * that size. An open file holds its inode, so a pin unlinked while open keeps its object until
 * release. Reads are taken in turn (seq_file's mutex).
 */
import { bpfError } from '../../uapi';
import { bpffsMapShowLines, mapSupportsSeqShow, type BpfMap } from '../../progs';
import type { KernfsNode } from '../../tags';
import type { DirInode, ObjInode, SuperBlock } from './inode';
import { isIterLink, type IterSession } from './iter-link';

export interface OpenFile {
  /** Up to `size` bytes from where the last read ended; an empty array is the end. */
  read(size: number): Promise<Uint8Array>;
  release(): void;
  /** True: the size of what a read gives is not known before it is read. */
  readonly directIo: boolean;
  /** The pin's inode the file holds (fstat's). */
  readonly inode: ObjInode;
}

const EMPTY = new Uint8Array(0);

abstract class PinFile implements OpenFile {
  readonly directIo = true;
  readonly inode: ObjInode;
  #released = false;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(inode: ObjInode) {
    this.inode = inode;
    inode.hold();
  }

  read(size: number): Promise<Uint8Array> {
    if (this.#released) return Promise.reject(bpfError('EBADF', 'file is released'));
    const next = this.#queue.then(() => this.readNext(size));
    this.#queue = next.catch(() => undefined);
    return next;
  }

  release(): void {
    if (this.#released) throw bpfError('EBADF', 'file is already released');
    this.#released = true;
    try {
      this.close();
    } finally {
      this.inode.release();
    }
  }

  protected abstract readNext(size: number): Promise<Uint8Array>;
  protected close(): void {}
}

const encoder = new TextEncoder();

/**
 * Text served in order as reads ask for it: the map dump, or nothing. Its pieces are made as reads
 * reach them (seq_file's walk), so a file holds one piece at a time, not the whole text.
 */
class TextFile extends PinFile {
  readonly #make: () => Iterable<string>;
  #pieces: Iterator<string> | null = null;
  #piece: Uint8Array = EMPTY;
  #pos = 0;

  constructor(inode: ObjInode, make: () => Iterable<string>) {
    super(inode);
    this.#make = make;
  }

  protected override async readNext(size: number): Promise<Uint8Array> {
    this.#pieces ??= this.#make()[Symbol.iterator]();
    const parts: Uint8Array[] = [];
    let n = 0;
    while (n < size) {
      if (this.#pos === this.#piece.length) {
        const next = this.#pieces.next();
        if (next.done === true) break;
        this.#piece = encoder.encode(next.value);
        this.#pos = 0;
        continue;
      }
      const out = this.#piece.subarray(this.#pos, this.#pos + size - n);
      this.#pos += out.length;
      parts.push(out);
      n += out.length;
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }
}

/** bpf_iter_fops: the session's reads; its close at release. */
class IterFile extends PinFile {
  readonly #session: IterSession;

  constructor(inode: ObjInode, session: IterSession) {
    super(inode);
    this.#session = session;
  }

  protected override readNext(size: number): Promise<Uint8Array> {
    return this.#session.read(size);
  }

  protected override close(): void {
    this.#session.close();
  }
}

/**
 * A cgroup_view's file. It reads as empty from its cgroup's rmdir (docs/DIFFERENCES.md): the
 * directory's tag holds the cgroup, so a removed cgroup whose directory stays (manual mirroring, or
 * a directory kept for the user's entries) is dying for as long as the directory is there, and
 * cgroup_tryget alone would let a file opened before the rmdir run the program for it.
 */
class ViewFile extends IterFile {
  readonly #cgroup: KernfsNode;
  #started = false;

  constructor(inode: ObjInode, session: IterSession, cgroup: KernfsNode) {
    super(inode, session);
    this.#cgroup = cgroup;
  }

  protected override readNext(size: number): Promise<Uint8Array> {
    if (!this.#started && this.#cgroup.dying) return Promise.resolve(EMPTY);
    this.#started = true;
    return super.readNext(size);
  }
}

/** The i_fop of a pin, opened through `dir` (the directory its name was found in). */
export function bpffsOpen(sb: SuperBlock, dir: DirInode, inode: ObjInode): OpenFile {
  const obj = inode.obj;
  if (obj.kind === 'map' && mapSupportsSeqShow(obj as BpfMap)) {
    return new TextFile(inode, () => bpffsMapShowLines(obj as BpfMap));
  }
  if (!isIterLink(obj)) throw bpfError('EIO', `a pinned ${obj.kind} cannot be read`);
  if (obj.target !== 'cgroup_view') return new IterFile(inode, obj.open({ source: sb.source }));
  // cgroup_view_seq_start: no tag, or a cgroup that cannot be held, reads as empty.
  const cgroup = dir.tag?.node;
  if (cgroup === undefined || cgroup.dying) return new TextFile(inode, () => []);
  return new ViewFile(inode, obj.open({ cgroup, source: sb.source }), cgroup);
}
