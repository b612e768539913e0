/**
 * One soak reader, a process of its own (`reader DIR HOST_DIR STABLE SECONDS`): once loaded it says
 * `ready` on a line of its own (a reader loaded through a TypeScript loader on a busy host takes a
 * while, and the soak's clock starts when every reader is ready), then for SECONDS it
 * lists the cgroup directories under DIR in the mount and `cat`s every file in each, one cat at a
 * time, as a user's shell loop would. It reads PER_LISTING directories picked at random from each
 * listing and then lists again, so each is read soon after it was seen (cgroups of every age, each
 * seen alive) rather than the tail of a listing long gone under churn. Every failure, of a listing or of a cat, is counted by its
 * errno. When it ends (at the deadline, or on SIGTERM or SIGINT) it prints its counts as one JSON line.
 *
 * ENOENT is what a vanished directory or file gives, so it is only accepted for one that did vanish:
 * a view among STABLE (pinned for the whole soak, comma-separated) that fails with ENOENT while its
 * cgroup's directory under HOST_DIR (the cgroup2 mount) is still there was not gone, and counts as
 * 'ENOENT (cgroup alive)'. Names are never reused, so a cgroup there after the read was there during it.
 *
 * A cat that has not finished in CAT_TIMEOUT_MS is killed and counted as a hang: a read that never
 * returns is the failure a soak exists to find.
 */
import { spawn } from 'node:child_process';
import { access, readdir } from 'node:fs/promises';
import path from 'node:path';
import { errnoOfMessage } from './errno';

const CAT_TIMEOUT_MS = 10_000;
const PER_LISTING = 8;
/** The first failures other than ENOENT are kept whole, to say what went wrong. */
const SAMPLES = 10;

export interface ReaderCounts {
  reads: number;
  listings: number;
  errors: Record<string, number>;
  samples: string[];
}

/** Runs `cat file`: null when it succeeded, else the errno its message names ('hang' if it never ended). */
function cat(file: string): Promise<{ errno: string; message: string } | null> {
  return new Promise((resolve) => {
    const child = spawn('cat', [file], { stdio: ['ignore', 'ignore', 'pipe'], timeout: CAT_TIMEOUT_MS, killSignal: 'SIGKILL' });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.on('close', (code, signal) => {
      if (code === 0) return resolve(null);
      /* c8 ignore next 2 -- a hung read (killed at the timeout), or a Ctrl-C of the whole soak */
      if (signal === 'SIGKILL') return resolve({ errno: 'hang', message: `cat ${file}: no answer in ${CAT_TIMEOUT_MS} ms` });
      if (signal !== null) return resolve({ errno: `killed by ${signal}`, message: `cat ${file}: killed by ${signal}` });
      resolve({ errno: errnoOfMessage(stderr), message: stderr.trim() });
    });
  });
}

/** Whether a path exists now. */
const exists = (p: string): Promise<boolean> => access(p).then(() => true, () => false);

export interface ReaderTarget {
  /** The soak's parent cgroup's directory in the mount, and on the cgroup2 mount. */
  dir: string;
  hostDir: string;
  /** The views pinned for the whole soak. */
  stable: string[];
}

export async function readLoop({ dir, hostDir, stable }: ReaderTarget, until: number, stop: { stopped: boolean }): Promise<ReaderCounts> {
  const counts: ReaderCounts = { reads: 0, listings: 0, errors: {}, samples: [] };
  const fail = (errno: string, message: string): void => {
    counts.errors[errno] = (counts.errors[errno] ?? 0) + 1;
    if (errno !== 'ENOENT' && counts.samples.length < SAMPLES) counts.samples.push(message);
  };
  /** A directory's entries, or [] when listing it failed (counted). */
  const list = async (d: string): Promise<{ name: string; dir: boolean }[]> => {
    counts.listings++;
    try {
      return (await readdir(d, { withFileTypes: true })).map((e) => ({ name: e.name, dir: e.isDirectory() }));
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      fail(String(err.code), `readdir ${d}: ${err.message}`);
      return [];
    }
  };
  const going = (): boolean => !stop.stopped && Date.now() < until;
  while (going()) {
    const all = (await list(dir)).filter((e) => e.dir);
    const cgroups = Array.from({ length: Math.min(PER_LISTING, all.length) }, () => all.splice(Math.floor(Math.random() * all.length), 1)[0]!);
    for (const cg of cgroups) {
      if (!going()) break;
      for (const f of (await list(path.join(dir, cg.name))).filter((e) => !e.dir)) {
        if (!going()) break;
        counts.reads++;
        const r = await cat(path.join(dir, cg.name, f.name));
        if (r?.errno === 'ENOENT' && stable.includes(f.name) && (await exists(path.join(hostDir, cg.name)))) fail('ENOENT (cgroup alive)', r.message);
        else if (r !== null) fail(r.errno, r.message);
      }
    }
  }
  return counts;
}

if (require.main === module) {
  const [dir, hostDir, stable, seconds] = process.argv.slice(2);
  const stop = { stopped: false };
  process.on('SIGTERM', () => (stop.stopped = true)).on('SIGINT', () => (stop.stopped = true));
  process.stdout.write('ready\n');
  void readLoop({ dir: dir!, hostDir: hostDir!, stable: stable!.split(',') }, Date.now() + Number(seconds) * 1000, stop).then((c) => process.stdout.write(`${JSON.stringify(c)}\n`));
}
