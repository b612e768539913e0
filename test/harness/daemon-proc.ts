/**
 * A vbpffs daemon as a separate process (`vbpffs mount ... --foreground` from the transpiled build,
 * see build-js.ts), that a test can kill -9 and start again on the same state directory, and the
 * `vbpffs` command and coreutils run against its mount. Nothing here touches the mount from this
 * process: every look at it is a child process (find, cat, vbpffs).
 *
 * Children run outside tap's coverage tracking (env -u, as run-ts.ts does): their files are the
 * build's, not the sources, and a daemon killed with SIGKILL writes no coverage anyway.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { readFile } from 'node:fs/promises';

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface Running {
  readonly child: ChildProcess;
  readonly done: Promise<Exit>;
  /** What it has written to stderr so far (the last 64 KiB). */
  stderr(): string;
}

const UNSET = (): string[] =>
  ['NODE_OPTIONS', 'NODE_V8_COVERAGE', ...Object.keys(process.env).filter((k) => k.startsWith('_TAPJS_PROCESSINFO'))].flatMap((k) => ['-u', k]);

/** Starts a command (env(1) execs it, so the pid is the command's own). */
export function start(cmd: string, args: string[], env: Record<string, string> = {}): Running {
  const child = spawn('env', [...UNSET(), ...Object.entries(env).map(([k, v]) => `${k}=${v}`), cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-64 * 1024)));
  const done = new Promise<Exit>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { child, done, stderr: () => stderr };
}

/** Whether dir is a mount point now (fs/daemon.ts's test, without loading the daemon here). */
async function isMountPoint(dir: string): Promise<boolean> {
  return (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').some((l) => l.split(' ')[4] === dir);
}

/**
 * Daemons still running. A test process that ends without its teardown (a timeout) kills them on
 * its way out, or they would hold their mounts for good (auto_unmount then drops them): at exit,
 * or when tap's runner signals a timeout (SIGALRM, before its SIGKILL; their pipes keep a test
 * process that timed out inside from exiting until then).
 */
const live = new Set<ChildProcess>();
const killLive = (): void => {
  for (const c of live) c.kill('SIGKILL');
};
process.once('exit', killLive);
process.on('SIGALRM', killLive);

export class DaemonProc {
  readonly build: string;
  readonly mnt: string;
  readonly root: string;
  readonly state: string;
  #daemon: Running | null = null;
  /** What the daemons printed, for a failure's report. */
  log = '';

  constructor(build: string, opts: { mnt: string; root: string; state: string }) {
    this.build = build;
    this.mnt = opts.mnt;
    this.root = opts.root;
    this.state = opts.state;
  }

  /** The running daemon's stderr so far (its DEBUG log). */
  stderr(): string {
    return this.#daemon?.stderr() ?? '';
  }

  /** Starts the daemon and resolves with what it printed once it is mounted (or rejects with why not). */
  async up(): Promise<string> {
    const d = this.#run(['mount', this.mnt, '--sim', 'demo', '--state', this.state, '--foreground'], { DEBUG: 'vbpffs:*' });
    this.#daemon = d;
    live.add(d.child);
    void d.done.then(() => live.delete(d.child));
    let out = '';
    d.child.stdout!.on('data', (s: string) => (out += s));
    const exited = d.done.then((e) => e);
    for (;;) {
      if (/^vbpffs mounted at .*\n(?:warning: .*\n)*/m.test(out) && (await isMountPoint(this.mnt))) {
        await sleep(20); // the warning lines follow the first in the same tick; let them land
        return out;
      }
      const e = await Promise.race([exited, sleep(25).then(() => null)]);
      if (e !== null) {
        this.log += e.stdout + e.stderr;
        throw new Error(`the daemon exited (${e.code ?? e.signal}) before it was mounted:\n${e.stderr.slice(-4000)}`);
      }
    }
  }

  /** kill -9, then waits until the process is gone and the kernel has dropped the mount. */
  async kill(): Promise<Exit> {
    const d = this.#daemon!;
    this.#daemon = null;
    d.child.kill('SIGKILL');
    const e = await d.done;
    this.log += e.stdout + e.stderr;
    for (let i = 0; i < 200 && (await isMountPoint(this.mnt)); i++) await sleep(25);
    return e;
  }

  /** Stops a daemon still running (teardown): SIGTERM, then SIGKILL if it does not go. */
  async down(): Promise<void> {
    const d = this.#daemon;
    this.#daemon = null;
    if (d !== null) {
      d.child.kill('SIGTERM');
      if ((await Promise.race([d.done, sleep(5000).then(() => null)])) === null) d.child.kill('SIGKILL');
      this.log += (await d.done).stderr;
    }
    if (await isMountPoint(this.mnt)) await start('fusermount', ['-uz', this.mnt]).done;
  }

  /** `vbpffs ARGS` as its own process. */
  cli(...args: string[]): Running {
    return this.#run(args, {});
  }

  #run(args: string[], env: Record<string, string>): Running {
    return start(process.execPath, [path.join(this.build, 'dist', 'fs', 'cli.js'), ...args], { VBPFFS_STATE_ROOT: this.root, ...env });
  }
}
