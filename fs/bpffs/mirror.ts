/**
 * Auto-mirror, vbpffs's addition to the RFC (whose userspace had to mkdir every directory by hand):
 * every tagged directory lists its cgroup's live children, as the host's hierarchy changes.
 *
 * - A directory that gets a tag (the first cgroup_view pin, a mkdir, the mirror itself) is filled:
 *   one subdirectory per live child cgroup, made as mkdir would make it (tagged, populated from
 *   the inherit list, owned by the mount's owner), recursively.
 * - A cgroup's mkdir adds its directory under every directory tagged with its parent. A name the
 *   user already holds there keeps its entry; a directory left behind by a removed cgroup of the
 *   same name (see below) is taken over by the new cgroup: re-tagged, repopulated, refilled.
 * - A cgroup's rmdir removes its directories as rmdir would (inherited files first): the directory
 *   goes at the cgroup's rmdir, not its release, since cgroupfs drops the name at once. One holding
 *   anything else (the user's own pins, symlinks, directories kept for theirs) stays, tagged with the
 *   removed cgroup, and its views read as empty.
 * - A view pinned in a tagged directory joins the shared list, and the mirror gives it to every
 *   directory of that tree at once, not only to those made later as the RFC's mkdir would.
 */
import { DirTag, type CgroupHierarchy, type InheritEntry, type KernfsNode } from '../../tags';
import type { BpfLink } from '../../progs';
import { DirInode, type SuperBlock } from './inode';
import { simpleRmdir } from './libfs';
import { bpfMkdir, instantiateInherited, populateDir, unpopulateDir } from './tags';

export class Mirror {
  readonly #sb: SuperBlock;
  readonly #hierarchy: CgroupHierarchy;
  readonly #onMkdir = (node: KernfsNode): void => this.#cgroupMkdir(node);
  readonly #onRmdir = (node: KernfsNode): void => this.#cgroupRmdir(node);

  constructor(sb: SuperBlock) {
    this.#sb = sb;
    this.#hierarchy = sb.source.hierarchy;
    this.#hierarchy.on('mkdir', this.#onMkdir).on('rmdir', this.#onRmdir);
  }

  dispose(): void {
    this.#hierarchy.off('mkdir', this.#onMkdir).off('rmdir', this.#onRmdir);
  }

  /** A directory with a tag gets a subdirectory for each live child cgroup, recursively. */
  fill(dir: DirInode): void {
    for (const child of dir.tag!.node.children) if (!child.dying) this.#mirrorChild(dir, child);
  }

  /** A new entry of the inherit list reaches every directory of the tree that lacks its name. */
  propagate(from: DirInode, name: string): void {
    const list = from.tag!.inherit;
    const entry = list.entry(name) as InheritEntry<BpfLink>;
    for (const dir of this.#sb.allTaggedDirs()) {
      if (dir.tag!.inherit === list && !dir.entries.has(name)) instantiateInherited(this.#sb, dir, entry, this.#sb.owner);
    }
  }

  #mirrorChild(dir: DirInode, cgroup: KernfsNode): void {
    const there = dir.entries.get(cgroup.name);
    if (there === undefined) {
      this.fill(bpfMkdir(this.#sb, dir, cgroup.name, 0o777 & ~this.#sb.umask, this.#sb.owner));
    } else if (there instanceof DirInode && there.tag !== null && there.tag.node.dying && there.tag.inherit === dir.tag!.inherit) {
      // A leftover of a removed cgroup of this name: the new cgroup takes it over.
      there.setTag(DirTag.tagChild(dir.tag!, cgroup.name));
      populateDir(this.#sb, there, this.#sb.owner);
      this.fill(there);
    }
  }

  #cgroupMkdir(node: KernfsNode): void {
    if (node.dying) return;
    for (const dir of this.#sb.taggedDirs(node.parent!)) this.#mirrorChild(dir, node);
  }

  #cgroupRmdir(node: KernfsNode): void {
    for (const dir of this.#sb.taggedDirs(node)) {
      unpopulateDir(dir);
      if (dir.entries.size === 0) simpleRmdir(dir.parent!, dir.name, dir);
    }
  }
}
