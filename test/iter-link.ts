/**
 * Iterator links (iter/iter-link.ts, spec 5.1 and 5.3): BPF_LINK_CREATE with BPF_TRACE_ITER and the
 * cgroup iterator's parameters, the references the link holds, fdinfo and link info, update and
 * detach.
 */
import t, { type Test } from 'tap';
import { BPF_F_REPLACE, BpfAttachType, BpfCgroupIterOrder, BpfLinkType } from '../uapi';
import { Kernel, bpfLinkDetach, bpfLinkGetInfo, bpfLinkUpdate, type Collection } from '../progs';
import { CGROUP_ITER_ORDER_NAME, bpfIterLinkCreate, parseCgroupIterOrder, type CgroupIterParams } from '../iter';
import { load, world, type World } from './harness/progs';

const OBJ = `import { SEC, bpf_seq_printf, vbpffs_cgroup_id } from 'vbpffs/bpf';
export const walk = SEC('iter/cgroup', (ctx) => {
  if (ctx.cgroup !== null) bpf_seq_printf(ctx.meta.seq, "%llu\\n", vbpffs_cgroup_id(ctx.cgroup));
  return 0;
});
export const walk_upper = SEC('iter/cgroup', (ctx) => {
  if (ctx.cgroup !== null) bpf_seq_printf(ctx.meta.seq, "ID %llu\\n", vbpffs_cgroup_id(ctx.cgroup));
  return 0;
});
export const sleepable = SEC('iter.s/cgroup', (ctx) => 0);
export const view = SEC('cgroup_view', (ctx) => {
  bpf_seq_printf(ctx.meta.seq, "view %llu\\n", vbpffs_cgroup_id(ctx.cgroup));
  return 0;
});
export const skb = SEC('cgroup_skb/egress', (ctx) => 1);
export const tp = SEC('tp/cgroup/mkdir', (ctx) => 0);`;

interface Rig extends World {
  coll: Collection;
}

function rig(t: Test): Rig {
  const w = world();
  const coll = load(w.kernel, OBJ);
  t.teardown(() => coll.close());
  return { ...w, coll };
}

const text = (b: Uint8Array): string => Buffer.from(b).toString('utf8');

t.test('only iterator programs make iterator links (EINVAL); the target comes from the section', async (t) => {
  const r = rig(t);
  for (const name of ['skb', 'tp']) t.throws(() => bpfIterLinkCreate(r.kernel, r.coll.program(name)), { code: 'EINVAL' }, name);
  const view = bpfIterLinkCreate(r.kernel, r.coll.program('view'));
  t.equal(view.object.target, 'cgroup_view');
  t.same(view.object.params, {});
  const walk = bpfIterLinkCreate(r.kernel, r.coll.program('sleepable'), { cgroup: { order: 'self_only' } });
  t.equal(walk.object.target, 'cgroup', 'iter.s/cgroup is the cgroup target too');
  t.equal(walk.object.type, BpfLinkType.ITER);
  t.equal(walk.object.attachType, BpfAttachType.TRACE_ITER);
  t.ok(walk.object.attached);
  view.close();
  walk.close();
});

t.test('the cgroup order: the five orders by number or name; anything else, UNSPEC and no parameters included, is EINVAL', async (t) => {
  const r = rig(t);
  const p = r.coll.program('walk');
  for (const [n, name] of Object.entries(CGROUP_ITER_ORDER_NAME)) {
    for (const order of [Number(n), name] as CgroupIterParams['order'][]) {
      const l = bpfIterLinkCreate(r.kernel, p, { cgroup: { order } });
      t.equal(l.object.params.cgroup?.order, Number(n), `${order}`);
      l.close();
    }
  }
  t.throws(() => bpfIterLinkCreate(r.kernel, p), { code: 'EINVAL' }, 'no link info: UNSPEC');
  for (const order of [BpfCgroupIterOrder.UNSPEC, 6, -1, 'preorder', 'UNSPEC'] as CgroupIterParams['order'][]) {
    t.throws(() => bpfIterLinkCreate(r.kernel, p, { cgroup: { order } }), { code: 'EINVAL' }, String(order));
  }
  t.equal(parseCgroupIterOrder('children'), BpfCgroupIterOrder.CHILDREN);
  t.equal(parseCgroupIterOrder({}), undefined);
});

t.test('the start cgroup: given at most one way (EINVAL), a non-cgroup is EBADF, a path or id naming no live cgroup ENOENT, none is the root', async (t) => {
  const r = rig(t);
  const p = r.coll.program('walk');
  const a = r.mkdir(r.root, 'a');
  const b = r.mkdir(a, 'b');
  const order = BpfCgroupIterOrder.SELF_ONLY;
  const start = (cgroup: Omit<CgroupIterParams, 'order'>): number => {
    const l = bpfIterLinkCreate(r.kernel, p, { cgroup: { order, ...cgroup } });
    const id = l.object.params.cgroup!.start.id;
    l.close();
    return id;
  };
  t.equal(start({ cgroup: b }), b.id, 'by the cgroup (cgroup_fd)');
  t.equal(start({ path: '/a/b' }), b.id, 'by path');
  t.equal(start({ id: b.id }), b.id, 'by id');
  t.equal(start({}), r.root.id, 'none: the root');
  t.equal(start({ id: 0 }), r.root.id, 'id 0 is none');
  t.throws(() => start({ cgroup: b, id: a.id }), { code: 'EINVAL' }, 'cgroup and id');
  t.throws(() => start({ path: '/a', id: a.id }), { code: 'EINVAL' }, 'path and id');
  t.throws(() => start({ cgroup: a, path: '/a' }), { code: 'EINVAL' }, 'cgroup and path');
  t.throws(() => start({ cgroup: {} as never }), { code: 'EBADF' }, 'not a cgroup');
  t.throws(() => start({ path: 42 as never }), { code: 'EINVAL' }, 'a path that is not a string');
  t.throws(() => start({ id: '2' as never }), { code: 'EINVAL' }, 'an id that is not a number');
  t.throws(() => start({ path: '/nope' }), { code: 'ENOENT' });
  t.throws(() => start({ id: 999 }), { code: 'ENOENT' });
  t.ok(b.tryGet());
  r.hierarchy.remove(b);
  t.throws(() => start({ cgroup: b }), { code: 'ENOENT' }, 'a removed cgroup, by itself');
  t.throws(() => start({ id: b.id }), { code: 'ENOENT' }, 'or by id');
  b.put();
  const bare = new Kernel();
  t.throws(() => bpfIterLinkCreate(bare, p, { cgroup: { order } }), { code: 'ENOENT' }, 'a kernel without cgroups has no root');
});

t.test('cgroup_view links take no parameters (EINVAL, where the RFC ignores them)', async (t) => {
  const r = rig(t);
  t.throws(() => bpfIterLinkCreate(r.kernel, r.coll.program('view'), { cgroup: { order: 'self_only', cgroup: r.root } }), { code: 'EINVAL' });
});

t.test('a refused link still used up an id, as bpf_link_prime allocates it before the target checks its parameters', async (t) => {
  const r = rig(t);
  const p = r.coll.program('walk');
  const l1 = bpfIterLinkCreate(r.kernel, p, { cgroup: { order: 'self_only' } });
  t.throws(() => bpfIterLinkCreate(r.kernel, p, { cgroup: { order: 'self_only', path: '/nope' } }), { code: 'ENOENT' });
  const l2 = bpfIterLinkCreate(r.kernel, p, { cgroup: { order: 'self_only' } });
  t.equal(l2.object.id, l1.object.id + 2);
  t.same(r.kernel.list('link').map((l) => l.id), [l1.object.id, l2.object.id], 'the refused one is gone');
  t.equal(p.refs, 3, 'the collection\'s handle and the two links: the refused link dropped its program');
  l1.close();
  l2.close();
});

t.test('the link holds its start cgroup until its release; sessions hold the link', async (t) => {
  const r = rig(t);
  const a = r.mkdir(r.root, 'a');
  const p = r.coll.program('walk');
  const base = [a.refs, p.refs];
  const h = bpfIterLinkCreate(r.kernel, p, { cgroup: { order: 'descendants_pre', cgroup: a } });
  const link = h.object;
  t.same([a.refs, p.refs], [base[0]! + 1, base[1]! + 1]);
  const s = link.open();
  h.close();
  t.notOk(link.released, 'an open session keeps the link (as an open pinned file keeps its inode)');
  t.equal(text(await s.read(4096)), `${a.id}\n`);
  s.close();
  t.ok(link.released, 'released with the session');
  t.notOk(link.attached);
  t.same([a.refs, p.refs], base, 'the cgroup and the program are dropped');
  t.throws(() => link.open(), { code: 'EBADF' });
});

t.test('fdinfo: the target name, then the cgroup iterator\'s path and order', async (t) => {
  const r = rig(t);
  const a = r.mkdir(r.root, 'a');
  const b = r.mkdir(a, 'b');
  const p = r.coll.program('walk');
  for (const [n, name] of Object.entries(CGROUP_ITER_ORDER_NAME)) {
    const l = bpfIterLinkCreate(r.kernel, p, { cgroup: { order: Number(n), cgroup: b } });
    t.equal(l.object.fdinfo(), `target_name:\tcgroup\ncgroup_path:\t/a/b\norder: ${name}\n`);
    l.close();
  }
  const root = bpfIterLinkCreate(r.kernel, p, { cgroup: { order: 'ancestors_up' } });
  t.equal(root.object.fdinfo(), 'target_name:\tcgroup\ncgroup_path:\t/\norder: ancestors_up\n');
  t.equal(
    root.object.showFdinfo(),
    `link_type:\titer\nlink_id:\t${root.object.id}\nprog_tag:\t${p.tag}\nprog_id:\t${p.id}\n` + 'target_name:\tcgroup\ncgroup_path:\t/\norder: ancestors_up\n',
    'after the common lines',
  );
  root.close();
  const view = bpfIterLinkCreate(r.kernel, r.coll.program('view'));
  t.equal(view.object.fdinfo(), 'target_name:\tcgroup_view\n');
  view.close();
});

t.test('link info: the target name and the cgroup iterator\'s order and start cgroup id', async (t) => {
  const r = rig(t);
  const a = r.mkdir(r.root, 'a');
  const l = bpfIterLinkCreate(r.kernel, r.coll.program('walk'), { cgroup: { order: 'children', cgroup: a } });
  t.same(bpfLinkGetInfo(l), {
    iter: { targetName: 'cgroup', cgroup: { order: BpfCgroupIterOrder.CHILDREN, cgroupId: a.id } },
    type: BpfLinkType.ITER,
    id: l.object.id,
    progId: r.coll.program('walk').id,
  });
  const v = bpfIterLinkCreate(r.kernel, r.coll.program('view'));
  t.same(v.object.info().iter, { targetName: 'cgroup_view' });
  l.close();
  v.close();
});

t.test('update swaps the program for later opens only; EPERM for a stale old program, EINVAL for another type or target', async (t) => {
  const r = rig(t);
  const a = r.mkdir(r.root, 'a');
  const walk = r.coll.program('walk');
  const upper = r.coll.program('walk_upper');
  const l = bpfIterLinkCreate(r.kernel, walk, { cgroup: { order: 'self_only', cgroup: a } });
  t.teardown(() => l.close());
  const before = l.object.open();
  bpfLinkUpdate(l, upper, { flags: BPF_F_REPLACE, oldProg: walk });
  t.equal(l.object.prog, upper);
  t.equal(text(await l.object.open().read(4096)), `ID ${a.id}\n`, 'a new open runs the new program');
  t.equal(text(await before.read(4096)), `${a.id}\n`, 'a session opened before keeps the old one');
  before.close();
  t.throws(() => bpfLinkUpdate(l, walk, { flags: BPF_F_REPLACE, oldProg: walk }), { code: 'EPERM' });
  for (const name of ['view', 'skb', 'tp']) t.throws(() => bpfLinkUpdate(l, r.coll.program(name)), { code: 'EINVAL' }, name);
  bpfLinkUpdate(l, r.coll.program('sleepable'));
  t.equal(l.object.prog.name, 'sleepable', 'iter.s/cgroup shares the target of iter/cgroup');
});

t.test('an iterator link has no detach: EOPNOTSUPP', async (t) => {
  const r = rig(t);
  const l = bpfIterLinkCreate(r.kernel, r.coll.program('view'));
  t.throws(() => bpfLinkDetach(l), { code: 'EOPNOTSUPP' });
  t.ok(l.object.attached);
  l.close();
});
