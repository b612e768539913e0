/**
 * Fault injection, the host's cgroup2 tracking losing events: the daemon runs in a user namespace
 * whose inotify watch limit is 1 (/proc/sys/user/max_inotify_watches), so the kernel itself refuses
 * every watch but the cgroup2 root's (ENOSPC) and never reports what happens below. Cgroups made and
 * removed there are missed for real; a real `find` through the mount shows the mirror wrong, and a
 * reconcile (`vbpffs cgroup reconcile`, or the periodic walk `--reconcile-interval` sets) repairs it
 * to equal `find` of the real cgroup tree.
 *
 * The daemon's mount lives in its own mount namespace (FUSE may be mounted in a user namespace only
 * there); this test and its readers reach it through /proc/PID/root, the daemon's view of the tree.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { controlCall } from '../fs/control/client';
import { stateDirFor } from '../fs/control/registry';
import { cgroupSkipReason, makeCgroupTree, type CgroupTree } from './harness/cgroup-tree';
import { fuseSkipReason } from './harness/mount';

const run = promisify(execFile);
t.setTimeout(180_000);
const CLI = path.join(__dirname, '..', 'fs', 'cli.ts');
const execArgv = process.execArgv.filter((a) => !a.includes('processinfo'));

const VIEW = `import { SEC, bpf_seq_printf, vbpffs_cgroup_name } from 'vbpffs/bpf';
export const view = SEC('cgroup_view', (ctx) => {
  bpf_seq_printf(ctx.meta.seq, '%s\\n', vbpffs_cgroup_name(ctx.cgroup));
  return 0;
});`;

function userNsSkip(): string | false {
  try {
    execFileSync('unshare', ['-U', '-r', '-m', 'true'], { stdio: 'ignore' });
    return false;
  } catch (e) {
    return `cannot make a user and mount namespace (unshare -U -r -m): ${(e as Error).message}`;
  }
}

async function until(what: string, cond: () => Promise<boolean>, ms = 30_000): Promise<void> {
  for (const deadline = Date.now() + ms; !(await cond()); await sleep(50)) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
  }
}

/** The directories below dir, relative and sorted: `find DIR -mindepth 1 -type d` run for real. */
async function dirs(dir: string): Promise<string[]> {
  const { stdout } = await run('find', [dir, '-mindepth', '1', '-type', 'd', '-printf', '%P\\n']);
  return stdout.split('\n').filter(Boolean).sort();
}

interface Daemon {
  child: ChildProcess;
  /** The mount point as the daemon sees it (for the CLI, which names paths in the mount). */
  mnt: string;
  /** The same directory reached from here: /proc/PID/root/MNT. */
  seen: string;
  cli(...args: string[]): Promise<string>;
  /** A control request to the daemon, as the CLI sends it (without the CLI's start-up). */
  control<T>(method: string, ...args: unknown[]): Promise<T>;
}

/** Starts `vbpffs mount --foreground` in a new user and mount namespace allowing one inotify watch. */
async function startLimited(t: { teardown(fn: () => void | Promise<void>): void }, base: string, name: string, reconcileSeconds: number): Promise<Daemon> {
  const mnt = path.join(base, name);
  const stateRoot = path.join(base, `state-${name}`);
  const env = { ...process.env, VBPFFS_STATE_ROOT: stateRoot };
  const child = spawn(
    'unshare',
    [
      '-U', '-r', '-m', '--propagation', 'private',
      'sh', '-c', 'echo 1 > /proc/sys/user/max_inotify_watches && exec "$@"', 'sh',
      process.execPath, ...execArgv, CLI, 'mount', mnt, '--foreground', '--state', stateDirFor(mnt, stateRoot), '--reconcile-interval', String(reconcileSeconds),
    ],
    { env, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  t.teardown(async () => {
    if (child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
  });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const first = await lines.next();
  if (typeof first.value !== 'string' || !first.value.startsWith('vbpffs mounted at')) throw new Error(`the daemon did not start: ${String(first.value)}`);
  // Short commands run under this test's loader with its coverage tracking; the daemon without it.
  const cli = async (...args: string[]): Promise<string> => (await run(process.execPath, [...process.execArgv, CLI, ...args], { env, encoding: 'utf8' })).stdout;
  const socket = path.join(stateDirFor(mnt, stateRoot), 'control.sock');
  const control = <T>(method: string, ...args: unknown[]): Promise<T> => controlCall<T>(socket, method, args);
  return { child, mnt, seen: path.join(`/proc/${child.pid}/root`, mnt), cli, control };
}

t.test('lost cgroup events: the mirror is wrong until a reconcile repairs it', async (t) => {
  const skip = (await fuseSkipReason()) || (await cgroupSkipReason()) || userNsSkip();
  t.test('(a daemon allowed one inotify watch, real cgroups)', { skip }, async (t) => {
    const base = mkdtempSync(path.join(tmpdir(), 'vbpffs-lost-'));
    const view = path.join(base, 'view.ts');
    writeFileSync(view, VIEW);

    /** Makes the tree, starts the daemon over it, pins the view at its root, and waits for the mirror. */
    const setUp = async (label: string, reconcileSeconds: number): Promise<{ tree: CgroupTree; d: Daemon; mirror: () => Promise<string[]> }> => {
      // Made before the daemon starts, so its first walk finds them whole.
      const tree = await makeCgroupTree(t, label);
      tree.mkdirp('keep');
      tree.mkdirp('gone', 'inner');
      const d = await startLimited(t, base, label, reconcileSeconds);
      await d.control('iterPin', view, '/view', {});
      const mirror = (): Promise<string[]> => dirs(path.join(d.seen, tree.cgroup));
      await until('the mirror of the test tree', async () => (await mirror().catch(() => [])).length === 3);
      return { tree, d, mirror };
    };

    /** Changes below the test cgroup, where no watch is, then one where the root's watch sees it. */
    const loseEvents = async (tree: CgroupTree, d: Daemon, label: string): Promise<void> => {
      tree.mkdirp('new');
      tree.mkdirp('keep', 'child');
      execFileSync('rmdir', [tree.hostPath('gone', 'inner'), tree.hostPath('gone')]);
      const seen = await makeCgroupTree(t, `${label}-seen`);
      await until('a cgroup made where a watch is to be mirrored', async () => (await run('ls', [d.seen])).stdout.split('\n').includes(seen.cgroup.slice(1)));
    };

    // Both daemons start at once: each is a process under the TypeScript loader, slow to start.
    const [manual, periodic] = await Promise.all([setUp('lost', 0), setUp('lost-walk', 0.3)]);

    t.test('vbpffs cgroup reconcile repairs what was missed', async (t) => {
      const { tree, d, mirror } = manual;
      t.same(await mirror(), ['gone', 'gone/inner', 'keep'], 'the mirror as the daemon loaded it');
      await loseEvents(tree, d, 'lost');
      t.same(await mirror(), ['gone', 'gone/inner', 'keep'], 'a later change the root\'s watch reported is mirrored, but none of those below it: the mirror is wrong');
      t.equal(await run('cat', [path.join(d.seen, tree.cgroup, 'gone', 'inner', 'view')]).then((r) => r.stdout), 'inner\n', 'and its stale directories still read their removed cgroups, which vbpffs believes live');

      // The walk repairs the whole host tree: other tests' cgroups below unwatched directories too.
      const said = /^reconciled: (\d+) cgroups added, (\d+) removed\n$/.exec(await d.cli('cgroup', 'reconcile', 'mount', d.mnt));
      t.ok(said !== null && Number(said[1]) >= 2 && Number(said[2]) >= 2, `vbpffs cgroup reconcile says what it repaired: ${said?.[0]}`);
      t.same(await mirror(), await dirs(tree.dir), 'after the reconcile the mirror is find of the real cgroup tree');
      t.same(await mirror(), ['keep', 'keep/child', 'new']);
    });

    t.test('the periodic walk (--reconcile-interval) repairs it on its own', async (t) => {
      const { tree, d, mirror } = periodic;
      await loseEvents(tree, d, 'lost-walk');
      const real = await dirs(tree.dir);
      // find may race the walk removing a directory it is about to enter: that look is retried. The
      // walk's period stretches to 200 times its last walk of the whole host tree, which on a loaded
      // machine can be tens of seconds: hence the long wait.
      await until('the periodic walk to repair the mirror', async () => JSON.stringify(await mirror().catch(() => null)) === JSON.stringify(real), 90_000);
      t.same(await mirror(), ['keep', 'keep/child', 'new'], 'the mirror is find of the real cgroup tree');
    });
  });
});
