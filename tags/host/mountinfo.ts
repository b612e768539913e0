/**
 * Finding the host's cgroup2 mount from /proc/self/mountinfo (proc(5)).
 *
 * A line is `id parent major:minor root mount-point options [optional fields...] - fstype source super-options`.
 * The optional fields (shared:N, master:N, ...) vary in number, so the fields after them are found from
 * the ' - ' separator, never by position. Paths escape space, tab, newline and backslash as octal
 * (\040, \011, \012, \134).
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { bpfError, fromSystemError } from '../../uapi';

export const MOUNTINFO = '/proc/self/mountinfo';

export interface MountInfo {
  mountId: number;
  parentId: number;
  /** The directory of the filesystem that is mounted here ("/" unless a subtree was bind-mounted). */
  root: string;
  mountPoint: string;
  mountOptions: string;
  optionalFields: string[];
  fstype: string;
  source: string;
  superOptions: string;
}

export function unescapeMountPath(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Parses one mountinfo line; EINVAL names the line when it does not have the format. */
export function parseMountinfoLine(line: string): MountInfo {
  const fields = line.split(' ');
  const sep = fields.indexOf('-', 6);
  if (sep < 0 || fields.length < sep + 4) throw bpfError('EINVAL', `malformed mountinfo line: ${JSON.stringify(line)}`);
  const [mountId, parentId, , root, mountPoint, mountOptions] = fields;
  return {
    mountId: Number(mountId),
    parentId: Number(parentId),
    root: unescapeMountPath(root!),
    mountPoint: unescapeMountPath(mountPoint!),
    mountOptions: mountOptions!,
    optionalFields: fields.slice(6, sep),
    fstype: fields[sep + 1]!,
    source: unescapeMountPath(fields[sep + 2]!),
    superOptions: fields[sep + 3]!,
  };
}

export function parseMountinfo(text: string): MountInfo[] {
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map(parseMountinfoLine);
}

export async function readMountinfo(file = MOUNTINFO): Promise<MountInfo[]> {
  try {
    return parseMountinfo(await fsp.readFile(file, 'utf8'));
  } catch (e) {
    throw fromSystemError(e, `read ${file}`);
  }
}

/** Lists what was found instead, for an error message: "cgroup on /sys/fs/cgroup/cpu, ...". */
function describe(mounts: MountInfo[]): string {
  if (mounts.length === 0) return 'found no cgroup mounts';
  const shown = mounts.slice(0, 4).map((m) => `${m.fstype} on ${m.mountPoint}`);
  if (mounts.length > shown.length) shown.push(`${mounts.length - shown.length} more`);
  return `found ${shown.join(', ')}`;
}

/**
 * Picks the cgroup2 mount to mirror. With several (a container may see the host's and its own), a mount
 * of the filesystem's root is preferred over a bind-mounted subtree, then the shortest mount point, then
 * the first mounted.
 */
export function pickCgroup2Mount(mounts: MountInfo[], file = MOUNTINFO): MountInfo {
  const candidates = mounts.filter((m) => m.fstype === 'cgroup2');
  if (candidates.length === 0) {
    const v1 = mounts.filter((m) => m.fstype === 'cgroup');
    throw bpfError('ENODEV', `no cgroup2 mount in ${file} (${describe(v1)})`);
  }
  const rank = (m: MountInfo): [number, number] => [m.root === '/' ? 0 : 1, m.mountPoint.length];
  return candidates.reduce((best, m) => {
    const [a, b] = [rank(m), rank(best)];
    return a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]) ? m : best;
  });
}

/**
 * The mount an existing, canonical path lies on: the entry with the longest mount point that contains
 * it, and among equals the last one, since a later mount covers an earlier one at the same place.
 */
export function mountOf(mounts: MountInfo[], realPath: string): MountInfo | undefined {
  let found: MountInfo | undefined;
  for (const m of mounts) {
    const inside = realPath === m.mountPoint || realPath.startsWith(m.mountPoint === '/' ? '/' : `${m.mountPoint}/`);
    if (inside && (found === undefined || m.mountPoint.length >= found.mountPoint.length)) found = m;
  }
  return found;
}

export interface FindCgroup2Options {
  /** An explicit mount point to use; verified to be a cgroup2 mount. */
  path?: string;
  /** The mountinfo file to read (tests pass a sample). */
  mountinfo?: string;
}

/**
 * Finds the cgroup2 mount (or verifies an explicit one). ENODEV when there is none, EINVAL when the
 * explicit path is some other filesystem or not its mount point; EACCES/EPERM/ENOENT carry the path.
 */
export async function findCgroup2Mount(opts: FindCgroup2Options = {}): Promise<MountInfo> {
  const file = opts.mountinfo ?? MOUNTINFO;
  const mounts = await readMountinfo(file);
  if (opts.path === undefined) return pickCgroup2Mount(mounts, file);

  let real: string;
  try {
    real = await fsp.realpath(path.resolve(opts.path));
  } catch (e) {
    throw fromSystemError(e, `cgroup2 mount ${opts.path}`);
  }
  const m = mountOf(mounts, real);
  if (m === undefined) throw bpfError('EINVAL', `${real} is on no mount listed in ${file}`);
  if (m.fstype !== 'cgroup2') throw bpfError('EINVAL', `${real} is ${m.fstype}, not cgroup2`);
  if (m.mountPoint !== real) throw bpfError('EINVAL', `${real} is inside the cgroup2 mount at ${m.mountPoint}, not its mount point`);
  // The mountinfo entry is the statfs check without a native call; cgroup.controllers confirms the
  // directory really is a cgroup2 root and that we may read it.
  try {
    await fsp.access(path.join(real, 'cgroup.controllers'));
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') throw bpfError('EINVAL', `${real} is listed as cgroup2 in ${file} but has no cgroup.controllers`);
    throw fromSystemError(e, `${real}/cgroup.controllers`);
  }
  return m;
}
