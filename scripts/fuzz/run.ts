/**
 * The seeded runner: a sequence of operations from a seed (mulberry32), run from scratch against a
 * new model with every invariant checked after every step; on a failure, delta debugging over the
 * operation list (each candidate re-run from scratch) down to a sequence that still fails the same
 * way, and a report with the seed, the command that reproduces it and the minimised sequence.
 */
import { InvariantError, Model } from './model';
import { OP_WEIGHTS, execOp, type Op } from './ops';
import { weightedOps } from './prng';

/** The sequence of `n` operations seed `seed` gives. It does not depend on the state: ops pick their arguments when run. */
export function generate(seed: number, n: number): Op[] {
  return weightedOps(seed, n, OP_WEIGHTS);
}

export interface Failure {
  /** Index of the failing operation in the sequence run. */
  index: number;
  /** The invariant that failed, or the error's name for a crash. */
  signature: string;
  message: string;
}

export interface RunResult {
  failure: Failure | null;
  /** Operations run (skipped ones not counted) and the results in order. */
  executed: number;
  log: string[];
  /** Each operation kind: how many ran, and how many of those succeeded. */
  counts: Map<string, { ran: number; ok: number }>;
}

export interface RunOptions {
  /** Check the invariants after every step (default); off, only at the end. */
  checkEvery?: boolean;
  /** Called on the model after every step, before its checks (tests break the state here). */
  tamper?: (m: Model, step: number) => void;
}

function signatureOf(e: unknown): string {
  if (e instanceof InvariantError) return e.invariant;
  return e instanceof Error ? `crash:${e.name}` : 'crash';
}

/** Runs a sequence from scratch; stops at the first failure. */
export async function runOps(ops: readonly Op[], opts: RunOptions = {}): Promise<RunResult> {
  const m = await Model.create();
  const log: string[] = [];
  const counts = new Map<string, { ran: number; ok: number }>();
  let executed = 0;
  let failure: Failure | null = null;
  try {
    for (let i = 0; i < ops.length && failure === null; i++) {
      const op = ops[i]!;
      try {
        const desc = await execOp(m, op);
        if (desc !== null) {
          executed++;
          const c = counts.get(op.kind) ?? { ran: 0, ok: 0 };
          c.ran++;
          if (/: ok\b/.test(desc) || !/: E[A-Z0-9]+\b/.test(desc)) c.ok++;
          counts.set(op.kind, c);
        }
        log.push(`${i}: ${desc ?? `${op.kind}: skipped`}`);
        m.settle();
        m.dropUnheldLinks();
        opts.tamper?.(m, i);
        if (opts.checkEvery !== false || i === ops.length - 1) m.check();
      } catch (e) {
        log.push(`${i}: ${op.kind}: FAILED ${signatureOf(e)}`);
        failure = { index: i, signature: signatureOf(e), message: e instanceof Error ? (e.stack ?? e.message) : String(e) };
      }
    }
  } finally {
    try {
      m.dispose();
    } catch (e) {
      failure ??= { index: ops.length, signature: 'crash:dispose', message: e instanceof Error ? (e.stack ?? e.message) : String(e) };
    }
  }
  return { failure, executed, log, counts };
}

/**
 * ddmin over an operation list: drop chunks while the rest still fails (`fails` re-runs a candidate
 * from scratch and gives the index it failed at with the same signature, or null), halving the
 * chunks when nothing can go. Bounded by `budgetMs`. The FUSE fuzzer minimises with it too.
 */
export async function ddmin<T>(ops: readonly T[], failIndex: number, fails: (cand: T[]) => Promise<number | null>, budgetMs: number): Promise<T[]> {
  const deadline = Date.now() + budgetMs;
  let cur = ops.slice(0, failIndex + 1);
  let n = 2;
  while (cur.length >= 2 && Date.now() < deadline) {
    const size = Math.ceil(cur.length / n);
    let reduced = false;
    for (let start = 0; start < cur.length && Date.now() < deadline; start += size) {
      const cand = [...cur.slice(0, start), ...cur.slice(start + size)];
      const at = await fails(cand);
      if (at !== null) {
        cur = cand.slice(0, at + 1);
        n = Math.max(n - 1, 2);
        reduced = true;
        break;
      }
    }
    if (!reduced) {
      if (size === 1) break;
      n = Math.min(n * 2, cur.length);
    }
  }
  return cur;
}

/** ddmin of a library fuzzing sequence, each candidate run from scratch against a new model. */
export async function minimise(ops: readonly Op[], failure: Failure, budgetMs = 120_000, opts: RunOptions = {}): Promise<Op[]> {
  return ddmin(
    ops,
    failure.index,
    async (cand) => {
      const r = await runOps(cand, opts);
      return r.failure !== null && r.failure.signature === failure.signature ? r.failure.index : null;
    },
    budgetMs,
  );
}

export interface FuzzReport {
  seed: number;
  ops: number;
  executed: number;
  ms: number;
  failure: Failure | null;
  /** The minimised sequence and what each step did, when it failed. */
  minimised?: { ops: Op[]; log: string[]; failure: Failure | null };
  counts: Map<string, { ran: number; ok: number }>;
}

/** One seed: generate, run, and on a failure minimise and re-run the minimised sequence for its log. */
export async function fuzzSeed(seed: number, n: number, opts: { minimiseMs?: number } = {}): Promise<FuzzReport> {
  const ops = generate(seed, n);
  const t0 = Date.now();
  const r = await runOps(ops);
  const ms = Date.now() - t0;
  const report: FuzzReport = { seed, ops: n, executed: r.executed, ms, failure: r.failure, counts: r.counts };
  if (r.failure !== null) {
    const min = await minimise(ops, r.failure, opts.minimiseMs);
    const again = await runOps(min);
    report.minimised = { ops: min, log: again.log, failure: again.failure };
  }
  return report;
}

/** The text a failure prints: the seed, how to reproduce it, the minimised sequence. */
export function formatFailure(rep: FuzzReport): string {
  const f = rep.failure!;
  const lines = [
    `FAIL seed ${rep.seed}: op ${f.index} of ${rep.ops}, invariant ${f.signature}`,
    `  reproduce: npm run fuzz -- --ops ${rep.ops} --seed ${rep.seed}`,
    `  ${f.message.split('\n')[0]}`,
  ];
  if (rep.minimised !== undefined) {
    lines.push(`  minimised to ${rep.minimised.ops.length} operations:`);
    for (const l of rep.minimised.log) lines.push(`    ${l}`);
    lines.push(`  ops: ${JSON.stringify(rep.minimised.ops)}`);
    if (rep.minimised.failure !== null) lines.push(`  ${rep.minimised.failure.message.split('\n').slice(0, 6).join('\n  ')}`);
  }
  return lines.join('\n');
}
