/**
 * The CLI's reach (issue 8's privilege boundaries, as a command line meets them), on a real mount:
 * paths that leave the mount (`..`, a symlink in the mount pointing out, a path elsewhere), huge
 * arguments and bytes that are not UTF-8 are refused with clear errors and change nothing; the
 * escape suite's programs (harness/escape-cases.ts), loaded through `vbpffs iter pin`, are refused
 * by the verifier, and what it lets through reaches no host object while the daemon keeps serving.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { examplePath } from '../progs/examples';
import { stateDirFor } from '../fs/control/registry';
import { CONSTRUCTOR_CHAINS, HOST_GLOBALS, PROTOTYPE_POLLUTION, escapeObject } from './harness/escape-cases';
import { fuseSkipReason, mountVbpffs } from './harness/mount';
import { settle, type Out } from './harness/cli-result';

const run = promisify(execFile);
// Some twenty children of the TypeScript loader: past the default file timeout.
t.setTimeout(600_000);
const CLI = path.join(__dirname, '..', 'fs', 'cli.ts');

t.test('the CLI on a real mount: arguments and programs that try to reach past it', async (t) => {
  const skip = await fuseSkipReason();
  t.test('(mounted)', { skip }, async (t) => {
    const m = await mountVbpffs(t, { sim: 'demo' });
    const base = mkdtempSync(path.join(tmpdir(), 'vbpffs-args-'));
    t.teardown(() => rm(base, { recursive: true, force: true }));
    const env = { ...process.env, VBPFFS_STATE_ROOT: m.stateRoot };
    const cli = (...args: string[]): Promise<Out> => settle(run(process.execPath, [...process.execArgv, CLI, ...args], { env, encoding: 'utf8', maxBuffer: 1 << 24 }));
    /** The CLI with its last argument ending in the raw bytes `tail` (printf escapes), which are not UTF-8. */
    const cliBytes = (tail: string, ...args: string[]): Promise<Out> =>
      settle(run('sh', ['-c', `exec "$0" "$@" "$(printf '${tail}')"`, process.execPath, ...process.execArgv, CLI, ...args], { env, encoding: 'utf8' }));
    const journal = path.join(stateDirFor(m.mnt, m.stateRoot), 'journal.jsonl');
    const records = (): { op: string; index?: number }[] => readFileSync(journal, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { op: string });
    const view = m.p('system.slice', 'postgres.service', 'procs');
    const stillServing = async (what: string): Promise<void> => {
      t.equal(await m.sh('cat', view), 'procs     2\nthreads   2\n', `${what}: another view still reads`);
    };

    await Promise.all([
      cli('iter', 'pin', examplePath('procs'), m.p('procs')),
      cli('map', 'create', m.p('m'), 'type', 'hash', 'key', '4', 'value', '4', 'entries', '1', 'name', 'm'),
    ]);
    await m.sh('ln', '-s', base, m.p('out'));
    // The view's first run, cold, may pass the 50 ms deadline on a loaded host: warm it before it is the witness.
    await m.sh('cat', view).catch(() => undefined);
    const [{ id: prog }] = JSON.parse((await cli('-j', 'prog', 'show')).stdout) as { id: number }[];
    const P = String(prog);

    t.test('paths that leave the mount, huge arguments and bytes that are not UTF-8 are refused, and change nothing', async (t) => {
      const before = { records: records().length, tree: await m.sh('ls', '-AR', m.mnt) };
      const outside = path.join(base, 'x');
      const longPath = m.p('a'.repeat(120 * 1024));
      const r = await Promise.all([
        cli('prog', 'pin', 'id', P, `${m.mnt}/system.slice/../../escaped`),
        cli('prog', 'pin', 'id', P, m.p('out', 'x')),
        cli('iter', 'pin', examplePath('procs'), m.p('out', 'v')),
        cli('prog', 'pin', 'id', P, outside),
        cli('prog', 'pin', 'id', P, outside, 'mount', m.mnt),
        cli('prog', 'pin', 'id', P, longPath),
        cli('prog', 'show', 'id', P, ...Array<string>(10_000).fill('x')),
        cli('map', 'update', 'pinned', m.p('m'), 'key', ...Array<string>(10_000).fill('1'), 'value', '1', '0', '0', '0'),
        cliBytes('\\377', 'prog', 'pin', 'id', P, `${m.mnt}/`),
        cliBytes('\\300\\257x.ts', 'iter', 'pin', `${base}/`, m.p('v')),
      ]);
      const [dotdot, link, linkIter, elsewhere, elsewhereMount, long, manyArgs, manyBytes, badPin, badObj] = r;
      t.match(dotdot, { code: 1, stderr: /^Error: .*\/system\.slice\/\.\.\/\.\.\/escaped leaves the mount .* \(EINVAL\)\n$/ });
      for (const [what, x] of Object.entries({ link, linkIter })) {
        t.match(x, { code: 1, stderr: new RegExp(`^Error: .*symlink to ${base}: outside the mount at ${m.mnt} \\(EXDEV\\)\\n$`) }, `${what}: a symlink in the mount that points out is not followed out`);
      }
      t.match(elsewhere, { code: 1, stderr: `Error: ${outside} is not in a vbpffs mount (vbpffs status lists them) (ENOENT)\n` });
      t.match(elsewhereMount, { code: 1, stderr: `Error: ${outside} is outside ${m.mnt} (EINVAL)\n` });
      t.match(long, { code: 1, stderr: /^Error: the arguments are too long: \d+ bytes, the control protocol takes at most 65536 \(E2BIG\)\n$/ });
      t.match(manyArgs, { code: 1, stderr: /^Error: unexpected argument 'x' \(usage: prog show \[PROG\]\) \(EINVAL\)\n$/ });
      t.match(manyBytes, { code: 1, stderr: /^Error: map \d+: the key is 4 bytes, got 10000 \(EINVAL\)\n$/ });
      for (const [what, x] of Object.entries({ badPin, badObj })) {
        t.match(x, { code: 1, stderr: /^Error: argument \d+ is not valid UTF-8 \(EINVAL\)\n$/ }, `${what}: refused before anything is sent`);
      }
      // A single argument over 128 KiB (MAX_ARG_STRLEN) never reaches the CLI: execve refuses it.
      await t.rejects(async () => run(process.execPath, [CLI, 'prog', 'pin', 'id', P, m.p('a'.repeat(1 << 20))]), { code: 'E2BIG' }, 'a 1 MB path: the kernel says E2BIG');
      t.equal(await m.sh('ls', '-AR', m.mnt), before.tree, 'nothing appeared in the mount');
      // Journal-first: what reached the engine was recorded before it was tried, then marked failed.
      const all = records();
      const tried = all.map((r, i) => ({ ...r, i })).filter((r) => r.i >= before.records && r.op !== 'failed');
      t.same(tried.map((r) => r.op).sort(), ['iterPin', 'objPin'], 'only the pins through the symlink reached the engine');
      t.same(all.filter((r) => r.op === 'failed').map((r) => r.index).filter((i) => i! >= before.records), tried.map((r) => r.i), 'every record the refused commands left is marked failed: a restart replays none of them');
      t.same(await readdir(base), [], 'and nothing outside it');
    });

    t.test('the escape suite through `vbpffs iter pin`: refused by the verifier, or run with no host in reach', async (t) => {
      const obj = (name: string, body: string): string => {
        const file = path.join(base, `${name}.ts`);
        writeFileSync(file, escapeObject(body, name));
        return file;
      };
      const hostile = { constructor_chains: CONSTRUCTOR_CHAINS, prototype_pollution: PROTOTYPE_POLLUTION, host_globals: HOST_GLOBALS };
      // What the verifier lets through, the isolate must hold: each probe prints one line.
      const probes: Record<string, string> = {
        probes: `const f = function (this: any) { return this; };
  const g: any = f.call(undefined);
  bpf_seq_printf(ctx.meta.seq, '%s %s %s %s %s\\n', typeof g, typeof g?.process, typeof g?.require, typeof g?.WebAssembly, typeof g?.setTimeout);
  bpf_seq_printf(ctx.meta.seq, '%s / %s\\n', Object.keys(ctx).join(), Object.keys(ctx.meta).join());
  try { (null as any).x; } catch (e: any) { bpf_seq_printf(ctx.meta.seq, '%s\\n', String(e.stack)); }
  return 0;`,
        loop: `for (;;) {}`,
        bomb: `const a: unknown[] = []; for (;;) a.push({ a: [1, 2, 3], s: 'x'.repeat(100) });`,
        throws: `throw new Error('thrown by the program');`,
        flood: `for (let i = 0; i < 100000; i++) bpf_seq_printf(ctx.meta.seq, '%0100d', i);
  return 0;`,
      };
      const [refused, pinned] = await Promise.all([
        Promise.all(Object.entries(hostile).map(([name, c]) => cli('iter', 'pin', obj(name, c.body), m.p(name)))),
        Promise.all(Object.entries(probes).map(([name, body]) => cli('iter', 'pin', obj(name, body), m.p(name)))),
      ]);
      for (const [i, name] of Object.keys(hostile).entries()) {
        t.match(refused[i], { code: 1, stderr: /^Error: .*program rejected by the verifier[^]*(programs cannot reach the host|leads to constructors or prototypes|compiles code at run time)[^]*\(EACCES\)\n$/ }, `${name}: the verifier refuses it (EACCES)`);
      }
      for (const [i, name] of Object.keys(probes).entries()) t.equal(pinned[i]!.code, 0, `${name} passes the verifier: ${pinned[i]!.stderr}`);
      const names = (await m.sh('ls', m.mnt)).split('\n');
      t.notOk(Object.keys(hostile).some((n) => names.includes(n)), 'nothing refused was pinned');

      const cat = (name: string): Promise<Out> => settle(run('cat', [m.p('system.slice', 'cron.service', name)], { encoding: 'utf8', maxBuffer: 1 << 24 }));
      const probe = await cat('probes');
      const [global, fields, ...stack] = probe.stdout.split('\n');
      t.match(global, /^(undefined|object) undefined undefined undefined undefined$/, 'a sloppy function\'s this has no process, require, WebAssembly or timers');
      t.equal(fields, 'meta,cgroup / seq,session_id,seq_num', 'the ctx holds only its documented fields');
      t.match(stack[0], /^TypeError: Cannot read properties of null/);
      t.notMatch(stack.join('\n'), new RegExp(`${path.resolve(__dirname, '..')}|node:|node_modules`), 'a stack names no host file');
      await stillServing('after the probes');

      // Through the CLI a program has the runtime's 50 ms: a memory bomb may meet the deadline first.
      const faults: Record<string, RegExp> = { loop: /deadline/, bomb: /memory limit|deadline/, throws: /thrown by the program/ };
      for (const name of Object.keys(faults)) {
        t.match(await cat(name), { code: 1, stderr: /Input\/output error/ }, `${name}: its read fails with EIO`);
        await stillServing(name);
      }
      const flood = await cat('flood');
      t.ok(flood.stdout.length < 32768 * 4 && flood.stdout.length + flood.stderr.length > 0, `10 MB of output is cut at the seq buffer (${flood.stdout.length} bytes, ${flood.stderr.trim()})`);
      await stillServing('flood');
      const progs = JSON.parse((await cli('-j', 'prog', 'show')).stdout) as { name: string; last_fault?: string }[];
      for (const [name, why] of Object.entries(faults)) t.match(progs.find((p) => p.name === name)?.last_fault, why, `${name}: prog show says why`);
    });
  });
});
