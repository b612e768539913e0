/**
 * This checkout as another user can reach it, for tests that run our code as uid 65534. A clone may
 * sit under a directory others cannot enter (/root is 0700, and CI may clone there), where such a
 * child cannot even load its TypeScript loader. The checkout is bind-mounted on a directory under a
 * fresh 0755 temporary one: the bind's own directory is the checkout's (0755), and no directory
 * above it is private. It is bound whether or not the checkout is reachable already, so the path
 * the tests take is the same on every machine. Needs root, as the tests that switch users do.
 */
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = path.resolve(__dirname, '..', '..');

export interface ReachableCheckout {
  /** Where the checkout is bound. */
  root: string;
  /** `p`, a path in this checkout, at the bind. */
  at(p: string): string;
  /** This process's loader arguments (node's execArgv), pointed at the bind. */
  execArgv(args: readonly string[]): string[];
}

export async function reachableCheckout(t: { teardown(fn: () => Promise<void>): void }): Promise<ReachableCheckout> {
  const dir = mkdtempSync(path.join(tmpdir(), 'vbpffs-reach-'));
  chmodSync(dir, 0o755);
  const root = path.join(dir, 'checkout');
  mkdirSync(root);
  await run('mount', ['--bind', ROOT, root]);
  // rmdir, never a recursive removal: should the bind outlive its umount, it fails rather than go
  // through into the checkout. Read-only, since the other user only reads.
  t.teardown(async () => {
    await run('umount', [root]).catch(() => run('umount', ['-l', root]));
    rmdirSync(root);
    rmdirSync(dir);
  });
  await run('mount', ['-o', 'remount,bind,ro', root]);
  const at = (p: string): string => {
    const rel = path.relative(ROOT, p);
    if (rel.startsWith('..') || path.isAbsolute(rel)) throw new Error(`${p} is not in the checkout ${ROOT}`);
    return path.join(root, rel);
  };
  // The loaders are named as file: URLs or paths; only those in the checkout move.
  const execArgv = (args: readonly string[]): string[] => args.map((a) => a.split(`${ROOT}/`).join(`${root}/`));
  return { root, at, execArgv };
}
