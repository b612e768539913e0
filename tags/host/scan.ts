/**
 * The walk of a cgroup2 tree: every directory below the mount is a cgroup. The whole-tree walk runs in
 * the scan worker (scan-worker.ts), so it may use synchronous fs: a 10,000-cgroup walk takes ~300 ms,
 * which must not happen on the serving thread. The listing of one new cgroup, which the serving thread
 * does itself, is async (childCgroups).
 *
 * Creation order: kernfs lists a directory in name-hash order, not creation order, and cgroupfs keeps
 * no birth time (statx gives none, and a parent's mtime does not change on mkdir). The inode number is
 * the best proxy: kernfs allocates it cyclically from an idr with a generation in the upper 32 bits,
 * so it only grows while the host is up. Siblings are therefore sorted by inode.
 */
import fs, { promises as fsp } from 'node:fs';
import path from 'node:path';
import { bpfError, fromSystemError } from '../../uapi';

/**
 * What a walk found: cgroup i (0-based, pre-order, so parents come before their children) is called
 * names[i], has inode inos[i] and parent entry parents[i] (-1 for a child of the walk's root). Packed
 * in typed arrays because the result crosses from the worker: 10,000 objects cost the serving thread
 * ~5 ms to deserialize, the arrays almost nothing.
 */
export interface ScanResult {
  rootIno: bigint;
  names: string[];
  parents: Int32Array;
  inos: BigUint64Array;
}

/** The cgroup id of a directory: its inode number, refused rather than rounded past 2^53. */
export function cgroupIdOf(ino: bigint, where: string): number {
  const id = Number(ino);
  if (!Number.isSafeInteger(id)) throw bpfError('EOVERFLOW', `cgroup id ${ino} of ${where} exceeds 2^53`);
  return id;
}

/** A cgroup removed while we look at it is no error: the walk just does not report it. */
export function vanished(e: unknown): boolean {
  const code = (e as { code?: string }).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** The child cgroups of dir, oldest first, skipping any that vanish meanwhile. */
export function childCgroupsSync(dir: string): { name: string; ino: bigint }[] {
  const found: { name: string; ino: bigint }[] = [];
  for (const d of fs.readdirSync(dir, { withFileTypes: true })) {
    if (!d.isDirectory()) continue;
    try {
      found.push({ name: d.name, ino: fs.statSync(path.join(dir, d.name), { bigint: true }).ino });
    } catch (e) {
      if (!vanished(e)) throw e;
    }
  }
  return found.sort(byIno);
}

function byIno(a: { ino: bigint }, b: { ino: bigint }): number {
  return a.ino < b.ino ? -1 : a.ino > b.ino ? 1 : 0;
}

/**
 * The child cgroups of dir, oldest first, with async fs: for the scan of one new cgroup on the serving
 * thread, where a handful of entries is the normal case.
 */
export async function childCgroups(dir: string): Promise<{ name: string; ino: bigint }[]> {
  const dirs = (await fsp.readdir(dir, { withFileTypes: true })).filter((d) => d.isDirectory());
  const found = await Promise.all(
    dirs.map(async (d) => {
      try {
        return { name: d.name, ino: (await fsp.stat(path.join(dir, d.name), { bigint: true })).ino };
      } catch (e) {
        if (vanished(e)) return null;
        throw e;
      }
    }),
  );
  return found.filter((c) => c !== null).sort(byIno);
}

/** Walks the tree below root. Errors other than a vanished cgroup (EACCES, EMFILE, ...) fail the walk. */
export function scanTreeSync(root: string): ScanResult {
  try {
    const rootIno = fs.statSync(root, { bigint: true }).ino;
    const names: string[] = [];
    const parents: number[] = [];
    const inos: bigint[] = [];
    const visit = (dir: string, parent: number): void => {
      let children;
      try {
        children = childCgroupsSync(dir);
      } catch (e) {
        if (parent >= 0 && vanished(e)) return;
        throw e;
      }
      for (const c of children) {
        names.push(c.name);
        parents.push(parent);
        inos.push(c.ino);
        visit(path.join(dir, c.name), names.length - 1);
      }
    };
    visit(root, -1);
    return { rootIno, names, parents: Int32Array.from(parents), inos: BigUint64Array.from(inos) };
  } catch (e) {
    throw fromSystemError(e, `scan of ${root}`);
  }
}
