/**
 * Iterator reads, in-process, each figure next to its baseline from the same run:
 *
 * 1. One cgroup_view read: open a session of the link for a cgroup, read to EOF, close (µs p50 and
 *    p99), for a view that gets a cgroup storage value, updates it and prints two lines; against
 *    the same program run alone into a seq buffer (the program's own cost, mostly the isolate
 *    crossing), so the difference is what the session and bpf_seq_read add.
 *
 * 2. A DESCENDANTS_PRE walk over 10,000 cgroups (100 groups of 100) printing one line each (about
 *    280 KiB, so many 32 KiB buffers: vbpffs continues a walk across reads where the kernel stops),
 *    read to EOF with 128 KiB reads (what cat asks for) and with 4 KiB reads (ms total, medians);
 *    against the same 10,001 runs made directly.
 *
 * 3. The same walk over 1,000 cgroups of the simulated cgroupfs with a program that reads
 *    cgroup.procs: each run's interface file is read (asynchronously, from memfs) before it.
 */
import { BpfCgroupIterOrder } from '../../uapi';
import { BufferSeqSink, Kernel } from '../../progs';
import { newCollection } from '../../progs/prog/collection';
import { verify } from '../../progs/prog/load';
import type { BpfProg } from '../../progs/prog/prog';
import { CgroupHierarchy, SimCgroupSource, type CgroupSource, type KernfsNode } from '../../tags';
import { bpfIterLinkCreate, type IterSession } from '../../iter';

const VIEW_RUNS = 20_000;
const WARMUP = 2_000;
const ROUNDS = 7;
const GROUPS = 100;
const PER_GROUP = 99;

const OBJECT = `import { SEC, map, bpf_cgrp_storage_get, bpf_seq_printf, vbpffs_cgroup_id, vbpffs_cgroup_level, vbpffs_cgroup_name,
  vbpffs_cgroup_read, BPF_MAP_TYPE_CGRP_STORAGE, BPF_F_NO_PREALLOC, BPF_LOCAL_STORAGE_GET_F_CREATE } from 'vbpffs/bpf';
export const cg = map({ type: BPF_MAP_TYPE_CGRP_STORAGE, flags: BPF_F_NO_PREALLOC, key: 'u32', value: { reads: 'u64', wait: 'u64', last: 'u64' } });
export const view = SEC('cgroup_view', (ctx) => {
  const v = bpf_cgrp_storage_get(cg, ctx.cgroup, null, BPF_LOCAL_STORAGE_GET_F_CREATE);
  if (v === null) return 0;
  v.reads += 1n;
  bpf_seq_printf(ctx.meta.seq, 'reads %llu wait %llu\\n', v.reads, v.wait);
  bpf_seq_printf(ctx.meta.seq, 'last %llu\\n', v.last);
  return 0;
});
export const line = SEC('iter/cgroup', (ctx) => {
  if (ctx.cgroup === null) return 0;
  bpf_seq_printf(ctx.meta.seq, '%8llu %2d %s\\n', vbpffs_cgroup_id(ctx.cgroup), vbpffs_cgroup_level(ctx.cgroup), vbpffs_cgroup_name(ctx.cgroup));
  return 0;
});
export const procs = SEC('iter/cgroup', (ctx) => {
  if (ctx.cgroup === null) return 0;
  const p = vbpffs_cgroup_read(ctx.cgroup, 'cgroup.procs');
  bpf_seq_printf(ctx.meta.seq, '%8llu %u\\n', vbpffs_cgroup_id(ctx.cgroup), p === null ? 0 : p.lines);
  return 0;
});`;

const pct = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!;
const median = (xs: number[]): number => xs.slice().sort((a, b) => a - b)[xs.length >> 1]!;
const nowUs = (): number => Number(process.hrtime.bigint()) / 1000;

function programs(kernel: Kernel): Record<'view' | 'line' | 'procs', BpfProg> {
  // A generous deadline: a GC pause of the host must not turn into a program fault mid-measurement.
  const c = newCollection(kernel, verify({ source: OBJECT, filename: 'bench.ts' }), { limits: { deadlineMs: 1000 } });
  return { view: c.program('view'), line: c.program('line'), procs: c.program('procs') };
}

async function drain(s: IterSession, size: number): Promise<number> {
  let n = 0;
  for (let b = await s.read(size); b.length > 0; b = await s.read(size)) n += b.length;
  s.close();
  return n;
}

async function viewBench(): Promise<void> {
  const h = new CgroupHierarchy(1);
  const kernel = new Kernel({ cgroups: h });
  const cgroup = h.add(h.root, 'web', 2);
  const { view } = programs(kernel);
  const link = bpfIterLinkCreate(kernel, view).object;
  const read = async (): Promise<void> => {
    if ((await drain(link.open({ cgroup }), 4096)) === 0) throw new Error('the view printed nothing');
  };
  const sink = new BufferSeqSink();
  const ctx = { meta: { seq: sink, sessionId: 1n, seqNum: 0n }, cgroup };
  const run = (): void => {
    sink.clear();
    view.run(ctx);
  };
  for (let i = 0; i < WARMUP; i++) {
    await read();
    run();
  }
  const reads: number[] = [];
  const runs: number[] = [];
  for (let i = 0; i < VIEW_RUNS; i++) {
    let t0 = nowUs();
    await read();
    reads.push(nowUs() - t0);
    t0 = nowUs();
    run();
    runs.push(nowUs() - t0);
  }
  reads.sort((a, b) => a - b);
  runs.sort((a, b) => a - b);
  console.log(
    `cgroup_view read (open, read to EOF, close): p50 ${pct(reads, 50).toFixed(1)} us  p99 ${pct(reads, 99).toFixed(1)} us;  ` +
      `the program run alone: p50 ${pct(runs, 50).toFixed(1)} us  p99 ${pct(runs, 99).toFixed(1)} us;  ` +
      `session + bpf_seq_read add ${(pct(reads, 50) - pct(runs, 50)).toFixed(1)} us at p50`,
  );
}

function tree(h: CgroupHierarchy): KernfsNode[] {
  let id = 2;
  const nodes = [h.root];
  for (let g = 0; g < GROUPS; g++) {
    const group = h.add(h.root, `group-${g}`, id++);
    nodes.push(group);
    for (let c = 0; c < PER_GROUP; c++) nodes.push(h.add(group, `cgroup-${c}.service`, id++));
  }
  return nodes;
}

async function walkBench(): Promise<void> {
  const h = new CgroupHierarchy(1);
  const kernel = new Kernel({ cgroups: h });
  const nodes = tree(h);
  const { line } = programs(kernel);
  const link = bpfIterLinkCreate(kernel, line, { cgroup: { order: BpfCgroupIterOrder.DESCENDANTS_PRE } }).object;
  let bytes = 0;
  const walk = async (size: number): Promise<void> => {
    bytes = await drain(link.open(), size);
  };
  const sink = new BufferSeqSink();
  const direct = (): void => {
    for (const cgroup of nodes) {
      if (sink.count > 30_000) sink.clear();
      line.run({ meta: { seq: sink, sessionId: 1n, seqNum: 0n }, cgroup });
    }
    line.run({ meta: { seq: sink, sessionId: 1n, seqNum: 0n }, cgroup: null });
  };
  await walk(1 << 17);
  direct();
  const samples = { big: [] as number[], small: [] as number[], direct: [] as number[] };
  for (let r = 0; r < ROUNDS; r++) {
    let t0 = nowUs();
    await walk(1 << 17);
    samples.big.push((nowUs() - t0) / 1000);
    t0 = nowUs();
    await walk(4096);
    samples.small.push((nowUs() - t0) / 1000);
    t0 = nowUs();
    direct();
    samples.direct.push((nowUs() - t0) / 1000);
  }
  const big = median(samples.big);
  console.log(
    `DESCENDANTS_PRE over ${nodes.length} cgroups, one line each (${(bytes / 1024).toFixed(0)} KiB): ` +
      `128 KiB reads ${big.toFixed(1)} ms total (${((big * 1000) / nodes.length).toFixed(1)} us/cgroup), ` +
      `4 KiB reads ${median(samples.small).toFixed(1)} ms;  the ${nodes.length + 1} runs alone ${median(samples.direct).toFixed(1)} ms`,
  );
}

async function filesBench(): Promise<void> {
  const source: CgroupSource & SimCgroupSource = new SimCgroupSource();
  await source.start();
  let n = 1;
  for (let g = 0; g < 10; g++) {
    await source.mkdir(`/g${g}`);
    n++;
    for (let c = 0; c < 99; c++, n++) await source.mkdir(`/g${g}/c${c}`);
  }
  const kernel = new Kernel({ cgroups: source.hierarchy, tasks: source });
  const { procs } = programs(kernel);
  const link = bpfIterLinkCreate(kernel, procs, { cgroup: { order: BpfCgroupIterOrder.DESCENDANTS_PRE } }).object;
  await drain(link.open({ source }), 1 << 17);
  const samples: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = nowUs();
    await drain(link.open({ source }), 1 << 17);
    samples.push((nowUs() - t0) / 1000);
  }
  const ms = median(samples);
  console.log(
    `DESCENDANTS_PRE over ${n} simulated cgroups reading cgroup.procs before each run: ${ms.toFixed(1)} ms total (${((ms * 1000) / n).toFixed(1)} us/cgroup)`,
  );
  await source.stop();
}

export async function run(): Promise<void> {
  await viewBench();
  await walkBench();
  await filesBench();
}
