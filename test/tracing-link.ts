/**
 * Tracepoint links and the event hooks (progs/link/tracing-link.ts, event-hooks.ts): the global
 * tracepoints run their linked programs for every event; the per-cgroup hooks (cgroup/tick,
 * cgroup/sched_sample) run a cgroup's effective array for the events of that cgroup; a tick reads
 * the files its programs name before they run. On the simulated cgroup source.
 */
import t from 'tap';
import { BPF_F_ALLOW_MULTI, BpfLinkType } from '../uapi';
import {
  BPF_TRACE_MAX_PROGS,
  CgroupEventSource,
  CgroupTick,
  Kernel,
  SchedSampler,
  bpfLinkDetach,
  bpfLinkUpdate,
  bpfTraceRun,
  bpfTracepointLinkAttach,
  cgroupBpfAttach,
  connectEventSources,
  fireTick,
} from '../progs';
import { SimCgroupSource } from '../tags';
import { loadProgs } from './harness/cgroup-progs';
import { load } from './harness/progs';

const SEC_NS = 1_000_000_000;

/** An object whose programs each add to their own slot of `hits`: slot i for program i. */
const HOOKS = `import { SEC, map, BPF_MAP_TYPE_ARRAY, bpf_map_lookup_elem, vbpffs_cgroup_read } from 'vbpffs/bpf';
export const hits = map({ type: BPF_MAP_TYPE_ARRAY, key: 'u32', value: 'u64', maxEntries: 8 });
export const tick = SEC('tp/timer/tick', (ctx) => { const v = bpf_map_lookup_elem(hits, 0); if (v !== null) v.value += 1n; return 0; });
export const tickread = SEC('tp/timer/tick', (ctx) => {
  const v = bpf_map_lookup_elem(hits, 6);
  const procs = vbpffs_cgroup_read(ctx.cgroup, 'cgroup.procs');
  if (v !== null && procs !== null) v.value += BigInt(procs.lines);
  return 0;
});
export const sample = SEC('tp/sched/sample', (ctx) => { const v = bpf_map_lookup_elem(hits, 1); if (v !== null) v.value += ctx.run_ns; return 0; });
export const mkdir = SEC('tp/cgroup/mkdir', (ctx) => { const v = bpf_map_lookup_elem(hits, 2); if (v !== null) v.value += 1n; return 0; });
export const rmdir = SEC('tp/cgroup/rmdir', (ctx) => { const v = bpf_map_lookup_elem(hits, 3); if (v !== null) v.value += 1n; return 0; });
export const cgtick = SEC('cgroup/tick', (ctx) => {
  const v = bpf_map_lookup_elem(hits, 4);
  const procs = vbpffs_cgroup_read(ctx.cgroup, 'cgroup.procs');
  if (v !== null && procs !== null) v.value += BigInt(procs.lines);
  return 1;
});
export const cgsample = SEC('cgroup/sched_sample', (ctx) => { const v = bpf_map_lookup_elem(hits, 5); if (v !== null) v.value += ctx.run_ns; return 1; });
export const faulty = SEC('tp/timer/tick', (ctx) => { const o = ctx as unknown as { nope: { x: number } }; return o.nope.x; });
`;

async function setup() {
  const src = new SimCgroupSource();
  await src.start();
  const kernel = new Kernel({ cgroups: src.hierarchy, tasks: src });
  const a = await src.mkdir('/a');
  const b = await src.mkdir('/a/b');
  const c = await src.mkdir('/c');
  const coll = load(kernel, HOOKS);
  const hits = (slot: number): bigint => new DataView(coll.map('hits').lookupElem(slot).buffer).getBigUint64(0, true);
  return { src, kernel, a, b, c, coll, hits };
}

t.test('attach: rule: only tracepoint programs (EINVAL); the same program twice is EEXIST; more than 64 per tracepoint E2BIG', async (t) => {
  const { kernel, coll } = await setup();
  t.throws(() => bpfTracepointLinkAttach(kernel, coll.program('cgtick')), { code: 'EINVAL' });
  bpfTracepointLinkAttach(kernel, coll.program('tick'));
  t.throws(() => bpfTracepointLinkAttach(kernel, coll.program('tick')), { code: 'EEXIST' });
  const sections: Record<string, string> = {};
  for (let i = 0; i < BPF_TRACE_MAX_PROGS; i++) sections[`t${i}`] = 'tp/timer/tick';
  const many = loadProgs(kernel, sections);
  for (let i = 0; i < BPF_TRACE_MAX_PROGS - 1; i++) bpfTracepointLinkAttach(kernel, many[`t${i}`]!);
  t.throws(() => bpfTracepointLinkAttach(kernel, many[`t${BPF_TRACE_MAX_PROGS - 1}`]!), { code: 'E2BIG' });
});

t.test('link: a perf_event link cannot be detached (EOPNOTSUPP) or updated (EINVAL); its last holder detaches it', async (t) => {
  const { kernel, coll, c, hits } = await setup();
  const h = bpfTracepointLinkAttach(kernel, coll.program('tick'));
  t.match(h.object.info(), { type: BpfLinkType.PERF_EVENT, progId: coll.program('tick').id, perfEvent: { type: 'tracepoint', category: 'timer', tpName: 'tick' } });
  t.match(h.object.showFdinfo(), /link_type:\tperf_event\n.*tp_name:\ttick\n$/s);
  t.throws(() => bpfLinkDetach(h), { code: 'EOPNOTSUPP' });
  t.throws(() => bpfLinkUpdate(h, coll.program('tick')), { code: 'EINVAL' });
  t.match(bpfTraceRun(kernel, 'tp/timer/tick', { cgroup: c, now_ns: 1n }), { runs: 1, faults: 0 });
  t.equal(hits(0), 1n);
  t.equal(h.object.attached, true);
  const l = h.object;
  h.close();
  t.equal(l.attached, false);
  t.match(bpfTraceRun(kernel, 'tp/timer/tick', { cgroup: c, now_ns: 1n }), { runs: 0 });
  t.equal(hits(0), 1n);
});

t.test('tick: tp/timer/tick runs for every live cgroup, cgroup/tick only in the subtree it is attached to, reading its files first', async (t) => {
  const { src, kernel, a, b, coll, hits } = await setup();
  src.workload.spawn({ cgroup: a, pid: 300, run: 0.5 });
  src.workload.spawn({ cgroup: b, pid: 301, run: 0.5 });
  src.workload.spawn({ cgroup: b, pid: 302, run: 0.5 });
  bpfTracepointLinkAttach(kernel, coll.program('tick'));
  bpfTracepointLinkAttach(kernel, coll.program('tickread'));
  cgroupBpfAttach(kernel, a, 'tick', coll.program('cgtick'), { flags: BPF_F_ALLOW_MULTI });
  const tick = new CgroupTick(src);
  await fireTick(kernel, tick.tickOnce());
  t.equal(hits(6), 3n, 'a tracepoint program reads files too: every process, counted where it is');
  t.equal(hits(0), 4n, 'root, /a, /a/b and /c: every live cgroup once');
  t.equal(hits(4), 3n, 'cgroup/tick in /a (1 process) and /a/b (2), from cgroup.procs read before the run');
});

t.test('tick: a cgroup removed while its files are read is skipped; a faulting tracepoint program harms no other', async (t) => {
  const { src, kernel, b, coll, hits } = await setup();
  bpfTracepointLinkAttach(kernel, coll.program('faulty'));
  bpfTracepointLinkAttach(kernel, coll.program('tick'));
  cgroupBpfAttach(kernel, src.hierarchy.root, 'tick', coll.program('cgtick'), { flags: BPF_F_ALLOW_MULTI });
  const batch = new CgroupTick(src).tickOnce();
  await src.rmdir('/a/b'); // before its files are read: the read fails, the snapshot says null
  await fireTick(kernel, batch);
  t.ok(b.dying);
  t.equal(hits(0), BigInt(batch.cgroups.length - 1), 'every cgroup but the removed one');
  t.equal(coll.program('faulty').stats.faults, batch.cgroups.length - 1);
});

t.test('sched samples: tp/sched/sample sees every task, cgroup/sched_sample the tasks of its subtree', async (t) => {
  const { src, kernel, a, c, coll, hits } = await setup();
  src.workload.spawn({ cgroup: a, pid: 400, run: 0.5 });
  src.workload.spawn({ cgroup: c, pid: 401, run: 0.25 });
  const sampler = new SchedSampler(src);
  const disconnect = connectEventSources(kernel, { sampler });
  bpfTracepointLinkAttach(kernel, coll.program('sample'));
  cgroupBpfAttach(kernel, a, 'sched_sample', coll.program('cgsample'), { flags: BPF_F_ALLOW_MULTI });
  await sampler.sampleOnce();
  src.workload.advance(SEC_NS);
  await sampler.sampleOnce();
  t.equal(hits(1), BigInt(0.75 * SEC_NS), 'both tasks');
  t.equal(hits(5), BigInt(0.5 * SEC_NS), 'only the task in /a');
  disconnect();
  src.workload.advance(SEC_NS);
  await sampler.sampleOnce();
  t.equal(hits(1), BigInt(0.75 * SEC_NS), 'disconnected: nothing runs');
});

t.test('sched samples: a task the Kernel does not know runs with a stand-in that gets no task storage', async (t) => {
  const src = new SimCgroupSource();
  await src.start();
  const kernel = new Kernel({ cgroups: src.hierarchy });
  const a = await src.mkdir('/a');
  const coll = load(kernel, `import { SEC, map, BPF_MAP_TYPE_TASK_STORAGE, BPF_F_NO_PREALLOC, BPF_LOCAL_STORAGE_GET_F_CREATE, bpf_task_storage_get } from 'vbpffs/bpf';
export const st = map({ type: BPF_MAP_TYPE_TASK_STORAGE, key: 's32', value: 'u64', maxEntries: 0, flags: BPF_F_NO_PREALLOC });
export const p = SEC('tp/sched/sample', (ctx) => bpf_task_storage_get(st, ctx.task, null, BPF_LOCAL_STORAGE_GET_F_CREATE) === null ? 0 : 1);
`);
  src.workload.spawn({ cgroup: a, pid: 500, run: 0.5 });
  const sampler = new SchedSampler(src);
  connectEventSources(kernel, { sampler });
  bpfTracepointLinkAttach(kernel, coll.program('p'));
  await sampler.sampleOnce();
  src.workload.advance(SEC_NS);
  await sampler.sampleOnce();
  t.equal(coll.program('p').stats.runCnt, 1);
  t.equal(coll.program('p').stats.faults, 0);
});

t.test('cgroup events and ticks through connectEventSources; disconnect stops them', async (t) => {
  const { src, kernel } = await setup();
  // Its own object: programs reading no files, so a tick reads none before running them.
  const coll = load(kernel, `import { SEC, map, BPF_MAP_TYPE_ARRAY, bpf_map_lookup_elem } from 'vbpffs/bpf';
export const hits = map({ type: BPF_MAP_TYPE_ARRAY, key: 'u32', value: 'u64', maxEntries: 4 });
export const tick = SEC('tp/timer/tick', (ctx) => { const v = bpf_map_lookup_elem(hits, 0); if (v !== null) v.value += 1n; return 0; });
export const mkdir = SEC('tp/cgroup/mkdir', (ctx) => { const v = bpf_map_lookup_elem(hits, 2); if (v !== null) v.value += 1n; return 0; });
export const rmdir = SEC('tp/cgroup/rmdir', (ctx) => { const v = bpf_map_lookup_elem(hits, 3); if (v !== null) v.value += 1n; return 0; });
`);
  t.same(coll.program('tick').cgroupFiles, []);
  const hits = (slot: number): bigint => new DataView(coll.map('hits').lookupElem(slot).buffer).getBigUint64(0, true);
  const events = new CgroupEventSource(src);
  events.start();
  const tick = new CgroupTick(src);
  const disconnect = connectEventSources(kernel, { cgroupEvents: events, tick });
  bpfTracepointLinkAttach(kernel, coll.program('mkdir'));
  bpfTracepointLinkAttach(kernel, coll.program('rmdir'));
  bpfTracepointLinkAttach(kernel, coll.program('tick'));
  await src.mkdir('/d');
  await src.mkdir('/d/e');
  await src.rmdir('/d/e');
  t.equal(hits(2), 2n);
  t.equal(hits(3), 1n);
  tick.tickOnce();
  tick.tickOnce();
  await new Promise(setImmediate); // the ticks' fires are chained promises: drained before the next macrotask
  t.equal(hits(0), 10n, 'two ticks of five live cgroups, in order');
  disconnect();
  await src.mkdir('/f');
  tick.tickOnce();
  await new Promise(setImmediate); // the ticks' fires are chained promises: drained before the next macrotask
  t.equal(hits(2), 2n);
  t.equal(hits(0), 10n);
  events.stop();
});
