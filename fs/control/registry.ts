/**
 * Where running daemons are found: one directory per mount under the state root (/run/vbpffs by
 * default, so it lasts until reboot like the kernel's pins), holding the control socket and an
 * info file. The directory name is the mount point with '/' as '%2F', so it is unique and readable.
 * A mount whose state directory is elsewhere (`--state DIR`) is recorded under the root too, as a
 * file `state-<escaped mount point>.json` (a name no mount point's directory can have, since those
 * all start with '%2F'), so every command finds it the same way.
 *
 * Nothing here follows a symlink: the state files are opened with O_NOFOLLOW, written aside and
 * renamed into place, and a symlink anywhere on a state directory's path is refused (ELOOP), since
 * one planted there would send root's journal, log or socket wherever its maker chose.
 */
import { constants } from 'node:fs';
import { lstat, mkdir, open, readFile, readdir, readlink, rename, rm, unlink } from 'node:fs/promises';
import path from 'node:path';
import { bpfError, isBpfError } from '../../uapi';

export const DEFAULT_STATE_ROOT = process.env.VBPFFS_STATE_ROOT ?? '/run/vbpffs';

export interface MountInfo {
  mountPoint: string;
  pid: number;
  startedAt: string;
  socket: string;
  stateDir: string;
}

export function stateDirFor(mountPoint: string, root = DEFAULT_STATE_ROOT): string {
  return path.join(root, escape(mountPoint));
}

const escape = (mountPoint: string): string => mountPoint.replaceAll('%', '%25').replaceAll('/', '%2F');

const EXTERNAL = 'state-';

/** The registry entry of a mount whose state directory is not directly under the root. */
export function externalEntryFor(mountPoint: string, root = DEFAULT_STATE_ROOT): string {
  return path.join(root, `${EXTERNAL}${escape(mountPoint)}.json`);
}

const symlinkRefused = async (p: string, what: string): Promise<Error> => {
  const target = await readlink(p).catch(() => '?');
  return bpfError('ELOOP', `${what}: ${p} is a symlink (to ${target}); vbpffs follows none in its state: name the real directory, or remove it`);
};

/**
 * Makes the directory (0700) one component at a time, each checked with lstat: mkdir -p would
 * follow a symlink on the way, and stat would take a symlink for the directory it points to.
 */
async function makeDirNoFollow(dir: string, what: string): Promise<void> {
  const parts = path.resolve(dir).split('/').filter((p) => p !== '');
  for (let i = 1; i <= parts.length; i++) {
    const p = `/${parts.slice(0, i).join('/')}`;
    let st;
    try {
      st = await lstat(p);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      // Another daemon may make it at the same time: EEXIST is then as good as ours.
      await mkdir(p, { mode: 0o700 }).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'EEXIST') throw e;
      });
      st = await lstat(p);
    }
    if (st.isSymbolicLink()) throw await symlinkRefused(p, what);
    if (!st.isDirectory()) throw bpfError('ENOTDIR', `${what}: ${p} is not a directory`);
  }
}

/**
 * Makes the state directory (0700) if it is not there, and refuses one that others could tamper
 * with: the directory must be ours and writable by no one else, and its parent writable by others
 * only if it is sticky (as /tmp is), or another user could put their own socket and info file where
 * the CLI, run as root, would trust them. EPERM, saying which directory and why. A symlink on its
 * path or in it is ELOOP: once it is ours and private, no one else can put one there later, so a
 * check at start covers the files the daemon opens after it (the journal among them).
 */
export async function secureStateDir(stateDir: string): Promise<void> {
  const what = `state directory ${stateDir}`;
  await makeDirNoFollow(stateDir, what);
  const own = await lstat(stateDir);
  if (own.uid !== process.getuid!()) throw bpfError('EPERM', `state directory ${stateDir} belongs to uid ${own.uid}, not to the daemon's user (uid ${process.getuid!()})`);
  if ((own.mode & 0o022) !== 0) throw bpfError('EPERM', `state directory ${stateDir} is writable by others (mode ${(own.mode & 0o7777).toString(8)}): chmod go-w it, or choose another --state`);
  const parent = await lstat(path.dirname(stateDir));
  if ((parent.mode & 0o022) !== 0 && (parent.mode & 0o1000) === 0) {
    throw bpfError('EPERM', `${path.dirname(stateDir)} is writable by others and not sticky (mode ${(parent.mode & 0o7777).toString(8)}): they could replace the state directory ${stateDir}`);
  }
  for (const name of await readdir(stateDir)) {
    const p = path.join(stateDir, name);
    if ((await lstat(p)).isSymbolicLink()) throw await symlinkRefused(p, what);
  }
}

/** Reads a state file, refusing a symlink (ELOOP); undefined when it is not there. */
export async function readNoFollow(file: string): Promise<string | undefined> {
  let fh;
  try {
    fh = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    if (code === 'ELOOP') throw await symlinkRefused(file, 'state file');
    throw e;
  }
  try {
    return await fh.readFile('utf8');
  } finally {
    await fh.close();
  }
}

/**
 * Writes a state file whole: into a new file beside it (O_EXCL never follows a symlink) renamed over
 * it, so a reader sees the old text or the new, and a symlink in its place is replaced, not followed.
 */
export async function writeNoFollow(file: string, text: string): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await rm(tmp, { force: true }); // left by a killed process of the same pid: rm never follows
  const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    await fh.writeFile(text);
  } finally {
    await fh.close();
  }
  await rename(tmp, file);
}

export async function writeInfo(info: MountInfo): Promise<void> {
  await makeDirNoFollow(info.stateDir, `state directory ${info.stateDir}`);
  await writeNoFollow(path.join(info.stateDir, 'info.json'), JSON.stringify(info, null, 2) + '\n');
}

/**
 * Records a mount where commands look: its info file in its state directory and, for a state
 * directory that is not directly under the root (`--state DIR`), an entry under the root. Another
 * live daemon's entry for the same mount point is never replaced (EBUSY); a dead one's is.
 */
export async function registerMount(info: MountInfo, root = DEFAULT_STATE_ROOT): Promise<void> {
  await writeInfo(info);
  if (path.dirname(info.stateDir) === path.resolve(root)) {
    // A dead --state mount of this mount point would otherwise be listed beside this one for good.
    const entry = externalEntryFor(info.mountPoint, root);
    const there = await readEntry(entry);
    if (there !== undefined && !(await isAlive(there.pid))) await unlink(entry).catch(() => undefined);
    return;
  }
  try {
    await secureStateDir(root);
  } catch (e) {
    if (isBpfError(e) || (e as NodeJS.ErrnoException).code !== 'EACCES') throw e;
    throw bpfError('EACCES', `cannot record the mount in the state root ${root}, where vbpffs status and umount look: set VBPFFS_STATE_ROOT to a directory of yours`, e);
  }
  const entry = externalEntryFor(info.mountPoint, root);
  const there = await readEntry(entry);
  if (there !== undefined && there.pid !== info.pid && (await isAlive(there.pid))) {
    throw bpfError('EBUSY', `${info.mountPoint} is already mounted by vbpffs (pid ${there.pid}); vbpffs umount ${info.mountPoint} first`);
  }
  await writeNoFollow(entry, JSON.stringify(info, null, 2) + '\n');
}

/** Removes what registerMount recorded, if it is still this daemon's (`pid`): never another's. */
export async function unregisterMount(info: MountInfo, root = DEFAULT_STATE_ROOT): Promise<void> {
  await removeInfo(info.stateDir, info.pid);
  const entry = externalEntryFor(info.mountPoint, root);
  if ((await readEntry(entry).catch(() => undefined))?.pid === info.pid) await unlink(entry).catch(() => undefined);
}

/**
 * The registry is as private as the sockets (directories of mode 0700): a user who may not read it
 * may not control the daemons either, and is told so, rather than that no daemon runs.
 */
async function denied(dir: string, e: unknown): Promise<Error> {
  let owner = 'their owner';
  try {
    const { uid } = await lstat(dir);
    owner = uid === 0 ? 'root' : `uid ${uid}`;
  } catch {
    // The directory's owner is only a hint: the refusal stands without it.
  }
  return bpfError('EACCES', `${dir}: permission denied: only ${owner}, who runs these vbpffs daemons, may control them`, e);
}

async function readEntry(file: string): Promise<MountInfo | undefined> {
  let text: string | undefined;
  try {
    text = await readNoFollow(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EACCES') throw await denied(path.dirname(file), e);
    throw e;
  }
  try {
    return text === undefined ? undefined : (JSON.parse(text) as MountInfo);
  } catch {
    return undefined; // torn by a crash mid-write of an older version: as if absent
  }
}

export async function readInfo(stateDir: string): Promise<MountInfo | undefined> {
  return readEntry(path.join(stateDir, 'info.json'));
}

/**
 * Removes a state directory's info file and socket: only `pid`'s when a pid is given (a daemon
 * cleaning up after itself), whoever's when not (a dead daemon's, by the holder of its state lock).
 */
export async function removeInfo(stateDir: string, pid?: number): Promise<void> {
  if (pid !== undefined && (await readInfo(stateDir).catch(() => undefined))?.pid !== pid) return;
  await rm(path.join(stateDir, 'info.json'), { force: true });
  await rm(path.join(stateDir, 'control.sock'), { force: true });
}

/**
 * Every mount with an info file or an entry, live or not (a killed daemon leaves one; `alive` says
 * which), each state directory once.
 */
export async function listMounts(root = DEFAULT_STATE_ROOT): Promise<(MountInfo & { alive: boolean })[]> {
  let names: string[];
  try {
    names = await readdir(root);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EACCES') throw await denied(root, e);
    return [];
  }
  const out = new Map<string, MountInfo & { alive: boolean }>();
  for (const n of names.sort()) {
    if (n.endsWith('.tmp')) continue;
    // The root is private, so a symlink in it was put there by its owner: refused all the same.
    if ((await lstat(path.join(root, n)).catch(() => undefined))?.isSymbolicLink() === true) throw await symlinkRefused(path.join(root, n), `the state root ${root}`);
    const external = n.startsWith(EXTERNAL) && n.endsWith('.json');
    const info = external ? await readEntry(path.join(root, n)) : await readInfo(path.join(root, n));
    if (info === undefined) continue;
    const key = `${info.stateDir}\0${info.pid}`;
    if (!out.has(key)) out.set(key, { ...info, alive: await isAlive(info.pid) });
  }
  return [...out.values()].sort((a, b) => a.mountPoint.localeCompare(b.mountPoint));
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
