import t from 'tap';
import { KernfsNode } from '../tags/kernfs-node';

function root(): KernfsNode {
  return new KernfsNode(1, '', null);
}

t.test('a new node is live with one reference, a level and a path', async (t) => {
  const r = root();
  const a = new KernfsNode(2, 'a', r);
  const b = new KernfsNode(3, 'b.slice', a);
  t.equal(r.path, '/');
  t.equal(b.path, '/a/b.slice');
  t.equal(b.level, 2);
  t.equal(a.state, 'live');
  t.equal(a.refs, 2, 'its own online reference plus the one its child holds');
  t.equal(b.refs, 1);
  t.notOk(a.dying);
  t.notOk(a.released);
  t.ok(b.isDescendantOf(r) && b.isDescendantOf(b) && !a.isDescendantOf(b), 'isDescendantOf includes itself');
});

t.test('ids above 2^32 are kept exact; ids that cannot be represented are EOVERFLOW', async (t) => {
  const big = 2 ** 32 + 5;
  t.equal(new KernfsNode(big, '', null).id, big);
  t.equal(new KernfsNode(Number.MAX_SAFE_INTEGER, '', null).id, Number.MAX_SAFE_INTEGER);
  t.throws(() => new KernfsNode(2 ** 53, '', null), { code: 'EOVERFLOW' });
  t.throws(() => new KernfsNode(0, '', null), { code: 'EOVERFLOW' });
  t.throws(() => new KernfsNode(1.5, '', null), { code: 'EOVERFLOW' });
});

t.test('children are kept in creation order, and a live name cannot be taken twice (EEXIST)', async (t) => {
  const r = root();
  for (const [i, n] of ['z', 'a', 'm'].entries()) new KernfsNode(10 + i, n, r);
  t.same(r.children.map((c) => c.name), ['z', 'a', 'm']);
  t.equal(r.child('a')?.id, 11);
  t.throws(() => new KernfsNode(20, 'a', r), { code: 'EEXIST' });
});

t.test('tryGet (css_tryget) succeeds while dying; tryGetOnline (css_tryget_online) fails from rmdir on', async (t) => {
  const r = root();
  const a = new KernfsNode(2, 'a', r);
  t.ok(a.tryGetOnline(), 'online while live');
  a.kill();
  t.equal(a.state, 'dying');
  t.ok(a.dying);
  t.ok(a.tryGet(), 'tryGet on a dying node');
  t.notOk(a.tryGetOnline(), 'tryGetOnline on a dying node');
  a.put();
  a.put();
  t.equal(a.state, 'released');
  t.notOk(a.tryGet(), 'tryGet fails once released');
  t.notOk(a.tryGetOnline());
  t.throws(() => a.get(), { code: 'ENOENT' }, 'get on a released node');
  t.throws(() => a.put(), { code: 'EINVAL' }, 'a put too many');
  t.throws(() => a.onRelease(() => undefined), { code: 'ENOENT' }, 'no hooks on a released node');
});

t.test('kill without other references releases at once; a second kill is ENOENT', async (t) => {
  const r = root();
  const a = new KernfsNode(2, 'a', r);
  a.get();
  a.put();
  a.kill();
  t.equal(a.state, 'released');
  t.same(r.children, [], 'a released node leaves its parent');
  t.equal(r.refs, 1, 'and drops its reference on the parent');
  t.throws(() => a.kill(), { code: 'ENOENT' });
});

t.test('kill of a node with live children is EBUSY; dying children do not count', async (t) => {
  const r = root();
  const a = new KernfsNode(2, 'a', r);
  const b = new KernfsNode(3, 'b', a);
  t.throws(() => a.kill(), { code: 'EBUSY' });
  b.tryGet();
  b.kill();
  a.kill();
  t.equal(a.state, 'dying');
});

t.test('a parent is released only after its children, and after them in hook order', async (t) => {
  const r = root();
  const a = new KernfsNode(2, 'a', r);
  const b = new KernfsNode(3, 'b', a);
  const order: string[] = [];
  a.onRelease(() => order.push('a'));
  b.onRelease(() => order.push('b1'));
  b.onRelease(() => order.push('b2'));
  b.tryGet();
  b.kill();
  a.kill();
  t.equal(a.state, 'dying', 'held by its dying child');
  t.same(order, []);
  b.put();
  t.same(order, ['b1', 'b2', 'a'], 'child hooks in registration order, then the parent');
  t.equal(a.state, 'released');
});

t.test('a release hook can be removed, and one that throws does not stop the others', async (t) => {
  const r = root();
  const a = new KernfsNode(2, 'a', r);
  const ran: string[] = [];
  const remove = a.onRelease(() => ran.push('removed'));
  a.onRelease(() => {
    throw new Error('boom');
  });
  a.onRelease(() => ran.push('last'));
  remove();
  remove();
  a.kill();
  t.same(ran, ['last']);
});

t.test("a dying child's name can be taken by a new cgroup", async (t) => {
  const r = root();
  const old = new KernfsNode(2, 'x', r);
  old.tryGet();
  old.kill();
  t.equal(r.child('x'), undefined, 'a dying node is not found by name');
  const fresh = new KernfsNode(3, 'x', r);
  t.equal(r.child('x'), fresh);
  t.same(r.children, [old, fresh], 'both stay children until the old one is released');
  old.put();
  t.same(r.children, [fresh]);
  t.equal(r.child('x'), fresh, 'releasing the old one leaves the new name alone');
});

t.test('a child cannot be made under a dying parent (ENOENT)', async (t) => {
  const r = root();
  const a = new KernfsNode(2, 'a', r);
  a.tryGet();
  a.kill();
  t.throws(() => new KernfsNode(3, 'b', a), { code: 'ENOENT' });
});

t.test('the owner storage pointer starts empty and is the owner’s to set', async (t) => {
  const a = root();
  t.equal(a.bpfStorage, null);
  const s = { destroy: (): void => undefined };
  a.bpfStorage = s;
  t.equal(a.bpfStorage, s);
});

t.test('release destroys local storage after the onRelease hooks and before the parent put', async (t) => {
  const r = root();
  const order: string[] = [];
  const a = new KernfsNode(2, 'a', r, () => order.push(`released callback, parent refs ${r.refs}`));
  a.onRelease(() => order.push(`hook, parent refs ${r.refs}`));
  a.bpfStorage = { destroy: () => void order.push(`destroy, state ${a.state}, parent refs ${r.refs}`) };
  a.kill();
  t.same(order, ['hook, parent refs 2', 'destroy, state released, parent refs 2', 'released callback, parent refs 2']);
  t.equal(r.refs, 1, 'the parent reference is dropped last');
});

t.test('a failing bpfStorage.destroy does not stop the release', async (t) => {
  const r = root();
  const ran: string[] = [];
  const a = new KernfsNode(2, 'a', r, () => ran.push('released callback'));
  a.bpfStorage = {
    destroy: () => {
      throw new Error('storage boom');
    },
  };
  a.kill();
  t.same(ran, ['released callback']);
  t.equal(a.state, 'released');
  t.same(r.children, [], 'it left its parent');
  t.equal(r.refs, 1, 'and dropped its parent reference');
});

t.test('rmdir runs bpf-release hooks at once even while references remain', async (t) => {
  const r = root();
  const a = new KernfsNode(2, 'a', r);
  const order: string[] = [];
  a.onBpfRelease(() => order.push(`bpf1 ${a.state}`));
  a.onBpfRelease(() => {
    throw new Error('bpf boom');
  });
  const removed = a.onBpfRelease(() => order.push('removed'));
  a.onBpfRelease(() => order.push(`bpf2 ${a.state}`));
  a.onRelease(() => order.push('release'));
  removed();
  removed();
  a.get();
  a.kill();
  t.same(order, ['bpf1 dying', 'bpf2 dying'], 'in registration order, on a dying node, a throwing one skipped');
  t.equal(a.state, 'dying', 'still referenced');
  t.throws(() => a.onBpfRelease(() => undefined), { code: 'ENOENT' }, 'no bpf-release hook on a dying node');
  a.put();
  t.same(order, ['bpf1 dying', 'bpf2 dying', 'release'], 'bpf-release hooks ran once');
  t.throws(() => a.onBpfRelease(() => undefined), { code: 'ENOENT' }, 'nor on a released one');
});

t.test('local storage and onRelease hooks wait for the last put', async (t) => {
  const r = root();
  const a = new KernfsNode(2, 'a', r);
  const b = new KernfsNode(3, 'b', a);
  const order: string[] = [];
  a.onBpfRelease(() => order.push('a bpf'));
  b.onBpfRelease(() => order.push('b bpf'));
  a.onRelease(() => order.push('a release'));
  b.onRelease(() => order.push('b release'));
  a.bpfStorage = { destroy: () => void order.push('a storage') };
  b.bpfStorage = { destroy: () => void order.push('b storage') };
  b.get();
  a.get();
  b.kill();
  t.same(order, ['b bpf'], 'rmdir of the child: its bpf state only');
  a.kill();
  t.same(order, ['b bpf', 'a bpf'], "the parent's bpf state goes at its rmdir, though a dying child remains");
  a.put();
  t.equal(a.state, 'dying', 'held by its dying child');
  b.put();
  t.same(order, ['b bpf', 'a bpf', 'b release', 'b storage', 'a release', 'a storage']);
});

t.test('a put that would drop the online reference of a live node is EINVAL and changes nothing', async (t) => {
  const r = root();
  const a = new KernfsNode(2, 'a', r);
  a.get();
  a.put();
  t.throws(() => a.put(), { code: 'EINVAL', message: /online reference/ });
  t.equal(a.state, 'live');
  t.equal(a.refs, 1);
  t.equal(r.child('a'), a, 'its name still resolves');
  t.same(r.children, [a]);
  const lone = root();
  t.throws(() => lone.put(), { code: 'EINVAL' }, 'the root too');
  t.equal(lone.state, 'live');
});

t.test('a released node frees its name and a new cgroup may take it', async (t) => {
  const r = root();
  const a = new KernfsNode(2, 'a', r);
  a.kill();
  t.equal(a.state, 'released');
  t.equal(r.child('a'), undefined);
  const again = new KernfsNode(3, 'a', r);
  t.equal(r.child('a'), again);
});

t.test('a hook remover called after its stage has run does nothing', async (t) => {
  const r = root();
  const a = new KernfsNode(2, 'a', r);
  const ran: string[] = [];
  const removeBpf = a.onBpfRelease(() => ran.push('bpf'));
  const removeRelease = a.onRelease(() => ran.push('release'));
  a.kill();
  removeBpf();
  removeRelease();
  t.same(ran, ['bpf', 'release']);
});
