/**
 * tp/timer/tick (progs/events/tick.ts): every live cgroup once per tick, in pre-order, in one batch,
 * on the simulated source and on real cgroups (skipped with the reason without cgroup2/root).
 */
import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { CgroupTick, Listeners, type TickBatch } from '../progs/events';
import { HostCgroupSource } from '../tags/host/host-source';
import { SimCgroupSource } from '../tags/sim/source';
import { cgroupSkipReason, makeCgroupTree } from './harness/cgroup-tree';

async function sim(): Promise<SimCgroupSource> {
  const src = new SimCgroupSource();
  await src.start();
  for (const p of ['/a', '/a/x', '/a/x/deep', '/b', '/a/y']) await src.mkdir(p);
  return src;
}

t.test('a tick visits every live cgroup once, in pre-order (children in creation order), in one batch', async (t) => {
  const src = await sim();
  const tick = new CgroupTick(src);
  const batches: TickBatch[] = [];
  tick.subscribe((b) => batches.push(b));
  src.workload.advance(5);
  const b = tick.tickOnce();
  t.equal(batches.length, 1, 'one batch per tick');
  t.equal(batches[0], b);
  t.same(b.cgroups.map((c) => c.path), ['/', '/a', '/a/x', '/a/x/deep', '/a/y', '/b']);
  t.equal(b.seq, 1);
  t.equal(b.timeNs, 5, 'stamped with the simulator clock');
  t.equal(tick.tickOnce().seq, 2);
});

t.test('dying cgroups are left out and the root option limits the tick to a subtree', async (t) => {
  const src = await sim();
  const a = src.hierarchy.cgroupByPath('/a')!;
  const x = src.hierarchy.cgroupByPath('/a/x')!;
  x.tryGet(); // keep it dying rather than released
  await src.rmdir('/a/x/deep');
  await src.rmdir('/a/x');
  t.ok(x.dying);
  t.same(new CgroupTick(src).tickOnce().cgroups.map((c) => c.path), ['/', '/a', '/a/y', '/b']);
  t.same(new CgroupTick(src, { root: a }).tickOnce().cgroups.map((c) => c.path), ['/a', '/a/y']);
  t.same(new CgroupTick(src, { root: x }).tickOnce().cgroups, [], 'a dying root ticks nothing');
});

t.test('a tick lets a listener read each cgroup\'s interface files', async (t) => {
  const src = await sim();
  const a = src.hierarchy.cgroupByPath('/a')!;
  src.workload.spawn({ cgroup: a, pid: 321, run: 1 });
  src.workload.advance(2_000_000_000);
  const b = new CgroupTick(src, { root: a }).tickOnce();
  t.match(await b.readFile(b.cgroups[0]!, 'cpu.stat'), /^usage_usec 2000000$/m);
  t.equal(await b.readFile(b.cgroups[0]!, 'cgroup.procs'), '321\n');
});

t.test('start ticks every interval until stop; a throwing listener harms no other; bad intervals are EINVAL', async (t) => {
  const src = await sim();
  let now = 0;
  const tick = new CgroupTick(src, { intervalMs: 10, clock: () => (now += 1000) });
  t.equal(new CgroupTick(src).intervalMs, 1000, 'default 1 s');
  for (const intervalMs of [0, -5, Number.NaN]) t.throws(() => new CgroupTick(src, { intervalMs }), { code: 'EINVAL' });
  tick.subscribe(() => {
    throw new Error('bad listener');
  });
  const seen: number[] = [];
  const off = tick.subscribe((b) => seen.push(b.timeNs));
  tick.start();
  tick.start();
  t.ok(tick.running);
  while (seen.length < 3) await sleep(5);
  tick.stop();
  tick.stop();
  t.notOk(tick.running);
  t.same(seen.slice(0, 3), [1000, 2000, 3000]);
  const n = seen.length;
  await sleep(40);
  t.equal(seen.length, n, 'no ticks after stop');
  off();
  tick.tickOnce();
  t.equal(seen.length, n);
});

t.test('a listener list counts its listeners and a remover is idempotent', async (t) => {
  const l = new Listeners<number>('x');
  const off = l.subscribe(() => undefined);
  t.equal(l.size, 1);
  off();
  off();
  t.equal(l.size, 0);
});

async function host(): Promise<void> {
  const skip = await cgroupSkipReason();
  t.test('host: a tick visits every real cgroup of the subtree once, in pre-order', skip === false ? {} : { skip }, async (t) => {
    const tree = await makeCgroupTree(t, 'tick');
    tree.mkdirp('a', 'x');
    tree.mkdirp('b');
    const src = await HostCgroupSource.open({ reconcileIntervalMs: 0 });
    t.teardown(() => src.stop());
    await src.start();
    const root = src.hierarchy.cgroupByPath(tree.cg())!;
    const b = new CgroupTick(src, { root }).tickOnce();
    const paths = b.cgroups.map((c) => c.path);
    t.same(paths.slice(1).sort(), [tree.cg('a'), tree.cg('a', 'x'), tree.cg('b')].sort());
    t.equal(paths[0], tree.cg());
    t.ok(paths.indexOf(tree.cg('a')) < paths.indexOf(tree.cg('a', 'x')), 'a parent before its child');
    t.equal(paths.indexOf(tree.cg('a', 'x')), paths.indexOf(tree.cg('a')) + 1, 'a subtree before the next sibling');
    t.match(await b.readFile(b.cgroups[0]!, 'cpu.stat'), /^usage_usec \d+$/m);
    const whole = new CgroupTick(src).tickOnce().cgroups;
    t.equal(new Set(whole).size, whole.length, 'each cgroup once over the whole mount');
    t.equal(whole[0], src.hierarchy.root);
  });
}

void host();
