/**
 * Firing a cgroup hook (progs/cgroup/run.ts): every program runs in order, a 0 makes the result
 * EPERM, the high return bits of egress and bind are collected, and a faulting program counts as a 0
 * (bpf_prog_run_array_cg; docs/DIFFERENCES.md for the fault).
 */
import t from 'tap';
import { BPF_F_ALLOW_MULTI, BpfAttachType, ERRNO } from '../uapi';
import { abandonedRunsEnded, bpfCgRunCtx, cgroupBpfAttach, cgroupBpfRunFilter, cgroupBpfRunFilterAsync } from '../progs';
import { counterWorld } from './harness/cgroup-progs';
import { load, world } from './harness/progs';

const EGRESS = BpfAttachType.CGROUP_INET_EGRESS;
const MULTI = BPF_F_ALLOW_MULTI;

t.test('every program runs, in order, whatever earlier ones returned; one 0 makes the result EPERM', async (t) => {
  const w = counterWorld([
    { val: 1n, verdict: 1 },
    { val: 2n, verdict: 0 },
    { val: 4n, verdict: 1 },
  ]);
  const [cg] = w.mkdirs('cg');
  for (const p of w.progs) cgroupBpfAttach(w.kernel, cg!, EGRESS, p, { flags: MULTI });
  const r = w.ping(cg!);
  t.same(r, { retval: -ERRNO.EPERM, flags: 0, runs: 3, faults: 0, lastFault: undefined });
  t.equal(w.read(), 7n, 'the programs after the denial ran too');
  t.same(w.ping(w.root), { retval: 0, flags: 0, runs: 0, faults: 0, lastFault: undefined }, 'nothing attached: allowed');
  t.equal(bpfCgRunCtx(), null, 'no run context outside a run');
});

const RETS = `import { SEC } from 'vbpffs/bpf';
export const e3 = SEC('cgroup_skb/egress', (ctx) => 3);
export const e2 = SEC('cgroup_skb/egress', (ctx) => 2);
export const e1 = SEC('cgroup_skb/egress', (ctx) => 1);
export const b3 = SEC('cgroup/bind4', (ctx) => 3);
export const c1 = SEC('cgroup/connect4', (ctx) => 1);
`;

t.test('egress and bind collect the bits above bit 0 into flags and judge by bit 0; congestion with a drop still drops', async (t) => {
  const w = world();
  const c = load(w.kernel, RETS);
  const a = w.mkdir(w.root, 'a');
  const b = w.mkdir(w.root, 'b');
  cgroupBpfAttach(w.kernel, a, EGRESS, c.program('e3'), { flags: MULTI });
  cgroupBpfAttach(w.kernel, a, EGRESS, c.program('e1'), { flags: MULTI });
  t.match(cgroupBpfRunFilter(w.kernel, a, 'egress'), { retval: 0, flags: 1, runs: 2 }, '3: keep packet and cn');
  cgroupBpfAttach(w.kernel, b, EGRESS, c.program('e2'), { flags: MULTI });
  t.match(cgroupBpfRunFilter(w.kernel, b, 'egress'), { retval: -ERRNO.EPERM, flags: 1 }, '2: drop packet and cn');
  cgroupBpfAttach(w.kernel, a, 'bind4', c.program('b3'));
  t.match(cgroupBpfRunFilter(w.kernel, a, 'bind4'), { retval: 0, flags: 1 }, 'BPF_RET_BIND_NO_CAP_NET_BIND_SERVICE');
  cgroupBpfAttach(w.kernel, a, 'connect4', c.program('c1'));
  t.match(cgroupBpfRunFilter(w.kernel, a, 'connect4', { user_port: 80 }), { retval: 0, flags: 0, runs: 1 });
});

t.test('a faulting program counts as a 0: the hook denies, the rest still runs, the fault is reported', async (t) => {
  const w = world();
  const c = load(w.kernel, `import { SEC, map, BPF_MAP_TYPE_ARRAY, bpf_map_lookup_elem } from 'vbpffs/bpf';
export const counter = map({ type: BPF_MAP_TYPE_ARRAY, key: 'u32', value: 'u64', maxEntries: 1 });
export const bad = SEC('cgroup_skb/egress', (ctx) => ctx.len);
export const good = SEC('cgroup_skb/egress', (ctx) => { const v = bpf_map_lookup_elem(counter, 0); if (v !== null) v.value += 1n; return 1; });
`);
  const cg = w.mkdir(w.root, 'cg');
  cgroupBpfAttach(w.kernel, cg, EGRESS, c.program('bad'), { flags: MULTI });
  cgroupBpfAttach(w.kernel, cg, EGRESS, c.program('good'), { flags: MULTI });
  const r = cgroupBpfRunFilter(w.kernel, cg, EGRESS, { len: 1500, protocol: 8 });
  t.equal(r.retval, -ERRNO.EPERM, 'fail closed');
  t.equal(r.faults, 1);
  t.equal(r.lastFault?.code, 'EIO');
  t.equal(r.runs, 2, 'the next program ran');
  t.same(c.map('counter').lookupElem(0), new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0]));
  t.equal(c.program('bad').stats.faults, 1);
  t.equal(cgroupBpfRunFilter(w.kernel, cg, EGRESS, { len: 1, protocol: 8 }).retval, 0, 'a value in range is an allow');
});

t.test('the program sees the ctx fields and the cgroup the hook fired for', async (t) => {
  const w = world();
  const c = load(w.kernel, `import { SEC, map, BPF_MAP_TYPE_ARRAY, bpf_map_lookup_elem, vbpffs_cgroup_id } from 'vbpffs/bpf';
export const seen = map({ type: BPF_MAP_TYPE_ARRAY, key: 'u32', value: 'u64', maxEntries: 2 });
export const p = SEC('cgroup/skb', (ctx) => {
  const a = bpf_map_lookup_elem(seen, 0);
  if (a !== null) a.value = BigInt(ctx.len);
  const b = bpf_map_lookup_elem(seen, 1);
  if (b !== null) b.value = vbpffs_cgroup_id(ctx.cgroup);
  return 1;
});
`);
  const parent = w.mkdir(w.root, 'parent');
  const child = w.mkdir(parent, 'child');
  cgroupBpfAttach(w.kernel, parent, 'ingress', c.program('p'));
  cgroupBpfRunFilter(w.kernel, child, 'ingress', { len: 99, protocol: 17 });
  const u64 = (k: number): bigint => new DataView(c.map('seen').lookupElem(k).buffer).getBigUint64(0, true);
  t.equal(u64(0), 99n);
  t.equal(u64(1), BigInt(child.id), 'the cgroup of the packet, not the one the program is attached to');
});

t.test('the asynchronous fire gives the synchronous one\'s result; a program V8 cannot interrupt is a fault at its deadline', async (t) => {
  const w = world();
  const c = load(w.kernel, RETS);
  const a = w.mkdir(w.root, 'a');
  cgroupBpfAttach(w.kernel, a, EGRESS, c.program('e3'), { flags: MULTI });
  cgroupBpfAttach(w.kernel, a, EGRESS, c.program('e2'), { flags: MULTI });
  const seen: [string, number][] = [];
  const r = await cgroupBpfRunFilterAsync(w.kernel, a, 'egress', {}, (p, ret) => seen.push([p.name, ret]));
  t.same(r, cgroupBpfRunFilter(w.kernel, a, 'egress'));
  t.same(seen, [['e3', 3], ['e2', 2]], 'each program\'s own return, in order');
  t.same(await cgroupBpfRunFilterAsync(w.kernel, w.root, 'egress'), { retval: 0, flags: 0, runs: 0, faults: 0, lastFault: undefined });
  const big = load(w.kernel, `import { SEC } from 'vbpffs/bpf';
export const big = SEC('cgroup_skb/egress', (ctx) => ((3n ** 30000000n) * (3n ** 30000000n) > 0n ? 1 : 0));
`, { limits: { deadlineMs: 50 } }, 'big.ts');
  const b = w.mkdir(w.root, 'b');
  cgroupBpfAttach(w.kernel, b, EGRESS, big.program('big'), { flags: MULTI });
  const t0 = performance.now();
  const rb = await cgroupBpfRunFilterAsync(w.kernel, b, 'egress');
  t.match(rb, { retval: -ERRNO.EPERM, runs: 1, faults: 1, lastFault: { code: 'EIO', message: /ended from outside/ } }, 'fails closed');
  t.ok(performance.now() - t0 < 1500, 'at its deadline plus the margin');
  t.ok(await abandonedRunsEnded(120_000));
});
