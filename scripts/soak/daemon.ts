/**
 * The daemon under soak, as users run it: `vbpffs mount` starts it in the background (its own
 * process, so its memory can be read from /proc), `vbpffs iter pin` pins views, `vbpffs umount`
 * stops it. Its state lives under a temporary root (VBPFFS_STATE_ROOT), not /run/vbpffs.
 */
import { execFile } from 'node:child_process';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { readMountinfo } from '../../tags/host/mountinfo';

const run = promisify(execFile);

/** The CLI next to this file: fs/cli.ts from the sources (under a TypeScript loader), fs/cli.js from dist/. */
const CLI = path.join(__dirname, '..', '..', 'fs', `cli${path.extname(__filename)}`);

export interface SoakDaemon {
  readonly pid: number;
  /** Runs a vbpffs command against this daemon; its stdout. */
  cli(...args: string[]): Promise<string>;
  /** The daemon's resident set (VmRSS), KiB; and its open file descriptors. */
  rssKiB(): Promise<number>;
  fds(): Promise<number>;
  /** `vbpffs umount`; if that fails, SIGKILL and a lazy unmount. Resolves once the mount is gone. */
  stop(): Promise<void>;
}

export async function isMounted(dir: string): Promise<boolean> {
  return (await readMountinfo()).some((m) => m.mountPoint === dir);
}

export async function startSoakDaemon(mnt: string, stateRoot: string): Promise<SoakDaemon> {
  const env = { ...process.env, VBPFFS_STATE_ROOT: stateRoot };
  const cli = async (...args: string[]): Promise<string> => (await run(process.execPath, [...process.execArgv, CLI, ...args], { env, encoding: 'utf8' })).stdout;
  const up = await cli('mount', mnt);
  const pid = Number(/\(pid (\d+),/.exec(up)?.[1]);
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
      } catch {
        /* c8 ignore start -- only a daemon that does not answer its socket gets here */
        process.kill(pid, 'SIGKILL');
        await run('fusermount', ['-uz', mnt]).catch(() => undefined);
        /* c8 ignore stop */
      }
    },
  };
}
