/**
 * Where running daemons are found: one directory per mount under the state root (/run/vbpffs by
 * default, so it lasts until reboot like the kernel's pins), holding the control socket and an
 * info file. The directory name is the mount point with '/' as '%2F', so it is unique and readable.
 */
import { mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { bpfError } from '../../uapi';

export const DEFAULT_STATE_ROOT = process.env.VBPFFS_STATE_ROOT ?? '/run/vbpffs';

export interface MountInfo {
  mountPoint: string;
  pid: number;
  startedAt: string;
  socket: string;
  stateDir: string;
}

export function stateDirFor(mountPoint: string, root = DEFAULT_STATE_ROOT): string {
  return path.join(root, mountPoint.replaceAll('%', '%25').replaceAll('/', '%2F'));
}

/**
 * Makes the state directory (0700) if it is not there, and refuses one that others could tamper
 * with: the directory must be ours and writable by no one else, and its parent writable by others
 * only if it is sticky (as /tmp is), or another user could put their own socket and info file where
 * the CLI, run as root, would trust them. EPERM, saying which directory and why.
 */
export async function secureStateDir(stateDir: string): Promise<void> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const own = await stat(stateDir);
  if (own.uid !== process.getuid!()) throw bpfError('EPERM', `state directory ${stateDir} belongs to uid ${own.uid}, not to the daemon's user (uid ${process.getuid!()})`);
  if ((own.mode & 0o022) !== 0) throw bpfError('EPERM', `state directory ${stateDir} is writable by others (mode ${(own.mode & 0o7777).toString(8)}): chmod go-w it, or choose another --state`);
  const parent = await stat(path.dirname(stateDir));
  if ((parent.mode & 0o022) !== 0 && (parent.mode & 0o1000) === 0) {
    throw bpfError('EPERM', `${path.dirname(stateDir)} is writable by others and not sticky (mode ${(parent.mode & 0o7777).toString(8)}): they could replace the state directory ${stateDir}`);
  }
}

export async function writeInfo(info: MountInfo): Promise<void> {
  await mkdir(info.stateDir, { recursive: true, mode: 0o700 });
  await writeFile(path.join(info.stateDir, 'info.json'), JSON.stringify(info, null, 2) + '\n', { mode: 0o600 });
}

/**
 * The registry is as private as the sockets (directories of mode 0700): a user who may not read it
 * may not control the daemons either, and is told so, rather than that no daemon runs.
 */
async function denied(dir: string, e: unknown): Promise<Error> {
  let owner = 'their owner';
  try {
    const { uid } = await stat(dir);
    owner = uid === 0 ? 'root' : `uid ${uid}`;
  } catch {
    // The directory's owner is only a hint: the refusal stands without it.
  }
  return bpfError('EACCES', `${dir}: permission denied: only ${owner}, who runs these vbpffs daemons, may control them`, e);
}

export async function readInfo(stateDir: string): Promise<MountInfo | undefined> {
  try {
    return JSON.parse(await readFile(path.join(stateDir, 'info.json'), 'utf8')) as MountInfo;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EACCES') throw await denied(stateDir, e);
    return undefined;
  }
}

export async function removeInfo(stateDir: string): Promise<void> {
  await rm(path.join(stateDir, 'info.json'), { force: true });
  await rm(path.join(stateDir, 'control.sock'), { force: true });
}

/** Every mount with an info file, live or not (a killed daemon leaves one; `alive` says which). */
export async function listMounts(root = DEFAULT_STATE_ROOT): Promise<(MountInfo & { alive: boolean })[]> {
  let names: string[];
  try {
    names = await readdir(root);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EACCES') throw await denied(root, e);
    return [];
  }
  const out: (MountInfo & { alive: boolean })[] = [];
  for (const n of names) {
    const info = await readInfo(path.join(root, n));
    if (info !== undefined) out.push({ ...info, alive: await isAlive(info.pid) });
  }
  return out.sort((a, b) => a.mountPoint.localeCompare(b.mountPoint));
}

/**
 * Whether the daemon's process still runs. A killed daemon whose parent is gone may stay a zombie
 * until init reaps it (some containers' init never does): a zombie is dead.
 */
export async function isAlive(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // pid (comm) state ...: comm may hold spaces and parentheses, so read after the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}
