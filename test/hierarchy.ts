import t from 'tap';
import { CgroupHierarchy } from '../tags/hierarchy';
import type { KernfsNode } from '../tags/kernfs-node';

t.test('add indexes a node by id and path and emits mkdir', async (t) => {
  const h = new CgroupHierarchy(1);
  const seen: KernfsNode[] = [];
  h.on('mkdir', (n) => seen.push(n));
  const a = h.add(h.root, 'a', 2 ** 40);
  const b = h.add(a, 'b', 2 ** 40 + 1);
  t.same(seen, [a, b]);
  t.equal(h.cgroupById(2 ** 40), a, 'ids above 2^32 index exactly');
  t.equal(h.cgroupByPath('/a/b'), b);
  t.equal(h.cgroupByPath('a/./b/'), b, 'relative paths and . are accepted');
  t.equal(h.cgroupByPath('/'), h.root);
  t.equal(h.cgroupByPath('/a/../a'), undefined, '.. never resolves');
  t.equal(h.cgroupByPath('/nope/b'), undefined);
  t.equal(h.size, 3);
});

t.test('add refuses a taken id or name (EEXIST) and a dying parent (ENOENT)', async (t) => {
  const h = new CgroupHierarchy(1);
  const a = h.add(h.root, 'a', 2);
  t.throws(() => h.add(h.root, 'other', 2), { code: 'EEXIST' });
  t.throws(() => h.add(h.root, 'a', 3), { code: 'EEXIST' });
  a.tryGet();
  h.remove(a);
  t.throws(() => h.add(a, 'x', 4), { code: 'ENOENT' });
});

t.test('remove makes a node dying: path lookup fails, id lookup works until release', async (t) => {
  const h = new CgroupHierarchy(1);
  const a = h.add(h.root, 'a', 2);
  const events: string[] = [];
  h.on('rmdir', (n) => events.push(`rmdir ${n.id}`)).on('release', (n) => events.push(`release ${n.id}`));
  a.tryGet();
  h.remove(a);
  t.equal(h.cgroupByPath('/a'), undefined);
  t.equal(h.cgroupById(2), a);
  t.equal(h.size, 2, 'a dying node still counts');
  a.put();
  t.equal(h.cgroupById(2), undefined);
  t.same(events, ['rmdir 2', 'release 2']);
  t.equal(h.size, 1);
});

t.test('remove takes live descendants the source missed with it, deepest first', async (t) => {
  const h = new CgroupHierarchy(1);
  const a = h.add(h.root, 'a', 2);
  const b = h.add(a, 'b', 3);
  h.add(b, 'c', 4);
  const order: number[] = [];
  h.on('rmdir', (n) => order.push(n.id));
  h.remove(a);
  t.same(order, [4, 3, 2]);
  t.equal(h.size, 1);
});

t.test('the root cannot be removed (EBUSY)', async (t) => {
  const h = new CgroupHierarchy(1);
  t.throws(() => h.remove(h.root), { code: 'EBUSY' });
});

t.test('walk visits parents before children, children in creation order, dying ones included', async (t) => {
  const h = new CgroupHierarchy(1);
  const z = h.add(h.root, 'z', 2);
  h.add(z, 'z1', 3);
  const a = h.add(h.root, 'a', 4);
  a.tryGet();
  h.remove(a);
  t.same([...h.walk()].map((n) => n.path), ['/', '/z', '/z/z1', '/a']);
  t.same([...h.walk(z)].map((n) => n.id), [2, 3], 'from a subtree');
});

t.test('events are emitted once the whole mutation is done: remove of a subtree', async (t) => {
  const h = new CgroupHierarchy(1);
  const a = h.add(h.root, 'a', 2);
  const b = h.add(a, 'b', 3);
  const c = h.add(b, 'c', 4);
  c.tryGet();
  const seen: string[] = [];
  h.on('rmdir', (n) => seen.push(`rmdir ${n.id}: ${[a, b, c].map((x) => x.state).join(',')}`));
  h.on('release', (n) => seen.push(`release ${n.id}`));
  h.remove(a);
  t.same(seen, ['rmdir 4: dying,dying,dying', 'rmdir 3: dying,dying,dying', 'rmdir 2: dying,dying,dying'], 'every node dying before the first event; b and a held by the dying c');
  c.put();
  t.same(seen.slice(3), ['release 4', 'release 3', 'release 2'], 'the last put releases c, then b and a');
  t.throws(() => h.remove(a), { code: 'ENOENT' }, 'a released node cannot be removed again');
});

t.test('a throwing listener neither stops the other listeners nor leaves the tree half-done', async (t) => {
  const h = new CgroupHierarchy(1);
  const seen: string[] = [];
  h.on('mkdir', () => {
    throw new Error('mkdir listener boom');
  });
  h.on('mkdir', (n) => seen.push(`mkdir ${n.path}`));
  h.on('rmdir', () => {
    throw new Error('rmdir listener boom');
  });
  h.on('rmdir', (n) => seen.push(`rmdir ${n.path}`));
  h.on('release', () => {
    throw new Error('release listener boom');
  });
  h.on('release', (n) => seen.push(`release ${n.path}`));
  const a = h.add(h.root, 'a', 2);
  const b = h.add(a, 'b', 3);
  t.equal(h.cgroupByPath('/a/b'), b, 'add completed');
  h.remove(a);
  t.equal(a.state, 'released', 'remove completed: the parent too, not only the first child');
  t.equal(b.state, 'released');
  t.equal(h.size, 1);
  t.same(seen, ['mkdir /a', 'mkdir /a/b', 'rmdir /a/b', 'release /a/b', 'rmdir /a', 'release /a']);
});

t.test("a listener's own changes are emitted after the event it handles; once() listeners run once", async (t) => {
  const h = new CgroupHierarchy(1);
  const seen: string[] = [];
  h.once('mkdir', (n) => {
    seen.push(`once ${n.path}`);
    h.add(n, 'child', 3);
    seen.push('once returns');
  });
  h.on('mkdir', (n) => seen.push(`mkdir ${n.path}`));
  h.add(h.root, 'a', 2);
  t.same(seen, ['once /a', 'once returns', 'mkdir /a', 'mkdir /a/child']);
  t.equal(h.listenerCount('mkdir'), 1);
});

t.test('a release outside a mutation is emitted at once', async (t) => {
  const h = new CgroupHierarchy(1);
  const a = h.add(h.root, 'a', 2);
  a.tryGet();
  h.remove(a);
  const seen: number[] = [];
  h.on('release', (n) => seen.push(n.id));
  a.put();
  t.same(seen, [2]);
});
