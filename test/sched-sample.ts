/**
 * tp/sched/sample (progs/events/sched-sample.ts): exact schedstat deltas on the simulated source, and
 * the real thing on the host inside a test-owned cgroup (skipped with the reason without cgroup2/root).
 */
import t, { type Test } from 'tap';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { SchedSampler, type SchedSampleBatch } from '../progs/events';
import { hostReader, parseCgroupLine, parseSchedstat, type ProcReader } from '../progs/events/sched-scan';
import { HostCgroupSource } from '../tags/host/host-source';
import type { KernfsNode } from '../tags/kernfs-node';
import { SimCgroupSource } from '../tags/sim/source';
import { DEFAULT_SLICE_NS } from '../tags/sim/workload';
import { isBpfError } from '../uapi';
import { cgroupSkipReason, makeCgroupTree } from './harness/cgroup-tree';

const SEC = 1_000_000_000;

async function sim(): Promise<{ src: SimCgroupSource; a: KernfsNode; b: KernfsNode }> {
  const src = new SimCgroupSource();
  await src.start();
  const a = await src.mkdir('/a');
  const b = await src.mkdir('/a/b');
  return { src, a, b };
}

/** The memfs volume as a reader, with hooks to fail chosen paths. */
function memReader(src: SimCgroupSource, fail: (p: string) => Error | undefined = () => undefined): ProcReader {
  return {
    read(p) {
      const e = fail(p);
      if (e !== undefined) throw e;
      return src.fs.readFileSync(p, 'utf8') as string;
    },
  };
}

function errno(code: string): Error {
  return Object.assign(new Error(code), { code });
}

function byPid(b: SchedSampleBatch): Map<number, SchedSampleBatch['samples'][number]> {
  return new Map(b.samples.map((s) => [s.pid, s]));
}

t.test('a first sample is a baseline only; the next gives exact run, wait and slice deltas per task with its cgroup', async (t) => {
  const { src, a, b } = await sim();
  const w = src.workload;
  w.spawn({ cgroup: a, pid: 200, comm: 'web', run: 0.5, wait: 0.25 });
  w.spawn({ cgroup: b, pid: 201, comm: 'db', run: 0.1, wait: 0.05, sliceNs: 1_000_000 });
  const s = new SchedSampler(src);
  const first = await s.sampleOnce();
  t.same(first.samples, [], 'no deltas for tasks seen for the first time');
  t.equal(first.baselined, 2);
  t.equal(first.intervalNs, 0);
  t.equal(first.seq, 1);
  w.advance(2 * SEC);
  const second = await s.sampleOnce();
  t.equal(second.timeNs, 2 * SEC, 'stamped with the simulator clock');
  t.equal(second.intervalNs, 2 * SEC);
  const m = byPid(second);
  t.match(m.get(200), { pid: 200, comm: 'web', cgroup: a, runNs: SEC, waitNs: SEC / 2, slices: Math.ceil(SEC / DEFAULT_SLICE_NS) });
  t.match(m.get(201), { pid: 201, comm: 'db', cgroup: b, runNs: 0.2 * SEC, waitNs: 0.1 * SEC, slices: 200 });
  w.advance(SEC);
  const third = byPid(await s.sampleOnce());
  t.equal(third.get(200)!.runNs, SEC / 2, 'each delta covers one interval only');
  t.equal(third.get(201)!.slices, 100);
  t.equal(s.stats.samples, 3);
  t.equal(s.stats.lastTasks, 2);
});

t.test('a task that migrates between samples is reported in its new cgroup', async (t) => {
  const { src, a, b } = await sim();
  src.workload.spawn({ cgroup: a, pid: 300, run: 1 });
  const s = new SchedSampler(src);
  await s.sampleOnce();
  src.workload.advance(SEC);
  src.workload.migrate(300, b);
  const got = (await s.sampleOnce()).samples;
  t.equal(got.length, 1);
  t.equal(got[0]!.cgroup, b);
  t.equal(got[0]!.runNs, SEC, 'the figures follow the task, not the cgroup');
});

t.test('an exited task disappears: no sample, listed once in gone, its baseline dropped', async (t) => {
  const { src, a } = await sim();
  const w = src.workload;
  w.spawn({ cgroup: a, pid: 400, run: 0.5 });
  w.spawn({ cgroup: a, pid: 401, run: 0.5 });
  const s = new SchedSampler(src);
  await s.sampleOnce();
  w.advance(SEC);
  w.exit(400);
  const b1 = await s.sampleOnce();
  t.same(b1.samples.map((x) => x.pid), [401]);
  t.same(b1.gone, [400]);
  const b2 = await s.sampleOnce();
  t.same(b2.gone, [], 'gone once');
});

t.test('a task spawned between samples gives a baseline first, a reused pid with lower counters too', async (t) => {
  const { src, a } = await sim();
  const w = src.workload;
  w.spawn({ cgroup: a, pid: 500, run: 1 });
  const s = new SchedSampler(src);
  await s.sampleOnce();
  w.advance(5 * SEC);
  await s.sampleOnce();
  w.exit(500);
  w.spawn({ cgroup: a, pid: 500, run: 0.1 });
  w.spawn({ cgroup: a, pid: 501, run: 0.1 });
  w.advance(SEC);
  const b = await s.sampleOnce();
  t.same(b.samples, [], 'neither the new task nor the reused pid has a delta yet');
  t.equal(b.baselined, 2);
  w.advance(SEC);
  t.same((await s.sampleOnce()).samples.map((x) => [x.pid, x.runNs]), [[500, 0.1 * SEC], [501, 0.1 * SEC]]);
});

t.test('only the tasks of the root subtree are sampled, each thread once even when listed twice', async (t) => {
  const { src, a, b } = await sim();
  const c = await src.mkdir('/c');
  const w = src.workload;
  w.spawn({ cgroup: a, pid: 600, run: 0.2 });
  w.spawn({ cgroup: b, pid: 601, run: 0.2 });
  w.spawn({ cgroup: c, pid: 602, run: 0.2 });
  const s = new SchedSampler(src, { root: a });
  await s.sampleOnce();
  w.advance(SEC);
  // A thread moving between two cgroups can be listed in both.
  src.fs.writeFileSync('/sys/fs/cgroup/a/b/cgroup.threads', '601\n600\n');
  const got = (await s.sampleOnce()).samples.map((x) => [x.pid, x.cgroup.path]);
  t.same(got, [[600, '/a'], [601, '/a/b']]);
});

t.test('a task or cgroup gone between listing and reading is skipped silently', async (t) => {
  const { src, a, b } = await sim();
  const w = src.workload;
  w.spawn({ cgroup: a, pid: 700, run: 0.3 });
  w.spawn({ cgroup: a, pid: 701, run: 0.3 });
  w.spawn({ cgroup: b, pid: 702, run: 0.3 });
  let fail: (p: string) => Error | undefined = () => undefined;
  const s = new SchedSampler(src, { reader: memReader(src, (p) => fail(p)) });
  await s.sampleOnce();
  w.advance(SEC);
  fail = (p) =>
    p === '/proc/700/schedstat' ? errno('ESRCH') : p === '/proc/701/cgroup' ? errno('ENOENT') : p.endsWith('/a/b/cgroup.threads') ? errno('ENOENT') : undefined;
  const got = await s.sampleOnce();
  t.same(got.samples, []);
  t.equal(got.vanished, 2);
  t.same(got.gone.sort(), [700, 701, 702]);
});

t.test('a task in a cgroup the hierarchy does not have is left out and counted', async (t) => {
  const { src, a } = await sim();
  src.workload.spawn({ cgroup: a, pid: 800, run: 0.3 });
  const s = new SchedSampler(src);
  await s.sampleOnce();
  src.workload.advance(SEC);
  src.fs.writeFileSync('/proc/800/cgroup', '0::/not-yet-seen (deleted)\n');
  const got = await s.sampleOnce();
  t.same(got.samples, []);
  t.equal(got.unresolved, 1);
  src.workload.advance(SEC);
  t.equal((await s.sampleOnce()).samples[0]!.runNs, 0.3 * SEC, 'its baseline moved on: the next delta covers one interval');
});

t.test('any other read failure or unparsable file fails the sample with its errno', async (t) => {
  const { src, a } = await sim();
  src.workload.spawn({ cgroup: a, pid: 900, run: 0.3 });
  await t.rejects(new SchedSampler(src, { reader: memReader(src, (p) => (p.endsWith('cgroup.threads') ? errno('EACCES') : undefined)) }).sampleOnce(), { code: 'EACCES' });
  await t.rejects(new SchedSampler(src, { reader: memReader(src, (p) => (p.endsWith('comm') ? errno('EACCES') : undefined)) }).sampleOnce(), { code: 'EACCES' });
  src.fs.writeFileSync('/proc/900/schedstat', 'garbage\n');
  await t.rejects(new SchedSampler(src).sampleOnce(), { code: 'EINVAL' });
  src.workload.advance(1);
  src.fs.writeFileSync('/proc/900/cgroup', '1:name=systemd:/\n');
  await t.rejects(new SchedSampler(src).sampleOnce(), { code: 'ENODEV' });
  t.throws(() => parseSchedstat('1 -2 3', 'x'), { code: 'EINVAL' });
  t.equal(parseCgroupLine('12:cpu:/x\n0::/a/b\n', 'x'), '/a/b', 'the cgroup2 line of a hybrid host');
});

t.test('the interval must be a positive number of ms', async (t) => {
  const src = new SimCgroupSource();
  for (const intervalMs of [0, -1, Number.NaN, Infinity]) t.throws(() => new SchedSampler(src, { intervalMs }), { code: 'EINVAL' });
  t.equal(new SchedSampler(src).intervalMs, 1000, 'default 1 s');
});

t.test('start samples at once then every interval to every subscriber; stop ends it; a throwing listener harms no other', async (t) => {
  const { src, a } = await sim();
  src.workload.spawn({ cgroup: a, pid: 1000, run: 0.5 });
  let clock = 0;
  const s = new SchedSampler(src, { intervalMs: 10, clock: () => (clock += 7) });
  const seen: SchedSampleBatch[] = [];
  s.subscribe(() => {
    throw new Error('a bad subscriber');
  });
  const off = s.subscribe((b) => seen.push(b));
  s.start();
  s.start();
  t.ok(s.running);
  while (seen.length < 3) await sleep(5);
  await s.stop();
  t.notOk(s.running);
  t.same(seen.slice(0, 3).map((b) => [b.seq, b.timeNs]), [[1, 7], [2, 14], [3, 21]]);
  const n = seen.length;
  await sleep(40);
  t.equal(seen.length, n, 'no samples after stop');
  off();
  await s.sampleOnce();
  t.equal(seen.length, n, 'an unsubscribed listener hears nothing');
  await s.stop();
});

t.test('a tick while a scan is in flight is skipped, and a failing tick is counted, not thrown', async (t) => {
  const { src, a } = await sim();
  src.workload.spawn({ cgroup: a, pid: 1100, run: 0.5 });
  let broken = false;
  const s = new SchedSampler(src, { intervalMs: 5, reader: memReader(src, () => (broken ? errno('EACCES') : undefined)) });
  const pending = s.sampleOnce();
  s.start();
  t.equal(s.stats.skipped, 1, 'the immediate tick met the sample in flight');
  await pending;
  broken = true;
  while (s.stats.failures < 2) await sleep(5);
  await s.stop();
  t.ok(s.stats.failures >= 2);
  t.equal(s.workerUtilization(), null, 'the simulator needs no worker');
});

async function host(): Promise<void> {
  const skip = await cgroupSkipReason();
  const opts = skip === false ? {} : { skip };

  const fixture = async (t: Test): Promise<{ src: HostCgroupSource; tree: Awaited<ReturnType<typeof makeCgroupTree>>; node: KernfsNode }> => {
    const tree = await makeCgroupTree(t, 'sched');
    tree.mkdirp('busy');
    const src = await HostCgroupSource.open({ reconcileIntervalMs: 0 });
    t.teardown(() => src.stop());
    await src.start();
    return { src, tree, node: src.hierarchy.cgroupByPath(tree.cg())! };
  };

  t.test('host: a CPU burner in a test cgroup shows run time > 0 in that cgroup, read in the worker', opts, async (t) => {
    const { src, tree, node } = await fixture(t);
    const burner = await tree.spawnBurnerIn('busy');
    const sleeper = await tree.spawnIn();
    const s = new SchedSampler(src, { root: node });
    t.teardown(() => s.stop());
    const first = await s.sampleOnce();
    t.ok(first.baselined >= 2, 'both tasks are baselined');
    await sleep(200);
    const second = byPid(await s.sampleOnce());
    const b = second.get(burner.pid!);
    t.ok(b, 'the burner is sampled');
    t.ok(b!.runNs > 0, `run ns delta ${b!.runNs} > 0`);
    t.ok(b!.slices >= 0);
    t.equal(b!.comm, 'sh');
    t.equal(b!.cgroup, src.hierarchy.cgroupByPath(tree.cg('busy')), 'in the test cgroup it was moved to');
    t.equal(second.get(sleeper.pid!)?.cgroup, node);
    const elu = s.workerUtilization();
    t.ok(elu !== null && elu.active >= 0, 'the scan ran in a worker');
    t.ok(s.stats.lastScanMs > 0);
    await s.stop();
    await s.stop();
  });

  t.test('host: a process that exits between listing and reading does not break the sample', opts, async (t) => {
    const { src, tree, node } = await fixture(t);
    // sh waits on its sleep, so a killed sleep is reaped at once and leaves /proc.
    const parent = spawn('sh', ['-c', 'sleep 600; :'], { stdio: 'ignore' });
    t.teardown(() => void parent.kill('SIGKILL'));
    await new Promise((r) => parent.once('spawn', r));
    fs.writeFileSync(path.join(tree.dir, 'cgroup.procs'), `${parent.pid}\n`);
    let victim = 0;
    for (let i = 0; i < 200 && victim === 0; i++) {
      await sleep(10);
      const kids = fs.readFileSync(`/proc/${parent.pid}/task/${parent.pid}/children`, 'utf8').trim();
      if (kids !== '') victim = Number(kids.split(' ')[0]);
    }
    t.ok(victim > 0, 'found the sleep child');
    // It may have been forked before its shell was moved.
    fs.writeFileSync(path.join(tree.dir, 'cgroup.procs'), `${victim}\n`);
    const real = hostReader();
    let killed = false;
    const reader: ProcReader = {
      read(p) {
        const text = real.read(p);
        if (p.endsWith('cgroup.threads') && !killed) {
          killed = true;
          process.kill(victim, 'SIGKILL');
          const deadline = Date.now() + 3000;
          while (fs.existsSync(`/proc/${victim}`) && Date.now() < deadline);
        }
        return text;
      },
    };
    const s = new SchedSampler(src, { root: node, reader });
    const b = await s.sampleOnce();
    t.ok(killed);
    t.equal(b.vanished, 1, 'the victim was listed, then gone: skipped silently');
    t.equal(b.baselined, 1, 'the shell is still sampled');
  });

  t.test('host: a worker failure comes back as a BpfError with its errno', opts, async (t) => {
    const { src, tree, node } = await fixture(t);
    const child = await tree.spawnIn();
    const procRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'vbpffs-proc-'));
    t.teardown(() => fs.rmSync(procRoot, { recursive: true, force: true }));
    fs.mkdirSync(path.join(procRoot, String(child.pid)));
    fs.writeFileSync(path.join(procRoot, String(child.pid), 'schedstat'), 'garbage\n'.repeat(4000));
    const s = new SchedSampler(src, { root: node, procRoot });
    t.teardown(() => s.stop());
    const e = await s.sampleOnce().catch((x: unknown) => x);
    t.ok(isBpfError(e, 'EINVAL'), `${String(e)}`);
    t.notMatch(String((e as Error).message), /EINVAL: EINVAL/);
    // An errno the table does not have (ENXIO: open(2) of a socket) comes back as EIO.
    fs.rmSync(path.join(procRoot, String(child.pid), 'schedstat'));
    const server = net.createServer().listen(path.join(procRoot, String(child.pid), 'schedstat'));
    await new Promise((r) => server.once('listening', r));
    t.teardown(() => void server.close());
    await t.rejects(s.sampleOnce(), { code: 'EIO', message: /ENXIO/ });
  });

  t.test('host: the host reader reads a file larger than its buffer whole', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vbpffs-read-'));
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
    const text = `${'1234567\n'.repeat(10_000)}`;
    fs.writeFileSync(path.join(dir, 'big'), text);
    const r = hostReader();
    t.equal(r.read(path.join(dir, 'big')), text);
    t.equal(r.read('/proc/self/comm').length > 0, true, 'and procfs files, which stat as empty');
    t.throws(() => r.read(path.join(dir, 'missing')), { code: 'ENOENT' });
  });
}

void host();
