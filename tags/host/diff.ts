/**
 * The difference between a walk of the host tree and the hierarchy: which entries the reconcile must
 * look at again. The diff only nominates entries; the source re-stats each before it changes anything,
 * because live tracking keeps running while the walk was in flight and the walk may be out of date.
 *
 * The two trees are compared directory by directory (children by name), never by building full path
 * strings: the whole diff of 10,000 cgroups runs on the serving thread in one go.
 */
import type { CgroupHierarchy } from '../hierarchy';
import type { KernfsNode } from '../kernfs-node';
import type { ScanResult } from './scan';

export interface Suspect {
  parent: KernfsNode;
  name: string;
}

export interface TreeDiff {
  /** Live nodes whose directory the walk did not find, or found with another inode. */
  gone: KernfsNode[];
  /** Directories the walk found below a matching parent that the hierarchy lacks there. */
  found: Suspect[];
}

export function diffTree(hierarchy: CgroupHierarchy, scan: ScanResult): TreeDiff {
  // kids[i + 1] lists the entries whose parent is entry i; kids[0] those of the root.
  const kids: number[][] = Array.from({ length: scan.names.length + 1 }, () => []);
  scan.parents.forEach((p, i) => kids[p + 1]!.push(i));

  const diff: TreeDiff = { gone: [], found: [] };
  const stack: [KernfsNode, number][] = [[hierarchy.root, -1]];
  while (stack.length > 0) {
    const [node, entry] = stack.pop()!;
    const onHost = new Set<string>();
    for (const i of kids[entry + 1]!) {
      const name = scan.names[i]!;
      onHost.add(name);
      const child = node.child(name);
      // A replaced cgroup (same name, new inode) is nominated once, as gone: re-reading the entry
      // removes the old node and adds the new one, scanning below it.
      if (child === undefined) diff.found.push({ parent: node, name });
      else if (BigInt(child.id) !== scan.inos[i]) diff.gone.push(child);
      else stack.push([child, i]);
    }
    for (const child of node.children) if (!child.dying && !onHost.has(child.name)) diff.gone.push(child);
  }
  return diff;
}
