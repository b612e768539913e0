/**
 * The bundled programs (progs/examples) on a fixed simulated tree and workload: what the README's
 * "Bundled programs" section quotes (test/examples.ts checks that it does). Every figure comes from
 * the workload simulator's clock, so the output is the same on every run and every host.
 *
 * It reads the programs as the filesystem will: a cgroup_view read is a session of the program's
 * cgroup_view link opened for the cgroup (the simulator's clock given as now_ns, cpu.ts says why),
 * and tree_summary is a session of an iter/cgroup link walking from the root in pre-order. It
 * feeds the scheduler sampler's batches to the tp/sched/sample program itself.
 */
import path from 'node:path';
import { BpfCgroupIterOrder } from '../uapi';
import { Kernel, SchedSampler, loadCollection, type BpfProg, type Collection } from '../progs';
import { EXAMPLES, examplePath } from '../progs/examples';
import { SimCgroupSource, type KernfsNode, type SpawnOptions } from '../tags';
import { bpfIterLinkCreate, type IterLinkOpts, type IterOpenOpts } from '../iter';

const SEC = 1_000_000_000;

/** The tasks: path, comm, and the shares of wall time they run, wait for a CPU and block on I/O. */
const TASKS: [string, string, Omit<SpawnOptions, 'cgroup' | 'comm'>][] = [
  ['/system.slice/cron.service', 'cron', { run: 0.02, wait: 0.01 }],
  ['/system.slice/postgres.service', 'postgres', { run: 0.6, wait: 0.3, io: 0.05, system: 0.3 }],
  ['/system.slice/postgres.service', 'postgres', { run: 0.4, wait: 0.4, io: 0.1, system: 0.25 }],
  ['/user.slice/session-1.scope', 'bash', { run: 0.05, io: 0.1, system: 0.5 }],
  ['/user.slice/session-1.scope', 'make', { run: 0.8, wait: 0.1, system: 0.1 }],
];

/** Makes a link of prog, opens a session of it, reads it to EOF and closes both. */
async function readLink(kernel: Kernel, prog: BpfProg, link: IterLinkOpts, open: IterOpenOpts): Promise<string> {
  const h = bpfIterLinkCreate(kernel, prog, link);
  const s = h.object.open(open);
  try {
    return Buffer.from(await s.readAll()).toString('utf8');
  } finally {
    s.close();
    h.close();
  }
}

/** A read of a cgroup_view file in cgroup's directory. */
function view(kernel: Kernel, source: SimCgroupSource, prog: BpfProg, cgroup: KernfsNode): Promise<string> {
  return readLink(kernel, prog, {}, { cgroup, source, ctx: { now_ns: BigInt(source.workload.now) } });
}

/** A read of an iter/cgroup link in BPF_CGROUP_ITER_DESCENDANTS_PRE order from the root. */
function walk(kernel: Kernel, source: SimCgroupSource, prog: BpfProg): Promise<string> {
  return readLink(kernel, prog, { cgroup: { order: BpfCgroupIterOrder.DESCENDANTS_PRE } }, { source });
}

const at = (source: SimCgroupSource): string => `${source.workload.now / SEC} s`;

function section(file: string, what: string): void {
  console.log(`\n== ${file}: ${what}`);
}

async function main(): Promise<void> {
  const source = new SimCgroupSource();
  await source.start();
  const kernel = new Kernel({ cgroups: source.hierarchy, tasks: source });
  const progs = new Map<string, Collection>();
  for (const name of EXAMPLES) progs.set(name, await loadCollection(kernel, examplePath(name)));
  const prog = (file: string, name: string): BpfProg => progs.get(file)!.program(name);

  console.log('vbpffs examples: the programs of progs/examples, loaded from their source, on a simulated cgroup2');
  console.log("tree whose workload runs on the simulator's clock. The tasks (shares of wall time):");
  for (const [p, comm, rates] of TASKS) {
    const parent = path.posix.dirname(p);
    if (source.hierarchy.cgroupByPath(parent) === undefined) await source.mkdir(parent);
    const cgroup = source.hierarchy.cgroupByPath(p) ?? (await source.mkdir(p));
    source.workload.spawn({ cgroup, comm, ...rates });
    const share = (k: 'run' | 'wait' | 'io'): string => (rates[k] === undefined ? '' : `${k} ${rates[k]!.toFixed(2)}`).padEnd(11);
    console.log(`  ${p.padEnd(32)} ${comm.padEnd(9)} ${share('run')}${share('wait')}${share('io')}`.trimEnd());
  }
  const postgres = source.hierarchy.cgroupByPath('/system.slice/postgres.service')!;

  // tp/sched/sample: every task's schedstat deltas, each simulated second, into sched_latency's program.
  const sampler = new SchedSampler(source);
  const sample = prog('sched_latency', 'sched_sample');
  await sampler.sampleOnce(); // the baseline
  let first = '';
  for (let s = 1; s <= 11; s++) {
    source.workload.advance(SEC);
    for (const x of (await sampler.sampleOnce()).samples) {
      sample.run({ task: source.taskByPid(x.pid), cgroup: x.cgroup, run_ns: BigInt(x.runNs), wait_ns: BigInt(x.waitNs), slices: BigInt(x.slices) });
    }
    if (s === 10) first = `-- at ${at(source)}\n${await view(kernel, source, prog('cpu', 'cpu'), postgres)}`;
  }

  section('cpu.ts', `cgroup_view read for ${postgres.path} at 10 s, then at 11 s`);
  process.stdout.write(`${first}-- at ${at(source)}\n${await view(kernel, source, prog('cpu', 'cpu'), postgres)}`);
  section('pressure.ts', `cgroup_view read for ${postgres.path} at ${at(source)}`);
  process.stdout.write(await view(kernel, source, prog('pressure', 'pressure'), postgres));
  section('procs.ts', `cgroup_view read for ${postgres.path}`);
  process.stdout.write(await view(kernel, source, prog('procs', 'procs'), postgres));
  section('memory.ts', `cgroup_view read for ${postgres.path} (the simulator has no memory controller files)`);
  process.stdout.write(await view(kernel, source, prog('memory', 'memory'), postgres));
  section('sched_latency.ts', `tp/sched/sample for every task each second; the cgroup_view read at ${at(source)} for`);
  for (const p of ['/system.slice/postgres.service', '/system.slice/cron.service', '/user.slice/session-1.scope']) {
    console.log(`-- ${p}`);
    process.stdout.write(await view(kernel, source, prog('sched_latency', 'dump_cgroup_lat'), source.hierarchy.cgroupByPath(p)!));
  }
  section('tree_summary.ts', `iter/cgroup walking the tree from the root in pre-order at ${at(source)}`);
  process.stdout.write(await walk(kernel, source, prog('tree_summary', 'tree_summary')));

  for (const c of progs.values()) c.close();
  await source.stop();
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exitCode = 1;
});
