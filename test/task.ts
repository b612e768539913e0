import t from 'tap';
import { CgroupHierarchy } from '../tags/hierarchy';
import { Task } from '../tags/task';

function setup() {
  const h = new CgroupHierarchy(1);
  const a = h.add(h.root, 'a', 2);
  const b = h.add(h.root, 'b', 3);
  return { h, a, b };
}

t.test('a task holds a reference on its cgroup', async (t) => {
  const { a } = setup();
  const before = a.refs;
  const task = new Task(7, 'sh', a);
  t.equal(a.refs, before + 1);
  t.equal(task.pid, 7);
  t.equal(task.comm, 'sh');
  t.equal(task.cgroup, a);
  t.equal(task.bpfStorage, null);
  t.notOk(task.dying);
});

t.test('a bad pid is EINVAL and a released cgroup is ENOENT', async (t) => {
  const { h, a } = setup();
  t.throws(() => new Task(0, 'x', a), { code: 'EINVAL' });
  t.throws(() => new Task(1.5, 'x', a), { code: 'EINVAL' });
  h.remove(a);
  t.throws(() => new Task(5, 'x', a), { code: 'ENOENT' });
});

t.test('migrate moves the cgroup reference; a removed destination is ENODEV', async (t) => {
  const { h, a, b } = setup();
  const task = new Task(7, 'sh', a);
  const aRefs = a.refs;
  const bRefs = b.refs;
  task.migrate(b);
  t.equal(task.cgroup, b);
  t.equal(a.refs, aRefs - 1);
  t.equal(b.refs, bRefs + 1);
  task.migrate(b);
  t.equal(b.refs, bRefs + 1, 'a move to the same cgroup takes nothing');
  const c = h.add(h.root, 'c', 4);
  c.tryGet();
  h.remove(c);
  t.throws(() => task.migrate(c), { code: 'ENODEV' });
  t.equal(task.cgroup, b);
});

t.test('exit makes the task dying, then release runs hooks before the cgroup is put', async (t) => {
  const { h, a } = setup();
  const task = new Task(7, 'sh', a);
  const order: string[] = [];
  task.onRelease(() => order.push(`hook, cgroup ${a.state}`));
  const removed = task.onRelease(() => order.push('removed'));
  removed();
  removed();
  task.onRelease(() => {
    throw new Error('a failing hook does not stop the release');
  });
  t.ok(task.tryGet(), 'a holder past exit');
  task.exit();
  t.ok(task.dying);
  t.notOk(task.released);
  t.throws(() => task.exit(), { code: 'ESRCH' }, 'a second exit');
  t.throws(() => task.migrate(h.root), { code: 'ESRCH' }, 'an exiting task cannot move');
  h.remove(a);
  t.equal(a.state, 'dying', 'the cgroup of an unreleased task stays');
  task.put();
  t.ok(task.released);
  t.equal(task.refs, 0);
  t.same(order, ['hook, cgroup dying']);
  t.equal(a.state, 'released', 'the cgroup goes with its last task');
  t.notOk(task.tryGet(), 'no references once released');
  t.throws(() => task.put(), { code: 'EINVAL' });
  t.throws(() => task.onRelease(() => undefined), { code: 'ESRCH' });
});

t.test('task release destroys local storage after the hooks and before the cgroup put', async (t) => {
  const { a } = setup();
  const task = new Task(7, 'sh', a);
  const refs = a.refs;
  const order: string[] = [];
  task.onRelease(() => order.push(`hook, cgroup refs ${a.refs}`));
  task.bpfStorage = { destroy: () => void order.push(`destroy, released ${task.released}, cgroup refs ${a.refs}`) };
  task.exit();
  t.same(order, [`hook, cgroup refs ${refs}`, `destroy, released true, cgroup refs ${refs}`]);
  t.equal(a.refs, refs - 1, 'the cgroup reference is dropped last');
});

t.test('a failing task bpfStorage.destroy does not stop the release', async (t) => {
  const { h, a } = setup();
  const task = new Task(7, 'sh', a);
  task.bpfStorage = {
    destroy: () => {
      throw new Error('storage boom');
    },
  };
  h.remove(a);
  t.equal(a.state, 'dying');
  task.exit();
  t.ok(task.released);
  t.equal(a.state, 'released', 'the cgroup reference was still dropped');
});

t.test('a put cannot drop a running task\'s own reference (only exit() does): EINVAL, nothing changes', async (t) => {
  const h = new CgroupHierarchy(1);
  const task = new Task(42, 'sh', h.root);
  t.throws(() => task.put(), { code: 'EINVAL' });
  t.equal(task.refs, 1);
  t.notOk(task.released);
  t.ok(task.tryGet());
  task.put();
  task.exit();
  t.ok(task.released, 'exit drops the task\'s own reference');
});
