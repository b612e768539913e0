/**
 * The soak (issue 8): a real mount of the host's cgroup2 tree served by a daemon process, views
 * pinned at its root, and for SECONDS: READERS reader processes cat-ing every view of the churned
 * cgroups in a loop, cgroups made and removed under a soak-owned parent at RATE a second (a pool of
 * POOL kept), a view pinned and unpinned under that parent every PIN_EVERY seconds, and the daemon's
 * RSS sampled every second. Everything it made (cgroups, mount, temporary directory) is removed when
 * it ends, however it ends.
 *
 * It passes when no read failed with anything but ENOENT (a directory or file that vanished, as a
 * removed cgroup's or an unpinned view's does), no pin, unpin or cgroup operation failed, and (when
 * asked: a short run has no steady state to compare) the RSS at the end is at most 10% above the RSS
 * after the warm-up.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, mkdtemp, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { examplePath } from '../../progs/examples';
import { findCgroup2Mount } from '../../tags/host/mountinfo';
import { CgroupChurn, type ChurnCounts } from './churn';
import { isMounted, startSoakDaemon, type SoakDaemon } from './daemon';
import type { ReaderCounts, ReaderTarget } from './reader';

export interface SoakOptions {
  seconds: number;
  /** Cgroups made (and as many removed) per second. */
  rate: number;
  /** The churned cgroups kept alive at once. */
  pool: number;
  readers: number;
  pinEverySeconds: number;
  /** The RSS compared with the end's is the one this many seconds in. */
  warmupSeconds: number;
  /** Whether RSS growth fails the run (a run shorter than the warm-up has no steady state). */
  checkRss: boolean;
  /** Aborting ends the load early; clean-up still runs. */
  signal?: AbortSignal;
  log?: (line: string) => void;
}

export const DEFAULTS: Omit<SoakOptions, 'signal' | 'log'> = { seconds: 60, rate: 50, pool: 100, readers: 2, pinEverySeconds: 2, warmupSeconds: 10, checkRss: true };

/** The views pinned at the mount's root (every cgroup's directory inherits them), and the one toggled. */
const ROOT_VIEWS = ['procs', 'cpu', 'pressure'] as const;
const TOGGLED_VIEW = 'memory';

export interface SoakReport {
  seconds: number;
  reads: number;
  listings: number;
  /** Failed reads and listings by errno. */
  errors: Record<string, number>;
  /** The first failures other than ENOENT, whole. */
  samples: string[];
  churn: ChurnCounts;
  pins: { pinned: number; unpinned: number; errors: string[] };
  rss: { samplesKiB: number[]; warmKiB: number; endKiB: number; ratio: number };
  fds: { warm: number; end: number };
  cgroupsMirrored: number;
  interrupted: boolean;
  /** Where it ran: the soak-owned cgroup's directory and the mount point (both gone when it returns). */
  cgroup: string;
  mountPoint: string;
}

/** Why a soak failed; empty when it passed. */
export function failures(r: SoakReport, checkRss: boolean): string[] {
  const out: string[] = [];
  const bad = Object.entries(r.errors).filter(([k]) => k !== 'ENOENT');
  if (bad.length > 0) out.push(`read errors other than ENOENT: ${bad.map(([k, n]) => `${k} ${n}`).join(', ')}`);
  if (r.reads === 0) out.push('no read was made');
  if (r.pins.errors.length > 0) out.push(`pin/unpin failures: ${r.pins.errors.length}`);
  const churn = Object.entries(r.churn.errors);
  if (churn.length > 0) out.push(`cgroup mkdir/rmdir failures: ${churn.map(([k, n]) => `${k} ${n}`).join(', ')}`);
  if (checkRss && r.rss.ratio > 1.1) out.push(`RSS grew ${((r.rss.ratio - 1) * 100).toFixed(1)}% after the warm-up (at most 10%)`);
  if (r.interrupted) out.push('interrupted');
  return out;
}

export function formatReport(r: SoakReport, failed: string[]): string {
  const mib = (k: number): string => `${(k / 1024).toFixed(1)} MiB`;
  const errors = Object.entries(r.errors).map(([k, n]) => `${k} ${n}`).join(', ') || 'none';
  return [
    `soak: ${r.seconds.toFixed(1)} s${r.interrupted ? ' (interrupted)' : ''}`,
    `  reads        ${r.reads} cat (${(r.reads / r.seconds).toFixed(0)}/s), ${r.listings} listings`,
    `  errors       ${errors}`,
    ...r.samples.map((s) => `               ${s}`),
    `  cgroups      ${r.churn.created} made, ${r.churn.removed} removed; ${r.cgroupsMirrored} mirrored at the end`,
    `  pins         ${r.pins.pinned} pinned, ${r.pins.unpinned} unpinned${r.pins.errors.length ? `; failed: ${r.pins.errors.join('; ')}` : ''}`,
    `  daemon RSS   ${mib(r.rss.warmKiB)} after the warm-up, ${mib(r.rss.endKiB)} at the end: ratio ${r.rss.ratio.toFixed(3)} (min ${mib(Math.min(...r.rss.samplesKiB))}, max ${mib(Math.max(...r.rss.samplesKiB))})`,
    `  daemon fds   ${r.fds.warm} after the warm-up, ${r.fds.end} at the end`,
    failed.length === 0 ? 'PASS' : `FAIL: ${failed.join('; ')}`,
  ].join('\n');
}

interface Reader {
  child: ReturnType<typeof spawn>;
  /** Resolves when it has loaded and starts reading (or has ended). */
  ready: Promise<void>;
  /** Its counts, when it ends. */
  done: Promise<ReaderCounts>;
}

/** Starts a reader process for `seconds` of reading. */
function startReader(t: ReaderTarget, seconds: number): Reader {
  const file = path.join(__dirname, `reader${path.extname(__filename)}`);
  const child = spawn(process.execPath, [...process.execArgv, file, t.dir, t.hostDir, t.stable.join(','), String(seconds)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  let loaded!: () => void;
  const ready = new Promise<void>((resolve) => (loaded = resolve));
  child.stdout.setEncoding('utf8').on('data', (s: string) => {
    out += s;
    if (out.startsWith('ready\n')) loaded();
  });
  const done = new Promise<ReaderCounts>((resolve) =>
    child.on('close', (code, signal) => {
      loaded();
      try {
        resolve(JSON.parse(out.slice('ready\n'.length)) as ReaderCounts);
      } catch {
        /* c8 ignore next -- a reader that crashed: its death is the failure */
        resolve({ reads: 0, listings: 0, errors: { [`reader died (${signal ?? code})`]: 1 }, samples: [] });
      }
    }),
  );
  return { child, ready, done };
}

/** Waits for a path to exist (the mirror following a host mkdir); throws after `ms`. */
async function appears(p: string, ms: number): Promise<void> {
  for (const deadline = Date.now() + ms; ; await sleep(50)) {
    try {
      return await access(p);
    } catch (e) {
      /* c8 ignore next -- only when the mirror is slower than the pins (a loaded host) */
      if (Date.now() > deadline) throw e;
    }
  }
}

export async function runSoak(o: SoakOptions): Promise<SoakReport> {
  const log = o.log ?? ((): void => undefined);
  const cgroup2 = (await findCgroup2Mount()).mountPoint;
  const name = `vbpffs-soak-${process.pid}-${randomBytes(4).toString('hex')}`;
  const churn = new CgroupChurn(path.join(cgroup2, name));
  const base = await mkdtemp(path.join(tmpdir(), 'vbpffs-soak-'));
  const mnt = path.join(base, 'mnt');
  let daemon: SoakDaemon | undefined;
  const readers: Reader[] = [];
  try {
    await churn.start(o.pool);
    log(`cgroup2 at ${cgroup2}; ${o.pool} cgroups under ${name}; mounting ${mnt}`);
    daemon = await startSoakDaemon(mnt, path.join(base, 'state'));
    const d = daemon;
    await Promise.all(ROOT_VIEWS.map((v) => d.cli('iter', 'pin', examplePath(v), path.join(mnt, v))));
    const dir = path.join(mnt, name);
    await appears(path.join(dir, 'c0', ROOT_VIEWS[0]), 20_000);
    log(`daemon pid ${d.pid}; views ${ROOT_VIEWS.join(', ')} pinned; ${o.readers} readers, ${o.rate} cgroups/s for ${o.seconds} s`);

    const target: ReaderTarget = { dir, hostDir: churn.parent, stable: [...ROOT_VIEWS] };
    for (let i = 0; i < o.readers; i++) readers.push(startReader(target, o.seconds));
    await Promise.all(readers.map((r) => r.ready));
    const t0 = Date.now();
    const until = t0 + o.seconds * 1000;
    churn.run(o.rate);
    const pins = { pinned: 0, unpinned: 0, errors: [] as string[] };
    const pinning = (async () => {
      const pin = path.join(dir, TOGGLED_VIEW);
      for (let on = false; Date.now() + o.pinEverySeconds * 1000 < until && !o.signal?.aborted; on = !on) {
        await sleep(o.pinEverySeconds * 1000);
        try {
          if (on) await unlink(pin).then(() => pins.unpinned++);
          else await d.cli('iter', 'pin', examplePath(TOGGLED_VIEW), pin).then(() => pins.pinned++);
        } catch (e) {
          /* c8 ignore start -- a pin or an unpin that fails is what the report names */
          pins.errors.push((e as Error).message.trim());
        }
        /* c8 ignore stop */
      }
    })();

    const rss: number[] = [];
    const fds: number[] = [];
    while (Date.now() < until && !o.signal?.aborted) {
      await sleep(Math.min(1000, until - Date.now()));
      rss.push(await d.rssKiB());
      fds.push(await d.fds());
      if (rss.length % 10 === 0) log(`  ${rss.length} s: RSS ${(rss.at(-1)! / 1024).toFixed(1)} MiB, ${churn.counts.created} cgroups made`);
    }
    const interrupted = o.signal?.aborted === true;
    for (const r of readers) r.child.kill('SIGTERM');
    await churn.stop();
    await pinning;
    const counts = await Promise.all(readers.map((r) => r.done));
    const st = JSON.parse(await d.cli('-j', 'status')) as { source: { cgroups: number } }[];
    const warm = Math.min(o.warmupSeconds, rss.length) - 1;
    const errors: Record<string, number> = {};
    for (const c of counts) for (const [k, n] of Object.entries(c.errors)) errors[k] = (errors[k] ?? 0) + n;
    return {
      seconds: (Date.now() - t0) / 1000,
      reads: counts.reduce((s, c) => s + c.reads, 0),
      listings: counts.reduce((s, c) => s + c.listings, 0),
      errors,
      samples: counts.flatMap((c) => c.samples),
      churn: churn.counts,
      pins,
      rss: { samplesKiB: rss, warmKiB: rss[warm]!, endKiB: rss.at(-1)!, ratio: rss.at(-1)! / rss[warm]! },
      fds: { warm: fds[warm]!, end: fds.at(-1)! },
      cgroupsMirrored: st[0]!.source.cgroups,
      interrupted,
      cgroup: churn.parent,
      mountPoint: mnt,
    };
  } finally {
    for (const r of readers) r.child.kill('SIGTERM');
    await churn.stop();
    await daemon?.stop();
    await churn.remove();
    if (!(await isMounted(mnt))) await rm(base, { recursive: true, force: true });
  }
}
