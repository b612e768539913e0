/**
 * `npm run fuzz -- --ops N --seed S [--seeds K]`: model-based fuzzing of the library (scripts/fuzz/).
 * Runs K seeds from S (default 1) of N operations each (default 1000), checking every invariant after
 * every step; a failure prints its seed, the command that reproduces it and a minimised sequence, and
 * the exit code is 1.
 *
 * `npm run fuzz -- --fuse [--sim] --ops N --seed S [--seeds K]`: the same through a real FUSE mount
 * (scripts/fuzz/fuse-run.ts), on the host's cgroup2 hierarchy or, with --sim, the simulated demo tree;
 * default 200 operations. Needs root, FUSE and (without --sim) a writable cgroup2 mount.
 */
import { formatFailure, fuzzSeed } from './fuzz/run';
import { formatFuseFailure, fuzzFuseSeed } from './fuzz/fuse-run';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return def;
  const v = Number(process.argv[i + 1]);
  if (!Number.isSafeInteger(v) || v < 0) throw new Error(`--${name} needs a whole number`);
  return v;
}

async function fuse(): Promise<void> {
  const ops = arg('ops', 200);
  const seed = arg('seed', 1);
  const seeds = arg('seeds', 1);
  const sim = process.argv.includes('--sim');
  let failed = 0;
  let total = 0;
  let ms = 0;
  for (let s = seed; s < seed + seeds; s++) {
    const rep = await fuzzFuseSeed(s, ops, { sim });
    total += rep.result.executed;
    ms += rep.result.ms;
    if (rep.result.failure !== null) {
      failed++;
      console.log(formatFuseFailure(rep));
    } else {
      console.log(`ok seed ${s} through the mount: ${rep.result.executed} operations in ${rep.result.ms} ms (${Math.round((rep.result.executed * 1000) / Math.max(rep.result.ms, 1))} ops/s)`);
    }
  }
  console.log(`\n${seeds - failed}/${seeds} seeds passed through the mount (${sim ? 'simulated demo tree' : 'host cgroup2'}); ${total} operations in ${ms} ms (${Math.round((total * 1000) / Math.max(ms, 1))} ops/s, each with its tree compared)`);
  if (failed > 0) process.exitCode = 1;
}

async function main(): Promise<void> {
  if (process.argv.includes('--fuse')) return fuse();
  const ops = arg('ops', 1000);
  const seed = arg('seed', 1);
  const seeds = arg('seeds', 1);
  let failed = 0;
  let total = 0;
  let ms = 0;
  const counts = new Map<string, { ran: number; ok: number }>();
  for (let s = seed; s < seed + seeds; s++) {
    const rep = await fuzzSeed(s, ops);
    total += rep.executed;
    ms += rep.ms;
    for (const [k, c] of rep.counts) {
      const t = counts.get(k) ?? { ran: 0, ok: 0 };
      t.ran += c.ran;
      t.ok += c.ok;
      counts.set(k, t);
    }
    if (rep.failure !== null) {
      failed++;
      console.log(formatFailure(rep));
    } else {
      console.log(`ok seed ${s}: ${rep.executed} operations in ${rep.ms} ms (${Math.round((rep.executed * 1000) / Math.max(rep.ms, 1))} ops/s)`);
    }
  }
  console.log(`\n${seeds - failed}/${seeds} seeds passed; ${total} operations in ${ms} ms (${Math.round((total * 1000) / Math.max(ms, 1))} ops/s)`);
  console.log([...counts].sort().map(([k, c]) => `  ${k.padEnd(12)} ${String(c.ran).padStart(6)} run, ${String(c.ok).padStart(6)} succeeded`).join('\n'));
  if (failed > 0) process.exitCode = 1;
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 2;
});
