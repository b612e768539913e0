/**
 * KernfsNode: a cgroup as vbpffs sees it, named for the kernfs node that backs every cgroup directory.
 *
 * Lifetime (mirrors struct cgroup and its self css):
 *   live      online; tryGet() and tryGetOnline() succeed.
 *   dying     removed (rmdir) but still referenced; css_tryget() still succeeds on a dying ref,
 *             css_tryget_online() does not. It stays in its parent's children list, so walkers
 *             still meet it (cgroup_iter skips it as dead).
 *   released  the last reference is gone (css_free): release hooks have run (local storage freed,
 *             links auto-detached), it has left its parent's children list and dropped the
 *             reference it held on its parent.
 *
 * A live node is held by the hierarchy itself (the online reference); kill() drops that reference.
 * A child holds a reference on its parent, so a parent is never released before its children.
 */
import createDebug from 'debug';
import { bpfError } from '../uapi';

const debug = createDebug('vbpffs:tags');

export type CgroupState = 'live' | 'dying' | 'released';

export class KernfsNode {
  /** The cgroup id: the inode number of the cgroup directory (kn->id). Never truncated to 32 bits. */
  readonly id: number;
  readonly name: string;
  readonly parent: KernfsNode | null;
  readonly level: number;
  /** Children in creation order, which is the order the kernel's css walkers visit them in. */
  readonly children: KernfsNode[] = [];
  /** The owner's local storage pointer (cgrp->bpf_cgrp_storage), opaque to this layer. */
  bpfStorage: object | null = null;

  #state: CgroupState = 'live';
  #refcnt = 1;
  #hooks: (() => void)[] = [];
  readonly #byName = new Map<string, KernfsNode>();

  constructor(id: number, name: string, parent: KernfsNode | null) {
    if (!Number.isSafeInteger(id) || id < 1) throw bpfError('EOVERFLOW', `cgroup id ${id} is not representable`);
    this.id = id;
    this.name = name;
    this.parent = parent;
    this.level = parent === null ? 0 : parent.level + 1;
    if (parent !== null) {
      if (parent.#state !== 'live') throw bpfError('ENOENT', `parent cgroup ${parent.path} is ${parent.#state}`);
      if (parent.#byName.has(name)) throw bpfError('EEXIST', `cgroup ${parent.childPath(name)} exists`);
      parent.#refcnt++;
      parent.children.push(this);
      parent.#byName.set(name, this);
    }
  }

  get state(): CgroupState {
    return this.#state;
  }
  get dying(): boolean {
    return this.#state !== 'live';
  }
  get released(): boolean {
    return this.#state === 'released';
  }
  get refs(): number {
    return this.#refcnt;
  }

  /** The path below the cgroup2 root: "/" for the root, "/a/b" below it. */
  get path(): string {
    if (this.parent === null) return '/';
    return this.parent.childPath(this.name);
  }

  private childPath(name: string): string {
    return this.parent === null ? `/${name}` : `${this.path}/${name}`;
  }

  /**
   * The live child with this name (kernfs_find_and_get without taking a reference). rmdir removes the
   * kernfs node at once, so a dying child is not found by name and a new one may take its name.
   */
  child(name: string): KernfsNode | undefined {
    return this.#byName.get(name);
  }

  /** Is this node `other` or one of its descendants (cgroup_is_descendant)? */
  isDescendantOf(other: KernfsNode): boolean {
    for (let n: KernfsNode | null = this; n !== null; n = n.parent) if (n === other) return true;
    return false;
  }

  /** css_tryget: succeeds until the node is released, even while it is dying. */
  tryGet(): boolean {
    if (this.#state === 'released') return false;
    this.#refcnt++;
    return true;
  }

  /** css_tryget_online: fails from rmdir on. */
  tryGetOnline(): boolean {
    if (this.#state !== 'live') return false;
    this.#refcnt++;
    return true;
  }

  /** css_get: the caller already holds a reference. */
  get(): this {
    if (this.#state === 'released') throw bpfError('ENOENT', `cgroup ${this.path} is released`);
    this.#refcnt++;
    return this;
  }

  /** css_put: the last reference of a dying node releases it. */
  put(): void {
    if (this.#refcnt <= 0) throw bpfError('EINVAL', `cgroup ${this.path}: reference put twice`);
    if (--this.#refcnt === 0) this.release();
  }

  /**
   * Registers a hook to run when the node is released (css_free); returns its remover. Hooks run in
   * registration order; one that throws is reported and the rest still run.
   */
  onRelease(hook: () => void): () => void {
    if (this.#state === 'released') throw bpfError('ENOENT', `cgroup ${this.path} is released`);
    this.#hooks.push(hook);
    return () => {
      const i = this.#hooks.indexOf(hook);
      if (i >= 0) this.#hooks.splice(i, 1);
    };
  }

  /** rmdir: live -> dying, dropping the hierarchy's online reference. */
  kill(): void {
    if (this.#state !== 'live') throw bpfError('ENOENT', `cgroup ${this.path} is already ${this.#state}`);
    if (this.children.some((c) => c.#state === 'live')) throw bpfError('EBUSY', `cgroup ${this.path} has live children`);
    this.#state = 'dying';
    if (this.parent !== null && this.parent.#byName.get(this.name) === this) this.parent.#byName.delete(this.name);
    debug('dying %s (%d refs left)', this.path, this.#refcnt - 1);
    this.put();
  }

  private release(): void {
    this.#state = 'released';
    debug('released %s', this.path);
    const hooks = this.#hooks;
    this.#hooks = [];
    for (const hook of hooks) {
      try {
        hook();
      } catch (e) {
        debug('release hook of %s failed: %O', this.path, e);
      }
    }
    const parent = this.parent;
    if (parent !== null) {
      const i = parent.children.indexOf(this);
      if (i >= 0) parent.children.splice(i, 1);
      parent.put();
    }
  }
}
