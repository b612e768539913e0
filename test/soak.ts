/**
 * The soak (scripts/soak), bounded: a short run on the host's cgroup2 tree through a real mount and
 * daemon process, held to the error rule only (every failed read is ENOENT of something that
 * vanished); the RSS rule needs the full `npm run soak`. Then what the run is judged by, the reader's
 * errno accounting on real files, and a soak interrupted with SIGINT cleaning up after itself.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { errnoOfMessage } from '../scripts/soak/errno';
import { readLoop } from '../scripts/soak/reader';
import { isMounted } from '../scripts/soak/daemon';
import { DEFAULTS, failures, formatReport, runSoak, type SoakReport } from '../scripts/soak/run';
import { exitStatus, parseSoakArgs } from '../scripts/soak';
import { CgroupChurn } from '../scripts/soak/churn';
import { cgroupSkipReason } from './harness/cgroup-tree';
import { fuseSkipReason } from './harness/mount';

const run = promisify(execFile);
// Two daemons started through the TypeScript loader and 8 s of load each: past the default timeout.
t.setTimeout(300_000);
const SOAK = path.join(__dirname, '..', 'scripts', 'soak.ts');

t.test('a short soak on the host: no read fails but with ENOENT of a vanished directory or file', async (t) => {
  const skip = (await fuseSkipReason()) || (await cgroupSkipReason());
  t.test('(mounted, with real cgroups)', { skip }, async (t) => {
    const r = await runSoak({ ...DEFAULTS, seconds: 8, checkRss: false });
    t.same(failures(r, false), [], formatReport(r, failures(r, false)));
    t.ok(r.reads > 100, `the readers read (${r.reads})`);
    t.ok(r.churn.created >= 8 * DEFAULTS.rate * 0.5, `cgroups were made (${r.churn.created})`);
    t.ok(r.churn.removed > 0 && r.pins.pinned > 0, 'and removed, and a view pinned');
    t.equal(r.rss.samplesKiB.length, 8, 'RSS was sampled every second');
    t.notOk(existsSync(r.cgroup), 'the soak-owned cgroup is removed');
    t.notOk(await isMounted(r.mountPoint), 'and the mount');
  });
});

const report = (over: Partial<SoakReport>): SoakReport => ({
  seconds: 60,
  reads: 1000,
  listings: 100,
  errors: { ENOENT: 12 },
  samples: [],
  churn: { created: 3000, removed: 2900, errors: {} },
  pins: { pinned: 15, unpinned: 15, errors: [] },
  rss: { samplesKiB: [100_000, 104_000], warmKiB: 100_000, endKiB: 104_000, ratio: 1.04 },
  fds: { warm: 30, end: 30 },
  cgroupsMirrored: 104,
  interrupted: false,
  cgroup: '/sys/fs/cgroup/x',
  mountPoint: '/tmp/m',
  ...over,
});

t.test('a soak passes only with no error but ENOENT, reads made, every pin and cgroup change done, RSS within 10%', async (t) => {
  t.same(failures(report({}), true), []);
  t.match(formatReport(report({}), []), /reads +1000 cat \(17\/s\).*\n.*errors +ENOENT 12\n[^]*ratio 1\.040[^]*\nPASS$/);
  const bad = report({
    errors: { ENOENT: 1, EIO: 2, 'ENOENT (cgroup alive)': 1 },
    samples: ['cat: /m/x: Input/output error'],
    reads: 0,
    pins: { pinned: 1, unpinned: 0, errors: ['EEXIST'] },
    churn: { created: 1, removed: 0, errors: { EBUSY: 1 } },
    rss: { samplesKiB: [100, 120], warmKiB: 100, endKiB: 120, ratio: 1.2 },
    interrupted: true,
  });
  t.same(failures(bad, true), [
    'read errors other than ENOENT: EIO 2, ENOENT (cgroup alive) 1',
    'no read was made',
    'pin/unpin failures: 1',
    'cgroup mkdir/rmdir failures: EBUSY 1',
    'RSS grew 20.0% after the warm-up (at most 10%)',
    'interrupted',
  ]);
  t.notOk(failures(bad, false).some((f) => f.startsWith('RSS')), 'a short run is not held to the RSS rule');
  t.match(formatReport(bad, failures(bad, true)), /\(interrupted\)[^]*Input\/output error[^]*failed: EEXIST[^]*\nFAIL: read errors/);
  t.match(formatReport(report({ errors: {} }), []), /errors +none/);
  t.same([exitStatus(report({}), []), exitStatus(bad, ['x']), exitStatus(report({}), ['x'])], [0, 130, 1], 'exit 0 passed, 130 interrupted, 1 failed');
});

t.test('the churn keeps its pool, counts every failed mkdir and rmdir by errno, and removes what it made', async (t) => {
  // On a plain directory: mkdir and rmdir are what the churn does on cgroupfs too.
  const base = mkdtempSync(path.join(tmpdir(), 'vbpffs-soak-churn-'));
  t.teardown(() => rm(base, { recursive: true, force: true }));
  const parent = path.join(base, 'soak');
  const churn = new CgroupChurn(parent);
  await churn.remove(); // nothing made yet: nothing to do
  await churn.start(5);
  t.same((await run('ls', [parent])).stdout.split('\n').filter(Boolean).sort(), ['c0', 'c1', 'c2', 'c3', 'c4']);
  await run('rmdir', [path.join(parent, 'c0')]); // behind its back: its removal fails ENOENT
  writeFileSync(path.join(parent, 'c6'), ''); // in its way: c6's mkdir fails EEXIST
  churn.run(50);
  await new Promise((r) => setTimeout(r, 300));
  await churn.stop();
  t.same(churn.counts.errors, { ENOENT: 1, EEXIST: 1 });
  t.ok(churn.counts.created >= 10 && churn.counts.removed >= 5, `it made and removed (${churn.counts.created}, ${churn.counts.removed})`);
  await t.rejects(churn.remove(), { code: 'ENOTEMPTY' }, 'a parent it cannot empty is an error, not skipped');
  await run('rm', [path.join(parent, 'c6')]);
  await churn.remove();
  t.notOk(existsSync(parent), 'the parent and every child are gone');
});

t.test("the soak's flags: --seconds, --rate, --pool, --readers, --pin-every, each a positive number", async (t) => {
  t.same(parseSoakArgs(['--seconds', '5', '--rate', '10', '--pool', '20', '--readers', '3', '--pin-every', '1']), { ...DEFAULTS, seconds: 5, rate: 10, pool: 20, readers: 3, pinEverySeconds: 1 });
  t.throws(() => parseSoakArgs(['--minutes', '1']), /unknown option '--minutes'/);
  t.throws(() => parseSoakArgs(['--seconds', '0']), /--seconds needs a positive number/);
  t.throws(() => parseSoakArgs(['--rate']), /--rate needs a positive number/);
});

t.test("a failed cat's errno is read back from coreutils' message", async (t) => {
  t.equal(errnoOfMessage('cat: /m/a/procs: No such file or directory\n'), 'ENOENT');
  t.equal(errnoOfMessage('cat: /m/a/procs: No such device\n'), 'ENODEV');
  t.equal(errnoOfMessage('cat: /m/a: odd: Input/output error'), 'EIO', 'the message is after the last ": "');
  t.equal(errnoOfMessage('cat: /m/a: Something new'), 'cat: /m/a: Something new', 'an unknown message is kept whole');
  t.equal(errnoOfMessage(''), 'no message');
});

t.test('a reader counts by errno, and ENOENT of a stable view whose cgroup is still there is a failure', async (t) => {
  const base = mkdtempSync(path.join(tmpdir(), 'vbpffs-soak-reader-'));
  t.teardown(() => rm(base, { recursive: true, force: true }));
  const dir = path.join(base, 'mnt');
  const host = path.join(base, 'host');
  mkdirSync(path.join(dir, 'alive'), { recursive: true });
  mkdirSync(path.join(dir, 'gone'));
  mkdirSync(path.join(host, 'alive'), { recursive: true });
  writeFileSync(path.join(dir, 'alive', 'cpu'), 'ok\n');
  // Dangling symlinks: listed, then ENOENT when cat opens them; a loop gives ELOOP.
  symlinkSync('/nonexistent', path.join(dir, 'alive', 'procs'));
  symlinkSync('/nonexistent', path.join(dir, 'alive', 'memory'));
  symlinkSync('/nonexistent', path.join(dir, 'gone', 'procs'));
  symlinkSync('loop', path.join(dir, 'gone', 'loop'));
  const c = await readLoop({ dir, hostDir: host, stable: ['procs', 'cpu'] }, Date.now() + 1500, { stopped: false });
  t.ok(c.reads >= 5 && c.listings >= 3, `it read in a loop (${c.reads} cats)`);
  t.same(Object.keys(c.errors).sort(), ['ELOOP', 'ENOENT', 'ENOENT (cgroup alive)']);
  t.ok(c.errors.ENOENT! > c.errors['ENOENT (cgroup alive)']!, 'the unpinnable view and the removed cgroup give plain ENOENT');
  t.match(c.samples[0], /No such file or directory|Too many levels/);
  t.ok(c.samples.length <= 10, 'at most 10 samples are kept');
  const none = await readLoop({ dir: path.join(base, 'nothing'), hostDir: host, stable: [] }, Date.now() + 100, { stopped: false });
  t.ok(none.errors.ENOENT! >= 1 && none.reads === 0, 'a listing that fails is counted too');
  const stopped = await readLoop({ dir, hostDir: host, stable: [] }, Date.now() + 60_000, { stopped: true });
  t.equal(stopped.reads, 0, 'a stopped reader ends at once');
});

t.test('npm run soak: a bad flag is refused before anything is made (exit 2)', async (t) => {
  const r = await run(process.execPath, [...process.execArgv, SOAK, '--bogus', '1']).catch((e: { code: number; stderr: string }) => e);
  t.match(r, { code: 2, stderr: /soak could not run: Error: unknown option '--bogus'/ });
});

t.test('SIGINT: the soak stops, removes its cgroups and its mount, prints its summary, exits 130', async (t) => {
  const skip = (await fuseSkipReason()) || (await cgroupSkipReason());
  t.test('(mounted, with real cgroups)', { skip }, async (t) => {
    const child = spawn(process.execPath, [...process.execArgv, SOAK, '--seconds', '120', '--pool', '10', '--readers', '1'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    await new Promise<void>((resolve) =>
      child.stdout.setEncoding('utf8').on('data', (s: string) => {
        out += s;
        if (/daemon pid \d+/.test(out)) resolve();
      }),
    );
    const [, cgroup2, name, mnt] = /cgroup2 at (\S+); \d+ cgroups under (\S+); mounting (\S+)/.exec(out)!;
    const daemonPid = /daemon pid (\d+)/.exec(out)![1];
    child.kill('SIGINT');
    t.equal(await exited, 130);
    t.match(out, /soak: [\d.]+ s \(interrupted\)[^]*FAIL: .*interrupted/);
    t.notOk(existsSync(path.join(cgroup2!, name!)), 'the soak-owned cgroup is gone');
    t.notOk(await isMounted(mnt!), 'the mount is gone');
    t.notOk(existsSync(path.dirname(mnt!)), 'and its temporary directory');
    t.notOk(existsSync(`/proc/${daemonPid}`), 'and its daemon process');
  });
});
