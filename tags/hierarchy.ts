/**
 * CgroupHierarchy: the KernfsNode tree of one cgroup2 hierarchy, indexed by id and by path. Sources
 * (host, simulated) feed it mkdir/rmdir as they learn of them; everything above reads it.
 *
 * Ids stay resolvable until the node is released (cgroup_get_from_id finds a dying cgroup; callers
 * decide what a dying one means for them). Paths resolve to live nodes only, since rmdir removes the
 * name at once.
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

export class CgroupHierarchy extends EventEmitter<HierarchyEvents> {
  readonly root: KernfsNode;
  readonly #byId = new Map<number, KernfsNode>();

  constructor(rootId: number) {
    super();
    this.root = new KernfsNode(rootId, '', null);
    this.#byId.set(rootId, this.root);
  }

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
    const node = new KernfsNode(id, name, parent);
    this.#byId.set(id, node);
    node.onRelease(() => {
      this.#byId.delete(node.id);
      this.emit('release', node);
    });
    debug('mkdir %s id %d', node.path, id);
    this.emit('mkdir', node);
    return node;
  }

  /**
   * Records the removal of a cgroup and of any live descendants the source missed (deepest first, as
   * the kernel would have required them gone before the rmdir).
   */
  remove(node: KernfsNode): void {
    if (node === this.root) throw bpfError('EBUSY', 'the cgroup2 root cannot be removed');
    for (const child of [...node.children]) if (!child.dying) this.remove(child);
    debug('rmdir %s id %d', node.path, node.id);
    node.kill();
    this.emit('rmdir', node);
  }

  /** Every node in pre-order (parents before children, children in creation order). */
  *walk(from: KernfsNode = this.root): Generator<KernfsNode> {
    yield from;
    for (const child of from.children) yield* this.walk(child);
  }
}
