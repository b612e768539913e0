/**
 * DirWatches: one non-recursive inotify watch per cgroup directory (fs.watch on the directory).
 *
 * A parent's watch reports its children's mkdir and rmdir as 'rename' events, but not its
 * grandchildren's, so every cgroup needs its own. Node's recursive fs.watch is never used: at 10,000
 * cgroups it costs 352 MB and 6 s of blocking. 'change' events (kernfs_notify on cgroup.events and
 * memory.events when a cgroup's populated state changes) say nothing about the tree and are dropped.
 *
 * Watches do not hold the process open: the daemon's FUSE session does that.
 */
import fs from 'node:fs';
import createDebug from 'debug';
import { fromSystemError } from '../../uapi';
import type { KernfsNode } from '../kernfs-node';

const debug = createDebug('vbpffs:tags');

export interface DirWatchHandlers {
  /** A name in node's directory was created or removed (which one is for the caller to stat). */
  onName(node: KernfsNode, name: string): void;
  /** The watch failed and is closed; the caller repairs what it may have missed. */
  onError(node: KernfsNode, error: Error): void;
}

export class DirWatches {
  readonly #byNode = new Map<KernfsNode, fs.FSWatcher>();

  constructor(private readonly handlers: DirWatchHandlers) {}

  get size(): number {
    return this.#byNode.size;
  }

  has(node: KernfsNode): boolean {
    return this.#byNode.has(node);
  }

  /** Watches dir for node; ENOENT if it is already gone, ENOSPC past fs.inotify.max_user_watches. */
  add(node: KernfsNode, dir: string): void {
    if (this.#byNode.has(node)) return;
    let w: fs.FSWatcher;
    try {
      w = fs.watch(dir, { persistent: false });
    } catch (e) {
      throw fromSystemError(e, `watch ${dir}`);
    }
    w.on('change', (type, name) => {
      if (type === 'rename' && typeof name === 'string') this.handlers.onName(node, name);
    });
    w.on('error', (e) => {
      debug('watch of %s failed: %O', dir, e);
      this.close(node);
      this.handlers.onError(node, e);
    });
    this.#byNode.set(node, w);
  }

  close(node: KernfsNode): void {
    const w = this.#byNode.get(node);
    if (w === undefined) return;
    this.#byNode.delete(node);
    w.close();
  }

  closeAll(): void {
    for (const w of this.#byNode.values()) w.close();
    this.#byNode.clear();
  }
}
