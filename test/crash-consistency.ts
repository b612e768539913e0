/**
 * Crash consistency (issue 8), through real processes: a daemon (`vbpffs mount --foreground`, its
 * own process) is killed with SIGKILL at seeded moments while a seeded stream of operations is made
 * on its mount by real commands (mkdir, rmdir, unlink, mv on the mount; `vbpffs map update|delete`,
 * `iter pin`, `prog|map pin`), one at a time, and started again on the same state directory. Each
 * time, what the mount shows (find, cat of every pin, `vbpffs map dump`) must be the model's state
 * after the acknowledged operations, or after them and the one in flight when the kill came: never
 * one acknowledged lost, never anything half made. Kill points: between operations, in the middle of
 * one (a delay into the command), while the daemon starts and replays, and inside a journal write
 * (the last record cut at a random byte, as a kill in write(2) leaves it: the replay must stop
 * before it and say so). Then a full state disk (a 64 KiB tmpfs) and damaged journals.
 *
 * VBPFFS_CRASH_SEEDS (`3`, `1-20`, `4,9`) and VBPFFS_CRASH_CYCLES (kills per seed) run more.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import t, { type Test } from 'tap';
import { controlCall } from '../fs/control/client';
import { buildJs } from './harness/build-js';
import { DaemonProc, start, type Exit, type Running } from './harness/daemon-proc';
import { MAP, SETUP, apply, command, describe, emptyState, mapText, objectSource, randomOp, type Op, type State } from './harness/crash-model';
import { fuseSkipReason } from './harness/mount';
import { tmpfsSkipReason } from './harness/tmpfs';
import { mulberry32 } from '../scripts/fuzz/prng';

const exec = promisify(execFile);

function seedList(spec: string | undefined): number[] {
  if (spec === undefined || spec === '') return [1, 2];
  return spec.split(',').flatMap((part) => {
    const [a, b] = part.split('-').map(Number);
    return b === undefined ? [a!] : Array.from({ length: b - a! + 1 }, (_, i) => a! + i);
  });
}

const SEEDS = seedList(process.env.VBPFFS_CRASH_SEEDS);
const CYCLES = Number(process.env.VBPFFS_CRASH_CYCLES ?? 8);
// About 60 s on a loaded 2-core host (two seeds of eight kills, the full disk and the damaged
// journals side by side); the bound is for hosts slower still, and grows with the kills asked for.
t.setTimeout(Math.max(300_000, SEEDS.length * CYCLES * 20_000));

/** Kills by where they came: between operations, while starting, in a cut write, or in flight (and then what became of that operation). */
const stats = { between: 0, startup: 0, torn: 0, acknowledged: 0, made: 0, lost: 0, rereads: 0 };

interface Rig {
  d: DaemonProc;
  base: string;
  objects: { alpha: string; beta: string };
  /** Runs an operation's command; its exit. */
  exec(op: Op): Running;
  /** What the mount shows, in describe()'s form (with a dump of the map pinned at `map`). */
  observe(map?: string): Promise<string>;
  journal: string;
}

function rig(build: string): Rig {
  const base = mkdtempSync(path.join(tmpdir(), 'vbpffs-crash-'));
  const root = path.join(base, 'root');
  mkdirSync(root);
  const d = new DaemonProc(build, { mnt: path.join(base, 'mnt'), root, state: path.join(root, 'state') });
  const objects = { alpha: path.join(base, 'alpha.ts'), beta: path.join(base, 'beta.ts') };
  writeFileSync(objects.alpha, objectSource('alpha'));
  writeFileSync(objects.beta, objectSource('beta'));
  const exec = (op: Op): Running => {
    const [cmd, ...args] = command(op, d.mnt, objects);
    return cmd === 'vbpffs' ? d.cli(...args) : start(cmd!, args);
  };
  const observe = async (map = MAP): Promise<string> => {
    const found = await start('find', [d.mnt, '-mindepth', '1', '-printf', '%y %P\n']).done;
    if (found.code !== 0) throw new Error(`find: ${found.stderr}`);
    const entries = found.stdout.split('\n').filter(Boolean).sort((a, b) => a.slice(2).localeCompare(b.slice(2)));
    const lines = await Promise.all(
      entries.map(async (e) => {
        if (e.startsWith('d ')) return e;
        // A program read fails with EIO when the run overshoots its 50 ms (wall clock) deadline, as
        // it can on a host loaded many times over: read again before calling the pin a program's.
        let cat = await start('cat', [path.join(d.mnt, e.slice(2))]).done;
        for (let i = 0; i < 3 && cat.code !== 0; i++) {
          cat = await start('cat', [path.join(d.mnt, e.slice(2))]).done;
          if (cat.code === 0) stats.rereads++;
        }
        if (cat.code !== 0) return /Input\/output error/.test(cat.stderr) ? `${e} prog` : `${e} cat failed: ${cat.stderr.trim()}`;
        if (!cat.stdout.startsWith('# WARNING!!')) return `${e} iter ${JSON.stringify(cat.stdout)}`;
        const elems = cat.stdout.split('\n').filter((l) => l !== '' && !l.startsWith('#')).map((l) => l.split(': ').map(Number) as [number, number]);
        return `${e} map ${mapText(new Map(elems))}`;
      }),
    );
    const dump = await d.cli('-j', 'map', 'dump', 'pinned', path.join(d.mnt, map)).done;
    const elems = dump.code === 0 ? (JSON.parse(dump.stdout) as { formatted: { key: number; value: number } }[]).map((x) => [x.formatted.key, x.formatted.value] as [number, number]) : [];
    lines.push(dump.code === 0 ? `map dump ${mapText(new Map(elems))}` : `map dump failed: ${dump.stderr.trim()}`);
    return lines.join('\n');
  };
  return { d, base, objects, exec, observe, journal: path.join(d.state, 'journal.jsonl') };
}

const records = (file: string): string[] => readFileSync(file, 'utf8').split('\n').filter(Boolean);
const show = (op: Op | undefined): string => (op === undefined ? 'none' : JSON.stringify(op));
const fail = (e: Exit): string => `exit ${e.code ?? e.signal}: ${e.stderr.trim()}`;


/** One seed: SETUP, then CYCLES kills, each followed by a restart and a comparison with the model. */
async function crashSeed(t: Test, build: string, seed: number): Promise<{ cycles: number; ops: number }> {
  const r = rig(build);
  t.teardown(() => r.d.down());
  const rnd32 = mulberry32(seed);
  const rnd = (): number => rnd32() / 2 ** 32;
  let names = 0;
  const fresh = (): string => `n${names++}`;
  const fold = (list: Op[]): State => list.reduce(apply, emptyState());
  const history: string[] = [];
  /** The operations whose effects the mount must show, in order. */
  const acked: Op[] = [];
  let model = emptyState();
  let ops = 0;
  /** How long each kind of command took last (vbpffs, coreutils): where a kill in flight may land. */
  const took = { cli: 400, core: 10 };
  const isCli = (op: Op): boolean => command(op, '', r.objects)[0] === 'vbpffs';
  const run = async (op: Op, what: string): Promise<void> => {
    const t0 = Date.now();
    const e = await r.exec(op).done;
    took[isCli(op) ? 'cli' : 'core'] = Date.now() - t0;
    ops++;
    history.push(`${what} ${show(op)} -> ${e.code === 0 ? 'ok' : fail(e)}`);
    if (e.code !== 0) throw new Error(`seed ${seed} ${what}: ${show(op)} failed with the daemon up: ${fail(e)}\n${history.join('\n')}`);
    acked.push(op);
    model = apply(model, op);
  };

  await r.d.up();
  for (const op of SETUP) await run(op, 'setup');
  for (let cycle = 1; cycle <= CYCLES; cycle++) {
    const mode = (['between', 'during', 'during', 'startup', 'torn'] as const)[Math.floor(rnd() * 5)]!;
    const n = 1 + Math.floor(rnd() * 5);
    // Operations before the kill, each acknowledged (its command succeeded) before the next.
    for (let i = 0; i < n; i++) await run(randomOp(model, rnd, fresh), `${cycle}.${i}`);
    let inflight: Op | undefined;
    let point = `after the cycle's op ${n} (nothing in flight)`;
    if (mode === 'during') {
      // Somewhere in the time such a command took last (most of a CLI command's is its start-up,
      // so kills before it reaches the daemon are the most common).
      inflight = randomOp(model, rnd, fresh);
      const delay = Math.floor(rnd() * 1.2 * took[isCli(inflight) ? 'cli' : 'core']);
      const running = r.exec(inflight);
      await sleep(delay);
      await r.d.kill();
      const e = await running.done;
      ops++;
      point = `${delay} ms into ${show(inflight)} (it ${e.code === 0 ? 'was acknowledged' : `failed: ${fail(e)}`})`;
      if (e.code === 0) {
        acked.push(inflight); // acknowledged before the daemon died: it must be there
        model = apply(model, inflight);
        inflight = undefined;
      }
    } else {
      await r.d.kill();
    }
    // Every acknowledged operation is one record; the one in flight may have made one more, and
    // then the restart must make it too (the prefix is the journal's). Any other count is a loss.
    const inJournal = records(r.journal).length;
    const journalled = inJournal - acked.length;
    const where = (): string => `seed ${seed} cycle ${cycle}: killed ${point} (VBPFFS_CRASH_SEEDS=${seed} npx tap test/crash-consistency.ts)`;
    if (journalled !== 0 && !(journalled === 1 && inflight !== undefined)) {
      t.fail(`${where()}: the journal holds ${inJournal} records for ${acked.length} acknowledged operations`, { history });
      return { cycles: cycle, ops };
    }
    stats[mode === 'during' ? (inflight === undefined ? 'acknowledged' : journalled === 1 ? 'made' : 'lost') : mode]++;
    if (journalled === 1) {
      acked.push(inflight!);
      model = apply(model, inflight!);
    }
    if (mode === 'torn') {
      // As a kill inside the last record's write(2) leaves the file: cut at a byte inside it. A
      // record is flushed before its operation is acknowledged, so no real kill tears an
      // acknowledged one; this test does, and the state must go back to before it.
      const text = readFileSync(r.journal, 'utf8');
      const last = text.lastIndexOf('\n', text.length - 2) + 1;
      const cut = last + 1 + Math.floor(rnd() * (text.length - last - 2));
      truncateSync(r.journal, Buffer.byteLength(text.slice(0, cut)));
      point += `; then the journal's last record cut at byte ${cut - last} of ${text.length - last}`;
      acked.pop();
      model = fold(acked);
    }
    if (mode === 'startup') {
      // Killed while replaying: the next start must replay the same journal all the same.
      const delay = Math.floor(rnd() * 1500);
      const back = r.d.up().catch(() => undefined);
      await sleep(delay);
      await r.d.kill();
      await back;
      point += `; then killed again ${delay} ms into the restart`;
    }
    const out = await r.d.up();
    const seen = await r.observe();
    history.push(`${cycle}.kill ${point}`);
    if (seen !== describe(model)) {
      t.fail(`${where()}: the mount is not the state after the journalled prefix of the operations`, { seen, expected: describe(model), history, daemon: out, faults: r.d.stderr().split('\n').filter((l) => / fault/.test(l)).slice(-5) });
      return { cycles: cycle, ops };
    }
    const st = await controlCall<{ journal: { failed: string[]; damaged?: string } }>(path.join(r.d.state, 'control.sock'), 'status');
    if (mode === 'torn') {
      if (!/a torn last record .* was cut/.test(st.journal.damaged ?? '') || !/warning: journal damaged: .*torn last record/.test(out)) {
        t.fail(`${where()}: the cut record is not reported`, { status: st.journal, daemon: out });
      }
    } else if (st.journal.damaged !== undefined || st.journal.failed.length > 0) {
      t.fail(`${where()}: the replay reports damage or failures`, { status: st.journal });
    }
  }
  return { cycles: CYCLES, ops };
}

const ENOSPC = /^Error: the state directory is full: \S+journal\.jsonl cannot record this change, so it was not made \(ENOSPC\)\n$/;

async function fullDisk(t: Test, build: string): Promise<void> {
  const r = rig(build);
  const state = r.d.state;
  mkdirSync(state, { mode: 0o700 });
  await exec('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0700', 'tmpfs', state]);
  t.teardown(async () => {
    await r.d.down();
    await exec('umount', ['-l', state]);
  });
  const fill = path.join(state, 'fill');
  // An object file whose journal record (it carries the source) spans pages: on a disk with one
  // page left, its write is cut short before ENOSPC says why.
  const big = path.join(r.base, 'big.ts');
  writeFileSync(big, objectSource('alpha') + `// ${'x'.repeat(12 * 1024)}\n`);
  let model = emptyState();
  const ok = async (op: Op): Promise<void> => {
    const e = await r.exec(op).done;
    t.equal(e.code, 0, `${show(op)} succeeds: ${e.stderr}`);
    model = apply(model, op);
  };
  await r.d.up();
  for (const op of [...SETUP, { kind: 'iterPin', path: 'a' } as Op, { kind: 'update', via: MAP, key: 1, value: 1 } as Op]) await ok(op);
  // The journal's last page would take small records on a full disk: directories with names of
  // the right lengths end the journal at a page boundary first, so every record needs a new page.
  for (let i = 0, rem = -1; rem !== 0; i++) {
    const size = statSync(r.journal).size;
    rem = (4096 - (size % 4096)) % 4096;
    const name = `pad${i}-`;
    const overhead = `{"op":"mkdir","path":"/${name}","mode":493}\n`.length;
    if (rem !== 0) await ok({ kind: 'mkdir', path: name + 'x'.repeat(rem - overhead >= 1 ? Math.min(200, rem - overhead) : 200) });
  }
  const before = await r.observe();
  t.equal(before, describe(model));

  await exec('sh', ['-c', `cat /dev/zero > ${fill} 2>/dev/null; true`]);
  const refused: [Op, RegExp][] = [
    [{ kind: 'update', via: MAP, key: 1, value: 2 }, ENOSPC],
    [{ kind: 'delete', via: MAP, key: 1 }, ENOSPC],
    [{ kind: 'iterPin', path: 'b' }, ENOSPC],
    [{ kind: 'mapPin', via: MAP, path: 'm2' }, ENOSPC],
    [{ kind: 'mkdir', path: 'd' }, /^mkdir: cannot create directory .*: No space left on device\n$/],
    [{ kind: 'rename', from: 'a', to: 'a2' }, /^mv: cannot move .* to .*: No space left on device\n$/],
    [{ kind: 'unlink', path: 'a' }, /^unlink: cannot unlink .*: No space left on device\n$/],
  ];
  for (const [op, why] of refused) {
    const e = await r.exec(op).done;
    t.equal(e.code, 1, `${show(op)} fails on a full state disk`);
    t.match(e.stderr, why, 'saying why (ENOSPC)');
  }
  t.equal(await r.observe(), before, 'nothing changed, and every pin and the map still read');

  // One page free: the big record is cut short and cut back off; a small one still fits.
  truncateSync(fill, statSync(fill).size - 4096);
  const e = await r.d.cli('iter', 'pin', big, path.join(r.d.mnt, 'big')).done;
  t.equal(e.code, 1, 'a record the disk can hold only part of is refused, not acknowledged torn');
  t.match(e.stderr, ENOSPC);
  await ok({ kind: 'update', via: MAP, key: 2, value: 2 });
  const recs = records(r.journal).map((l) => JSON.parse(l) as { op: string; pinPath?: string });
  t.same([recs.at(-1)!.op, recs.some((x) => x.pinPath === '/big')], ['mapUpdate', false], 'the journal is whole records, ending with the update, with nothing of the refused pin');

  await r.d.kill();
  rmSync(fill);
  const out = await r.d.up();
  t.notMatch(out, /warning/, 'a clean replay');
  t.equal(await r.observe(), describe(model), 'after kill -9 and a restart: everything acknowledged, nothing refused');
  const e2 = await r.d.cli('iter', 'pin', big, path.join(r.d.mnt, 'big')).done;
  t.equal(e2.code, 0, `with room again, the big pin is made: ${e2.stderr}`);
  await ok({ kind: 'mkdir', path: 'd' });
}

/** A daemon started on a state directory holding `journal` (text, or a directory in its place). */
async function damaged(t: Test, build: string, journal: string | null, check: (r: Rig, out: string) => Promise<void>): Promise<void> {
  const r = rig(build);
  t.teardown(() => r.d.down());
  mkdirSync(r.d.state, { recursive: true, mode: 0o700 });
  if (journal === null) mkdirSync(r.journal);
  else writeFileSync(r.journal, journal);
  const out = await r.d.up();
  await check(r, out);
  // It takes new changes, and a restart after kill -9 has them, with no damage left to report.
  const mk = await start('mkdir', [path.join(r.d.mnt, 'new')]).done;
  t.equal(mk.code, 0, mk.stderr);
  await r.d.kill();
  const again = await r.d.up();
  t.notMatch(again, /journal damaged/, 'the next start finds no damage');
  t.match(await r.observe(), /^d new$/m);
}

const JUNK = [
  JSON.stringify({ op: 'mkdir', path: '/a', mode: 0o755 }),
  JSON.stringify({ op: 'mapCreate', path: '/a/m', spec: { type: 'hash', key: 4, value: 4, entries: 8, name: 'm', keyType: 'u32', valueType: 'u32' }, ids: { prog: 1, map: 1, link: 1 } }),
  JSON.stringify({ op: 'mapUpdate', map: { pinned: '/a/m' }, key: { hex: '01000000' }, value: '2a000000', flags: 0 }),
  JSON.stringify({ op: 'mapUpdate', map: { id: 77 }, key: { hex: '01000000' }, value: '00000000', flags: 0 }),
  '\u0000\u00ff\u00fe binary junk \u0007',
  JSON.stringify({ op: 'mkdir', path: '/b', mode: 0o755 }),
].join('\n') + '\n';

t.test('crash consistency through real processes', async (t) => {
  const skip = await fuseSkipReason();
  t.test('(mounted)', { skip }, async (t) => {
    const build = buildJs();
    t.jobs = 3; // the three parts side by side, each with its own daemons: most of their time is waiting

    void t.test(`kill -9 at seeded points: seeds ${SEEDS.join(', ')}, ${CYCLES} kills each`, { buffered: true }, async (t) => {
      const t0 = Date.now();
      let cycles = 0;
      let ops = 0;
      // Two seeds at a time, each with its own daemon and mount: most of a cycle is waiting.
      const queue = [...SEEDS];
      const worker = async (): Promise<void> => {
        for (let seed = queue.shift(); seed !== undefined; seed = queue.shift()) {
          const r = await crashSeed(t, build, seed);
          cycles += r.cycles;
          ops += r.ops;
        }
      };
      await Promise.all([worker(), worker()]);
      const k = stats;
      t.pass(
        `${cycles} kill/restart cycles, ${ops} operations in ${((Date.now() - t0) / 1000).toFixed(1)} s; kills: ${k.between} between operations, ` +
          `${k.acknowledged + k.made + k.lost} in flight (${k.acknowledged} acknowledged first, ${k.made} made but not acknowledged, ${k.lost} not made), ` +
          `${k.startup} again during the restart, ${k.torn} with the last record cut; ${k.rereads} iterator read(s) past the deadline read again`,
      );
    });

    const tmpfs = await tmpfsSkipReason();
    void t.test('a full state disk: ENOSPC from the CLI, nothing changed, reads served, all well once there is room', { skip: tmpfs, buffered: true }, (t) => fullDisk(t, build));

    void t.test('a damaged journal: the daemon starts with what it could restore, says what is wrong, and takes changes', { buffered: true }, async (t) => {
      await Promise.all([
        damaged(t, build, JUNK, async (r, out) => {
          t.match(out, /^warning: journal: 4 record\(s\) replayed, 1 failed /m);
          t.match(out, /^warning: journal damaged: \S+journal\.jsonl:5: not JSON; the replay stopped there: 4 record\(s\) restored, 2 line\(s\) from there on not replayed; the journal as it was is kept as \S+journal\.jsonl\.damaged-\S+$/m);
          t.match(out, /^warning: journal replay failed: mapUpdate: ENOENT: no map with id 77$/m);
          t.equal(await r.observe('a/m'), 'd a\nf a/m map 1:42\nmap dump 1:42', 'what came before the damage is served');
          t.match(r.d.stderr(), /vbpffs:fs journal damaged: \S+journal\.jsonl:5: not JSON/, 'the daemon logs it (DEBUG=vbpffs:*)');
          t.match(r.d.stderr(), /vbpffs:fs journal: record 4 \(mapUpdate\) failed on replay: ENOENT: no map with id 77/);
          const st = await r.d.cli('status').done;
          t.match(st.stdout, /\tjournal damaged: .*journal\.jsonl:5: not JSON/, 'vbpffs status says it after the fact');
          const kept = readdirSync(r.d.state).find((f) => f.startsWith('journal.jsonl.damaged-'))!;
          t.equal(readFileSync(path.join(r.d.state, kept), 'utf8'), JUNK, 'the damaged journal is kept as it was');
        }),
        damaged(t, build, null, async (r, out) => {
          t.match(out, /^warning: journal damaged: cannot read \S+journal\.jsonl \(EISDIR\): nothing was restored; the journal as it was is kept as /m);
          t.ok(statSync(path.join(r.d.state, readdirSync(r.d.state).find((f) => f.startsWith('journal.jsonl.damaged-'))!)).isDirectory());
        }),
        damaged(t, build, '', async (r, out) => {
          t.notMatch(out, /warning/, 'an empty journal is no damage');
          t.ok(existsSync(r.journal));
        }),
        damaged(t, build, '{"op":"mkdir","path":"/a"}\n{"op":"mkdir","path":"/b","mode":493}\n', async (_r, out) => {
          t.match(out, /^warning: journal damaged: \S+journal\.jsonl:1: mkdir: mode is missing or not what it should be \(missing\); the replay stopped there: 0 record\(s\) restored/m);
        }),
      ]);
    });
  });
});