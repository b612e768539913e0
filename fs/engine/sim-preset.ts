/**
 * `vbpffs mount --sim demo`: a simulated cgroup2 tree with a workload whose clock follows real time,
 * for trying vbpffs without root or cgroup2 (the same tree scripts/examples.ts uses).
 */
import { bpfError } from '../../uapi';
import type { SimCgroupSource } from '../../tags';

/** Wide trees for scripts/bench/fs.ts: N cgroups, slices of 99 services each, no workload. */
const BENCH_TREES: Readonly<Record<string, number>> = { 'bench-1k': 1_000, 'bench-10k': 10_000 };

async function benchTree(sim: SimCgroupSource, n: number): Promise<() => Promise<void>> {
  for (let s = 0, made = 0; made < n; s++) {
    await sim.mkdir(`/slice-${s}.slice`);
    made++;
    for (let c = 0; c < 99 && made < n; c++, made++) await sim.mkdir(`/slice-${s}.slice/svc-${c}.service`);
  }
  return async () => {};
}

/** Sets the preset up and returns how to stop it. */
export async function simPreset(sim: SimCgroupSource, name: string): Promise<() => Promise<void>> {
  if (Object.hasOwn(BENCH_TREES, name)) return benchTree(sim, BENCH_TREES[name]!);
  if (name !== 'demo' && name !== 'empty') throw bpfError('EINVAL', `unknown simulated tree '${name}' (demo, empty)`);
  if (name === 'empty') return async () => {};
  await sim.mkdir('/system.slice');
  await sim.mkdir('/user.slice');
  const cron = await sim.mkdir('/system.slice/cron.service');
  const db = await sim.mkdir('/system.slice/postgres.service');
  const shell = await sim.mkdir('/user.slice/session-1.scope');
  const w = sim.workload;
  w.spawn({ cgroup: cron, comm: 'cron', run: 0.02, wait: 0.01 });
  w.spawn({ cgroup: db, comm: 'postgres', run: 0.6, wait: 0.3, io: 0.05 });
  w.spawn({ cgroup: db, comm: 'postgres', run: 0.4, wait: 0.4, io: 0.1 });
  w.spawn({ cgroup: shell, comm: 'bash', run: 0.05, io: 0.1 });
  let last = process.hrtime.bigint();
  const timer = setInterval(() => {
    const now = process.hrtime.bigint();
    w.advance(Number(now - last));
    last = now;
  }, 100);
  timer.unref();
  return async () => clearInterval(timer);
}
