/**
 * The simulated trees `vbpffs mount --sim NAME` starts from (fs/engine/sim-preset.ts): the benchmark
 * trees scripts/bench/fs.ts mounts.
 */
import t from 'tap';
import { SimCgroupSource } from '../tags';
import { simPreset } from '../fs/engine/sim-preset';

t.test('bench-1k is 1,000 cgroups below the root: slices of 99 services each, no tasks', async (t) => {
  const sim = new SimCgroupSource();
  await sim.start();
  t.teardown(() => sim.stop());
  const stop = await simPreset(sim, 'bench-1k');
  t.equal(sim.hierarchy.size, 1001, 'and the root');
  t.same(sim.hierarchy.root.children.slice(0, 2).map((c) => c.name), ['slice-0.slice', 'slice-1.slice']);
  t.equal(sim.hierarchy.cgroupByPath('/slice-0.slice')!.children.length, 99);
  t.ok(sim.hierarchy.cgroupByPath('/slice-9.slice/svc-98.service'));
  t.notOk(sim.hierarchy.cgroupByPath('/slice-10.slice'));
  await stop();
});
