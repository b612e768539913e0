/**
 * A real cgroup tree for a test, under a test-owned directory of the host's cgroup2 mount
 * (<mount>/vbpffs-test-<pid>-<random>). It is removed when the test ends, pass or fail: processes the
 * test put in it go back to the root cgroup, then the directories go deepest first, retrying EBUSY
 * while the kernel finishes moving tasks out.
 *
 * Tests that need it ask cgroupSkipReason() first and pass the answer as tap's `skip` option, so a host
 * without cgroup2 or without permission reports why instead of failing.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs, { promises as fsp } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { findCgroup2Mount } from '../../tags/host/mountinfo';

const EBUSY_RETRY_MS = 3000;

interface Teardown {
  teardown(fn: () => void | Promise<void>): void;
}

/** Why real-cgroup tests cannot run here, or false when they can. */
export async function cgroupSkipReason(): Promise<string | false> {
  let mount: string;
  try {
    mount = (await findCgroup2Mount()).mountPoint;
  } catch (e) {
    return `no cgroup2 mount: ${(e as Error).message}`;
  }
  try {
    await fsp.access(mount, fs.constants.W_OK);
    await fsp.access(path.join(mount, 'cgroup.procs'), fs.constants.W_OK);
  } catch (e) {
    return `no permission to make cgroups in ${mount}: ${(e as Error).message}`;
  }
  return false;
}

export interface CgroupTree {
  /** The cgroup2 mount point. */
  readonly mount: string;
  /** The test-owned cgroup as a path below the mount ("/vbpffs-test-..."). */
  readonly cgroup: string;
  /** The test-owned cgroup's directory on the host. */
  readonly dir: string;
  /** A cgroup path below the test-owned one: cg('a', 'b') is "/vbpffs-test-.../a/b". */
  cg(...parts: string[]): string;
  /** The host directory of cg(...parts). */
  hostPath(...parts: string[]): string;
  /** mkdir -p of a cgroup below the test-owned one; returns its host directory. */
  mkdirp(...parts: string[]): string;
  /** Starts a sleeping process in cg(...parts); it is killed at teardown. */
  spawnIn(...parts: string[]): Promise<ChildProcess>;
  /** Starts a process that burns a CPU (a shell busy loop) in cg(...parts); it is killed at teardown. */
  spawnBurnerIn(...parts: string[]): Promise<ChildProcess>;
}

/** Makes the test-owned cgroup and registers its removal with t.teardown. */
export async function makeCgroupTree(t: Teardown, label = 'test'): Promise<CgroupTree> {
  const mount = (await findCgroup2Mount()).mountPoint;
  const cgroup = `/vbpffs-${label}-${process.pid}-${randomBytes(4).toString('hex')}`;
  const dir = path.join(mount, cgroup);
  const children: ChildProcess[] = [];
  await fsp.mkdir(dir);
  t.teardown(async () => {
    for (const c of children) c.kill('SIGKILL');
    await removeTree(mount, dir);
  });

  const hostPath = (...parts: string[]): string => path.join(dir, ...parts);
  return {
    mount,
    cgroup,
    dir,
    cg: (...parts) => path.posix.join(cgroup, ...parts),
    hostPath,
    mkdirp(...parts) {
      const p = hostPath(...parts);
      fs.mkdirSync(p, { recursive: true });
      return p;
    },
    spawnIn(...parts) {
      return spawnMoved(children, 'sleep', ['600'], hostPath(...parts));
    },
    spawnBurnerIn(...parts) {
      return spawnMoved(children, 'sh', ['-c', 'while :; do :; done'], hostPath(...parts));
    },
  };
}

/** Starts a process, records it for teardown, and moves it into the cgroup at dir. */
async function spawnMoved(children: ChildProcess[], cmd: string, args: string[], dir: string): Promise<ChildProcess> {
  const child = spawn(cmd, args, { stdio: 'ignore' });
  children.push(child);
  await new Promise<void>((resolve, reject) => child.once('spawn', resolve).once('error', reject));
  await fsp.writeFile(path.join(dir, 'cgroup.procs'), `${child.pid}\n`);
  return child;
}

/** Empties and removes a cgroup directory tree, deepest first. */
export async function removeTree(mount: string, dir: string): Promise<void> {
  if (!fs.existsSync(dir)) return;
  for (const d of subdirsDeepestFirst(dir)) {
    await evacuate(mount, d);
    await rmdirRetrying(d);
  }
}

function subdirsDeepestFirst(dir: string): string[] {
  const out: string[] = [];
  const visit = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) visit(path.join(d, e.name));
    out.push(d);
  };
  visit(dir);
  return out;
}

/** Moves every process of a cgroup to the root cgroup; one that exits meanwhile is no error. */
async function evacuate(mount: string, dir: string): Promise<void> {
  const procs = (await fsp.readFile(path.join(dir, 'cgroup.procs'), 'utf8')).split('\n').filter(Boolean);
  for (const pid of procs) {
    try {
      await fsp.writeFile(path.join(mount, 'cgroup.procs'), `${pid}\n`);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
    }
  }
}

async function rmdirRetrying(dir: string): Promise<void> {
  const deadline = Date.now() + EBUSY_RETRY_MS;
  for (;;) {
    try {
      return await fsp.rmdir(dir);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY' || Date.now() > deadline) throw e;
      await sleep(20);
    }
  }
}
