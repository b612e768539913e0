/**
 * The daemon: one per mount. Its main thread answers FUSE and the control socket and only forwards;
 * the engine (cgroup source, Kernel, programs, the bpffs tree) runs on a worker thread. It unmounts
 * cleanly on SIGINT and SIGTERM, and a daemon killed outright leaves no dead mount (auto_unmount)
 * and a stale info file the next mount recovers from.
 */
import { execFile } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import createDebug from 'debug';
import { S_ISVTX, bpfError } from '../uapi';
import { EngineClient } from './engine/client';
import type { EngineOptions } from './engine/engine';
import { mountFuse, type FuseBinding, type FuseMount } from './fuse/host';
import { DEFAULT_STATE_ROOT, isAlive, listMounts, readInfo, registerMount, removeInfo, secureStateDir, stateDirFor, unregisterMount, type MountInfo } from './control/registry';
import { lockStateDir } from './control/lock';
import { startControlServer } from './control/server';

const debug = createDebug('vbpffs:fs');

export interface DaemonOptions extends EngineOptions {
  mountPoint: string;
  /** The directory for the control socket and the info file; default /run/vbpffs/<mount point>. */
  state?: string;
  /** The registry every command looks in (VBPFFS_STATE_ROOT, else /run/vbpffs). */
  stateRoot?: string;
  allowOther?: boolean;
  /** The FUSE binding (else VBPFFS_FUSE, else fuse-native). */
  fuse?: FuseBinding;
}

export interface Daemon {
  readonly mountPoint: string;
  readonly socket: string;
  readonly engine: EngineClient;
  /** Unmounts, stops the engine, removes the socket; resolves when all is down. */
  stop(): Promise<void>;
  /** Resolves when the daemon has stopped (by stop(), a signal or `vbpffs umount`). */
  readonly stopped: Promise<void>;
}

/** Whether `dir` is a mount point now (its line in /proc/self/mountinfo). */
export async function isMountPoint(dir: string): Promise<boolean> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  return info.split('\n').some((l) => unescape(l.split(' ')[4] ?? '') === dir);
}

/**
 * Refuses a mount point in use (by a live vbpffs, or anything else), and clears a stale vbpffs mount
 * whose daemon is gone (fusermount -uz), as a restart after kill -9 needs.
 */
async function claimMountPoint(mountPoint: string, stateDir: string, root: string): Promise<void> {
  // Under another state directory, a live daemon of this mount point is found in the registry.
  const other = (await listMounts(root)).find((m) => m.mountPoint === mountPoint && m.alive && m.stateDir !== stateDir);
  if (other !== undefined) throw bpfError('EBUSY', `${mountPoint} is already mounted by vbpffs (pid ${other.pid}); vbpffs umount ${mountPoint} first`);
  const info = await readInfo(stateDir);
  const alive = info !== undefined && info.pid !== process.pid && (await isAlive(info.pid));
  if (info !== undefined && alive) throw bpfError('EBUSY', `${mountPoint} is already mounted by vbpffs (pid ${info.pid}); vbpffs umount ${mountPoint} first`);
  if (await isMountPoint(mountPoint)) {
    let stale = false;
    try {
      await stat(mountPoint);
    } catch (e) {
      stale = (e as NodeJS.ErrnoException).code === 'ENOTCONN';
    }
    if (!stale && info === undefined) throw bpfError('EBUSY', `${mountPoint} is a mount point in use (not a vbpffs one): choose another directory`);
    debug('clearing the stale mount at %s', mountPoint);
    await promisify(execFile)('fusermount', ['-uz', mountPoint]).catch(() => undefined);
  }
  if (info !== undefined) await removeInfo(stateDir);
}

export async function startDaemon(opts: DaemonOptions): Promise<Daemon> {
  const mountPoint = path.resolve(opts.mountPoint);
  const root = opts.stateRoot ?? DEFAULT_STATE_ROOT;
  const stateDir = opts.state ?? stateDirFor(mountPoint, root);
  await secureStateDir(stateDir);
  // Everything below, the clean-up of a dead daemon's files included, is done by the lock's holder only.
  const lock = await lockStateDir(stateDir, { pid: process.pid, mountPoint });
  const failed = async (e: unknown): Promise<never> => {
    await lock.release();
    throw e;
  };
  await claimMountPoint(mountPoint, stateDir, root).catch(failed);
  // FUSE does not tell us who makes an entry, so whatever others made in bpffs's world-writable root
  // would be recorded as the daemon's (root's). Shared with --allow-other, the root is 01755 instead
  // (what `mount -t bpf -o mode=1755` gives): only root creates, and only root owns.
  const rootMode = opts.allowOther === true ? S_ISVTX | 0o755 : undefined;
  const engine = await EngineClient.start({ cgroupRoot: opts.cgroupRoot, sim: opts.sim, mirror: opts.mirror, reconcileIntervalMs: opts.reconcileIntervalMs, stateDir, mountPoint, rootMode }).catch(failed);
  let fuse: FuseMount;
  try {
    fuse = await mountFuse(mountPoint, engine, { allowOther: opts.allowOther, fuse: opts.fuse });
  } catch (e) {
    await engine.stop();
    return failed(e);
  }
  const socket = path.join(stateDir, 'control.sock');
  let resolveStopped!: () => void;
  const stopped = new Promise<void>((r) => (resolveStopped = r));
  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      server.close();
      await fuse.unmount().catch((e: unknown) => debug('unmount: %O', e));
      await engine.stop();
      await unregisterMount(info, root);
      await lock.release();
      process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
      resolveStopped();
    })());
  const onSignal = (): void => void stop();
  const info: MountInfo = { mountPoint, pid: process.pid, startedAt: new Date().toISOString(), socket, stateDir };
  await registerMount(info, root).catch(async (e: unknown) => {
    await fuse.unmount().catch(() => undefined);
    await engine.stop();
    return failed(e);
  });
  const server = await startControlServer(socket, async (method, args) => {
    if (method === 'shutdown') {
      setImmediate(onSignal);
      return { mountPoint };
    }
    if (method === 'status') return { mountPoint, pid: process.pid, ...(await engine.status()), slowCalls: engine.slowCalls };
    return engine.call(method as never, ...args);
  });
  process.on('SIGINT', onSignal).on('SIGTERM', onSignal);
  debug('mounted %s (state %s)', mountPoint, stateDir);
  return { mountPoint, socket, engine, stop, stopped };
}
