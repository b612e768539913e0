/**
 * Fault injection, faulty programs: view programs that throw, loop forever, allocate without end,
 * print 10 MB or ask for a retry, loaded through the CLI (`vbpffs iter pin OBJ PATH`) into a daemon
 * started by `vbpffs mount` (in the background, with DEBUG=vbpffs:* so its log has the debug lines),
 * and read with cat. Each fails only its own read, with the errno that fits; the reason is in the
 * daemon's log and in `vbpffs prog show`; other readers keep being answered.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { isMountPoint } from '../fs/daemon';
import { stateDirFor } from '../fs/control/registry';
import { fuseSkipReason } from './harness/mount';
import { LOADER_TIMEOUT, type Out } from './harness/cli-result';

const run = promisify(execFile);
t.setTimeout(180_000);
const CLI = path.join(__dirname, '..', 'fs', 'cli.ts');

const HEAD = `import { SEC, bpf_seq_printf, bpf_seq_write, vbpffs_cgroup_name } from 'vbpffs/bpf';\n`;
/** One object file per fault, each pinned by `iter pin` (which takes an object's first program). */
const OBJECTS: Record<string, string> = {
  healthy: `${HEAD}export const healthy = SEC('cgroup_view', (ctx) => {
  bpf_seq_printf(ctx.meta.seq, 'ok %s\\n', vbpffs_cgroup_name(ctx.cgroup));
  return 0;
});`,
  throws: `${HEAD}export const throws = SEC('cgroup_view', (ctx) => {
  if (vbpffs_cgroup_name(ctx.cgroup) !== '\\0') throw new Error('injected view fault');
  return 0;
});`,
  loops: `${HEAD}let spins = 0;
export const loops = SEC('cgroup_view', (ctx) => {
  for (;;) spins++;
});`,
  // One 256 MiB array per turn: far past the 64 MiB limit at the first, before the deadline.
  allocs: `${HEAD}const keep: number[][] = [];
export const allocs = SEC('cgroup_view', (ctx) => {
  for (;;) keep.push(new Array(1 << 25).fill(keep.length + 0.5));
});`,
  // V8 does not check for termination inside BigInt arithmetic: only ending the run from outside
  // holds its deadline (issue 14). Seconds of CPU on an idle machine.
  bigints: `${HEAD}export const bigints = SEC('cgroup_view', (ctx) => {
  bpf_seq_printf(ctx.meta.seq, '%d\\n', (7n ** 5000000n).toString().length);
  return 0;
});`,
  prints: `${HEAD}export const prints = SEC('cgroup_view', (ctx) => {
  bpf_seq_printf(ctx.meta.seq, 'start\\n');
  // A string, so that filling 10 MiB of bytes does not itself take the 50 ms deadline on a loaded machine.
  bpf_seq_write(ctx.meta.seq, 'x'.repeat(10 << 20));
  return 0;
});`,
  retries: `${HEAD}export const retries = SEC('cgroup_view', (ctx) => {
  bpf_seq_printf(ctx.meta.seq, 'partial\\n');
  return 1;
});`,
};

/**
 * Resolves true once the daemon's log has as many "abandoned run ... ended" lines as "abandoned"
 * ones (false after 60 s): an object whose abandoned run still holds a thread fails its reads at
 * once, which a test of another kind of fault must not mistake for its own.
 */
async function waitAbandoned(log: string): Promise<boolean> {
  for (let i = 0; i < 600; i++) {
    const text = readFileSync(log, 'utf8');
    const started = text.match(/ abandoned past its deadline/g)?.length ?? 0;
    const ended = text.match(/the abandoned run of .* ended after/g)?.length ?? 0;
    if (ended >= started) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

/** Reads a view `n` times in a child process (open, read to the end, close); each read's ms. */
const TIMED_READS = `
const fs = require('node:fs');
const [file, n] = [process.argv[1], Number(process.argv[2])];
const out = [];
for (let i = 0; i < n; i++) {
  const t0 = process.hrtime.bigint();
  const text = fs.readFileSync(file, 'utf8');
  out.push({ ms: Number(process.hrtime.bigint() - t0) / 1e6, text });
}
process.stdout.write(JSON.stringify(out));
`;

interface Timed {
  ms: number;
  text: string;
}

const p50 = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

t.test('faulty programs loaded through the CLI fail only their own reads', async (t) => {
  const skip = await fuseSkipReason();
  t.test('(mounted)', { skip }, async (t) => {
    const base = mkdtempSync(path.join(tmpdir(), 'vbpffs-fault-'));
    const mnt = path.join(base, 'mnt');
    const p = (...parts: string[]): string => path.join(mnt, ...parts);
    const stateRoot = path.join(base, 'state');
    const log = path.join(stateDirFor(mnt, stateRoot), 'daemon.log');
    const env = { ...process.env, VBPFFS_STATE_ROOT: stateRoot, DEBUG: 'vbpffs:*' };
    const execArgv = process.execArgv.filter((a) => !a.includes('processinfo'));
    const sh = async (cmd: string, ...args: string[]): Promise<Out> => {
      try {
        return { code: 0, ...(await run(cmd, args, { env, encoding: 'utf8', maxBuffer: 1 << 26 })) };
      } catch (e) {
        const x = e as Out;
        return { code: x.code, stdout: x.stdout, stderr: x.stderr };
      }
    };
    const cli = (...args: string[]): Promise<Out> => sh(process.execPath, ...execArgv, CLI, ...args);
    const timedReads = async (file: string, n: number): Promise<Timed[]> => {
      const r = await sh(process.execPath, '-e', TIMED_READS, file, String(n));
      t.equal(r.code, 0, `every read of ${file} succeeded: ${r.stderr}`);
      return JSON.parse(r.stdout) as Timed[];
    };
    t.teardown(async () => {
      await cli('umount', mnt);
      if (await isMountPoint(mnt)) await run('fusermount', ['-uz', mnt]).catch(() => undefined);
    });

    const up = await cli('mount', mnt, '--sim', 'demo', '--timeout', LOADER_TIMEOUT);
    t.equal(up.code, 0, `vbpffs mount --sim demo: ${up.stderr}`);
    const ids: Record<string, number> = {};
    await Promise.all(
      Object.entries(OBJECTS).map(async ([name, source]) => {
        const obj = path.join(base, `${name}.ts`);
        writeFileSync(obj, source);
        const r = await cli('-j', 'iter', 'pin', obj, p(name));
        t.equal(r.code, 0, `iter pin ${name}: ${r.stderr}`);
        ids[name] = (JSON.parse(r.stdout) as { progId: number }).progId;
      }),
    );
    const healthy = p('system.slice', 'healthy');
    // The first runs of an isolate are slow (cold code); the views are read once before measuring.
    for (let i = 0; i < 5 && (await sh('cat', healthy)).code !== 0; i++);
    t.equal((await sh('cat', healthy)).stdout, 'ok system.slice\n', 'the healthy view reads its cgroup');

    const faults = [
      { name: 'throws', errno: 'Input/output error', reason: /prog throws threw: Error: injected view fault \(.*throws\.ts:3:\d+\)/ },
      { name: 'loops', errno: 'Input/output error', reason: /prog loops exceeded its deadline of 50 ms/ },
      // Past its heap limit V8 collects garbage for seconds before it gives up, and nothing interrupts
      // that: the run is ended from outside unless the limit is reached within the deadline.
      { name: 'allocs', errno: 'Input/output error', reason: /prog allocs exceeded its (memory limit of 64 MiB|deadline of 50 ms and was ended from outside)/ },
      { name: 'bigints', errno: 'Input/output error', reason: /prog bigints exceeded its deadline of 50 ms and was ended from outside/ },
      { name: 'prints', errno: 'Argument list too long', reason: /prog prints \(id \d+\) printed more for one object than the 32768-byte seq buffer holds/ },
      { name: 'retries', errno: 'Resource temporarily unavailable', reason: null },
    ];
    for (const f of faults) {
      const file = p('system.slice', f.name);
      const r = await sh('cat', file);
      t.equal(r.code, 1, `cat ${f.name} fails`);
      t.equal(r.stderr, `cat: ${file}: ${f.errno}\n`, `${f.name}: ${f.errno}`);
      t.equal(r.stdout, '', 'and prints nothing of the failed object');
      t.equal((await sh('cat', healthy)).stdout, 'ok system.slice\n', `the healthy view still reads after ${f.name}`);
    }

    const shown = JSON.parse((await cli('-j', 'prog', 'show')).stdout) as { id: number; faults: number; last_fault?: string; run_cnt: number }[];
    const byId = new Map(shown.map((s) => [s.id, s]));
    for (const f of faults.filter((f) => f.name !== 'prints' && f.name !== 'retries')) {
      const s = byId.get(ids[f.name]!)!;
      t.equal(s.faults, 1, `prog show: ${f.name} faulted once`);
      t.match(s.last_fault, f.reason!, `prog show: ${f.name}'s last_fault says why`);
    }
    // Overflowing the reader's buffer and asking for a retry are not faults of the run (the kernel's
    // run stats have neither): prog show counts the run and no fault.
    for (const name of ['prints', 'retries']) t.match(byId.get(ids[name]!), { faults: 0, run_cnt: Number }, `prog show: ${name} did not fault`);
    t.equal(byId.get(ids.healthy!)!.faults, 0);

    const text = readFileSync(log, 'utf8');
    for (const f of faults.filter((f) => f.reason !== null)) {
      t.match(text, new RegExp(`vbpffs:(progs|iter) .*${f.reason!.source}`), `the daemon's log says why ${f.name} failed`);
    }

    for (const name of ['allocs', 'bigints']) {
      t.test(`rule deadline-from-outside: ${name}'s read fails at its deadline and holds no other reader`, async (t) => {
        // Both run for seconds in V8 code that does not check for termination (garbage collection
        // near the heap limit, BigInt arithmetic); the run is ended from outside instead, and the
        // other object's reads go on beside it. Each kind is given time to end between rounds.
        t.ok(await waitAbandoned(log), 'the earlier abandoned run has ended');
        const t0 = performance.now();
        const [bomb, during] = await Promise.all([sh('cat', p(name)).then((r) => ({ ...r, ms: performance.now() - t0 })), timedReads(healthy, 30)]);
        t.match(bomb, { code: 1, stderr: /Input\/output error/ }, `${name}'s read fails with EIO`);
        t.ok(bomb.ms < 3000, `at its deadline plus the margin, not when V8 returns (${bomb.ms.toFixed(0)} ms)`);
        t.same([...new Set(during.map((r) => r.text))], ['ok system.slice\n'], 'every healthy read during it gave the view');
        t.comment(`${name} read: ${bomb.ms.toFixed(0)} ms; healthy reads meanwhile: max ${Math.max(...during.map((r) => r.ms)).toFixed(0)} ms, p50 ${p50(during.map((r) => r.ms)).toFixed(2)} ms`);
      });
    }

    t.test('a looping program hammered by one reader leaves another reader answered', async (t) => {
      // Each object's runs go on a thread of their own, so a healthy read does not wait behind the
      // looping runs; the engine's thread still answers both readers. The bound is generous (250 ms above the baseline's median) so that
      // only a daemon that stops answering, or serves readers unfairly, fails it; the issue asks
      // that other readers keep their normal latency, which is why this test measures time at all.
      const before = await timedReads(healthy, 30);
      writeFileSync(path.join(base, 'hammer'), '');
      const hammer = spawn('sh', ['-c', `n=0; f=0; while [ -e "${base}/hammer" ]; do n=$((n+1)); cat "${p('loops')}" >/dev/null 2>&1 || f=$((f+1)); [ $n = 1 ] && echo started; done; echo "$n $f"`], { env });
      let hammerOut = '';
      // Listened for from the start: the shell can end, and its exit be emitted, while the rm that
      // ends it is still being reaped, before a listener added afterwards would be there to see it.
      const closed = new Promise<void>((resolve) => hammer.once('close', () => resolve()));
      const started = new Promise<void>((resolve) => {
        hammer.stdout.on('data', (d: Buffer) => {
          hammerOut += d.toString();
          if (hammerOut.startsWith('started\n')) resolve();
        });
        void closed.then(resolve);
      });
      await started;
      const during = await timedReads(healthy, 30);
      await run('rm', [path.join(base, 'hammer')]);
      await closed;
      const [reads, failed] = hammerOut.replace('started\n', '').trim().split(' ').map(Number);
      t.ok(reads! > 0, `the hammer read the looping view ${reads} times`);
      t.equal(failed, reads, 'every one of its reads failed');
      t.same([...new Set(during.map((r) => r.text))], ['ok system.slice\n'], 'every healthy read during the hammering gave the view');
      const [a, b] = [p50(before.map((r) => r.ms)), p50(during.map((r) => r.ms))];
      t.comment(`healthy read p50: ${a.toFixed(2)} ms before, ${b.toFixed(2)} ms while a looping view is hammered (max ${Math.max(...during.map((r) => r.ms)).toFixed(1)} ms)`);
      t.ok(b <= a + 250, `p50 ${b.toFixed(1)} ms during is within 250 ms of ${a.toFixed(1)} ms before`);
    });
  });
});
