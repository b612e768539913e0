/**
 * One daemon per state directory. Two daemons on one state directory would both append to its
 * journal and each remove the other's socket and info file when it stops, so the second is refused
 * (EBUSY) with the holder's pid and mount point.
 *
 * The lock is a Unix socket bound in Linux's abstract namespace (docs/DECISIONS.md says why, and
 * what else was weighed): bind() there is exclusive, and the kernel frees the name when the process
 * that holds it exits in any way, kill -9 included, so no stale lock is ever left to be broken and no
 * pid can be mistaken for another. The name is a random token kept in the state directory's `lock`
 * file (0600, in a 0700 directory): another user, who cannot read it, cannot squat the name. The
 * holder answers whoever connects with its pid and mount point, which is how the refusal names it.
 */
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { link, open, unlink } from 'node:fs/promises';
import path from 'node:path';
import { bpfError } from '../../uapi';
import { readInfo, readNoFollow } from './registry';

export interface LockHolder {
  pid: number;
  mountPoint: string;
}

export interface StateLock {
  /** Frees the state directory for the next daemon. */
  release(): Promise<void>;
}

/** How long a refused daemon waits for the holder to say who it is. */
const ASK_MS = 2000;

/** The state directory's token, made once (the first daemon to link its file in place wins). */
async function token(stateDir: string): Promise<string> {
  const file = path.join(stateDir, 'lock');
  for (;;) {
    const text = await readNoFollow(file);
    if (text !== undefined) {
      if (!/^[0-9a-f]{32}\n$/.test(text)) throw bpfError('EIO', `${file} is damaged (not a lock token): remove it while no vbpffs daemon runs on ${stateDir}`);
      return text.trim();
    }
    // Written whole under a name of our own, then linked: link() never replaces, so every daemon
    // reads the same complete token, whichever made it.
    const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    try {
      await fh.writeFile(`${randomBytes(16).toString('hex')}\n`);
    } finally {
      await fh.close();
    }
    await link(tmp, file).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'EEXIST') throw e;
    });
    await unlink(tmp);
  }
}

const lockName = (t: string): string => `\0vbpffs-state-lock/${t}`;

/** Takes the state directory's lock, or EBUSY naming the daemon that holds it. */
export async function lockStateDir(stateDir: string, holder: LockHolder): Promise<StateLock> {
  const name = lockName(await token(stateDir));
  const server = net.createServer((c) => {
    c.on('error', () => c.destroy());
    c.end(`${JSON.stringify(holder)}\n`);
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(name, () => resolve());
    });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
    throw bpfError('EBUSY', refusal(stateDir, holder.mountPoint, await whoHolds(name, stateDir)));
  }
  // Held for as long as the daemon lives, but never the reason it lives on.
  server.unref();
  return { release: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

/** The holder as it describes itself; if it does not answer (stopped), its info file's word. */
async function whoHolds(name: string, stateDir: string): Promise<(LockHolder & { answered: boolean }) | undefined> {
  const said = await new Promise<string>((resolve) => {
    const c = net.connect(name);
    let buf = '';
    const timer = setTimeout(() => c.destroy(), ASK_MS);
    c.setEncoding('utf8');
    c.on('data', (d: string) => (buf += d));
    c.on('error', () => undefined);
    c.on('close', () => {
      clearTimeout(timer);
      resolve(buf);
    });
  });
  try {
    const h = JSON.parse(said) as LockHolder;
    if (Number.isInteger(h.pid) && typeof h.mountPoint === 'string') return { pid: h.pid, mountPoint: h.mountPoint, answered: true };
  } catch {
    // Not an answer: fall back on the info file.
  }
  const info = await readInfo(stateDir).catch(() => undefined);
  return info === undefined ? undefined : { pid: info.pid, mountPoint: info.mountPoint, answered: false };
}

/** Why a daemon for `mountPoint` may not have `stateDir`: its holder `h` (undefined: unknown). */
export function refusal(stateDir: string, mountPoint: string, h: (LockHolder & { answered?: boolean }) | undefined): string {
  if (h === undefined) return `state directory ${stateDir} is in use by another vbpffs daemon, which does not say which (stopped?): one daemon per state directory`;
  const quiet = h.answered !== false ? '' : ', which does not answer (stopped?)';
  if (h.mountPoint === mountPoint) return `${mountPoint} is already mounted by vbpffs (pid ${h.pid}${quiet}); vbpffs umount ${mountPoint} first`;
  return `state directory ${stateDir} is in use by the vbpffs daemon pid ${h.pid} mounted at ${h.mountPoint}${quiet}: one daemon per state directory; vbpffs umount ${h.mountPoint} first, or choose another --state`;
}
