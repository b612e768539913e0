/**
 * tp/cgroup/mkdir and tp/cgroup/rmdir (progs/events/cgroup-events.ts) on the simulated source and on
 * real cgroups (skipped with the reason without cgroup2/root).
 */
import t from 'tap';
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { CGROUP_MKDIR_HOOK, CGROUP_RMDIR_HOOK, CgroupEventSource, EVENT_HOOKS, type CgroupEvent } from '../progs/events';
import { HostCgroupSource } from '../tags/host/host-source';
import { SimCgroupSource } from '../tags/sim/source';
import { cgroupSkipReason, makeCgroupTree } from './harness/cgroup-tree';

function record(ev: CgroupEventSource): CgroupEvent[] {
  const seen: CgroupEvent[] = [];
  ev.subscribe(CGROUP_MKDIR_HOOK, (e) => seen.push(e));
  ev.subscribe(CGROUP_RMDIR_HOOK, (e) => seen.push(e));
  return seen;
}

t.test('the event sources name the four hooks', async (t) => {
  t.same([...EVENT_HOOKS], ['tp/sched/sample', 'tp/cgroup/mkdir', 'tp/cgroup/rmdir', 'tp/timer/tick']);
});

t.test('mkdir gives one event with the node, its id, path and level, stamped with the simulator clock', async (t) => {
  const src = new SimCgroupSource();
  await src.start();
  const ev = new CgroupEventSource(src);
  const seen = record(ev);
  ev.start();
  ev.start();
  t.ok(ev.running);
  src.workload.advance(42);
  const a = await src.mkdir('/a');
  const b = await src.mkdir('/a/b');
  t.same(
    seen.map((e) => [e.hook, e.id, e.path, e.level, e.timeNs]),
    [
      ['tp/cgroup/mkdir', a.id, '/a', 1, 42],
      ['tp/cgroup/mkdir', b.id, '/a/b', 2, 42],
    ],
  );
  t.equal(seen[1]!.cgroup, b);
});

t.test('rmdir of a subtree gives one event per cgroup, deepest first, with the path it had', async (t) => {
  const src = new SimCgroupSource();
  await src.start();
  const a = await src.mkdir('/a');
  const b = await src.mkdir('/a/b');
  const ev = new CgroupEventSource(src, { clock: () => 7 });
  const seen = record(ev);
  ev.start();
  // A removal the source missed (its parent went behind its back) takes the live descendants too.
  src.hierarchy.remove(a);
  t.same(
    seen.map((e) => [e.hook, e.id, e.path, e.level, e.timeNs, e.cgroup.dying]),
    [
      ['tp/cgroup/rmdir', b.id, '/a/b', 2, 7, true],
      ['tp/cgroup/rmdir', a.id, '/a', 1, 7, true],
    ],
  );
});

t.test('no events before start or after stop, and none to an unsubscribed listener; a throwing listener harms no other', async (t) => {
  const src = new SimCgroupSource();
  await src.start();
  const ev = new CgroupEventSource(src);
  const seen: string[] = [];
  ev.subscribe(CGROUP_MKDIR_HOOK, () => {
    throw new Error('bad listener');
  });
  const off = ev.subscribe(CGROUP_MKDIR_HOOK, (e) => seen.push(`a ${e.path}`));
  ev.subscribe(CGROUP_MKDIR_HOOK, (e) => seen.push(`b ${e.path}`));
  await src.mkdir('/before');
  ev.start();
  await src.mkdir('/during');
  off();
  await src.mkdir('/after-off');
  ev.stop();
  ev.stop();
  t.notOk(ev.running);
  await src.mkdir('/after-stop');
  t.same(seen, ['a /during', 'b /during', 'b /after-off']);
});

async function host(): Promise<void> {
  const skip = await cgroupSkipReason();
  t.test('host: mkdir and rmdir of real cgroups fire the hooks with the nodes the hierarchy has', skip === false ? {} : { skip }, async (t) => {
    const tree = await makeCgroupTree(t, 'events');
    const src = await HostCgroupSource.open({ reconcileIntervalMs: 0 });
    t.teardown(() => src.stop());
    await src.start();
    const ev = new CgroupEventSource(src);
    const seen: CgroupEvent[] = [];
    const mine = (e: CgroupEvent): void => void (e.path.startsWith(`${tree.cgroup}/`) && seen.push(e));
    ev.subscribe(CGROUP_MKDIR_HOOK, mine);
    ev.subscribe(CGROUP_RMDIR_HOOK, mine);
    ev.start();
    t.teardown(() => ev.stop());
    const until = async (n: number): Promise<void> => {
      for (const deadline = Date.now() + 5000; seen.length < n && Date.now() < deadline; ) await sleep(10);
    };
    tree.mkdirp('x');
    await until(1);
    const ino = fs.statSync(tree.hostPath('x')).ino;
    fs.rmdirSync(tree.hostPath('x'));
    await until(2);
    t.same(
      seen.map((e) => [e.hook, e.path, e.id, e.level]),
      [
        ['tp/cgroup/mkdir', tree.cg('x'), ino, 2],
        ['tp/cgroup/rmdir', tree.cg('x'), ino, 2],
      ],
    );
    t.ok(seen[1]!.timeNs > seen[0]!.timeNs, 'CLOCK_MONOTONIC stamps');
  });
}

void host();
