/**
 * Cgroup attach, detach, query and effective arrays (progs/cgroup): one test per rule of spec
 * 4.1-4.6 and 4.8, each with the kernel's errno (kernel/bpf/cgroup.c and syscall.c, newest).
 */
import t from 'tap';
import {
  BPF_F_AFTER,
  BPF_F_ALLOW_MULTI,
  BPF_F_ALLOW_OVERRIDE,
  BPF_F_BEFORE,
  BPF_F_ID,
  BPF_F_LINK,
  BPF_F_PREORDER,
  BPF_F_QUERY_EFFECTIVE,
  BPF_F_REPLACE,
  BpfAttachType,
  cgroupAttachTypeName,
  parseCgroupAttachType,
} from '../uapi';
import {
  BPF_CGROUP_MAX_PROGS,
  Handle,
  cgroupBpfAttach,
  cgroupBpfAttached,
  cgroupBpfDetach,
  cgroupBpfLinkAttach,
  cgroupBpfQuery,
  cgroupBpfTable,
  cgroupGetFromFd,
  bpfLinkUpdate,
  effectiveProgs,
  type BpfProg,
  type CgroupStorageMap,
} from '../progs';
import { failProgArrayAlloc } from '../progs/cgroup/cgroup-bpf';
import { EMPTY_PROG_ARRAY, computeEffectiveProgs } from '../progs/cgroup/effective';
import { cgroupAtype } from '../progs/cgroup/attach-type';
import type { KernfsNode } from '../tags';
import { counterWorld, loadProgs } from './harness/cgroup-progs';
import { load, world } from './harness/progs';

const EGRESS = BpfAttachType.CGROUP_INET_EGRESS;
const MULTI = BPF_F_ALLOW_MULTI;
const OVERRIDE = BPF_F_ALLOW_OVERRIDE;

const names = (progs: readonly BpfProg[]): string[] => progs.map((p) => p.name);

/** n cgroup_skb programs p0, p1, ... of section "cgroup/skb", which attach to ingress and egress. */
function egressWorld(n: number): { w: ReturnType<typeof world>; p: BpfProg[] } {
  const w = world();
  const sections: Record<string, string> = {};
  for (let i = 0; i < n; i++) sections[`p${i}`] = 'cgroup/skb';
  const loaded = loadProgs(w.kernel, sections);
  return { w, p: Array.from({ length: n }, (_, i) => loaded[`p${i}`]!) };
}

t.test('attach type names: bpftool\'s short names, libbpf\'s names and numbers are accepted; others are EINVAL', async (t) => {
  t.equal(parseCgroupAttachType('egress'), EGRESS);
  t.equal(parseCgroupAttachType('cgroup_inet_egress'), EGRESS);
  t.equal(parseCgroupAttachType('connect4'), BpfAttachType.CGROUP_INET4_CONNECT);
  t.equal(parseCgroupAttachType('sock_create'), BpfAttachType.CGROUP_INET_SOCK_CREATE);
  t.equal(parseCgroupAttachType('tick'), BpfAttachType.VBPFFS_CGROUP_TICK);
  t.equal(parseCgroupAttachType(EGRESS), EGRESS);
  t.equal(parseCgroupAttachType(BpfAttachType.TRACE_ITER), undefined, 'not a cgroup attach type');
  t.equal(parseCgroupAttachType('nope'), undefined);
  t.equal(cgroupAttachTypeName(BpfAttachType.CGROUP_DEVICE), 'device');
  t.equal(cgroupAttachTypeName(BpfAttachType.TRACE_ITER), '28');
  const { w, p } = egressWorld(1);
  const cg = w.mkdir(w.root, 'a');
  t.throws(() => cgroupBpfAttach(w.kernel, cg, 'nope', p[0]!), { code: 'EINVAL' });
  t.throws(() => cgroupBpfAttach(w.kernel, cg, BpfAttachType.TRACE_ITER, p[0]!), { code: 'EINVAL' });
  t.throws(() => cgroupBpfQuery(w.kernel, cg, 'nope'), { code: 'EINVAL' });
  t.throws(() => cgroupBpfDetach(w.kernel, cg, 'nope'), { code: 'EINVAL' });
});

t.test('attach: rule flags mask: attach_flags outside BPF_F_ATTACH_MASK are EINVAL', async (t) => {
  const { w, p } = egressWorld(1);
  const cg = w.mkdir(w.root, 'a');
  t.throws(() => cgroupBpfAttach(w.kernel, cg, EGRESS, p[0]!, { flags: 1 << 7 }), { code: 'EINVAL' });
});

t.test('attach: rule prog type: a program of another type for the hook is EINVAL (bpf_prog_get_type)', async (t) => {
  const w = world();
  const cg = w.mkdir(w.root, 'a');
  const p = loadProgs(w.kernel, { sysctl: 'cgroup/sysctl', tp: 'tp/timer/tick', ingress: 'cgroup_skb/ingress', egress: 'cgroup_skb/egress', skb: 'cgroup/skb' });
  t.throws(() => cgroupBpfAttach(w.kernel, cg, EGRESS, p.sysctl), { code: 'EINVAL' });
  t.throws(() => cgroupBpfAttach(w.kernel, cg, EGRESS, p.tp), { code: 'EINVAL' });
  t.throws(() => cgroupBpfLinkAttach(w.kernel, cg, EGRESS, p.tp), { code: 'EINVAL' }, 'link create checks the same');
  cgroupBpfAttach(w.kernel, cg, BpfAttachType.CGROUP_SYSCTL, p.sysctl);
  t.same(names(effectiveProgs(w.kernel, cg, 'sysctl')), ['sysctl']);
});

t.test('attach: rule expected attach type: sock, sock_addr and sockopt programs attach only where they were loaded for; cgroup_skb/egress is pinned to egress', async (t) => {
  const w = world();
  const cg = w.mkdir(w.root, 'a');
  const p = loadProgs(w.kernel, {
    c4: 'cgroup/connect4',
    sock: 'cgroup/sock',
    gso: 'cgroup/getsockopt',
    tick: 'cgroup/tick',
    ingress: 'cgroup_skb/ingress',
    egress: 'cgroup_skb/egress',
    skb: 'cgroup/skb',
    dev: 'cgroup/dev',
  });
  t.throws(() => cgroupBpfAttach(w.kernel, cg, 'connect6', p.c4), { code: 'EINVAL' });
  t.throws(() => cgroupBpfAttach(w.kernel, cg, 'setsockopt', p.gso), { code: 'EINVAL' });
  t.throws(() => cgroupBpfAttach(w.kernel, cg, 'sched_sample', p.tick), { code: 'EINVAL' });
  t.throws(() => cgroupBpfAttach(w.kernel, cg, 'ingress', p.egress), { code: 'EINVAL' }, 'enforce_expected_attach_type');
  cgroupBpfAttach(w.kernel, cg, 'connect4', p.c4);
  cgroupBpfAttach(w.kernel, cg, 'sock_create', p.sock, {});
  cgroupBpfAttach(w.kernel, cg, 'tick', p.tick);
  cgroupBpfAttach(w.kernel, cg, 'egress', p.ingress, { flags: MULTI });
  cgroupBpfAttach(w.kernel, cg, 'egress', p.skb, { flags: MULTI });
  cgroupBpfAttach(w.kernel, cg, 'ingress', p.skb, { flags: MULTI });
  cgroupBpfAttach(w.kernel, cg, 'device', p.dev);
  cgroupBpfAttach(w.kernel, cg, 'getsockopt', p.gso);
  t.same(
    cgroupBpfAttached(w.kernel, cg).map((a) => [cgroupAttachTypeName(a.type), a.entries.length]),
    [['ingress', 1], ['egress', 2], ['sock_create', 1], ['device', 1], ['connect4', 1], ['getsockopt', 1], ['tick', 1]],
  );
});

t.test('attach: rule fds: a closed handle or a released program is EBADF', async (t) => {
  const { w, p } = egressWorld(1);
  const cg = w.mkdir(w.root, 'a');
  const h = Handle.of(p[0]!);
  h.close();
  t.throws(() => cgroupBpfAttach(w.kernel, cg, EGRESS, h), { code: 'EBADF' });
  const prog = p[0]!;
  (w.kernel.list('prog')[0] as BpfProg).put(); // the collection's reference: the program goes
  t.ok(prog.released);
  t.throws(() => cgroupBpfAttach(w.kernel, cg, EGRESS, prog), { code: 'EBADF' });
  t.throws(() => cgroupBpfAttach(w.kernel, cg, EGRESS, {} as BpfProg), { code: 'EINVAL' }, 'not a program at all');
});

t.test('attach: rule target: the cgroup by node, id or path; a removed or unknown cgroup is ENOENT, a non-cgroup EBADF', async (t) => {
  const { w, p } = egressWorld(3);
  const a = w.mkdir(w.root, 'a');
  const b = w.mkdir(a, 'b');
  cgroupBpfAttach(w.kernel, a.id, EGRESS, p[0]!, { flags: MULTI });
  cgroupBpfAttach(w.kernel, '/a/b', EGRESS, p[1]!, { flags: MULTI });
  t.same(names(effectiveProgs(w.kernel, '/a/b', EGRESS)), ['p1', 'p0']);
  t.throws(() => cgroupGetFromFd(w.kernel, 9999), { code: 'ENOENT' });
  t.throws(() => cgroupGetFromFd(w.kernel, '/nope'), { code: 'ENOENT' });
  t.throws(() => cgroupGetFromFd(w.kernel, {} as KernfsNode), { code: 'EBADF' });
  w.hierarchy.remove(b);
  for (const target of [b, b.id, '/a/b']) {
    t.throws(() => cgroupBpfAttach(w.kernel, target, EGRESS, p[2]!, { flags: MULTI }), { code: 'ENOENT' });
  }
  t.throws(() => cgroupBpfQuery(w.kernel, b, EGRESS), { code: 'ENOENT' });
  t.throws(() => cgroupBpfDetach(w.kernel, b, EGRESS, p[1]!), { code: 'ENOENT' });
  t.same(effectiveProgs(w.kernel, b, EGRESS), [], 'a removed cgroup runs nothing');
  const noResolver = new (w.kernel.constructor as typeof import('../progs').Kernel)();
  t.throws(() => cgroupGetFromFd(noResolver, 1), { code: 'ENOENT' }, 'a Kernel without cgroups finds none');
});

t.test('attach: rule invalid combinations: OVERRIDE|MULTI, REPLACE without MULTI, REPLACE with BEFORE/AFTER are EINVAL', async (t) => {
  const { w, p } = egressWorld(2);
  const cg = w.mkdir(w.root, 'a');
  t.throws(() => cgroupBpfAttach(w.kernel, cg, EGRESS, p[0]!, { flags: OVERRIDE | MULTI }), { code: 'EINVAL' });
  t.throws(() => cgroupBpfAttach(w.kernel, cg, EGRESS, p[0]!, { flags: BPF_F_REPLACE, replaceProg: p[1]! }), { code: 'EINVAL' });
  cgroupBpfAttach(w.kernel, cg, EGRESS, p[1]!, { flags: MULTI });
  for (const f of [BPF_F_BEFORE, BPF_F_AFTER]) {
    t.throws(() => cgroupBpfAttach(w.kernel, cg, EGRESS, p[0]!, { flags: MULTI | BPF_F_REPLACE | f, replaceProg: p[1]! }), { code: 'EINVAL' });
  }
});

t.test('attach: rule replace_bpf_fd: read only with MULTI|REPLACE; missing is EBADF, another type EINVAL', async (t) => {
  const w = world();
  const cg = w.mkdir(w.root, 'a');
  const p = loadProgs(w.kernel, { a: 'cgroup_skb/egress', b: 'cgroup_skb/egress', s: 'cgroup/sysctl' });
  cgroupBpfAttach(w.kernel, cg, EGRESS, p.a, { flags: MULTI });
  t.throws(() => cgroupBpfAttach(w.kernel, cg, EGRESS, p.b, { flags: MULTI | BPF_F_REPLACE }), { code: 'EBADF' });
  t.throws(() => cgroupBpfAttach(w.kernel, cg, EGRESS, p.b, { flags: MULTI | BPF_F_REPLACE, replaceProg: p.s }), { code: 'EINVAL' });
  cgroupBpfAttach(w.kernel, cg, EGRESS, p.b, { flags: MULTI, replaceProg: p.a });
  t.same(names(effectiveProgs(w.kernel, cg, EGRESS)), ['a', 'b'], 'without REPLACE the replace program is ignored: appended');
});

t.test('attach: rule hierarchy: a NONE ancestor with a program forbids the subtree (EPERM); OVERRIDE and MULTI allow; empty levels are skipped', async (t) => {
  const { w, p } = egressWorld(6);
  const a = w.mkdir(w.root, 'a');
  const ab = w.mkdir(a, 'b');
  const abc = w.mkdir(ab, 'c');
  cgroupBpfAttach(w.kernel, a, EGRESS, p[0]!, { flags: 0 });
  t.throws(() => cgroupBpfAttach(w.kernel, abc, EGRESS, p[1]!, { flags: MULTI }), { code: 'EPERM' }, 'the walk passes the empty /a/b');
  t.throws(() => cgroupBpfLinkAttach(w.kernel, abc, EGRESS, p[1]!), { code: 'EPERM' });
  cgroupBpfAttach(w.kernel, a, EGRESS, p[0]!, { flags: 0 });
  cgroupBpfAttach(w.kernel, w.root, 'ingress', p[1]!, { flags: 0 });
  t.throws(() => cgroupBpfAttach(w.kernel, a, 'ingress', p[2]!, { flags: 0 }), { code: 'EPERM' }, 'NONE at the root forbids the whole tree');
  cgroupBpfDetach(w.kernel, w.root, 'ingress');
  cgroupBpfDetach(w.kernel, a, EGRESS);
  cgroupBpfAttach(w.kernel, a, EGRESS, p[0]!, { flags: OVERRIDE });
  cgroupBpfAttach(w.kernel, abc, EGRESS, p[1]!, { flags: 0 });
  cgroupBpfDetach(w.kernel, a, EGRESS);
  cgroupBpfDetach(w.kernel, abc, EGRESS);
  cgroupBpfAttach(w.kernel, a, EGRESS, p[0]!, { flags: MULTI });
  cgroupBpfAttach(w.kernel, abc, EGRESS, p[1]!, { flags: 0 });
  t.same(names(effectiveProgs(w.kernel, abc, EGRESS)), ['p1', 'p0']);
});

t.test('attach: rule mode: programs already attached in another mode are EPERM; an emptied list takes any mode again', async (t) => {
  const { w, p } = egressWorld(2);
  const cg = w.mkdir(w.root, 'a');
  cgroupBpfAttach(w.kernel, cg, EGRESS, p[0]!, { flags: MULTI });
  t.throws(() => cgroupBpfAttach(w.kernel, cg, EGRESS, p[1]!, { flags: OVERRIDE }), { code: 'EPERM' });
  t.throws(() => cgroupBpfAttach(w.kernel, cg, EGRESS, p[1]!, { flags: 0 }), { code: 'EPERM' });
  cgroupBpfDetach(w.kernel, cg, EGRESS, p[0]!);
  t.equal(cgroupBpfQuery(w.kernel, cg, EGRESS).attachFlags, 0, 'flags reset with the last program');
  cgroupBpfAttach(w.kernel, cg, EGRESS, p[1]!, { flags: OVERRIDE });
  t.equal(cgroupBpfQuery(w.kernel, cg, EGRESS).attachFlags, OVERRIDE);
});

t.test('attach: rule 64: a 65th program per cgroup and type is E2BIG, also a replacement at 64 and a link', async (t) => {
  const { w, p } = egressWorld(BPF_CGROUP_MAX_PROGS + 1);
  const cg = w.mkdir(w.root, 'a');
  for (let i = 0; i < BPF_CGROUP_MAX_PROGS; i++) cgroupBpfAttach(w.kernel, cg, EGRESS, p[i]!, { flags: MULTI });
  const extra = p[BPF_CGROUP_MAX_PROGS]!;
  t.throws(() => cgroupBpfAttach(w.kernel, cg, EGRESS, extra, { flags: MULTI }), { code: 'E2BIG' });
  t.throws(() => cgroupBpfAttach(w.kernel, cg, EGRESS, extra, { flags: MULTI | BPF_F_REPLACE, replaceProg: p[0]! }), { code: 'E2BIG' }, 'the count is checked before the entry is looked up');
  t.throws(() => cgroupBpfLinkAttach(w.kernel, cg, EGRESS, extra), { code: 'E2BIG' });
  const child = w.mkdir(cg, 'b');
  cgroupBpfAttach(w.kernel, child, EGRESS, extra, { flags: MULTI });
  t.equal(effectiveProgs(w.kernel, child, EGRESS).length, BPF_CGROUP_MAX_PROGS + 1, 'the effective array is not capped');
  cgroupBpfAttach(w.kernel, cg, 'ingress', extra, { flags: MULTI });
  t.pass('the limit is per attach type');
});

t.test('attach: rule duplicates: the same program twice in MULTI mode is EINVAL; the same link twice too', async (t) => {
  const { w, p } = egressWorld(1);
  const cg = w.mkdir(w.root, 'a');
  cgroupBpfAttach(w.kernel, cg, EGRESS, p[0]!, { flags: MULTI });
  t.throws(() => cgroupBpfAttach(w.kernel, cg, EGRESS, p[0]!, { flags: MULTI }), { code: 'EINVAL' });
  const link = cgroupBpfLinkAttach(w.kernel, cg, EGRESS, p[0]!);
  const { cgroupBpfAttachEntry } = await import('../progs/cgroup/cgroup-bpf');
  t.throws(() => cgroupBpfAttachEntry(w.kernel, cg, null, null, link.object, EGRESS, MULTI, {}, 0), { code: 'EINVAL' }, 'find_attach_entry refuses a link already there');
  t.throws(() => cgroupBpfAttachEntry(w.kernel, cg, p[0]!, null, link.object, EGRESS, MULTI, {}, 0), { code: 'EINVAL' }, 'a link and a program together');
  t.throws(() => cgroupBpfAttachEntry(w.kernel, cg, null, p[0]!, link.object, EGRESS, MULTI | BPF_F_REPLACE, {}, 0), { code: 'EINVAL' }, 'a link and a program to replace');
  t.throws(() => cgroupBpfAttachEntry(w.kernel, cg, p[0]!, p[0]!, null, EGRESS, MULTI, {}, 0), { code: 'EINVAL' }, 'a program to replace without BPF_F_REPLACE');
  const { cgroupBpfDetachEntry } = await import('../progs/cgroup/cgroup-bpf');
  const other = cgroupBpfLinkAttach(w.kernel, w.mkdir(w.root, 'sibling'), EGRESS, p[0]!);
  t.throws(() => cgroupBpfDetachEntry(w.kernel, cg, null, other.object, EGRESS, 0), { code: 'ENOENT', message: /link \d+ is not attached here/ });
  t.same(names(effectiveProgs(w.kernel, cg, EGRESS)), ['p0', 'p0'], 'a legacy attachment and a link of one program coexist');
});

t.test('attach: rule NONE/OVERRIDE replace: attaching on top releases the old program', async (t) => {
  const { w, p } = egressWorld(2);
  const cg = w.mkdir(w.root, 'a');
  const refs = p[0]!.refs;
  cgroupBpfAttach(w.kernel, cg, EGRESS, p[0]!, { flags: OVERRIDE });
  t.equal(p[0]!.refs, refs + 1, 'the cgroup holds a reference');
  cgroupBpfAttach(w.kernel, cg, EGRESS, p[1]!, { flags: OVERRIDE });
  t.equal(p[0]!.refs, refs, 'the replaced program is put');
  t.same(names(effectiveProgs(w.kernel, cg, EGRESS)), ['p1']);
  t.equal(cgroupBpfQuery(w.kernel, cg, EGRESS).progCnt, 1);
});

t.test('detach: rule NONE/OVERRIDE: the one program goes whatever is passed; nothing attached is ENOENT', async (t) => {
  const { w, p } = egressWorld(2);
  const cg = w.mkdir(w.root, 'a');
  t.throws(() => cgroupBpfDetach(w.kernel, cg, EGRESS), { code: 'ENOENT' });
  cgroupBpfAttach(w.kernel, cg, EGRESS, p[0]!, { flags: OVERRIDE });
  cgroupBpfDetach(w.kernel, cg, EGRESS, p[1]!);
  t.same(effectiveProgs(w.kernel, cg, EGRESS), [], 'detached with another program\'s fd');
  const h = Handle.of(p[0]!);
  h.close();
  cgroupBpfAttach(w.kernel, cg, EGRESS, p[0]!, { flags: 0 });
  cgroupBpfDetach(w.kernel, cg, EGRESS, h);
  t.same(effectiveProgs(w.kernel, cg, EGRESS), [], 'and with an invalid fd');
});

t.test('detach: rule MULTI: the program is required (EINVAL), must be attached here (ENOENT), and a link\'s entry is not a legacy one', async (t) => {
  const w = world();
  const cg = w.mkdir(w.root, 'a');
  const p = loadProgs(w.kernel, { a: 'cgroup_skb/egress', b: 'cgroup_skb/egress', s: 'cgroup/sysctl' });
  cgroupBpfAttach(w.kernel, cg, EGRESS, p.a, { flags: MULTI });
  const link = cgroupBpfLinkAttach(w.kernel, cg, EGRESS, p.b);
  t.throws(() => cgroupBpfDetach(w.kernel, cg, EGRESS), { code: 'EINVAL' });
  t.throws(() => cgroupBpfDetach(w.kernel, cg, EGRESS, null), { code: 'EINVAL' });
  t.throws(() => cgroupBpfDetach(w.kernel, cg, EGRESS, p.s), { code: 'EINVAL' }, 'a program of another type counts as none');
  t.throws(() => cgroupBpfDetach(w.kernel, cg, EGRESS, p.b), { code: 'ENOENT' }, 'legacy detach cannot remove a link\'s entry');
  cgroupBpfDetach(w.kernel, cg, EGRESS, p.a);
  t.same(names(effectiveProgs(w.kernel, cg, EGRESS)), ['b']);
  t.equal(cgroupBpfQuery(w.kernel, cg, EGRESS).attachFlags, MULTI, 'the link keeps the list in MULTI mode');
  link.close();
  t.equal(cgroupBpfQuery(w.kernel, cg, EGRESS).attachFlags, 0);
});

t.test('revision: starts at 1, bumps on every attach, replace and detach; a stale expected_revision is ESTALE', async (t) => {
  const { w, p } = egressWorld(3);
  const cg = w.mkdir(w.root, 'a');
  t.equal(cgroupBpfQuery(w.kernel, cg, EGRESS).revision, 1);
  cgroupBpfAttach(w.kernel, cg, EGRESS, p[0]!, { flags: MULTI, expectedRevision: 1 });
  t.throws(() => cgroupBpfAttach(w.kernel, cg, EGRESS, p[1]!, { flags: MULTI, expectedRevision: 1 }), { code: 'ESTALE' });
  cgroupBpfAttach(w.kernel, cg, EGRESS, p[1]!, { flags: MULTI, expectedRevision: 2 });
  cgroupBpfAttach(w.kernel, cg, EGRESS, p[2]!, { flags: MULTI | BPF_F_REPLACE, replaceProg: p[1]! });
  t.equal(cgroupBpfQuery(w.kernel, cg, EGRESS).revision, 4);
  t.throws(() => cgroupBpfDetach(w.kernel, cg, EGRESS, p[2]!, { expectedRevision: 3 }), { code: 'ESTALE' });
  cgroupBpfDetach(w.kernel, cg, EGRESS, p[2]!, { expectedRevision: 4 });
  const link = cgroupBpfLinkAttach(w.kernel, cg, EGRESS, p[1]!, { expectedRevision: 5 });
  t.throws(() => cgroupBpfLinkAttach(w.kernel, cg, EGRESS, p[2]!, { expectedRevision: 5 }), { code: 'ESTALE' });
  link.close();
  t.equal(cgroupBpfQuery(w.kernel, cg, EGRESS).revision, 7, 'a link\'s release bumps it too');
  t.equal(cgroupBpfQuery(w.kernel, cg, EGRESS, { queryFlags: BPF_F_QUERY_EFFECTIVE }).revision, 0, 'not for an effective query');
});

t.test('query: rules: unknown query flags and prog_attach_flags with an effective query are EINVAL; count-only and per-program flags', async (t) => {
  const { w, p } = egressWorld(2);
  const cg = w.mkdir(w.root, 'a');
  cgroupBpfAttach(w.kernel, cg, EGRESS, p[0]!, { flags: MULTI });
  cgroupBpfAttach(w.kernel, cg, EGRESS, p[1]!, { flags: MULTI });
  t.throws(() => cgroupBpfQuery(w.kernel, cg, EGRESS, { queryFlags: 2 }), { code: 'EINVAL' });
  t.throws(() => cgroupBpfQuery(w.kernel, cg, EGRESS, { queryFlags: BPF_F_QUERY_EFFECTIVE, progAttachFlags: true }), { code: 'EINVAL' });
  t.throws(() => cgroupBpfQuery(w.kernel, cg, EGRESS, { progCnt: -1 }), { code: 'EINVAL' });
  t.same(cgroupBpfQuery(w.kernel, cg, EGRESS, { progCnt: 0 }), { attachFlags: MULTI, progCnt: 2, progIds: [], revision: 3 });
  t.same(cgroupBpfQuery(w.kernel, cg, EGRESS, { progAttachFlags: true }).progAttachFlags, [MULTI, MULTI]);
  t.same(cgroupBpfQuery(w.kernel, cg, 'ingress'), { attachFlags: 0, progCnt: 0, progIds: [], revision: 1 }, 'a type never attached');
});

t.test('effective: the uapi example cgrp1..cgrp5 runs F,D,A,B, then E,D,A,B, E,A,B and C,A,B as programs are detached', async (t) => {
  const w = world();
  const p = loadProgs(w.kernel, { A: 'cgroup_skb/egress', B: 'cgroup_skb/egress', C: 'cgroup_skb/egress', D: 'cgroup_skb/egress', E: 'cgroup_skb/egress', F: 'cgroup_skb/egress' });
  let parent = w.root;
  const cg = ['cgrp1', 'cgrp2', 'cgrp3', 'cgrp4', 'cgrp5'].map((n) => (parent = w.mkdir(parent, n)));
  cgroupBpfAttach(w.kernel, cg[0]!, EGRESS, p.A, { flags: MULTI });
  cgroupBpfAttach(w.kernel, cg[0]!, EGRESS, p.B, { flags: MULTI });
  cgroupBpfAttach(w.kernel, cg[1]!, EGRESS, p.C, { flags: OVERRIDE });
  cgroupBpfAttach(w.kernel, cg[2]!, EGRESS, p.D, { flags: MULTI });
  cgroupBpfAttach(w.kernel, cg[3]!, EGRESS, p.E, { flags: OVERRIDE });
  cgroupBpfAttach(w.kernel, cg[4]!, EGRESS, p.F, { flags: 0 });
  const at5 = (): string => names(effectiveProgs(w.kernel, cg[4]!, EGRESS)).join(',');
  t.equal(at5(), 'F,D,A,B');
  cgroupBpfDetach(w.kernel, cg[4]!, EGRESS);
  t.equal(at5(), 'E,D,A,B');
  cgroupBpfDetach(w.kernel, cg[2]!, EGRESS, p.D);
  t.equal(at5(), 'E,A,B');
  cgroupBpfDetach(w.kernel, cg[3]!, EGRESS);
  t.equal(at5(), 'C,A,B');
  t.equal(names(effectiveProgs(w.kernel, cg[1]!, EGRESS)).join(','), 'C,A,B');
  t.equal(names(effectiveProgs(w.kernel, w.root, EGRESS)).join(','), '', 'nothing above cgrp1');
});

t.test('effective: BPF_F_PREORDER programs run first, top of the hierarchy first, each level in list order', async (t) => {
  const w = world();
  const p = loadProgs(w.kernel, { p1: 'cgroup_skb/egress', p2: 'cgroup_skb/egress', p3: 'cgroup_skb/egress', p4: 'cgroup_skb/egress', p5: 'cgroup_skb/egress' });
  const root = w.mkdir(w.root, 'r');
  const child = w.mkdir(root, 'c');
  cgroupBpfAttach(w.kernel, root, EGRESS, p.p1, { flags: MULTI });
  cgroupBpfAttach(w.kernel, root, EGRESS, p.p2, { flags: MULTI | BPF_F_PREORDER });
  cgroupBpfAttach(w.kernel, child, EGRESS, p.p3, { flags: MULTI });
  cgroupBpfAttach(w.kernel, child, EGRESS, p.p4, { flags: MULTI | BPF_F_PREORDER });
  t.same(names(effectiveProgs(w.kernel, child, EGRESS)), ['p2', 'p4', 'p3', 'p1'], 'the preorder patch\'s example');
  cgroupBpfAttach(w.kernel, child, EGRESS, p.p5, { flags: MULTI | BPF_F_PREORDER });
  t.same(names(effectiveProgs(w.kernel, child, EGRESS)), ['p2', 'p4', 'p5', 'p3', 'p1'], 'list order within a level');
  t.same(names(effectiveProgs(w.kernel, root, EGRESS)), ['p2', 'p1']);
});

t.test('anchors: BEFORE/AFTER a program or a link, by object or id; BEFORE alone prepends (cgroup_mprog_opts)', async (t) => {
  const { w, p } = egressWorld(6);
  const cg = w.mkdir(w.root, 'a');
  const k = w.kernel;
  cgroupBpfAttach(k, cg, EGRESS, p[0]!, { flags: MULTI | BPF_F_BEFORE | BPF_F_AFTER, expectedRevision: 1 });
  cgroupBpfAttach(k, cg, EGRESS, p[1]!, { flags: MULTI | BPF_F_BEFORE });
  cgroupBpfAttach(k, cg, EGRESS, p[2]!, { flags: MULTI | BPF_F_AFTER, relativeFd: p[1]! });
  cgroupBpfAttach(k, cg, EGRESS, p[3]!, { flags: MULTI | BPF_F_BEFORE | BPF_F_ID, relativeId: p[0]!.id });
  t.same(names(effectiveProgs(k, cg, EGRESS)), ['p1', 'p2', 'p3', 'p0']);
  const l4 = cgroupBpfLinkAttach(k, cg, EGRESS, p[4]!, { flags: BPF_F_AFTER });
  const l5 = cgroupBpfLinkAttach(k, cg, EGRESS, p[5]!, { flags: BPF_F_BEFORE | BPF_F_LINK | BPF_F_ID, relativeId: l4.object.id });
  t.same(names(effectiveProgs(k, cg, EGRESS)), ['p1', 'p2', 'p3', 'p0', 'p5', 'p4']);
  l5.close();
  cgroupBpfLinkAttach(k, cg, EGRESS, p[5]!, { flags: BPF_F_AFTER | BPF_F_LINK, relativeFd: l4 });
  t.same(names(effectiveProgs(k, cg, EGRESS)), ['p1', 'p2', 'p3', 'p0', 'p4', 'p5'], 'a link anchor by handle');
  t.same(cgroupBpfQuery(k, cg, EGRESS).progIds, [1, 2, 3, 0, 4, 5].map((i) => p[i]!.id), 'query lists the list order');
});

t.test('anchors: rules: EINVAL without exactly one of BEFORE/AFTER, for a mismatched kind or PREORDER; ENOENT for an absent anchor or id; EBADF for an id read as an fd', async (t) => {
  const { w, p } = egressWorld(4);
  const cg = w.mkdir(w.root, 'a');
  const k = w.kernel;
  const attach = (flags: number, extra: object = {}): void => cgroupBpfAttach(k, cg, EGRESS, p[0]!, { flags: MULTI | flags, ...extra });
  t.throws(() => attach(BPF_F_BEFORE | BPF_F_AFTER, { relativeId: p[1]!.id }), { code: 'EINVAL' });
  t.throws(() => attach(BPF_F_BEFORE | BPF_F_ID), { code: 'ENOENT' }, 'id 0');
  t.throws(() => attach(BPF_F_AFTER | BPF_F_ID), { code: 'ENOENT' });
  t.throws(() => attach(BPF_F_LINK, { relativeId: p[1]!.id }), { code: 'EINVAL' });
  t.throws(() => attach(0, { relativeId: p[1]!.id }), { code: 'EINVAL' });
  t.throws(() => attach(BPF_F_BEFORE, { relativeFd: p[0]! }), { code: 'ENOENT' }, 'the anchor is not attached');
  t.throws(() => attach(BPF_F_AFTER, { relativeFd: p[0]! }), { code: 'ENOENT' });
  t.throws(() => attach(BPF_F_BEFORE, { relativeId: p[1]!.id }), { code: 'EBADF' }, 'relative_id without BPF_F_ID is an fd');
  t.equal(cgroupBpfQuery(k, cg, EGRESS).progCnt, 0);
  attach(0);
  t.throws(() => cgroupBpfAttach(k, cg, EGRESS, p[1]!, { flags: MULTI | BPF_F_BEFORE | BPF_F_AFTER }), { code: 'EINVAL' }, 'both, no anchor, list not empty');
  t.throws(() => cgroupBpfAttach(k, cg, EGRESS, p[1]!, { flags: MULTI | BPF_F_AFTER | BPF_F_PREORDER, relativeFd: p[0]! }), { code: 'EINVAL' }, 'PREORDER mismatch');
  t.throws(() => cgroupBpfAttach(k, cg, EGRESS, p[1]!, { flags: MULTI | BPF_F_AFTER | BPF_F_LINK }), { code: 'EINVAL' }, 'a program is not placed relative to a link');
  const link = cgroupBpfLinkAttach(k, cg, EGRESS, p[2]!);
  t.throws(() => cgroupBpfAttach(k, cg, EGRESS, p[1]!, { flags: MULTI | BPF_F_AFTER, relativeFd: link }), { code: 'EINVAL' }, 'a link handle where a program anchor goes');
  t.throws(() => cgroupBpfLinkAttach(k, cg, EGRESS, p[3]!, { flags: BPF_F_AFTER, relativeFd: p[0]! }), { code: 'EINVAL' }, 'a link is not placed relative to a program');
  t.throws(() => cgroupBpfLinkAttach(k, cg, EGRESS, p[3]!, { flags: BPF_F_AFTER | BPF_F_LINK }), { code: 'EINVAL' }, 'BPF_F_LINK without an anchor');
  t.throws(() => cgroupBpfLinkAttach(k, cg, EGRESS, p[3]!, { flags: BPF_F_AFTER | BPF_F_LINK | BPF_F_ID, relativeId: 999 }), { code: 'ENOENT' });
  cgroupBpfAttach(k, cg, EGRESS, p[1]!, { flags: MULTI | BPF_F_PREORDER });
  cgroupBpfAttach(k, cg, EGRESS, p[3]!, { flags: MULTI | BPF_F_AFTER | BPF_F_PREORDER, relativeFd: p[1]! });
  t.same(cgroupBpfQuery(k, cg, EGRESS).progIds, [p[0]!.id, p[2]!.id, p[1]!.id, p[3]!.id]);
});

t.test('effective: new cgroups inherit, every live descendant is recomputed, removed ones are skipped', async (t) => {
  const { w, p } = egressWorld(3);
  const a = w.mkdir(w.root, 'a');
  const b = w.mkdir(a, 'b');
  const gone = w.mkdir(a, 'gone');
  gone.tryGet(); // stays dying, not released
  w.hierarchy.remove(gone);
  cgroupBpfAttach(w.kernel, a, EGRESS, p[0]!, { flags: MULTI });
  const c = w.mkdir(b, 'c');
  t.same(names(effectiveProgs(w.kernel, c, EGRESS)), ['p0'], 'a cgroup made after the attach inherits');
  cgroupBpfAttach(w.kernel, b, EGRESS, p[1]!, { flags: MULTI });
  for (const cg of [b, c]) t.same(names(effectiveProgs(w.kernel, cg, EGRESS)), ['p1', 'p0'], cg.path);
  t.same(effectiveProgs(w.kernel, gone, EGRESS), []);
  const table = cgroupBpfTable(w.kernel);
  t.equal(table.peek(gone), undefined, 'no state made for a removed cgroup');
  t.equal(table.peek(c)!.effective[cgroupAtype(EGRESS)], table.peek(b)!.effective[cgroupAtype(EGRESS)], 'a cgroup with nothing of its own shares its parent\'s array');
  t.same(names(computeEffectiveProgs(table, c, cgroupAtype(EGRESS)).map((i) => i.prog)), ['p1', 'p0'], 'which is what computing it gives');
});

t.test('rollback: an allocation failure leaves every cgroup as it was (attach, NONE replace, link); a detach never fails', async (t) => {
  const { w, p } = egressWorld(4);
  const k = w.kernel;
  const a = w.mkdir(w.root, 'a');
  const b = w.mkdir(a, 'b');
  const c = w.mkdir(b, 'c');
  cgroupBpfAttach(k, c, EGRESS, p[3]!, { flags: MULTI });
  cgroupBpfAttach(k, a, EGRESS, p[0]!, { flags: MULTI });
  const snapshot = (): unknown => [a, b, c].map((cg) => [names(effectiveProgs(k, cg, EGRESS)), cgroupBpfQuery(k, cg, EGRESS)]);
  const before = snapshot();
  const refs = p[1]!.refs;
  failProgArrayAlloc(k, 2); // a's array is computed, c's fails
  t.throws(() => cgroupBpfAttach(k, a, EGRESS, p[1]!, { flags: MULTI }), { code: 'ENOMEM' });
  t.same(snapshot(), before, 'lists, arrays and revisions unchanged');
  t.equal(p[1]!.refs, refs, 'no reference kept');
  const links = k.list('link').length;
  failProgArrayAlloc(k, 1);
  t.throws(() => cgroupBpfLinkAttach(k, b, EGRESS, p[1]!), { code: 'ENOMEM' });
  t.equal(k.list('link').length, links, 'the link is gone');
  t.same(snapshot(), before);

  cgroupBpfAttach(k, b, 'ingress', p[2]!, { flags: 0 });
  failProgArrayAlloc(k, 1);
  t.throws(() => cgroupBpfAttach(k, b, 'ingress', p[1]!, { flags: 0 }), { code: 'ENOMEM' });
  t.same(names(effectiveProgs(k, c, 'ingress')), ['p2'], 'the replaced NONE program is back');
  t.equal(cgroupBpfQuery(k, b, 'ingress').progIds[0], p[2]!.id);
  failProgArrayAlloc(k, 1);
  t.throws(() => cgroupBpfAttach(k, w.root, 'ingress', p[1]!, { flags: MULTI }), { code: 'ENOMEM' });
  t.equal(cgroupBpfQuery(k, w.root, 'ingress').attachFlags, 0, 'a failed first attach leaves the mode unset');

  failProgArrayAlloc(k, 1);
  cgroupBpfDetach(k, a, EGRESS, p[0]!);
  t.same(names(effectiveProgs(k, c, EGRESS)), ['p3'], 'purged in place');
  t.same(names(effectiveProgs(k, b, EGRESS)), []);
  failProgArrayAlloc(k, 0);
  cgroupBpfAttach(k, a, EGRESS, p[0]!, { flags: MULTI });
  t.same(names(effectiveProgs(k, c, EGRESS)), ['p3', 'p0'], 'fault injection off');
});

t.test('rmdir: cgroup_bpf_release puts legacy programs; the removed cgroup runs nothing and its descendants\' arrays go with them', async (t) => {
  const w = counterWorld([{ val: 1n, verdict: 1 }, { val: 2n, verdict: 1 }]);
  const k = w.kernel;
  const [a, b] = w.mkdirs('a', 'b');
  cgroupBpfAttach(k, a, EGRESS, w.progs[0]!, { flags: MULTI });
  cgroupBpfAttach(k, b, EGRESS, w.progs[1]!, { flags: MULTI });
  const refs = w.progs[1]!.refs;
  b.tryGet();
  w.hierarchy.remove(b);
  t.equal(w.progs[1]!.refs, refs - 1, 'released at rmdir, while the cgroup is still referenced');
  t.equal(w.ping(b).runs, 0);
  t.equal(w.read(), 0n);
  t.equal(w.ping(a).runs, 1);
  t.same(cgroupBpfAttached(k, b), []);
  t.same(cgroupBpfAttached(k, w.root), [], 'nothing of its own');
  cgroupBpfDetach(k, a, EGRESS, w.progs[0]!);
  w.hierarchy.remove(a);
  t.equal(w.progs[0]!.refs, 1, 'only the collection\'s handle');
});

t.test('old cgroup storage: attaching allocates the program\'s storage for (cgroup, attach type); detach keeps it, rmdir frees it, a failed attach frees a new one', async (t) => {
  const w = world();
  const c = load(w.kernel, `import { SEC, map, BPF_MAP_TYPE_CGROUP_STORAGE } from 'vbpffs/bpf';
export const st = map({ type: BPF_MAP_TYPE_CGROUP_STORAGE, key: { cgroup_inode_id: 'u64', attach_type: 'u32' } as const, value: 'u64', maxEntries: 0 });
export const p = SEC('cgroup/skb', (ctx) => 1);
export const q = SEC('sockops', (ctx) => 1);
`);
  const st = c.map<CgroupStorageMap>('st');
  const a = w.mkdir(w.root, 'a');
  const b = w.mkdir(a, 'b');
  cgroupBpfAttach(w.kernel, a, EGRESS, c.program('p'), { flags: MULTI });
  t.ok(st.lookupStorage(a.id, EGRESS), 'made at attach');
  const item = cgroupBpfTable(w.kernel).peek(b)!.effective[cgroupAtype(EGRESS)]![0]!;
  t.equal(item.storages[0], st.lookupStorage(a.id, EGRESS), 'bound to the item: a child runs with the parent\'s storage');
  cgroupBpfAttach(w.kernel, a, 'sock_ops', c.program('q'));
  t.ok(st.lookupStorage(a.id, BpfAttachType.CGROUP_SOCK_OPS), 'one per attach type');
  cgroupBpfDetach(w.kernel, a, EGRESS, c.program('p'));
  t.ok(st.lookupStorage(a.id, EGRESS), 'detach leaves it (>= 5.9)');
  failProgArrayAlloc(w.kernel, 1);
  t.throws(() => cgroupBpfAttach(w.kernel, b, EGRESS, c.program('p'), { flags: MULTI }), { code: 'ENOMEM' });
  t.equal(st.lookupStorage(b.id, EGRESS), undefined, 'a failed attach frees the storage it made');
  t.throws(() => cgroupBpfAttach(w.kernel, b, EGRESS, c.program('p'), { flags: MULTI | BPF_F_AFTER, relativeFd: c.program('q') }), { code: 'ENOENT' });
  t.equal(st.lookupStorage(b.id, EGRESS), undefined, 'also when the anchor is refused');
  w.hierarchy.remove(b);
  w.hierarchy.remove(a);
  t.equal(st.lookupStorage(a.id, EGRESS), undefined, 'freed with the cgroup\'s BPF state at rmdir');
});

t.test('effective: computing for a cgroup that runs nothing gives the shared empty array; link updates reach cgroups made since', async (t) => {
  const { w, p } = egressWorld(2);
  const a = w.mkdir(w.root, 'a');
  const table = cgroupBpfTable(w.kernel);
  t.equal(computeEffectiveProgs(table, a, cgroupAtype(EGRESS)), EMPTY_PROG_ARRAY);
  const link = cgroupBpfLinkAttach(w.kernel, a, EGRESS, p[0]!);
  const late = w.mkdir(a, 'late');
  const later = w.mkdir(late, 'later');
  bpfLinkUpdate(link, p[1]!);
  t.same(names(effectiveProgs(w.kernel, later, EGRESS)), ['p1'], 'a cgroup without state inherits the updated array');
});
