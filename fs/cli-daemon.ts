/**
 * The CLI commands that start, stop and find daemons: `vbpffs mount`, `vbpffs umount`, `vbpffs
 * status`, and how object commands find the daemon of a path (the mount it is under).
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BpfError, ERRNO, bpfError, type ErrnoName } from '../uapi';
import { controlCall } from './control/client';
import { DEFAULT_STATE_ROOT, isAlive, listMounts, readInfo, secureStateDir, stateDirFor, type MountInfo } from './control/registry';
import { refusal } from './control/lock';
import { startDaemon } from './daemon';
import type { EngineStatus } from './engine/engine';
import { fuseBinding, type FuseBinding } from './fuse/host';

export interface MountArgs {
  mountPoint: string;
  cgroupRoot?: string;
  sim?: string;
  mirror?: 'auto' | 'manual';
  state?: string;
  /** --reconcile-interval, in ms. */
  reconcileIntervalMs?: number;
  /** --timeout: how long a background mount waits for its daemon to answer, ms. */
  timeoutMs?: number;
  foreground: boolean;
  allowOther: boolean;
  /** --fuse: the FUSE binding (else VBPFFS_FUSE, else fuse-native). */
  fuse?: FuseBinding;
}

const MOUNT_FLAGS = new Set(['--cgroup-root', '--sim', '--mirror', '--state', '--reconcile-interval', '--timeout', '--fuse']);
const MOUNT_SWITCHES = new Set(['--foreground', '--allow-other']);

/** A number of seconds, 0 or more (fractions allowed). */
function seconds(flag: string, v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n < 0) throw bpfError('EINVAL', `${flag} takes seconds (0 or more), not '${v}'`);
  return n;
}

export function parseMountArgs(args: string[]): MountArgs {
  const out: Partial<MountArgs> & { foreground: boolean; allowOther: boolean } = { foreground: false, allowOther: false };
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (MOUNT_SWITCHES.has(a)) {
      if (a === '--foreground') out.foreground = true;
      else out.allowOther = true;
    } else if (MOUNT_FLAGS.has(a)) {
      const v = args[++i];
      if (v === undefined) throw bpfError('EINVAL', `${a} needs a value`);
      if (a === '--cgroup-root') out.cgroupRoot = path.resolve(v);
      else if (a === '--sim') out.sim = v;
      else if (a === '--state') out.state = path.resolve(v);
      else if (a === '--reconcile-interval') out.reconcileIntervalMs = seconds(a, v) * 1000;
      else if (a === '--timeout') out.timeoutMs = seconds(a, v) * 1000;
      else if (a === '--fuse') out.fuse = fuseBinding(v);
      else if (v === 'auto' || v === 'manual') out.mirror = v;
      else throw bpfError('EINVAL', `--mirror is auto or manual, not '${v}'`);
    } else if (a.startsWith('-')) {
      throw bpfError('EINVAL', `unknown option '${a}' for mount (${[...MOUNT_FLAGS, ...MOUNT_SWITCHES].join(', ')})`);
    } else if (out.mountPoint === undefined) {
      out.mountPoint = path.resolve(a);
    } else {
      throw bpfError('EINVAL', `unexpected argument '${a}'`);
    }
  }
  if (out.mountPoint === undefined) throw bpfError('EINVAL', 'usage: vbpffs mount MOUNTPOINT [--cgroup-root DIR | --sim SPEC] [--mirror auto|manual] [--state DIR] [--reconcile-interval SECONDS] [--timeout SECONDS] [--fuse fuse-native|libfuse3] [--foreground]');
  if (out.cgroupRoot !== undefined && out.sim !== undefined) throw bpfError('EINVAL', '--cgroup-root and --sim exclude each other');
  return out as MountArgs;
}

/** Runs the daemon in this process until it stops (a signal, or `vbpffs umount`). */
export async function mountForeground(a: MountArgs, say: (line: string) => void): Promise<void> {
  const d = await startDaemon({ mountPoint: a.mountPoint, cgroupRoot: a.cgroupRoot, sim: a.sim, mirror: a.mirror, reconcileIntervalMs: a.reconcileIntervalMs, state: a.state, allowOther: a.allowOther, fuse: a.fuse });
  mounted(say, `vbpffs mounted at ${d.mountPoint} (pid ${process.pid}, control ${d.socket})`, (await d.engine.status()).journal);
  await d.stopped;
}

/**
 * Starts the daemon in the background (the same command with --foreground, detached, its output in
 * the state directory's daemon.log) and returns once it answers on its control socket.
 */
export async function mountBackground(a: MountArgs, argv: string[], say: (line: string) => void): Promise<void> {
  const stateDir = a.state ?? stateDirFor(a.mountPoint);
  // The log is opened here, so the state directory is checked here too (symlinks, owner, mode).
  await secureStateDir(stateDir);
  // Refused here, before a child is started: the live daemon would answer on the same socket. Two
  // mounts started at once both get past this; the daemon's state lock refuses the second.
  const there = await readInfo(stateDir);
  const holder = there !== undefined && (await isAlive(there.pid)) ? there : (await listMounts(DEFAULT_STATE_ROOT)).find((m) => m.alive && m.mountPoint === a.mountPoint);
  if (holder !== undefined) throw bpfError('EBUSY', refusal(stateDir, a.mountPoint, holder));
  const log = await open(path.join(stateDir, 'daemon.log'), constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
  const script = process.argv[1]!;
  const child = spawn(process.execPath, [...process.execArgv, script, ...argv, '--foreground'], {
    detached: true,
    stdio: ['ignore', log.fd, log.fd],
  });
  child.unref();
  await log.close();
  const exited = new Promise<number>((resolve) => child.once('exit', (code) => resolve(code ?? 1)));
  const socket = path.join(stateDir, 'control.sock');
  const timeoutMs = a.timeoutMs ?? 30_000;
  let failure: unknown;
  try {
    for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; ) {
      const done = await Promise.race([exited, sleep(100).then(() => undefined)]);
      if (done !== undefined) throw await daemonFailure(path.join(stateDir, 'daemon.log'), done);
      try {
        const st = await controlCall<{ pid: number; journal: EngineStatus['journal'] }>(socket, 'status', [], 2000);
        if (st.pid !== child.pid) continue; // not ours (yet): a daemon that was just stopping
        mounted(say, `vbpffs mounted at ${a.mountPoint} (pid ${child.pid}, log ${path.join(stateDir, 'daemon.log')})`, st.journal);
        return;
      } catch (e) {
        // ENOENT: not listening yet. ETIMEDOUT: listening, but too busy starting to answer in 2 s on a
        // loaded host; the deadline, not one slow answer, decides that the daemon failed.
        if (!(e instanceof BpfError) || (e.code !== 'ENOENT' && e.code !== 'ETIMEDOUT')) throw e;
      }
    }
    failure = bpfError('ETIMEDOUT', `the daemon did not come up in ${timeoutMs / 1000} s (--timeout), so it was stopped; see ${path.join(stateDir, 'daemon.log')}`);
  } catch (e) {
    failure = e;
  }
  // The user is told the mount failed, so a daemon that came up later would be a mount nobody knows
  // of: it is stopped (SIGTERM unmounts one that got that far; auto_unmount covers the SIGKILL).
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(killer);
  }
  throw failure;
}

/** Why a background daemon exited: the `Error: ... (CODE)` line it printed last, as its BpfError. */
async function daemonFailure(log: string, status: number): Promise<BpfError> {
  const text = await readFile(log, 'utf8').catch(() => '');
  const last = text.split('\n').reverse().find((l) => l.startsWith('Error: '));
  const m = last === undefined ? null : /^Error: (.*) \(([A-Z0-9]+)\)$/.exec(last);
  if (m !== null && m[2]! in ERRNO) return new BpfError(m[2] as ErrnoName, m[1]!);
  return bpfError('EIO', `the daemon exited (${status}); see ${log}`);
}

/** `vbpffs umount MOUNTPOINT`: asks the daemon to unmount and stop, and waits until it has. */
export async function umount(mountPoint: string, say: (line: string) => void): Promise<void> {
  const info = await mountOf(path.resolve(mountPoint), true);
  await controlCall(info.socket, 'shutdown');
  for (const deadline = Date.now() + 10_000; Date.now() < deadline; await sleep(50)) {
    if (!(await listMounts(DEFAULT_STATE_ROOT)).some((m) => m.mountPoint === info.mountPoint && m.pid === info.pid)) {
      say(`vbpffs unmounted ${info.mountPoint}`);
      return;
    }
  }
  throw bpfError('ETIMEDOUT', `${info.mountPoint}: the daemon did not stop in 10 s`);
}

/** The live mount a path is in (the longest mount point that is a prefix of it). */
export async function mountOf(p: string, exact = false): Promise<MountInfo> {
  const mounts = (await listMounts(DEFAULT_STATE_ROOT)).filter((m) => m.alive);
  const hit = mounts
    .filter((m) => (exact ? p === m.mountPoint : p === m.mountPoint || p.startsWith(`${m.mountPoint}/`)))
    .sort((a, b) => b.mountPoint.length - a.mountPoint.length)[0];
  if (hit === undefined) throw bpfError('ENOENT', `${p} is not ${exact ? 'a vbpffs mount point' : 'in a vbpffs mount'} (vbpffs status lists them)`);
  return hit;
}

/** A path inside a mount, as the daemon names it ('/' is the mount's root). */
export function insideMount(info: MountInfo, p: string): string {
  const rel = path.relative(info.mountPoint, p);
  if (rel.startsWith('..') || path.isAbsolute(rel)) throw bpfError('EINVAL', `${p} is outside ${info.mountPoint}`);
  return `/${rel}`.replace(/\/$/, '') || '/';
}

export async function status(): Promise<unknown[]> {
  const out: unknown[] = [];
  for (const m of await listMounts(DEFAULT_STATE_ROOT)) {
    if (!m.alive) {
      out.push({ mountPoint: m.mountPoint, pid: m.pid, state: 'dead (its next mount recovers it)' });
      continue;
    }
    try {
      out.push({ state: 'running', ...(await controlCall<object>(m.socket, 'status', [], 5000)) });
    } catch (e) {
      out.push({ mountPoint: m.mountPoint, pid: m.pid, state: `not answering: ${(e as Error).message}` });
    }
  }
  return out;
}

/** The mount's first line, and what went wrong restoring its journal, so whoever mounts sees it. */
function mounted(say: (line: string) => void, line: string, journal: EngineStatus['journal']): void {
  say(line);
  for (const l of journalReport(journal)) say(`warning: ${l}`);
}

/** What a start restored from its journal, when anything in it went wrong: for status and mount. */
export function journalReport(j: EngineStatus['journal'] | undefined): string[] {
  if (!j || (j.damaged === undefined && j.failed.length === 0)) return [];
  const out = [`journal: ${j.records} record(s) replayed, ${j.failed.length} failed (${j.file})`];
  if (j.damaged !== undefined) out.push(`journal damaged: ${j.damaged}`);
  for (const f of j.failed) out.push(`journal replay failed: ${f}`);
  return out;
}
