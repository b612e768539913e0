/**
 * The RFC's directory tags in bpffs (spec 1.3): bpf_inherit_object at pin, tag_dir_inode and
 * populate_dir at mkdir, unpopulate_dir at rmdir. DirTag and InheritList (tags/) are the structures;
 * this file is where bpffs's directory operations meet them.
 *
 * - Pinning a cgroup_view link in an untagged directory tags it with the cgroup2 root and a new inherit
 *   list; in a tagged one it joins the list the whole tree shares (a name already there: no-op).
 * - mkdir in a tagged directory must name a live child cgroup of the parent's; the new directory is
 *   tagged with it and gets one file per list entry (same object, the entry's name and mode, owned by
 *   whoever makes the directory). Nothing else ever adds to an existing directory here (the mirror does,
 *   in auto mode).
 * - rmdir first unlinks the inherited entries (the list's names that still hold the list's object),
 *   then is simple_rmdir: ENOTEMPTY if anything else is left. The tag is destroyed with the directory;
 *   a directory rmdir refuses keeps its tag (the posted RFC untagged before the check, see DIFFERENCES).
 * - unlink, rename and link are not tag-aware (spec 1.3.9, 1.3.12).
 */
import { DirTag, type InheritEntry, type InheritOps } from '../../tags';
import type { BpfLink } from '../../progs';
import { ObjInode, type Cred, type DirInode, type SuperBlock } from './inode';
import { dInstantiate, simpleRmdir, simpleUnlink } from './libfs';
import { checkNewName } from './namei';

/** The inherit list holds its links as the kernel's would: bpf_link_inc / bpf_link_put. */
export const linkInheritOps: InheritOps<BpfLink> = {
  get: (link) => void link.get(),
  put: (link) => link.put(),
};

/** What a cgroup_view pin did to its directory's tag. */
export type InheritResult = 'tagged' | 'appended' | 'present';

/**
 * bpf_inherit_object: an untagged directory is tagged with the cgroup2 root and a new list; then the
 * entry joins the list unless its name is already there.
 */
export function bpfInheritObject(sb: SuperBlock, dir: DirInode, name: string, mode: number, link: BpfLink): InheritResult {
  if (dir.tag === null) {
    const tag = DirTag.tagRoot(sb.source.hierarchy.root, linkInheritOps);
    dir.setTag(tag);
    tag.appendEntry(name, mode, link);
    return 'tagged';
  }
  return dir.tag.appendEntry(name, mode, link) ? 'appended' : 'present';
}

/** One inherited file: the entry's object (a new reference for the pin), name and mode. */
export function instantiateInherited(sb: SuperBlock, dir: DirInode, e: InheritEntry<BpfLink>, cred: Cred): void {
  dInstantiate(dir, e.name, sb.newObj(dir, e.mode, cred, e.obj.get()));
}

/** populate_dir: one file per list entry whose name the directory does not have. */
export function populateDir(sb: SuperBlock, dir: DirInode, cred: Cred): void {
  for (const e of dir.tag!.entries()) if (!dir.entries.has(e.name)) instantiateInherited(sb, dir, e, cred);
}

/** Whether an entry of a tagged directory is an inherited copy: a list name still holding the list's object. */
export function isInherited(dir: DirInode, name: string): boolean {
  const e = dir.tag?.inherit.entry(name);
  const inode = dir.entries.get(name);
  return e !== undefined && inode instanceof ObjInode && inode.obj === e.obj;
}

/** unpopulate_dir: the inherited copies go; what the user put there stays. */
export function unpopulateDir(dir: DirInode): void {
  for (const e of dir.tag!.entries()) {
    if (isInherited(dir, e.name)) simpleUnlink(dir, e.name, dir.entries.get(e.name)!);
  }
}

/**
 * bpf_mkdir with tag_dir_inode and populate_dir. A directory made in a tagged one must name a live
 * child cgroup (ENOENT otherwise) and may then carry the cgroup's name even with dots in it
 * (system.slice), which bpffs's dot rule would refuse.
 */
export function bpfMkdir(sb: SuperBlock, dir: DirInode, name: string, perm: number, cred: Cred): DirInode {
  const parentTag = dir.tag;
  checkNewName(dir, name, parentTag?.node.child(name) !== undefined);
  const tag = parentTag === null ? null : DirTag.tagChild(parentTag, name);
  const child = sb.newDir(dir, perm, cred);
  dInstantiate(dir, name, child);
  if (tag !== null) {
    child.setTag(tag);
    populateDir(sb, child, cred);
  }
  return child;
}

/** bpf_rmdir: unpopulate a tagged directory, then simple_rmdir (which destroys the tag with it). */
export function bpfRmdir(dir: DirInode, name: string, victim: DirInode): void {
  if (victim.tag !== null) unpopulateDir(victim);
  simpleRmdir(dir, name, victim);
}
