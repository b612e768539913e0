/**
 * Cgroup links (progs/link/cgroup-link.ts): creation flags, lifetime through handles, detach and
 * auto-detach, update in place, info and fdinfo (spec 4.7).
 */
import t from 'tap';
import {
  BPF_F_ALLOW_MULTI,
  BPF_F_ALLOW_OVERRIDE,
  BPF_F_PREORDER,
  BPF_F_REPLACE,
  BpfAttachType,
  BpfLinkType,
} from '../uapi';
import {
  BpfCgroupLink,
  cgroupBpfAttach,
  cgroupBpfLinkAttach,
  cgroupBpfQuery,
  bpfLinkDetach,
  bpfLinkUpdate,
  effectiveProgs,
  type BpfProg,
} from '../progs';
import { failProgArrayAlloc } from '../progs/cgroup/cgroup-bpf';
import { loadProgs } from './harness/cgroup-progs';
import { world } from './harness/progs';

const EGRESS = BpfAttachType.CGROUP_INET_EGRESS;
const names = (progs: readonly BpfProg[]): string[] => progs.map((p) => p.name);

function setup() {
  const w = world();
  const p = loadProgs(w.kernel, { a: 'cgroup/skb', b: 'cgroup/skb', c: 'cgroup/skb', s: 'cgroup/sysctl' });
  const cg = w.mkdir(w.root, 'cg');
  return { w, k: w.kernel, p, cg };
}

t.test('create: rule flags: only ID, BEFORE, AFTER, PREORDER and LINK (EINVAL otherwise); a removed cgroup is ENOENT', async (t) => {
  const { w, k, p, cg } = setup();
  for (const f of [BPF_F_ALLOW_OVERRIDE, BPF_F_ALLOW_MULTI, BPF_F_REPLACE]) {
    t.throws(() => cgroupBpfLinkAttach(k, cg, EGRESS, p.a, { flags: f }), { code: 'EINVAL' }, `flags 0x${f.toString(16)}`);
  }
  const l = cgroupBpfLinkAttach(k, cg, EGRESS, p.a, { flags: BPF_F_PREORDER });
  t.ok(l.object instanceof BpfCgroupLink);
  const gone = w.mkdir(w.root, 'gone');
  w.hierarchy.remove(gone);
  t.throws(() => cgroupBpfLinkAttach(k, gone, EGRESS, p.a), { code: 'ENOENT' });
});

t.test('create: a refused attach still uses up a link id (bpf_link_prime allocates it first)', async (t) => {
  const { w, k, p, cg } = setup();
  const other = w.mkdir(w.root, 'other');
  cgroupBpfAttach(k, cg, EGRESS, p.a, { flags: 0 });
  const l1 = cgroupBpfLinkAttach(k, other, EGRESS, p.b);
  t.throws(() => cgroupBpfLinkAttach(k, cg, EGRESS, p.b), { code: 'EPERM' });
  const l3 = cgroupBpfLinkAttach(k, other, EGRESS, p.c);
  t.equal(l3.object.id, l1.object.id + 2);
});

t.test('lifetime: the link holds its program and its cgroup; the last handle detaches it', async (t) => {
  const { k, p, cg } = setup();
  const progRefs = p.a.refs;
  const cgRefs = cg.refs;
  const h = cgroupBpfLinkAttach(k, cg, EGRESS, p.a);
  t.equal(p.a.refs, progRefs + 1);
  t.equal(cg.refs, cgRefs + 1, 'cgroup_get_from_fd: the link holds the cgroup');
  const dup = h.dup();
  h.close();
  t.same(names(effectiveProgs(k, cg, EGRESS)), ['a'], 'a pin or another fd keeps it attached');
  dup.close();
  t.same(effectiveProgs(k, cg, EGRESS), [], 'the last holder detaches it');
  t.equal(p.a.refs, progRefs);
  t.equal(cg.refs, cgRefs);
  t.equal(k.list('link').length, 0);
});

t.test('detach: rule: BPF_LINK_DETACH detaches now, the link stays defunct (cgroup id 0) until its last holder; a second detach is fine', async (t) => {
  const { k, p, cg } = setup();
  const cgRefs = cg.refs;
  const h = cgroupBpfLinkAttach(k, cg, EGRESS, p.a);
  t.equal(h.object.attached, true);
  t.match(h.object.info(), { type: BpfLinkType.CGROUP, progId: p.a.id, cgroup: { cgroupId: cg.id, attachType: EGRESS } });
  t.equal(h.object.showFdinfo(), `link_type:\tcgroup\nlink_id:\t${h.object.id}\nprog_tag:\t${p.a.tag}\nprog_id:\t${p.a.id}\ncgroup_id:\t${cg.id}\nattach_type:\t1\n`);
  bpfLinkDetach(h);
  t.same(effectiveProgs(k, cg, EGRESS), []);
  t.equal(h.object.attached, false);
  t.equal(h.object.cgroup, null);
  t.equal(cg.refs, cgRefs, 'the cgroup reference goes with the detach');
  t.match(h.object.info(), { progId: p.a.id, cgroup: { cgroupId: 0 } });
  t.match(h.object.showFdinfo(), /cgroup_id:\t0\n/);
  bpfLinkDetach(h);
  t.equal(k.getById('link', h.object.id).object, h.object, 'still there by id');
  t.throws(() => bpfLinkUpdate(h, p.b), { code: 'ENOLINK' }, 'an update of a defunct link');
});

t.test('auto-detach: rmdir detaches the cgroup\'s links; they stay alive, defunct, for their holders', async (t) => {
  const { w, k, p, cg } = setup();
  const child = w.mkdir(cg, 'child');
  const l1 = cgroupBpfLinkAttach(k, child, EGRESS, p.a);
  const l2 = cgroupBpfLinkAttach(k, child, 'ingress', p.b);
  child.tryGet();
  w.hierarchy.remove(child);
  for (const l of [l1, l2]) {
    t.equal(l.object.attached, false);
    t.match(l.object.info(), { cgroup: { cgroupId: 0 } });
    t.throws(() => bpfLinkUpdate(l, p.c), { code: 'ENOLINK' });
  }
  t.equal(child.refs, 1, 'only the caller\'s reference is left: the links dropped theirs');
  child.put();
  t.ok(child.released);
  l1.close();
  l2.close();
  t.equal(k.list('link').length, 0);
});

t.test('update: rules: EPERM for the wrong expected program, EINVAL for another program type; in place in every descendant, position kept', async (t) => {
  const { w, k, p, cg } = setup();
  const child = w.mkdir(cg, 'child');
  cgroupBpfAttach(k, cg, EGRESS, p.b, { flags: BPF_F_ALLOW_MULTI });
  const h = cgroupBpfLinkAttach(k, cg, EGRESS, p.a);
  cgroupBpfAttach(k, cg, EGRESS, p.c, { flags: BPF_F_ALLOW_MULTI });
  cgroupBpfAttach(k, child, EGRESS, p.c, { flags: BPF_F_ALLOW_MULTI });
  t.same(names(effectiveProgs(k, child, EGRESS)), ['c', 'b', 'a', 'c']);
  t.throws(() => bpfLinkUpdate(h, p.b, { flags: BPF_F_REPLACE, oldProg: p.b }), { code: 'EPERM' });
  t.throws(() => bpfLinkUpdate(h, p.s), { code: 'EINVAL' });
  const rev = cgroupBpfQuery(k, cg, EGRESS).revision;
  const refs = p.a.refs;
  bpfLinkUpdate(h, p.b, { flags: BPF_F_REPLACE, oldProg: p.a });
  t.same(names(effectiveProgs(k, child, EGRESS)), ['c', 'b', 'b', 'c'], 'the descendant\'s array, same position');
  t.same(names(effectiveProgs(k, cg, EGRESS)), ['b', 'b', 'c']);
  t.equal(cgroupBpfQuery(k, cg, EGRESS).revision, rev + 1, 'an update bumps the revision');
  t.equal(p.a.refs, refs - 1, 'the old program is put');
  t.same(cgroupBpfQuery(k, cg, EGRESS).progIds, [p.b.id, p.b.id, p.c.id]);
});

t.test('update: with BPF_F_PREORDER entries the link\'s own item is replaced, not the one at its list position', async (t) => {
  const { w, k, p, cg } = setup();
  const child = w.mkdir(cg, 'child');
  cgroupBpfAttach(k, cg, EGRESS, p.b, { flags: BPF_F_ALLOW_MULTI | BPF_F_PREORDER });
  const h = cgroupBpfLinkAttach(k, child, EGRESS, p.a);
  cgroupBpfAttach(k, child, EGRESS, p.c, { flags: BPF_F_ALLOW_MULTI | BPF_F_PREORDER });
  t.same(names(effectiveProgs(k, child, EGRESS)), ['b', 'c', 'a']);
  bpfLinkUpdate(h, p.b);
  t.same(names(effectiveProgs(k, child, EGRESS)), ['b', 'c', 'b']);
});

t.test('release: a link released while an effective array cannot be allocated is still detached (purge)', async (t) => {
  const { w, k, p, cg } = setup();
  const child = w.mkdir(cg, 'child');
  cgroupBpfAttach(k, child, EGRESS, p.b, { flags: BPF_F_ALLOW_MULTI });
  const h = cgroupBpfLinkAttach(k, cg, EGRESS, p.a);
  t.same(names(effectiveProgs(k, child, EGRESS)), ['b', 'a']);
  failProgArrayAlloc(k, 1);
  h.close();
  t.same(names(effectiveProgs(k, child, EGRESS)), ['b']);
  t.same(effectiveProgs(k, cg, EGRESS), []);
  t.equal(k.list('link').length, 0);
});
