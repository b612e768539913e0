/**
 * The daemon under soak, as users run it: `vbpffs mount --foreground` in a process of its own (so its
 * memory can be read from /proc) and in its own process group (so a Ctrl-C of the soak reaches the
 * soak, which then stops it, and not the daemon before the soak has its figures). Started directly,
 * its pid is known from the start, and a daemon that never comes up is killed, not left behind.
 * `vbpffs iter pin` pins views, `vbpffs umount` stops it. Its state lives under a temporary root
 * (VBPFFS_STATE_ROOT), not /run/vbpffs.
 */
import { execFile, spawn } from 'node:child_process';
import { access, open, readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { stateDirFor } from '../../fs/control/registry';
import { readMountinfo } from '../../tags/host/mountinfo';

const run = promisify(execFile);

/** The CLI next to this file: fs/cli.ts from the sources (under a TypeScript loader), fs/cli.js from dist/. */
const CLI = path.join(__dirname, '..', '..', 'fs', `cli${path.extname(__filename)}`);
/** A daemon loaded through the TypeScript loader on a busy host can take a while to come up. */
const START_TIMEOUT_MS = 120_000;

export interface SoakDaemon {
  readonly pid: number;
  /** Runs a vbpffs command against this daemon; its stdout. */
  cli(...args: string[]): Promise<string>;
  /** The daemon's resident set (VmRSS), KiB; and its open file descriptors. */
  rssKiB(): Promise<number>;
  fds(): Promise<number>;
  /** `vbpffs umount`, then waits for the process to end; SIGKILL and a lazy unmount if it will not. */
  stop(): Promise<void>;
}

export async function isMounted(dir: string): Promise<boolean> {
  return (await readMountinfo()).some((m) => m.mountPoint === dir);
}

export async function startSoakDaemon(mnt: string, stateRoot: string): Promise<SoakDaemon> {
  const env = { ...process.env, VBPFFS_STATE_ROOT: stateRoot };
  const cli = async (...args: string[]): Promise<string> => (await run(process.execPath, [...process.execArgv, CLI, ...args], { env, encoding: 'utf8' })).stdout;
  const log = await open(path.join(path.dirname(mnt), 'daemon.log'), 'a', 0o600);
  const child = spawn(process.execPath, [...process.execArgv, CLI, 'mount', mnt, '--foreground'], { env, detached: true, stdio: ['ignore', log.fd, log.fd] });
  await log.close();
  const pid = child.pid!;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  /* c8 ignore start -- for a daemon that never comes up or will not stop */
  const kill = async (): Promise<void> => {
    child.kill('SIGKILL');
    await exited;
    await run('fusermount', ['-uz', mnt]).catch(() => undefined);
  };
  /* c8 ignore stop */
  // Up when its control socket is there: the daemon makes it after the mount.
  const socket = path.join(stateDirFor(mnt, stateRoot), 'control.sock');
  for (const deadline = Date.now() + START_TIMEOUT_MS; ; await sleep(100)) {
    if (await access(socket).then(() => true, () => false)) break;
    /* c8 ignore start -- a daemon that dies or hangs at start: the soak cannot run */
    if (child.exitCode !== null || Date.now() > deadline) {
      await kill();
      throw new Error(`the daemon ${child.exitCode !== null ? `exited (${child.exitCode})` : `did not come up in ${START_TIMEOUT_MS / 1000} s`}; see ${path.join(path.dirname(mnt), 'daemon.log')}`);
    }
    /* c8 ignore stop */
  }
  return {
    pid,
    cli,
    async rssKiB() {
      const status = await readFile(`/proc/${pid}/status`, 'utf8');
      return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1]);
    },
    async fds() {
      return (await readdir(`/proc/${pid}/fd`)).length;
    },
    async stop() {
      try {
        await cli('umount', mnt);
        await exited;
      } catch {
        /* c8 ignore next -- only a daemon that does not answer its socket gets here */
        await kill();
      }
    },
  };
}
