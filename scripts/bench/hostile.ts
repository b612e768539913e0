/**
 * A healthy view's read latency while a hostile program is read in a loop by another process
 * (issue 14's "Must show": the fault-injection figure of docs/RELIABILITY.md, before and after
 * deadlines are enforced from outside the program's thread). One daemon, `vbpffs mount --sim demo
 * --foreground` from dist/ in a child process, with the procs example pinned at the root; then, one
 * at a time, each hostile object file is pinned at the root too (`vbpffs iter pin`), so every
 * cgroup has both views:
 *
 *   loop          `for (;;) spins++`: held by its 50 ms deadline, checked at the loop's back edge
 *   bigint-str    `(7n ** 3000000n).toString()`: V8's BigInt code has no termination check
 *   bigint-mul    a 64-Mbit BigInt squared (FFT multiplication, no termination check either)
 *   membomb       one 256 MiB array (test/fault-programs.ts's): past the isolate's 64 MiB heap
 *                 limit at once, but V8's last-resort collections before it gives up cannot be
 *                 interrupted
 *   membomb-grow  32 MiB arrays kept: near the limit every allocation collects, uninterrupted, so
 *                 the run overshoots its deadline by seconds, ending at it or at the heap limit
 *                 (smaller arrays are stopped by the deadline first)
 *   huge-output   one 10 MiB bpf_seq_write: E2BIG (more than the 32 KiB seq buffer for one
 *                 object), or EIO when filling the bytes alone outlasts the deadline (a loaded host)
 *
 * For each: one timed `cat` of the hostile view first (how long one of its reads takes, and how it
 * ends), then a shell reads it in a loop (`cat V >/dev/null`) while the measuring process reads the
 * healthy view (open, read to EOF in 128 KiB reads, close, then a 2 ms pause) for WINDOW_MS; its
 * reads' p50, p99 and max, next to the same with no hostile reader, measured first and again last
 * (the daemon recovered), and each hostile program's last fault as `vbpffs prog show` gives it.
 * The measuring loop is a small C program built with cc at the start (a Node loop if there is no
 * cc), a process of its own like the hammering shell. Whatever ends the bench (an error, SIGINT, SIGTERM, SIGHUP) stops the
 * hammering shells and the daemon and removes the temporary directory; a guard shell does the same
 * should this process die without a word (SIGKILL).
 *
 * Needs root and FUSE; says why and returns otherwise. About 2 minutes (on a loaded 2-core machine,
 * before the fix, most of it waiting for the membomb).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { examplePath } from '../../progs/examples';
import { fuseBenchSkipReason } from '../bench-skip';

const exec = promisify(execFile);
const CLI = path.join(__dirname, '..', '..', 'fs', 'cli.js');

/** How long the healthy view is read in each scenario, ms. */
const WINDOW_MS = 8000;
/** The pause between two healthy reads, µs (a reader polling the view, not a flood). */
const GAP_US = 2000;
/** How long the hammer gets to start its first hostile read before the measuring starts, ms. */
const LEAD_MS = 300;
/** Bounds on the single timed read of a hostile view, and on each CLI command, ms. */
const PROBE_TIMEOUT_MS = 60_000;
const CLI_TIMEOUT_MS = 60_000;

const HEAD = `import { SEC, bpf_seq_printf, bpf_seq_write } from 'vbpffs/bpf';\n`;

interface Hostile {
  name: string;
  what: string;
  source: string;
}

/** One object file each; `iter pin` pins an object's first program. */
const HOSTILE: Hostile[] = [
  {
    name: 'loop',
    what: 'for (;;) spins++',
    source: `${HEAD}let spins = 0;
export const loop = SEC('cgroup_view', (ctx) => {
  for (;;) spins++;
});`,
  },
  {
    name: 'bigint-str',
    what: '(7n ** 3000000n).toString()',
    source: `${HEAD}export const bigint_str = SEC('cgroup_view', (ctx) => {
  bpf_seq_printf(ctx.meta.seq, '%u digits\\n', (7n ** 3000000n).toString().length);
  return 0;
});`,
  },
  {
    name: 'bigint-mul',
    what: 'x * x, x of 2^26 bits',
    source: `${HEAD}export const bigint_mul = SEC('cgroup_view', (ctx) => {
  const x = (1n << 67108864n) - 3n;
  const y = x * x;
  bpf_seq_printf(ctx.meta.seq, '%u\\n', Number(y & 255n));
  return 0;
});`,
  },
  {
    name: 'membomb',
    what: 'one 256 MiB array, past the 64 MiB limit',
    source: `${HEAD}const keep: number[][] = [];
export const membomb = SEC('cgroup_view', (ctx) => {
  for (;;) keep.push(new Array(1 << 25).fill(keep.length + 0.5));
});`,
  },
  {
    name: 'membomb-grow',
    what: '32 MiB arrays kept until 64 MiB',
    source: `${HEAD}const keep: number[][] = [];
export const membomb_grow = SEC('cgroup_view', (ctx) => {
  for (;;) keep.push(new Array(1 << 22).fill(keep.length + 0.5));
});`,
  },
  {
    name: 'huge-output',
    what: 'bpf_seq_write of 10 MiB',
    source: `${HEAD}export const huge_output = SEC('cgroup_view', (ctx) => {
  bpf_seq_printf(ctx.meta.seq, 'start\\n');
  bpf_seq_write(ctx.meta.seq, new Uint8Array(10 << 20).fill(120));
  return 0;
});`,
  },
];

/** The measuring loop: FILE SECONDS GAP_US; one line per read, its µs, or `E<errno> <µs>`. */
const READER_C = `#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}
static char buf[1 << 17];
int main(int argc, char **argv) {
  if (argc != 4) return 2;
  double end = now_us() + atof(argv[2]) * 1e6;
  useconds_t gap = (useconds_t)atoi(argv[3]);
  while (now_us() < end) {
    double t0 = now_us();
    int err = 0;
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0) err = errno;
    else {
      ssize_t r;
      while ((r = read(fd, buf, sizeof buf)) > 0) {}
      if (r < 0) err = errno;
      close(fd);
    }
    double us = now_us() - t0;
    if (err) printf("E%d %.1f\\n", err, us);
    else printf("%.1f\\n", us);
    if (gap) usleep(gap);
  }
  return 0;
}
`;

/** The same loop in Node, for a machine without cc. */
const READER_JS = `const fs = require('node:fs');
const [file, seconds, gap] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
const buf = Buffer.alloc(1 << 17);
const now = () => Number(process.hrtime.bigint()) / 1000;
const out = [];
const pause = new Int32Array(new SharedArrayBuffer(4));
for (const end = now() + seconds * 1e6; now() < end; ) {
  const t0 = now();
  let err = 0;
  try {
    const fd = fs.openSync(file, 'r');
    try { while (fs.readSync(fd, buf, 0, buf.length, null) > 0); } finally { fs.closeSync(fd); }
  } catch (e) { err = -(e.errno ?? -1); }
  const us = (now() - t0).toFixed(1);
  out.push(err ? 'E' + err + ' ' + us : us);
  if (gap) Atomics.wait(pause, 0, 0, gap / 1000);
}
process.stdout.write(out.join('\\n') + '\\n');
`;

const pct = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!;
const ms = (us: number): string => (us / 1000).toFixed(2);

// --- what must be undone however the bench ends ---------------------------------------------------

const cleanups: (() => Promise<void>)[] = [];

async function cleanUp(): Promise<void> {
  for (let c = cleanups.pop(); c !== undefined; c = cleanups.pop()) await c().catch((e: unknown) => console.log(`cleanup: ${(e as Error).message}`));
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', () => r()));
}

/**
 * A detached shell that, should this process vanish while `pid` still runs, sends `pid` SIGTERM,
 * waits for it, then removes `base` unless `mnt` is still mounted. It ends by itself with `pid`.
 */
function guard(pid: number, mnt: string, base: string): void {
  const script = `while kill -0 "$0" 2>/dev/null && kill -0 "$1" 2>/dev/null; do sleep 1; done
kill -0 "$1" 2>/dev/null || exit 0
kill -TERM "$1" 2>/dev/null
for i in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
grep -q " $2 " /proc/mounts || rm -rf "$3"`;
  const g = spawn('sh', ['-c', script, String(process.pid), String(pid), mnt, base], { detached: true, stdio: 'ignore' });
  g.unref();
}

// --- the daemon -----------------------------------------------------------------------------------

interface Daemon {
  readonly mnt: string;
  cli(...args: string[]): Promise<string>;
}

async function startDaemon(base: string): Promise<Daemon> {
  const mnt = path.join(base, 'mnt');
  const env = { ...process.env, VBPFFS_STATE_ROOT: path.join(base, 'state') };
  const child = spawn(process.execPath, [CLI, 'mount', mnt, '--sim', 'demo', '--foreground'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  cleanups.push(async () => {
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited(child);
    clearTimeout(killer);
  });
  guard(child.pid!, mnt, base);
  let out = '';
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('vbpffs mounted at')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`vbpffs mount ${mnt} --sim demo exited (${code}): ${err.trim()}`)));
  });
  return {
    mnt,
    cli: async (...args) => (await exec(process.execPath, [CLI, ...args], { env, encoding: 'utf8', timeout: CLI_TIMEOUT_MS })).stdout,
  };
}

// --- readers --------------------------------------------------------------------------------------

/** The measuring loop's command line, built in `base`. */
async function buildReader(base: string): Promise<{ cmd: string; args: string[]; what: string }> {
  const src = path.join(base, 'reader.c');
  const bin = path.join(base, 'reader');
  writeFileSync(src, READER_C);
  try {
    await exec('cc', ['-O2', '-o', bin, src]);
    return { cmd: bin, args: [], what: 'a C loop' };
  } catch (e) {
    return { cmd: process.execPath, args: ['-e', READER_JS], what: `a Node loop (cc failed: ${(e as Error).message.split('\n')[0]})` };
  }
}

interface Reads {
  us: number[];
  failed: number;
  errnos: Set<string>;
}

async function measure(reader: { cmd: string; args: string[] }, file: string): Promise<Reads> {
  const { stdout } = await exec(reader.cmd, [...reader.args, file, String(WINDOW_MS / 1000), String(GAP_US)], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
    timeout: WINDOW_MS + 120_000,
  });
  const r: Reads = { us: [], failed: 0, errnos: new Set() };
  for (const line of stdout.split('\n').filter(Boolean)) {
    const [a, b] = line.split(' ');
    if (a!.startsWith('E')) {
      r.failed++;
      r.errnos.add(a!);
      r.us.push(Number(b));
    } else r.us.push(Number(a));
  }
  r.us.sort((x, y) => x - y);
  return r;
}

/** One `cat` of `file`: how long it took and how it ended. */
async function probe(file: string): Promise<string> {
  const t0 = performance.now();
  let how: string;
  try {
    const { stdout } = await exec('cat', [file], { encoding: 'buffer', maxBuffer: 64 << 20, timeout: PROBE_TIMEOUT_MS });
    how = `ok, ${stdout.length} B`;
  } catch (e) {
    const x = e as { killed?: boolean; stderr?: Buffer };
    how = x.killed === true ? `killed after ${PROBE_TIMEOUT_MS / 1000} s` : (x.stderr?.toString().trim().split(': ').pop() ?? String(e));
  }
  return `${((performance.now() - t0) / 1000).toFixed(2)} s, ${how}`;
}

interface Hammer {
  /** Stops the loop; its reads, and how many of them failed. */
  stop(): Promise<{ reads: number; failed: number }>;
}

/** A shell reading `file` in a loop, in a process group of its own; it ends by itself with this process. */
function hammer(file: string): Hammer {
  const script = `p=$PPID; while kill -0 "$p" 2>/dev/null; do cat "$0" >/dev/null 2>&1; echo $?; done`;
  const child = spawn('sh', ['-c', script, file], { detached: true, stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const kill = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const group = (sig: NodeJS.Signals): void => {
      try {
        process.kill(-child.pid!, sig);
      } catch {
        // already gone
      }
    };
    group('SIGTERM');
    const killer = setTimeout(() => group('SIGKILL'), 10_000);
    await exited(child);
    clearTimeout(killer);
    // cat, killed mid-read, may outlive the shell by a moment.
    group('SIGKILL');
  };
  cleanups.push(kill);
  return {
    stop: async () => {
      await kill();
      const codes = out.split('\n').filter(Boolean);
      return { reads: codes.length, failed: codes.filter((c) => c !== '0').length };
    },
  };
}

// --- the scenarios --------------------------------------------------------------------------------

interface Row {
  scenario: string;
  lastFault?: string;
  hostileRead: string;
  hammer: string;
  reads: Reads | null;
  error?: string;
}

function printTable(rows: Row[]): void {
  const head = ['scenario', 'healthy reads', 'failed', 'p50 ms', 'p99 ms', 'max ms', 'hostile reads (failed)', 'one hostile read'];
  const cells = rows.map((r) =>
    r.reads === null
      ? [r.scenario, '-', '-', '-', '-', '-', r.hammer, r.error ?? r.hostileRead]
      : [
          r.scenario,
          String(r.reads.us.length),
          r.reads.failed === 0 ? '0' : `${r.reads.failed} (${[...r.reads.errnos].join(',')})`,
          ms(pct(r.reads.us, 50)),
          ms(pct(r.reads.us, 99)),
          ms(r.reads.us[r.reads.us.length - 1]!),
          r.hammer,
          r.hostileRead,
        ],
  );
  const width = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]): string => c.map((s, i) => (i === 0 || i >= 6 ? s.padEnd(width[i]!) : s.padStart(width[i]!))).join('  ').trimEnd();
  console.log(`    ${line(head)}`);
  for (const c of cells) console.log(`    ${line(c)}`);
  console.log(`    vbpffs prog show of each hostile program after its row:`);
  for (const r of rows.filter((r) => r.lastFault !== undefined)) console.log(`    ${r.scenario.split(':')[0]}: ${r.lastFault}`);
}

async function scenario(d: Daemon, base: string, reader: { cmd: string; args: string[] }, healthy: string, h: Hostile): Promise<Row> {
  const obj = path.join(base, `${h.name}.ts`);
  writeFileSync(obj, h.source);
  const pin = path.join(d.mnt, h.name);
  await d.cli('iter', 'pin', obj, pin);
  try {
    const view = path.join(d.mnt, 'system.slice', 'cron.service', h.name);
    const hostileRead = await probe(view);
    let hammered = '-';
    const hm = hammer(view);
    const reads = await sleep(LEAD_MS)
      .then(() => measure(reader, healthy))
      .finally(() => hm.stop().then((n) => (hammered = `${n.reads} (${n.failed})`)));
    const shown = JSON.parse(await d.cli('-j', 'prog', 'show')) as { name: string; run_cnt: number; faults?: number; last_fault?: string }[];
    const p = shown.find((s) => s.name === h.name.replace(/-/g, '_'));
    const lastFault = p === undefined ? 'not in prog show' : `${p.run_cnt} runs, ${p.faults ?? 0} faults${p.last_fault === undefined ? '' : `, last: ${p.last_fault}`}`;
    return { scenario: `${h.name}: ${h.what}`, hostileRead, hammer: hammered, reads, lastFault };
  } finally {
    await exec('rm', [pin], { timeout: CLI_TIMEOUT_MS });
  }
}

async function baseline(name: string, reader: { cmd: string; args: string[] }, healthy: string): Promise<Row> {
  return { scenario: name, hostileRead: '-', hammer: '-', reads: await measure(reader, healthy) };
}

/** Which code is measured: the checkout's commit, and whether its working tree differs from it. */
async function codeVersion(): Promise<string> {
  const root = path.join(__dirname, '..', '..', '..');
  try {
    const head = (await exec('git', ['-C', root, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' })).stdout.trim();
    const changed = (await exec('git', ['-C', root, 'status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8' })).stdout.split('\n').filter(Boolean).length;
    return `commit ${head}${changed === 0 ? '' : ` with ${changed} changed files`}`;
  } catch {
    return 'not a git checkout';
  }
}

async function bench(): Promise<void> {
  const base = mkdtempSync(path.join(tmpdir(), 'vbpffs-bench-hostile-'));
  cleanups.push(() => rm(base, { recursive: true, force: true }).catch((e: unknown) => console.log(`left ${base}: ${(e as Error).message}`)));
  const reader = await buildReader(base);
  const d = await startDaemon(base);
  await d.cli('iter', 'pin', examplePath('procs'), path.join(d.mnt, 'procs'));
  const healthy = path.join(d.mnt, 'system.slice', 'postgres.service', 'procs');
  // The first runs of an isolate are slow (cold code): a few reads before any measuring.
  for (let i = 0; i < 20; i++) await exec('cat', [healthy]);
  console.log(
    `a healthy view (procs, ${healthy.slice(d.mnt.length + 1)}) read by ${reader.what} for ${WINDOW_MS / 1000} s per row ` +
      `(open, read to EOF, close, ${GAP_US / 1000} ms pause), while a shell reads a hostile view in a loop; ` +
      `${cpus().length} CPUs, load average ${loadavg()[0]!.toFixed(1)} at the start:`,
  );
  console.log(`    code: ${await codeVersion()} (${path.join(__dirname, '..', '..', '..')})`);
  const rows: Row[] = [await baseline('baseline: no hostile reader', reader, healthy)];
  for (const h of HOSTILE) {
    try {
      rows.push(await scenario(d, base, reader, healthy, h));
    } catch (e) {
      rows.push({ scenario: `${h.name}: ${h.what}`, hostileRead: '-', hammer: '-', reads: null, error: `failed: ${(e as Error).message.split('\n')[0]}` });
    }
  }
  rows.push(await baseline('baseline again, last', reader, healthy));
  printTable(rows);
  console.log(`    (load average ${loadavg()[0]!.toFixed(1)} at the end)`);
}

export async function run(): Promise<void> {
  const skip = await fuseBenchSkipReason();
  if (skip !== null) {
    console.log(`skipped: ${skip}`);
    return;
  }
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  const onSignal = (sig: NodeJS.Signals): void => {
    console.log(`\n${sig}: stopping the hammers and the daemon`);
    void cleanUp().finally(() => process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGTERM' ? 15 : 1)));
  };
  for (const s of signals) process.on(s, onSignal);
  try {
    await bench();
  } finally {
    await cleanUp();
    for (const s of signals) process.off(s, onSignal);
  }
}
