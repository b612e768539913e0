/**
 * `npm start`: the object model as a library, on a simulated cgroup2 tree (no root needed), then a
 * look at the host's real cgroup2 tree when there is one. The "collector" below is plain TypeScript
 * calling the kernel-named helpers directly, to show the storage and its lifetimes without a
 * program; the README's quickstart shows programs, the mount and a view.
 */
import {
  BPF_F_NO_PREALLOC,
  BPF_LOCAL_STORAGE_GET_F_CREATE,
  BpfMapType,
  isBpfError,
} from '../uapi';
import { Kernel, ValueSchema, bpf_cgrp_storage_get, createMap, type CgrpStorageMap } from '../progs';
import { HostCgroupSource, SimCgroupSource, type KernfsNode } from '../tags';

const SEC = 1_000_000_000;

function tree(root: KernfsNode, line: (n: KernfsNode, prefix: string) => string): string[] {
  const out: string[] = [];
  const walk = (n: KernfsNode, prefix: string, last: boolean, top: boolean): void => {
    out.push(top ? line(n, '') : line(n, `${prefix}${last ? '└─ ' : '├─ '}`));
    const kids = n.children.filter((c) => !c.dying);
    kids.forEach((c, i) => walk(c, top ? '' : `${prefix}${last ? '   ' : '│  '}`, i === kids.length - 1, false));
  };
  walk(root, '', true, true);
  return out;
}

async function simulated(): Promise<void> {
  console.log('== A simulated cgroup2 tree with a workload (tags/sim)');
  const source = new SimCgroupSource();
  await source.start();
  const k = new Kernel({ cgroups: source.hierarchy });
  const [sys, user] = [await source.mkdir('/system.slice'), await source.mkdir('/user.slice')];
  const cron = await source.mkdir('/system.slice/cron.service');
  const db = await source.mkdir('/system.slice/postgres.service');
  const shell = await source.mkdir('/user.slice/session-1.scope');
  const w = source.workload;
  w.spawn({ cgroup: cron, comm: 'cron', run: 0.02, wait: 0.01 });
  w.spawn({ cgroup: db, comm: 'postgres', run: 0.6, wait: 0.3, system: 0.2 });
  w.spawn({ cgroup: db, comm: 'postgres', run: 0.4, wait: 0.4, system: 0.2 });
  w.spawn({ cgroup: shell, comm: 'bash', run: 0.05, io: 0.1 });
  void sys;
  void user;

  const schema = ValueSchema.define({ usage_usec: 'u64', some_total_usec: 'u64', ticks: 'u32' });
  const h = createMap<CgrpStorageMap>(k, {
    type: BpfMapType.CGRP_STORAGE,
    name: 'cpu_view',
    keySize: 4,
    valueSize: schema.size,
    maxEntries: 0,
    flags: BPF_F_NO_PREALLOC,
    btf: { key: ValueSchema.define('u32'), value: schema },
  });
  const map = h.object;
  console.log(`map ${map.id}: ${map.typeName} name ${map.name} key ${map.keySize}B value ${map.valueSize}B (cache slot ${map.cacheIdx})`);

  // The collector: once a simulated second, for every cgroup, what a tick program would do.
  for (let tick = 0; tick < 10; tick++) {
    w.advance(SEC);
    for (const cg of source.hierarchy.walk()) {
      const sdata = bpf_cgrp_storage_get(map, cg, null, BPF_LOCAL_STORAGE_GET_F_CREATE);
      if (sdata === null) continue;
      const v = schema.view(sdata) as { usage_usec: bigint; some_total_usec: bigint; ticks: number };
      const stat = await source.readFile(cg, 'cpu.stat');
      const psi = await source.readFile(cg, 'cpu.pressure');
      v.usage_usec = BigInt(/usage_usec (\d+)/.exec(stat)![1]!);
      v.some_total_usec = BigInt(/some .* total=(\d+)/.exec(psi)![1]!);
      v.ticks += 1;
    }
  }

  console.log('after 10 simulated seconds, userspace lookups keyed by cgroup (BPF_MAP_LOOKUP_ELEM):');
  for (const l of tree(source.hierarchy.root, (n, p) => {
    const v = schema.toJson(map.lookupElem(n)) as Record<string, unknown>;
    const name = n.parent === null ? '/' : n.name;
    return `  ${(p + name).padEnd(32)} id ${String(n.id).padEnd(3)} cpu ${String(v.usage_usec).padStart(8)} us  waited ${String(v.some_total_usec).padStart(8)} us  ticks ${v.ticks}`;
  }))
    console.log(l);

  try {
    map.getNextKey(null);
  } catch (e) {
    if (!isBpfError(e)) throw e;
    console.log(`get_next_key on cgrp_storage: ${e.message} (errno ${e.errno}, as the kernel)`);
  }

  const before = map.nrElems;
  w.exit(w.procs(cron)[0]!);
  await source.rmdir('/system.slice/cron.service');
  console.log(`rmdir cron.service: state ${cron.state}; its value was freed at release (${before} -> ${map.nrElems} values in map ${map.id})`);
  try {
    map.lookupElem('/system.slice/cron.service');
  } catch (e) {
    if (!isBpfError(e)) throw e;
    console.log(`lookup by its path now: ${e.message}`);
  }
  h.close();
  console.log(`close the last handle: map ${map.id} released (${k.list('map').length} maps left)`);
}

async function host(): Promise<void> {
  console.log('\n== The host cgroup2 tree (tags/host)');
  let source: HostCgroupSource;
  try {
    source = await HostCgroupSource.open({ reconcileIntervalMs: 0 });
  } catch (e) {
    console.log(`skipped: ${e instanceof Error ? e.message : String(e)}`);
    return;
  }
  const t0 = process.hrtime.bigint();
  await source.start();
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const nodes = [...source.hierarchy.walk()];
  console.log(`cgroup2 at ${source.mountPoint}: ${nodes.length} cgroup${nodes.length === 1 ? "" : "s"} loaded and watched in ${ms.toFixed(1)} ms`);
  for (const n of nodes.slice(0, 8)) console.log(`  id ${String(n.id).padEnd(6)} ${n.path}`);
  if (nodes.length > 8) console.log(`  ... and ${nodes.length - 8} more`);
  await source.stop();
}

async function main(): Promise<void> {
  console.log('vbpffs demo: the BPF object model and the cgroup hierarchy it rests on\n');
  await simulated();
  await host();
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exitCode = 1;
});
