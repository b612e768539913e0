/**
 * Cgroup attach benchmark, each figure next to its baseline from the same run:
 *
 * 1. Attaching (then detaching) a MULTI program at the root of a 10,000-cgroup tree (100 groups of
 *    100), which recomputes the effective array of every cgroup (update_effective_progs). Shown
 *    against the kernel's way of doing the same, compute_effective_progs for every cgroup (a walk to
 *    the root and a fresh array each), which vbpffs avoids for cgroups with nothing of their own by
 *    sharing their parent's array; and against an attach at a leaf (one cgroup recomputed). Then the
 *    same with a program in each of the 100 groups, so 101 arrays really are computed.
 *
 * 2. Firing a hook through an effective array of 8 programs (2 at each of 4 levels, each adding to
 *    a map value): ns per fire and per program, against running the same 8 programs directly (the
 *    programs' own cost, mostly the isolate crossing) and against a fire with nothing attached (the
 *    hook's own floor).
 *
 * Each figure is the median of several rounds, the methods interleaved round by round.
 */
import { BPF_F_ALLOW_MULTI, BpfAttachType } from '../../uapi';
import { Kernel } from '../../progs/kernel';
import { newCollection } from '../../progs/prog/collection';
import { verify } from '../../progs/prog/load';
import type { BpfProg } from '../../progs/prog/prog';
import { cgroupBpfAttach, cgroupBpfDetach, cgroupBpfTable } from '../../progs/cgroup/cgroup-bpf';
import { computeEffectiveProgs } from '../../progs/cgroup/effective';
import { cgroupAtype } from '../../progs/cgroup/attach-type';
import { cgroupBpfRunFilter } from '../../progs/cgroup/run';
import { CgroupHierarchy } from '../../tags/hierarchy';
import type { KernfsNode } from '../../tags/kernfs-node';

const EGRESS = BpfAttachType.CGROUP_INET_EGRESS;
const GROUPS = 100;
const PER_GROUP = 99; // 100 groups + 9,900 leaves = 10,000 cgroups below the root
const ROUNDS = 9;

const median = (xs: number[]): number => xs.slice().sort((a, b) => a - b)[xs.length >> 1]!;

function timeMs(fn: () => void): number {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

function progs(kernel: Kernel, n: number): BpfProg[] {
  const lines = ["import { SEC, map, BPF_MAP_TYPE_ARRAY, bpf_map_lookup_elem } from 'vbpffs/bpf';"];
  lines.push("export const counter = map({ type: BPF_MAP_TYPE_ARRAY, key: 'u32', value: 'u64', maxEntries: 1 });");
  for (let i = 0; i < n; i++) {
    lines.push(`export const p${i} = SEC('cgroup/skb', (ctx) => { const v = bpf_map_lookup_elem(counter, 0); if (v !== null) v.value += 1n; return 1; });`);
  }
  // A generous deadline: a GC pause of the host must not turn into a program fault mid-measurement.
  const coll = newCollection(kernel, verify({ source: lines.join('\n'), filename: 'bench.ts' }), { limits: { deadlineMs: 1000 } });
  return Array.from({ length: n }, (_, i) => coll.program(`p${i}`));
}

interface Tree {
  kernel: Kernel;
  h: CgroupHierarchy;
  groups: KernfsNode[];
  nodes: KernfsNode[];
}

function tree(): Tree {
  const h = new CgroupHierarchy(1);
  const kernel = new Kernel({ cgroups: h });
  let id = 2;
  const groups: KernfsNode[] = [];
  const nodes: KernfsNode[] = [h.root];
  for (let g = 0; g < GROUPS; g++) {
    const group = h.add(h.root, `g${g}`, id++);
    groups.push(group);
    nodes.push(group);
    for (let c = 0; c < PER_GROUP; c++) nodes.push(h.add(group, `c${c}`, id++));
  }
  return { kernel, h, groups, nodes };
}

function attachBench(withGroupProgs: boolean, quiet = false): void {
  const t = tree();
  const [rootProg, leafProg, ...groupProgs] = progs(t.kernel, 2 + (withGroupProgs ? GROUPS : 0));
  if (withGroupProgs) t.groups.forEach((g, i) => cgroupBpfAttach(t.kernel, g, EGRESS, groupProgs[i]!, { flags: BPF_F_ALLOW_MULTI }));
  const leaf = t.nodes[t.nodes.length - 1]!;
  const table = cgroupBpfTable(t.kernel);
  const atype = cgroupAtype(EGRESS);
  const first = timeMs(() => cgroupBpfAttach(t.kernel, t.h.root, EGRESS, rootProg!, { flags: BPF_F_ALLOW_MULTI }));
  cgroupBpfDetach(t.kernel, t.h.root, EGRESS, rootProg!);
  const samples = { root: [] as number[], each: [] as number[], leaf: [] as number[] };
  let check = 0;
  for (let r = 0; r < ROUNDS; r++) {
    samples.root.push(
      timeMs(() => {
        cgroupBpfAttach(t.kernel, t.h.root, EGRESS, rootProg!, { flags: BPF_F_ALLOW_MULTI });
        cgroupBpfDetach(t.kernel, t.h.root, EGRESS, rootProg!);
      }) / 2,
    );
    cgroupBpfAttach(t.kernel, t.h.root, EGRESS, rootProg!, { flags: BPF_F_ALLOW_MULTI });
    samples.each.push(timeMs(() => { for (const n of t.nodes) check += computeEffectiveProgs(table, n, atype).length; }));
    cgroupBpfDetach(t.kernel, t.h.root, EGRESS, rootProg!);
    samples.leaf.push(
      timeMs(() => {
        cgroupBpfAttach(t.kernel, leaf, EGRESS, leafProg!, { flags: BPF_F_ALLOW_MULTI });
        cgroupBpfDetach(t.kernel, leaf, EGRESS, leafProg!);
      }) / 2,
    );
  }
  const expect = ROUNDS * (t.nodes.length + (withGroupProgs ? t.nodes.length - 1 : 0));
  if (check !== expect) throw new Error(`effective arrays have ${check} programs, expected ${expect}`);
  const root = median(samples.root);
  const each = median(samples.each);
  const leafMs = median(samples.leaf);
  const n = t.nodes.length;
  if (quiet) return;
  console.log(
    `${withGroupProgs ? '100 groups with a program' : 'nothing else attached    '}  ` +
      `root ${root.toFixed(2).padStart(6)} ms (${((root * 1e6) / n).toFixed(0).padStart(4)} ns/cgroup)  ` +
      `kernel-style ${each.toFixed(2).padStart(6)} ms  root/kernel-style ${(root / each).toFixed(2)}  ` +
      `leaf ${leafMs.toFixed(3)} ms  root/leaf ${(root / leafMs).toFixed(0)}  first attach ${first.toFixed(2)} ms`,
  );
}

function fireBench(): void {
  const h = new CgroupHierarchy(1);
  const kernel = new Kernel({ cgroups: h });
  const p = progs(kernel, 8);
  let parent = h.root;
  const levels: KernfsNode[] = [];
  for (let l = 0; l < 4; l++) levels.push((parent = h.add(parent, `l${l}`, 2 + l)));
  levels.forEach((cg, l) => {
    cgroupBpfAttach(kernel, cg, EGRESS, p[2 * l]!, { flags: BPF_F_ALLOW_MULTI });
    cgroupBpfAttach(kernel, cg, EGRESS, p[2 * l + 1]!, { flags: BPF_F_ALLOW_MULTI });
  });
  const leaf = levels[3]!;
  const empty = h.add(h.root, 'empty', 100);
  const ctx = { len: 84, protocol: 8 };
  const progCtx = { ...ctx, cgroup: leaf };
  const REPS = 2_000;
  const methods = {
    fire: (): void => {
      for (let i = 0; i < REPS; i++) {
        const r = cgroupBpfRunFilter(kernel, leaf, EGRESS, ctx);
        if (r.runs !== 8 || r.faults !== 0) throw new Error(`${r.runs} programs ran, ${r.faults} faulted: ${r.lastFault?.message}`);
      }
    },
    direct: (): void => {
      for (let i = 0; i < REPS; i++) for (let j = 0; j < 8; j++) p[j]!.run(progCtx);
    },
    empty: (): void => {
      for (let i = 0; i < REPS; i++) cgroupBpfRunFilter(kernel, empty, EGRESS, ctx);
    },
  };
  for (const fn of Object.values(methods)) fn(); // warm up
  const samples: Record<keyof typeof methods, number[]> = { fire: [], direct: [], empty: [] };
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, fn] of Object.entries(methods) as [keyof typeof methods, () => void][]) samples[name].push((timeMs(fn) * 1e6) / REPS);
  }
  const fire = median(samples.fire);
  const direct = median(samples.direct);
  const floor = median(samples.empty);
  console.log(
    `fire through 8 programs: ${fire.toFixed(0)} ns/fire, ${(fire / 8).toFixed(0)} ns/program;  ` +
      `the 8 run directly: ${direct.toFixed(0)} ns (${(direct / 8).toFixed(0)} ns/program);  fire/direct ${(fire / direct).toFixed(3)}  ` +
      `hook overhead ${((fire - direct) / 8).toFixed(0)} ns/program;  empty fire ${floor.toFixed(0)} ns`,
  );
}

export async function run(): Promise<void> {
  console.log(`attach + detach of a MULTI program at the root of ${GROUPS * (PER_GROUP + 1)} cgroups (ms per operation, medians):`);
  attachBench(false, true); // a rehearsal, so both configurations below run optimised code
  attachBench(false);
  attachBench(true);
  fireBench();
}
