/**
 * A real vbpffs mount for a test: the daemon started in this process (its engine on a worker thread,
 * FUSE on this one) on a temporary mount point, with its state under a temporary root, unmounted and
 * removed at teardown. Tests read it with real processes (cat, ls, find, stat), never through the
 * daemon's own objects, and never with a synchronous call from this process: FUSE is answered on
 * this process's main thread, so a synchronous stat of the mount here would wait for itself forever
 * (the process hangs in D state until the FUSE connection is aborted).
 *
 * Tests ask fuseSkipReason() first and pass it as tap's `skip`, so a host without FUSE says why.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { access, constants } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { startDaemon, type Daemon } from '../../fs/daemon';
import { stateDirFor } from '../../fs/control/registry';

const run = promisify(execFile);

/** Why FUSE mount tests cannot run here, or false when they can. */
export async function fuseSkipReason(): Promise<string | false> {
  if (!existsSync('/dev/fuse')) return 'no /dev/fuse';
  try {
    await access('/dev/fuse', constants.R_OK | constants.W_OK);
  } catch {
    return 'no permission to open /dev/fuse';
  }
  try {
    await run('fusermount', ['-V']);
  } catch {
    return 'fusermount is not installed (Debian: apt-get install fuse)';
  }
  try {
    require('fuse-native');
  } catch (e) {
    return `fuse-native does not load (Debian: apt-get install libfuse2): ${(e as Error).message}`;
  }
  return false;
}

interface Teardown {
  teardown(fn: () => void | Promise<void>): void;
}

export interface TestMount {
  readonly mnt: string;
  readonly daemon: Daemon;
  /** Where registries live for this test (VBPFFS_STATE_ROOT for CLI children). */
  readonly stateRoot: string;
  /** A path in the mount. */
  p(...parts: string[]): string;
  /** Runs a real command; its stdout, or rejects with its stderr and exit code. */
  sh(cmd: string, ...args: string[]): Promise<string>;
}

export async function mountVbpffs(t: Teardown, opts: { sim?: string; cgroupRoot?: string; mirror?: 'auto' | 'manual'; allowOther?: boolean } = {}): Promise<TestMount> {
  const base = mkdtempSync(path.join(tmpdir(), 'vbpffs-mnt-'));
  const mnt = path.join(base, 'mnt');
  const stateRoot = path.join(base, 'state');
  const daemon = await startDaemon({ mountPoint: mnt, state: stateDirFor(mnt, stateRoot), stateRoot, ...opts });
  t.teardown(() => daemon.stop());
  return {
    mnt,
    daemon,
    stateRoot,
    p: (...parts) => path.join(mnt, ...parts),
    sh: async (cmd, ...args) => (await run(cmd, args, { encoding: 'utf8', env: { ...process.env, VBPFFS_STATE_ROOT: stateRoot } })).stdout,
  };
}
