/**
 * CgroupHierarchy: the KernfsNode tree of one cgroup2 hierarchy, indexed by id and by path. Sources
 * (host, simulated) feed it mkdir/rmdir as they learn of them; everything above reads it.
 *
 * Ids stay resolvable until the node is released, dying nodes included, so that whoever holds an id
 * can still reach the node's state. The kernel differs: cgroup_get_from_id goes through
 * kernfs_find_and_get_node_by_id, which requires an active kernfs node, and rmdir deactivates it, so a
 * removed cgroup's id gives ENOENT at once. Callers that stand in for cgroup_get_from_id (a cgroup id
 * given by userspace) must treat a dying node as ENOENT. Paths resolve to live nodes only, since rmdir
 * removes the name at once.
 *
 * Events are emitted once a mutation is complete (a remove() of a subtree emits after every node of
 * it is dying), in the order the changes happened. Each listener is isolated: one that throws is
 * reported (debug) and the others still run, so a listener cannot leave the tree half-changed or make
 * add()/remove() fail after the change was made.
 */
import { EventEmitter } from 'node:events';
import createDebug from 'debug';
import { bpfError } from '../uapi';
import { KernfsNode } from './kernfs-node';

const debug = createDebug('vbpffs:tags');

export interface HierarchyEvents {
  mkdir: [node: KernfsNode];
  rmdir: [node: KernfsNode];
  release: [node: KernfsNode];
}

type HierarchyEvent = [event: keyof HierarchyEvents, node: KernfsNode];

export class CgroupHierarchy extends EventEmitter<HierarchyEvents> {
  readonly root: KernfsNode;
  readonly #byId = new Map<number, KernfsNode>();
  /** Events of the mutation in progress (or of a listener's own mutations), emitted by #flush. */
  readonly #pending: HierarchyEvent[] = [];
  /** Nesting depth of add()/remove(): events wait until it is back to 0. */
  #mutating = 0;
  #flushing = false;

  constructor(rootId: number) {
    super();
    this.root = new KernfsNode(rootId, '', null);
    this.#byId.set(rootId, this.root);
  }

  readonly #nodeReleased = (node: KernfsNode): void => {
    this.#byId.delete(node.id);
    this.#queue('release', node);
  };

  /** Number of nodes not yet released (live and dying). */
  get size(): number {
    return this.#byId.size;
  }

  cgroupById(id: number): KernfsNode | undefined {
    return this.#byId.get(id);
  }

  /** The live node at a path relative to the hierarchy root ("/", "/a/b" or "a/b"). */
  cgroupByPath(path: string): KernfsNode | undefined {
    let node: KernfsNode | undefined = this.root;
    for (const part of path.split('/')) {
      if (part === '' || part === '.') continue;
      if (part === '..') return undefined;
      node = node.child(part);
      if (node === undefined) return undefined;
    }
    return node;
  }

  /** Records a new cgroup under parent; EEXIST if the name is taken, ENOENT if parent is gone. */
  add(parent: KernfsNode, name: string, id: number): KernfsNode {
    if (this.#byId.has(id)) throw bpfError('EEXIST', `cgroup id ${id} is already in the hierarchy`);
    const node = new KernfsNode(id, name, parent, this.#nodeReleased);
    this.#byId.set(id, node);
    debug('mkdir %s id %d', node.path, id);
    this.#queue('mkdir', node);
    return node;
  }

  /**
   * Records the removal of a cgroup and of any live descendants the source missed (deepest first, as
   * the kernel would have required them gone before the rmdir).
   */
  remove(node: KernfsNode): void {
    if (node === this.root) throw bpfError('EBUSY', 'the cgroup2 root cannot be removed');
    if (node.dying) throw bpfError('ENOENT', `cgroup ${node.path} is already ${node.state}`);
    this.#mutating++;
    try {
      this.#removeSubtree(node);
    } finally {
      this.#mutating--;
      this.#flush();
    }
  }

  #removeSubtree(node: KernfsNode): void {
    for (const child of [...node.children]) if (!child.dying) this.#removeSubtree(child);
    debug('rmdir %s id %d', node.path, node.id);
    // Queued before kill(), which may release the node at once: rmdir is reported before release.
    this.#pending.push(['rmdir', node]);
    node.kill();
  }

  /** Queues an event; emits it (and any others queued) now unless a mutation is in progress. */
  #queue(event: keyof HierarchyEvents, node: KernfsNode): void {
    this.#pending.push([event, node]);
    this.#flush();
  }

  /** Emits the queued events in order, each listener isolated; a listener's own changes queue behind. */
  #flush(): void {
    if (this.#mutating > 0 || this.#flushing) return;
    this.#flushing = true;
    try {
      for (let e = this.#pending.shift(); e !== undefined; e = this.#pending.shift()) {
        const [event, node] = e;
        // rawListeners, so a once() listener is removed as emit() would remove it.
        for (const listener of this.rawListeners(event) as ((n: KernfsNode) => void)[]) {
          try {
            listener.call(this, node);
          } catch (err) {
            debug('%s listener for %s failed: %O', event, node.path, err);
          }
        }
      }
    } finally {
      this.#flushing = false;
    }
  }

  /** Every node in pre-order (parents before children, children in creation order). */
  *walk(from: KernfsNode = this.root): Generator<KernfsNode> {
    yield from;
    for (const child of from.children) yield* this.walk(child);
  }
}
