import t from 'tap';
import { DirTag, InheritList } from '../tags/dir-tag';
import { CgroupHierarchy } from '../tags/hierarchy';

/** A stand-in object with the kernel's reference discipline: what the list must get and put. */
class Obj {
  refs = 1;
  constructor(readonly name: string) {}
}
const ops = { get: (o: Obj) => void o.refs++, put: (o: Obj) => void o.refs-- };

function setup() {
  const h = new CgroupHierarchy(1);
  const a = h.add(h.root, 'a', 2);
  const b = h.add(a, 'b', 3);
  return { h, a, b };
}

t.test('tagRoot maps to the cgroup2 root, holds a reference on it and makes a new list (KERNFS_REP)', async (t) => {
  const { h, a } = setup();
  const refs = h.root.refs;
  const tag = DirTag.tagRoot(h.root, ops);
  t.equal(tag.type, 'KERNFS_REP');
  t.equal(tag.node, h.root);
  t.equal(h.root.refs, refs + 1);
  t.equal(tag.inherit.refs, 1);
  t.same(tag.entries(), []);
  t.throws(() => DirTag.tagRoot(a, ops), { code: 'EINVAL' }, 'only the root can be the initial tag');
});

t.test('tagChild needs a live child cgroup by that exact name: ENOENT otherwise', async (t) => {
  const { h, a } = setup();
  const root = DirTag.tagRoot(h.root, ops);
  t.throws(() => DirTag.tagChild(root, 'nope'), { code: 'ENOENT' });
  t.throws(() => DirTag.tagChild(root, 'A'), { code: 'ENOENT' }, 'names match exactly');
  t.throws(() => DirTag.tagChild(root, 'b'), { code: 'ENOENT' }, 'a grandchild is not a child');
  const refs = a.refs;
  const ta = DirTag.tagChild(root, 'a');
  t.equal(ta.node, a);
  t.equal(a.refs, refs + 1, 'the child tag holds a reference on its cgroup');
  const tb = DirTag.tagChild(ta, 'b');
  const b = tb.node;
  tb.destroy();
  b.tryGet();
  h.remove(b);
  t.throws(() => DirTag.tagChild(ta, 'b'), { code: 'ENOENT' }, 'a dying cgroup is not found by name');
  b.put();
});

t.test('tagChild of an interface file name is EPERM: kernfs finds it but it is not a directory', async (t) => {
  const { h } = setup();
  const root = DirTag.tagRoot(h.root, ops);
  t.throws(() => DirTag.tagChild(root, 'cgroup.procs'), { code: 'EPERM' });
  t.throws(() => DirTag.tagChild(root, 'cpu.pressure'), { code: 'EPERM' });
});

t.test('all tags of a hierarchy share one inherit list, refcounted by the tags', async (t) => {
  const { h } = setup();
  const root = DirTag.tagRoot(h.root, ops);
  const ta = DirTag.tagChild(root, 'a');
  const tb = DirTag.tagChild(ta, 'b');
  t.equal(ta.inherit, root.inherit);
  t.equal(tb.inherit, root.inherit);
  t.equal(root.inherit.refs, 3);
});

t.test('appendEntry adds to the shared list, taking a reference; a name already there is a no-op', async (t) => {
  const { h } = setup();
  const root = DirTag.tagRoot(h.root, ops);
  const ta = DirTag.tagChild(root, 'a');
  const view = new Obj('view');
  const other = new Obj('other');
  t.ok(root.appendEntry('cpu', 0o600, view));
  t.equal(view.refs, 2, 'the list holds a reference');
  t.notOk(ta.appendEntry('cpu', 0o644, other), 'same name from any tag: no-op');
  t.equal(other.refs, 1, 'no reference taken for a no-op');
  t.ok(ta.appendEntry('mem', 0o644, other), 'a pin in a child tag feeds the shared list');
  t.same(
    root.entries().map((e) => [e.name, e.mode, e.obj.name]),
    [
      ['cpu', 0o600, 'view'],
      ['mem', 0o644, 'other'],
    ],
    'entries in insertion order with their mode',
  );
  t.equal(root.inherit.entry('cpu')?.obj, view);
  t.equal(root.inherit.entry('nope'), undefined);
});

t.test('the list lives until the last tag goes, then drops every object reference', async (t) => {
  const { h, a } = setup();
  const root = DirTag.tagRoot(h.root, ops);
  const ta = DirTag.tagChild(root, 'a');
  const view = new Obj('view');
  root.appendEntry('cpu', 0o600, view);
  const aRefs = a.refs;
  ta.destroy();
  t.equal(a.refs, aRefs - 1, 'destroy drops the cgroup reference');
  t.ok(ta.destroyed);
  t.equal(view.refs, 2, 'the list outlives a child tag');
  t.notOk(root.inherit.freed);
  root.destroy();
  t.ok(root.inherit.freed);
  t.equal(view.refs, 1, 'the freed list dropped its reference');
  t.same(root.entries(), []);
});

t.test('the list outlives the tag that made it while another tag shares it', async (t) => {
  const { h } = setup();
  const root = DirTag.tagRoot(h.root, ops);
  const ta = DirTag.tagChild(root, 'a');
  const view = new Obj('view');
  root.appendEntry('cpu', 0o600, view);
  root.destroy();
  t.notOk(ta.inherit.freed);
  t.same(ta.entries().map((e) => e.name), ['cpu']);
  ta.destroy();
  t.equal(view.refs, 1);
});

t.test('a destroyed tag refuses further use (EINVAL, ENOENT)', async (t) => {
  const { h } = setup();
  const root = DirTag.tagRoot(h.root, ops);
  const ta = DirTag.tagChild(root, 'a');
  ta.destroy();
  t.throws(() => ta.destroy(), { code: 'EINVAL' }, 'destroyed twice');
  t.throws(() => ta.appendEntry('x', 0o600, new Obj('x')), { code: 'ENOENT' });
  t.throws(() => DirTag.tagChild(ta, 'b'), { code: 'ENOENT' }, 'no children under a destroyed tag');
});

t.test('a tag keeps a removed cgroup from being released (it may still be shown while dying)', async (t) => {
  const { h, a } = setup();
  const root = DirTag.tagRoot(h.root, ops);
  const ta = DirTag.tagChild(root, 'a');
  const b = a.children[0];
  h.remove(b);
  h.remove(a);
  t.equal(a.state, 'dying');
  ta.destroy();
  t.equal(a.state, 'released');
});

t.test('an InheritList misused after it is freed is EINVAL', async (t) => {
  const list = new InheritList(ops);
  list.put();
  t.throws(() => list.put(), { code: 'EINVAL' });
  t.throws(() => list.get(), { code: 'EINVAL' });
  t.throws(() => list.append('x', 0o600, new Obj('x')), { code: 'EINVAL' });
});

t.test('tagRoot of a released root is ENOENT', async (t) => {
  const h = new CgroupHierarchy(1);
  h.root.kill(); // the hierarchy's own reference: a put() of it is refused while the root is live
  t.equal(h.root.state, 'released');
  t.throws(() => DirTag.tagRoot(h.root, ops), { code: 'ENOENT' });
});

t.test('InheritList.put puts every entry even when one put throws', async (t) => {
  const failing = new Obj('bad');
  const put = (o: Obj): void => {
    if (o === failing) throw new Error('put boom');
    o.refs--;
  };
  const list = new InheritList<Obj>({ get: ops.get, put });
  const first = new Obj('first');
  const last = new Obj('last');
  list.append('first', 0o444, first);
  list.append('bad', 0o444, failing);
  list.append('last', 0o444, last);
  list.put();
  t.ok(list.freed);
  t.equal(first.refs, 1, 'the entry before the failing one was put');
  t.equal(last.refs, 1, 'and the one after it');
  t.same(list.entries(), []);
});

t.test('tagChild of a controller file name is EPERM; other names that are not a live child cgroup are ENOENT', async (t) => {
  const { h, a } = setup();
  const root = DirTag.tagRoot(h.root, ops);
  for (const name of ['memory.current', 'cpu.max', 'io.stat', 'pids.max', 'cpuset.cpus.effective', 'hugetlb.2MB.max', 'memory.swap.max', 'misc.capacity', 'rdma.max', 'irq.pressure', 'cgroup.kill']) {
    t.throws(() => DirTag.tagChild(root, name), { code: 'EPERM' }, name);
  }
  for (const name of ['system.slice', 'cron.service', 'foo.max', 'freezer.state', 'memory.', '.memory', 'memory..max', 'memory.max/x']) {
    t.throws(() => DirTag.tagChild(root, name), { code: 'ENOENT' }, name);
  }
  // A cgroup may be named like a knob of a controller it does not have: the live child wins.
  const dotted = h.add(a, 'memory.current', 10);
  const ta = DirTag.tagChild(root, 'a');
  t.equal(DirTag.tagChild(ta, 'memory.current').node, dotted, 'a live child cgroup of that name is tagged');
  const slice = h.add(h.root, 'system.slice', 11);
  t.equal(DirTag.tagChild(root, 'system.slice').node, slice);
});
