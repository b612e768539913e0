/**
 * DirTag and InheritList: the RFC's bpffs directory tag (struct bpf_dir_tag) and the inherit list all
 * tags of one tagged hierarchy share (struct obj_list), spec 1.2-1.3.
 *
 * A tag binds a bpffs directory to a cgroup (type KERNFS_REP) and holds a reference on that cgroup
 * until the tag is destroyed at rmdir. Every tag of a hierarchy shares one inherit list, refcounted
 * by the tags (kref): the root tag makes it, each child tag takes a reference, and the list is freed
 * with the last tagged directory, dropping the reference it held on every entry's object.
 *
 * This layer does not know what the objects are (links live above it): the list is made with the
 * get/put pair of the object type, as the kernel's list would call bpf_link_inc/bpf_link_put.
 *
 * Deliberate difference from the RFC code: it untagged the parent inode at rmdir and leaked the
 * child's tag (spec 1.3.8); here the removed directory's own tag is destroyed, as the RFC documents.
 */
import createDebug from 'debug';
import { bpfError } from '../uapi';
import type { KernfsNode } from './kernfs-node';
import { isCgroupfsFileName } from './source';

const debug = createDebug('vbpffs:tags');

/** enum tag_type: the only kind the RFC has, a replica of a kernfs directory hierarchy. */
export type TagType = 'KERNFS_REP';

/** How the inherit list holds the objects it refers to (bpf_link_inc / bpf_link_put for links). */
export interface InheritOps<T> {
  get(obj: T): void;
  put(obj: T): void;
}

/** struct bpf_inherit_entry: what is needed to recreate a pinned entry in a new directory. */
export interface InheritEntry<T> {
  readonly name: string;
  readonly mode: number;
  readonly obj: T;
}

export class InheritList<T> {
  readonly #ops: InheritOps<T>;
  readonly #entries = new Map<string, InheritEntry<T>>();
  #refcnt = 1;

  /** A new list with one reference, owned by the tag that makes it. */
  constructor(ops: InheritOps<T>) {
    this.#ops = ops;
  }

  get refs(): number {
    return this.#refcnt;
  }
  get freed(): boolean {
    return this.#refcnt === 0;
  }

  /** kref_get: a new tag of the hierarchy shares the list. */
  get(): this {
    if (this.#refcnt === 0) throw bpfError('EINVAL', 'inherit list is already freed');
    this.#refcnt++;
    return this;
  }

  /** kref_put: the last put frees the list and drops its reference on every entry's object. */
  put(): void {
    if (this.#refcnt <= 0) throw bpfError('EINVAL', 'inherit list put twice');
    if (--this.#refcnt > 0) return;
    const entries = [...this.#entries.values()];
    this.#entries.clear();
    debug('inherit list freed with %d entries', entries.length);
    // Each put on its own: one that throws must not leak the references of the entries after it.
    for (const e of entries) {
      try {
        this.#ops.put(e.obj);
      } catch (err) {
        debug('inherit list free: put of %s failed: %O', e.name, err);
      }
    }
  }

  /**
   * Appends an entry, taking a reference on obj. A name already on the list makes this a no-op
   * (no reference taken); returns whether the entry was added.
   */
  append(name: string, mode: number, obj: T): boolean {
    if (this.#refcnt === 0) throw bpfError('EINVAL', 'inherit list is already freed');
    if (this.#entries.has(name)) return false;
    this.#ops.get(obj);
    this.#entries.set(name, { name, mode, obj });
    return true;
  }

  entry(name: string): InheritEntry<T> | undefined {
    return this.#entries.get(name);
  }

  /** Entries in the order they were appended: the order populate_dir recreates them in. */
  entries(): InheritEntry<T>[] {
    return [...this.#entries.values()];
  }
}

export class DirTag<T> {
  readonly type: TagType = 'KERNFS_REP';
  /** The cgroup this directory mirrors (tag->private). */
  readonly node: KernfsNode;
  readonly inherit: InheritList<T>;
  #destroyed = false;

  private constructor(node: KernfsNode, inherit: InheritList<T>) {
    this.node = node;
    this.inherit = inherit;
  }

  /**
   * Tags a directory with the cgroup2 root and a new, empty inherit list: the first pin of an
   * inheritable object does this. The initial tag always maps to the global root (spec 1.3.1).
   */
  static tagRoot<T>(root: KernfsNode, ops: InheritOps<T>): DirTag<T> {
    if (root.parent !== null) throw bpfError('EINVAL', `cgroup ${root.path} is not the cgroup2 root`);
    if (!root.tryGet()) throw bpfError('ENOENT', 'the cgroup2 root is released');
    return new DirTag(root, new InheritList(ops));
  }

  /**
   * The tag of a new directory `name` under a tagged one (tag_dir_inode): the name must be a live
   * child cgroup. Otherwise the kernel's rule is "EPERM if kernfs finds the name and it is not a
   * directory, ENOENT if it finds nothing". Every cgroupfs file name contains a dot, but so may a
   * cgroup name (system.slice), so a dot alone decides nothing. The rule here: a name that is not a
   * live child cgroup and has the shape of an interface file, `<controller>.<knob>` for a known
   * controller or a core file (isCgroupfsFileName: memory.current, cpu.max, io.stat, pids.max,
   * cgroup.procs, ...), is EPERM; any other name is ENOENT. It is decided from the name, not by asking
   * the source: a knob of a controller not enabled in that cgroup gives EPERM where the kernel would
   * give ENOENT; either way the directory is not made. (In the RFC the bpffs dot rule refuses every
   * dotted name first, also with EPERM.)
   */
  static tagChild<T>(parent: DirTag<T>, name: string): DirTag<T> {
    if (parent.#destroyed) throw bpfError('ENOENT', `tag of ${parent.node.path} is destroyed`);
    const kn = parent.node.child(name);
    if (kn !== undefined && kn.tryGet()) return new DirTag(kn, parent.inherit.get());
    if (isCgroupfsFileName(name)) throw bpfError('EPERM', `${name} in cgroup ${parent.node.path} is not a directory`);
    throw bpfError('ENOENT', `no cgroup ${name} under ${parent.node.path}`);
  }

  get destroyed(): boolean {
    return this.#destroyed;
  }

  /** The shared list's append (spec 1.3.2): a pin anywhere in the hierarchy feeds every later mkdir. */
  appendEntry(name: string, mode: number, obj: T): boolean {
    if (this.#destroyed) throw bpfError('ENOENT', `tag of ${this.node.path} is destroyed`);
    return this.inherit.append(name, mode, obj);
  }

  entries(): InheritEntry<T>[] {
    return this.inherit.entries();
  }

  /** untag_dir_inode: drops the cgroup reference and the list reference. */
  destroy(): void {
    if (this.#destroyed) throw bpfError('EINVAL', `tag of ${this.node.path} destroyed twice`);
    this.#destroyed = true;
    this.node.put();
    this.inherit.put();
  }
}
