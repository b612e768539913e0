/**
 * The FUSE fuzzer's runner: a seeded sequence run from scratch on a fresh mount (fuse-real.ts) and,
 * step for step, on the library alone (fuse-oracle.ts). After every step it compares what the real
 * processes saw with what the library says: the errno of the operation, what it read or printed
 * (cgroup ids as the paths they name, since the host's ids are not the simulator's), and the tree
 * of the fuzz area as `find` lists it. The first difference fails the run; ddmin (run.ts) then
 * shrinks the sequence, each candidate on a new mount.
 *
 * The kernel caches a FUSE mount's entries and attributes for a second (fuse/host.ts). A name the
 * daemon removes behind the kernel's back (the mirror at a cgroup's rmdir, a refused rmdir's
 * unpopulate) may still be seen by a lookup for that second, so a step that names such a path
 * first waits until it has passed, and a link count such a removal changed is not compared within
 * it. Everything that goes through the mount itself is compared at once.
 */
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ddmin } from './run';
import { LibWorld, type TreeEntry } from './fuse-oracle';
import { RealWorld } from './fuse-real';
import { areaRoots, describe, generateFuse, resolveFuse, type Action, type FuseContext, type FuseOp, type Outcome } from './fuse-ops';

/** How long the kernel may keep an entry the daemon removed: the mount's 1 s timeouts, and a margin. */
const CACHE_MS = 1100;

export type FuseSignature = 'errno' | 'output' | 'tree' | 'crash';

export interface FuseFailure {
  index: number;
  signature: FuseSignature;
  message: string;
}

export interface FuseRunOptions {
  /** The simulated `demo` tree instead of the host's cgroup2 hierarchy. */
  sim: boolean;
  /** Called after each step's action, before the tree is compared (tests break the oracle's state here). */
  tamper?: (lib: LibWorld, step: number) => void | Promise<void>;
}

export interface FuseRunResult {
  failure: FuseFailure | null;
  executed: number;
  log: string[];
  counts: Map<string, { ran: number; ok: number }>;
  /** Time spent in the steps, not in mounting and unmounting. */
  ms: number;
}

/** Cgroup ids in what a file printed as the paths they name: the first number of a line, or of a `{...}` key. */
export function translateIds(text: string, ids: ReadonlyMap<number, string>): string {
  return text.replace(/^(\{?)(\d+)/gm, (_, pre: string, n: string) => `${pre}${ids.get(Number(n)) ?? `?${n}`}`);
}

/** JSON with its keys sorted, so two printers' key orders do not differ. */
export function canonical(text: string | undefined): string | undefined {
  if (text === undefined || text === '') return text;
  const sort = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(sort) : typeof v === 'object' && v !== null ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, x]) => [k, sort(x)])) : v;
  try {
    return JSON.stringify(sort(JSON.parse(text)));
  } catch {
    return text;
  }
}

/** Differences between two outcomes of one step, or null. */
export function compareOutcome(real: Outcome, lib: Outcome): { signature: FuseSignature; message: string } | null {
  if (real.errno !== lib.errno) return { signature: 'errno', message: `the mount gave ${real.errno ?? 'success'}, the library ${lib.errno ?? 'success'}` };
  if (real.out !== lib.out) return { signature: 'output', message: `the mount printed ${JSON.stringify(real.out)}, the library ${JSON.stringify(lib.out)}` };
  return null;
}

/** find's lines (`%y %m %n %p -> %l`, paths on the host) as paths in the mount, sorted; `loose` paths' modes and link counts left out. */
export function realTreeLines(find: string, mnt: string, loose: ReadonlySet<string>): string[] {
  return find
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      const m = /^(\S+) (\S+) (\S+) (\S+) -> (.*)$/.exec(l);
      if (m === null || !m[4]!.startsWith(mnt)) return `? ${l}`;
      const p = m[4]!.slice(mnt.length);
      return treeLine(m[1]!, m[2]!, m[3]!, p, m[5]!, loose);
    })
    .sort();
}

export function libTreeLines(tree: TreeEntry[], loose: ReadonlySet<string>): string[] {
  return tree.map((e) => treeLine(e.type, e.mode.toString(8), String(e.nlink), e.path, e.target, loose)).sort();
}

/**
 * A directory's link count is left out: the mirror adds and removes subdirectories behind the
 * kernel's attribute cache. A loose path's mode and link count are left out (KernelCache).
 */
function treeLine(type: string, mode: string, nlink: string, p: string, target: string, loose: ReadonlySet<string>): string {
  return `${type} ${loose.has(p) ? '-' : mode} ${type === 'd' || loose.has(p) ? '-' : nlink} ${p}${type === 'l' ? ` -> ${target}` : ''}`;
}

/** The lines only one side has, or null when the trees are equal. */
export function compareTrees(real: string[], lib: string[]): string | null {
  const r = new Set(real);
  const l = new Set(lib);
  const onlyReal = real.filter((x) => !l.has(x));
  const onlyLib = lib.filter((x) => !r.has(x));
  if (onlyReal.length === 0 && onlyLib.length === 0) return null;
  return [...onlyReal.map((x) => `  mount only:   ${x}`), ...onlyLib.map((x) => `  library only: ${x}`)].join('\n');
}

/** Every path in the mount an action names (its cgroups too: their directories have the same paths). */
function actionPaths(a: Action): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(a)) {
    if (k === 'target' || k === 't') continue;
    if (typeof v === 'string' && v.startsWith('/')) out.push(v);
    else if (typeof v === 'object' && v !== null) for (const x of Object.values(v)) if (typeof x === 'string' && x.startsWith('/')) out.push(x);
  }
  return out;
}

const under = (p: string, dir: string): boolean => p === dir || p.startsWith(`${dir}/`);

/**
 * The paths a step reaches: its own, and where the symlinks on them lead (the kernel follows them
 * through its own cache), a few levels deep.
 */
export function reachedPaths(a: Action, tree: TreeEntry[], mnt: string): string[] {
  const links = tree.filter((e) => e.type === 'l');
  const out = new Set(actionPaths(a));
  let frontier = [...out];
  for (let depth = 0; depth < 4 && frontier.length > 0; depth++) {
    const next: string[] = [];
    for (const p of frontier) {
      for (const l of links) {
        if (!under(p, l.path)) continue;
        const base = l.target.startsWith(`${mnt}/`) ? l.target.slice(mnt.length) : l.target.startsWith('/') ? null : `${l.path.slice(0, l.path.lastIndexOf('/'))}/${l.target}`;
        if (base === null) continue;
        const to = path.posix.normalize(`${base}${p.slice(l.path.length)}`);
        if (out.has(to)) continue;
        out.add(to);
        next.push(to);
      }
    }
    frontier = next;
  }
  return [...out];
}

/** Names the daemon removed behind the kernel's back, and inodes whose link counts changed, with when. */
class KernelCache {
  readonly #paths = new Map<string, number>();
  readonly #inos = new Map<number, number>();

  /** Records what vanished from the tree in a step other than by the step's own removal through the mount. */
  note(a: Action, ok: boolean, before: TreeEntry[], after: TreeEntry[]): void {
    const now = Date.now();
    const left = new Set(after.map((e) => e.path));
    const byKernel = (p: string): boolean =>
      ok && ((a.t === 'rmdir' && under(p, a.p)) || (a.t === 'unlink' && p === a.p) || (a.t === 'rename' && (under(p, a.p) || under(p, a.to))));
    for (const e of before) if (!left.has(e.path) && !byKernel(e.path)) this.#paths.set(e.path, now);
    // The kernel caches attributes per name (libfuse's path-based nodes make each hard link its own
    // inode there), so a link count or mode that changed is stale for a second under every other name.
    const was = new Map(before.map((e) => [e.ino, `${e.nlink} ${e.mode}`]));
    for (const e of after) if (e.type !== 'd' && was.has(e.ino) && was.get(e.ino) !== `${e.nlink} ${e.mode}`) this.#inos.set(e.ino, now);
  }

  /** Waits until none of `paths` (or a directory above or below one) may still be cached. */
  async settle(paths: string[]): Promise<void> {
    const now = Date.now();
    let until = 0;
    for (const [p, t] of this.#paths) {
      if (now - t >= CACHE_MS) this.#paths.delete(p);
      else if (paths.some((x) => under(x, p) || under(p, x))) until = Math.max(until, t + CACHE_MS);
    }
    if (until > now) await sleep(until - now);
  }

  /** Paths whose mode or link count the kernel may still have cached from before a change under another name. */
  loose(tree: TreeEntry[]): Set<string> {
    const now = Date.now();
    for (const [ino, t] of this.#inos) if (now - t >= CACHE_MS) this.#inos.delete(ino);
    return new Set(tree.filter((e) => this.#inos.has(e.ino)).map((e) => e.path));
  }
}

/** The steps every run starts with: an untagged directory, and a view at the root, which tags it and mirrors the fuzz cgroup. */
const SETUP: Action[] = [
  { t: 'mkdir', p: '/U' },
  { t: 'iterPin', obj: 'view', p: '/v0' },
];

/** Runs a sequence from scratch on a new mount and a new library; stops at the first difference. */
export async function runFuseOps(ops: readonly FuseOp[], opts: FuseRunOptions): Promise<FuseRunResult> {
  const real = await RealWorld.start({ sim: opts.sim });
  const log: string[] = [];
  const counts = new Map<string, { ran: number; ok: number }>();
  let failure: FuseFailure | null = null;
  let executed = 0;
  let lib: LibWorld | undefined;
  let ms = 0;
  const t0 = Date.now();
  try {
    lib = await LibWorld.create({ sim: opts.sim, fuzzCgroup: real.fuzzCgroup, mnt: real.mnt, objects: real.objects });
    const ctx: FuseContext = { lib, fuzzCgroup: real.fuzzCgroup, host: !opts.sim, mnt: real.mnt };
    const roots = areaRoots(ctx);
    const cache = new KernelCache();
    let before = lib.tree(roots);

    const step = async (i: number, a: Action): Promise<FuseFailure | null> => {
      await cache.settle(reachedPaths(a, before, real.mnt));
      const ids = a.t === 'cat' && !opts.sim && lib!.namesCgroups(a.p);
      let realOut = await real.exec(a);
      let libOut = await lib!.exec(a);
      if (ids) {
        realOut = { ...realOut, out: realOut.out === undefined ? undefined : translateIds(realOut.out, real.ids) };
        libOut = { ...libOut, out: libOut.out === undefined ? undefined : translateIds(libOut.out, lib!.idPaths()) };
      }
      if (a.t === 'run' || a.t === 'cgShow') [realOut, libOut] = [{ ...realOut, out: canonical(realOut.out) }, { ...libOut, out: canonical(libOut.out) }];
      log.push(`${i}: ${describe(a)}: ${libOut.errno ?? 'ok'}${libOut.out === undefined ? '' : ` ${JSON.stringify(libOut.out.slice(0, 60))}`}`);
      const c = counts.get(a.t) ?? { ran: 0, ok: 0 };
      c.ran++;
      if (libOut.errno === null) c.ok++;
      counts.set(a.t, c);
      const diff = compareOutcome(realOut, libOut);
      if (diff !== null) return { index: i, ...diff, message: `step ${i}: ${describe(a)}: ${diff.message}` };
      if (i >= 0) await opts.tamper?.(lib!, i);
      const after = lib!.tree(roots);
      cache.note(a, libOut.errno === null, before, after);
      before = after;
      const loose = cache.loose(after);
      const treeDiff = compareTrees(realTreeLines(await real.find(roots), real.mnt, loose), libTreeLines(after, loose));
      if (treeDiff !== null) return { index: i, signature: 'tree', message: `step ${i}: ${describe(a)}: the trees differ after it:\n${treeDiff}` };
      return null;
    };

    for (const a of SETUP) {
      const f = await step(-1, a);
      if (f !== null) throw new Error(`the set-up failed: ${f.message}`);
    }
    for (let i = 0; i < ops.length && failure === null; i++) {
      const a = resolveFuse(ctx, ops[i]!);
      if (a === null) {
        log.push(`${i}: ${ops[i]!.kind}: skipped`);
        continue;
      }
      executed++;
      try {
        failure = await step(i, a);
      } catch (e) {
        failure = { index: i, signature: 'crash', message: `step ${i}: ${describe(a)}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n${real.daemonStderr}` };
      }
    }
  } finally {
    ms = Date.now() - t0;
    await lib?.dispose();
    await real.stop();
  }
  return { failure, executed, log, counts, ms };
}

export interface FuseReport {
  seed: number;
  ops: number;
  sim: boolean;
  result: FuseRunResult;
  minimised?: { ops: FuseOp[]; log: string[]; failure: FuseFailure | null };
}

/**
 * ddmin of a failing run, each candidate on a new mount; the failure must keep its signature. Gives
 * the minimised sequence and the run that showed it fails (its log stops at the failure, so it is the
 * minimised sequence's own: no mount is spent running it again).
 */
export async function minimiseFuse(ops: readonly FuseOp[], run: FuseRunResult, opts: FuseRunOptions, budgetMs = 300_000): Promise<{ ops: FuseOp[]; result: FuseRunResult }> {
  let last = run;
  const min = await ddmin(
    ops,
    run.failure!.index,
    async (cand) => {
      const r = await runFuseOps(cand, opts);
      if (r.failure === null || r.failure.signature !== run.failure!.signature) return null;
      last = r;
      return r.failure.index;
    },
    budgetMs,
  );
  return { ops: min, result: last };
}

/** One seed through the mount: run, and on a failure minimise. */
export async function fuzzFuseSeed(seed: number, n: number, opts: FuseRunOptions & { minimiseMs?: number }): Promise<FuseReport> {
  const ops = generateFuse(seed, n);
  const result = await runFuseOps(ops, opts);
  const rep: FuseReport = { seed, ops: n, sim: opts.sim, result };
  if (result.failure !== null) {
    const min = await minimiseFuse(ops, result, opts, opts.minimiseMs);
    rep.minimised = { ops: min.ops, log: min.result.log, failure: min.result.failure };
  }
  return rep;
}

/** What a failure prints: the seed, the command that reproduces it, the minimised steps. */
export function formatFuseFailure(rep: FuseReport): string {
  const f = rep.result.failure!;
  const lines = [
    `FAIL seed ${rep.seed} through the mount: op ${f.index} of ${rep.ops}, ${f.signature}`,
    `  reproduce: npm run fuzz -- --fuse${rep.sim ? ' --sim' : ''} --ops ${rep.ops} --seed ${rep.seed}`,
    `  ${f.message.split('\n').slice(0, 12).join('\n  ')}`,
  ];
  if (rep.minimised !== undefined) {
    lines.push(`  minimised to ${rep.minimised.ops.length} operations:`);
    for (const l of rep.minimised.log) lines.push(`    ${l}`);
    // The operations themselves, to replay the minimised run; a long list is better had from the seed.
    if (rep.minimised.ops.length <= 60) lines.push(`  ops: ${JSON.stringify(rep.minimised.ops)}`);
    if (rep.minimised.failure !== null) lines.push(`  ${rep.minimised.failure.message.split('\n').slice(0, 12).join('\n  ')}`);
  }
  return lines.join('\n');
}
