/**
 * The inodes of one bpffs mount and its super block.
 *
 * A bpffs inode is one of three kinds (bpf_get_inode refuses any other): a directory, a pinned
 * object (prog, map or link: the pin's reference is the inode's i_private) or a symlink. Names live
 * in the directories (the dentries); an inode may have several names (hard links) and is evicted
 * when it has none left and no open file holds it, which is when a pin drops its object
 * (bpf_free_inode) and a directory drops its tag.
 *
 * Inode numbers come from a per-mount counter (get_next_ino), the root is 1 as simple_fill_super
 * makes it, and a number is never reused while the mount lives.
 */
import { S_IALLUGO, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, S_ISGID } from '../../uapi';
import type { BpfLink, BpfObject, Kernel } from '../../progs';
import type { CgroupSource, DirTag, KernfsNode } from '../../tags';

/** Who makes a call: the owner of what it creates (fsuid, fsgid). */
export interface Cred {
  uid: number;
  gid: number;
}

/** A directory's tag: what the RFC's bpf_dir_tag holds, over the links of cgroup_view views. */
export type ViewTag = DirTag<BpfLink>;

export abstract class BpfInode {
  readonly ino: number;
  mode: number;
  uid: number;
  gid: number;
  nlink = 1;
  atime: Date;
  mtime: Date;
  ctime: Date;
  /** Open files holding the inode (the file's reference, iget at open, iput at release). */
  #opens = 0;
  #evicted = false;

  constructor(ino: number, mode: number, uid: number, gid: number) {
    this.ino = ino;
    this.mode = mode;
    this.uid = uid;
    this.gid = gid;
    const now = new Date();
    this.atime = now;
    this.mtime = now;
    this.ctime = now;
  }

  /** Size as stat reports it: 0, but a symlink's target length. */
  get size(): number {
    return 0;
  }

  /** An open file takes the inode. */
  hold(): void {
    this.#opens++;
  }

  /** The open file's release: the inode goes if it has no name left either. */
  release(): void {
    this.#opens--;
    this.#maybeEvict();
  }

  /** drop_nlink: one name fewer; the last one evicts an inode no open file holds. */
  dropNlink(): void {
    this.nlink--;
    this.#maybeEvict();
  }

  /** clear_nlink, as rmdir does to a directory (its own "." and its name). */
  clearNlink(): void {
    this.nlink = 0;
    this.#maybeEvict();
  }

  #maybeEvict(): void {
    if (this.nlink > 0 || this.#opens > 0 || this.#evicted) return;
    this.#evicted = true;
    this.evict();
  }

  /** What the kind drops when the inode goes (bpf_free_inode). */
  protected evict(): void {}

  touchCtime(now = new Date()): void {
    this.ctime = now;
  }
}

export class DirInode extends BpfInode {
  /** Entries in creation order (readdir lists them newest first, as dcache_readdir walks d_subdirs). */
  readonly entries = new Map<string, BpfInode>();
  /** The directory holding this one (".."); null for the root. */
  parent: DirInode | null;
  /** Its one name (a directory has no hard links); '' for the root. */
  name = '';
  readonly #sb: SuperBlock;
  #tag: ViewTag | null = null;

  constructor(sb: SuperBlock, ino: number, mode: number, uid: number, gid: number, parent: DirInode | null) {
    super(ino, mode, uid, gid);
    this.#sb = sb;
    this.parent = parent;
    this.nlink = 2;
  }

  /** The RFC's i_private of a directory: its bpf_dir_tag, or null while untagged. */
  get tag(): ViewTag | null {
    return this.#tag;
  }

  /** Tags the directory (or re-tags it, destroying the old tag); the super block indexes it by cgroup. */
  setTag(tag: ViewTag): void {
    if (this.#tag !== null) this.#untag();
    this.#tag = tag;
    this.#sb.indexTag(this, tag.node);
  }

  /** Is this directory `other` or below it? */
  isDescendantOf(other: DirInode): boolean {
    for (let d: DirInode | null = this; d !== null; d = d.parent) if (d === other) return true;
    return false;
  }

  /** untag_dir_inode: tags are destroyed when their directory goes. */
  protected override evict(): void {
    if (this.#tag !== null) this.#untag();
  }

  #untag(): void {
    const tag = this.#tag!;
    this.#tag = null;
    this.#sb.unindexTag(this, tag.node);
    tag.destroy();
  }
}

/** A pinned object. The pin owns one reference on it, dropped when the inode is evicted. */
export class ObjInode extends BpfInode {
  readonly obj: BpfObject;

  /** Takes over a reference the caller already took for the pin (bpf_any_get). */
  constructor(ino: number, mode: number, uid: number, gid: number, obj: BpfObject) {
    super(ino, mode, uid, gid);
    this.obj = obj;
  }

  protected override evict(): void {
    this.obj.put();
  }
}

export class SymlinkInode extends BpfInode {
  readonly target: string;

  constructor(ino: number, uid: number, gid: number, target: string) {
    super(ino, S_IFLNK | 0o777, uid, gid);
    this.target = target;
  }

  override get size(): number {
    return Buffer.byteLength(this.target);
  }
}

export interface SuperBlockOptions {
  kernel: Kernel;
  source: CgroupSource;
  umask: number;
  uid: number;
  gid: number;
  rootMode: number;
  mountPoint: string | undefined;
}

/** struct super_block of one mount: its root, inode numbers, defaults, and its tagged directories. */
export class SuperBlock {
  readonly kernel: Kernel;
  readonly source: CgroupSource;
  readonly umask: number;
  /** The mount's owner: what creates without a caller (the root, the mirror) is theirs. */
  readonly owner: Cred;
  readonly mountPoint: string | undefined;
  readonly root: DirInode;
  /** Tagged directories by the cgroup of their tag: what the mirror looks up on a cgroup event. */
  readonly #tagged = new Map<KernfsNode, Set<DirInode>>();
  #nextIno = 1;

  constructor(opts: SuperBlockOptions) {
    this.kernel = opts.kernel;
    this.source = opts.source;
    this.umask = opts.umask & 0o777;
    this.owner = { uid: opts.uid, gid: opts.gid };
    this.mountPoint = opts.mountPoint;
    // bpf_fill_super: S_ISVTX | mode (0777 unless mode= says otherwise).
    this.root = new DirInode(this, this.#nextIno++, S_IFDIR | (opts.rootMode & S_IALLUGO), opts.uid, opts.gid, null);
  }

  /**
   * bpf_get_inode with inode_init_owner: the caller owns it; in a setgid directory the group is the
   * directory's, and a directory made there is setgid too.
   */
  #owner(dir: DirInode, mode: number, cred: Cred): { mode: number; uid: number; gid: number } {
    if (!(dir.mode & S_ISGID)) return { mode, uid: cred.uid, gid: cred.gid };
    return { mode: (mode & S_IFMT) === S_IFDIR ? mode | S_ISGID : mode, uid: cred.uid, gid: dir.gid };
  }

  newDir(dir: DirInode, perm: number, cred: Cred): DirInode {
    const o = this.#owner(dir, S_IFDIR | (perm & S_IALLUGO), cred);
    return new DirInode(this, this.#nextIno++, o.mode, o.uid, o.gid, dir);
  }

  /** A pin's inode; `obj` carries the reference the pin owns. */
  newObj(dir: DirInode, perm: number, cred: Cred, obj: BpfObject): ObjInode {
    const o = this.#owner(dir, S_IFREG | (perm & S_IALLUGO), cred);
    return new ObjInode(this.#nextIno++, o.mode, o.uid, o.gid, obj);
  }

  newSymlink(dir: DirInode, target: string, cred: Cred): SymlinkInode {
    const o = this.#owner(dir, S_IFLNK, cred);
    return new SymlinkInode(this.#nextIno++, o.uid, o.gid, target);
  }

  indexTag(dir: DirInode, node: KernfsNode): void {
    let dirs = this.#tagged.get(node);
    if (dirs === undefined) this.#tagged.set(node, (dirs = new Set()));
    dirs.add(dir);
  }

  unindexTag(dir: DirInode, node: KernfsNode): void {
    const dirs = this.#tagged.get(node)!;
    dirs.delete(dir);
    if (dirs.size === 0) this.#tagged.delete(node);
  }

  /** The tagged directories whose tag is this cgroup (a copy: callers change the tree). */
  taggedDirs(node: KernfsNode): DirInode[] {
    return [...(this.#tagged.get(node) ?? [])];
  }

  /** Every tagged directory of the mount. */
  allTaggedDirs(): DirInode[] {
    return [...this.#tagged.values()].flatMap((s) => [...s]);
  }
}
