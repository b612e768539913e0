/**
 * A small tmpfs for tests of a full disk: a real ENOSPC from the kernel, at a size the test picks.
 * Mounting needs root; tmpfsSkipReason() says why it cannot be done here, for tap's `skip`.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const tmp = (): string => mkdtempSync(path.join(tmpdir(), 'vbpffs-tmpfs-'));

/** Why a small tmpfs cannot be mounted here (root and mount(8) needed), or false. */
export async function tmpfsSkipReason(): Promise<string | false> {
  if (process.getuid?.() !== 0) return 'mounting a tmpfs needs root';
  const probe = tmp();
  try {
    await run('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', probe]);
    await run('umount', [probe]);
    return false;
  } catch (e) {
    return `cannot mount a tmpfs: ${(e as Error).message}`;
  }
}

/** A tmpfs of `size` (mount's size=, e.g. '64k') on a new directory, unmounted at teardown. */
export async function smallTmpfs(t: { teardown(fn: () => Promise<void>): void }, size: string): Promise<string> {
  const dir = tmp();
  await run('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
  t.teardown(async () => void (await run('umount', ['-l', dir])));
  return dir;
}
