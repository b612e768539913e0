/**
 * KernfsNode: a cgroup as vbpffs sees it, named for the kernfs node that backs every cgroup directory.
 *
 * Lifetime (mirrors struct cgroup and its self css):
 *   live      online; tryGet() and tryGetOnline() succeed.
 *   dying     removed (rmdir) but still referenced; css_tryget() still succeeds on a dying ref,
 *             css_tryget_online() does not. It stays in its parent's children list, so walkers
 *             still meet it (cgroup_iter skips it as dead).
 *   released  the last reference is gone (css_free): release hooks have run, local storage is
 *             freed, it has left its parent's children list and dropped the reference it held on
 *             its parent.
 *
 * Two hook stages, as in the kernel:
 *   onBpfRelease  cgroup_bpf_release: cgroup links auto-detached, the old CGROUP_STORAGE freed. The
 *                 kernel runs it once cgrp->bpf.refcnt drops, which only descendants' BPF state
 *                 holds: in practice right after rmdir (cgroup_destroy_locked ->
 *                 cgroup_bpf_offline), not at the last css reference. kill() runs these hooks, even
 *                 while other references remain. A dying child has already run its own at its
 *                 rmdir, so nothing below a cgroup delays them.
 *   onRelease     css_free, at the last put; then bpfStorage.destroy() (bpf_cgrp_storage_free).
 *
 * A live node is held by the hierarchy itself (the online reference); only kill() drops it, and a
 * put() that would drop it is refused (EINVAL). A child holds a reference on its parent, so a parent
 * is never released before its children.
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
  /**
   * The cgroup's local storage (cgrp->bpf_cgrp_storage), opaque to this layer but for its destroy(),
   * which release() calls as css_free calls bpf_cgrp_storage_free.
   */
  bpfStorage: { destroy(): void } | null = null;

  #state: CgroupState = 'live';
  #refcnt = 1;
  #nrDescendants = 0;
  #nrDyingDescendants = 0;
  // Made on first use: most cgroups are leaves and have no hooks, and an empty Map or array per
  // node is a large share of a 10,000-cgroup tree's memory.
  #hooks: (() => void)[] | null = null;
  #bpfHooks: (() => void)[] | null = null;
  #byName: Map<string, KernfsNode> | null = null;
  readonly #released: ((node: KernfsNode) => void) | null;

  /**
   * `released` is told of this node's release after its hooks have run: the hierarchy's index uses
   * it, one shared function rather than a hook (a closure) per node.
   */
  constructor(id: number, name: string, parent: KernfsNode | null, released: ((node: KernfsNode) => void) | null = null) {
    if (!Number.isSafeInteger(id) || id < 1) throw bpfError('EOVERFLOW', `cgroup id ${id} is not representable`);
    this.id = id;
    this.name = name;
    this.parent = parent;
    this.level = parent === null ? 0 : parent.level + 1;
    this.#released = released;
    if (parent !== null) {
      if (parent.#state !== 'live') throw bpfError('ENOENT', `parent cgroup ${parent.path} is ${parent.#state}`);
      if (parent.#byName?.has(name)) throw bpfError('EEXIST', `cgroup ${parent.childPath(name)} exists`);
      parent.#refcnt++;
      parent.children.push(this);
      (parent.#byName ??= new Map()).set(name, this);
      for (let a: KernfsNode | null = parent; a !== null; a = a.parent) a.#nrDescendants++;
    }
  }

  /**
   * Live descendants (cgrp->nr_descendants, cgroup.stat nr_descendants): counted up every ancestor at
   * mkdir, down at rmdir, as cgroup_create and cgroup_destroy_locked do, so reading it is O(1).
   */
  get nrDescendants(): number {
    return this.#nrDescendants;
  }

  /** Dying descendants (cgrp->nr_dying_descendants): from rmdir until release (css_release_work_fn). */
  get nrDyingDescendants(): number {
    return this.#nrDyingDescendants;
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
    return this.#byName?.get(name);
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

  /**
   * css_put: the last reference of a dying node releases it. The online reference of a live node is
   * the hierarchy's, dropped only by kill(): a put() that would drop it is a put too many (EINVAL,
   * nothing changes).
   */
  put(): void {
    if (this.#refcnt <= 0) throw bpfError('EINVAL', `cgroup ${this.path}: reference put twice`);
    if (this.#state === 'live' && this.#refcnt === 1) {
      throw bpfError('EINVAL', `cgroup ${this.path}: a put would drop the online reference of a live cgroup`);
    }
    if (--this.#refcnt === 0) this.release();
  }

  /**
   * Registers a hook to run when the node is released (css_free); returns its remover. Hooks run in
   * registration order; one that throws is reported and the rest still run.
   */
  onRelease(hook: () => void): () => void {
    if (this.#state === 'released') throw bpfError('ENOENT', `cgroup ${this.path} is released`);
    (this.#hooks ??= []).push(hook);
    return () => {
      const i = this.#hooks?.indexOf(hook) ?? -1;
      if (i >= 0) this.#hooks!.splice(i, 1);
    };
  }

  /**
   * Registers a hook for cgroup_bpf_release (links auto-detached, the old cgroup storage freed), run
   * by kill() at rmdir whatever references remain; returns its remover. Hooks run in registration
   * order, once; one that throws is reported and the rest still run. ENOENT once the node is dying:
   * its BPF state is already released.
   */
  onBpfRelease(hook: () => void): () => void {
    if (this.#state !== 'live') throw bpfError('ENOENT', `cgroup ${this.path} is ${this.#state}`);
    (this.#bpfHooks ??= []).push(hook);
    return () => {
      const i = this.#bpfHooks?.indexOf(hook) ?? -1;
      if (i >= 0) this.#bpfHooks!.splice(i, 1);
    };
  }

  /**
   * rmdir: live -> dying, then cgroup_bpf_release's hooks, then the hierarchy's online reference is
   * dropped (which releases the node if nothing else holds it).
   */
  kill(): void {
    if (this.#state !== 'live') throw bpfError('ENOENT', `cgroup ${this.path} is already ${this.#state}`);
    if (this.children.some((c) => c.#state === 'live')) throw bpfError('EBUSY', `cgroup ${this.path} has live children`);
    this.#state = 'dying';
    this.unname();
    for (let a = this.parent; a !== null; a = a.parent) {
      a.#nrDescendants--;
      a.#nrDyingDescendants++;
    }
    debug('dying %s (%d refs left)', this.path, this.#refcnt - 1);
    const bpfHooks = this.#bpfHooks ?? [];
    this.#bpfHooks = null;
    for (const hook of bpfHooks) this.runReleaseStep(hook);
    this.put();
  }

  /** Frees this node's name in its parent, if the name still points at this node. */
  private unname(): void {
    const siblings = this.parent === null ? null : this.parent.#byName;
    if (siblings?.get(this.name) === this) siblings.delete(this.name);
  }

  private release(): void {
    this.#state = 'released';
    debug('released %s', this.path);
    // Before any hook or listener runs: they see the counts without this node.
    for (let a = this.parent; a !== null; a = a.parent) a.#nrDyingDescendants--;
    const hooks = this.#hooks ?? [];
    this.#hooks = null;
    // cgroup_bpf_release ran at kill(); css_free runs these hooks, then frees local storage.
    for (const hook of hooks) this.runReleaseStep(hook);
    const storage = this.bpfStorage;
    if (storage !== null) this.runReleaseStep(() => storage.destroy());
    if (this.#released !== null) this.runReleaseStep(() => this.#released!(this));
    const parent = this.parent;
    // Only kill() leads here, and it has freed the name; kept so no path can leave a name blocked.
    this.unname();
    if (parent !== null) {
      const i = parent.children.indexOf(this);
      if (i >= 0) parent.children.splice(i, 1);
      parent.put();
    }
  }

  /** One release step: a failure is reported and the remaining steps still run. */
  private runReleaseStep(step: () => void): void {
    try {
      step();
    } catch (e) {
      debug('release of %s: a step failed: %O', this.path, e);
    }
  }
}
