import t from 'tap';
import { CgroupHierarchy } from '../tags/hierarchy';
import type { KernfsNode } from '../tags/kernfs-node';
import { PSI_PERIOD_NS, PsiGroup, calcLoad, formatAvg } from '../tags/sim/psi';
import { SimCgroupSource } from '../tags/sim/source';
import { DEFAULT_SLICE_NS, Workload, type WorkloadChange } from '../tags/sim/workload';

const SEC = 1_000_000_000;

function tree(): { h: CgroupHierarchy; a: KernfsNode; b: KernfsNode; c: KernfsNode; w: Workload } {
  const h = new CgroupHierarchy(1);
  const a = h.add(h.root, 'a', 10);
  const b = h.add(a, 'b', 11);
  const c = h.add(a, 'c', 12);
  return { h, a, b, c, w: new Workload() };
}

function line(text: string, which: 'some' | 'full'): string {
  return text.split('\n').find((l) => l.startsWith(which)) as string;
}

t.test('run time, run-queue wait and slices of a task are exact on the controlled clock', async (t) => {
  const { b, w } = tree();
  const task = w.spawn({ cgroup: b, run: 0.5, wait: 0.25 });
  w.advance(10 * SEC);
  t.equal(w.now, 10 * SEC);
  t.same(w.schedstat(task.pid), { runNs: 5 * SEC, waitNs: 2.5 * SEC, slices: Math.ceil((5 * SEC) / DEFAULT_SLICE_NS) });
  w.spawn({ cgroup: b, run: 0.3, sliceNs: 1_000_000, pid: 7 });
  w.advance(SEC);
  t.same(w.schedstat(7), { runNs: 300_000_000, waitNs: 0, slices: 300 }, '0.3 of a second is 300 ms, not a ns short');
});

t.test('figures do not drift: many small advances equal one large one', async (t) => {
  const one = tree();
  const many = tree();
  one.w.spawn({ cgroup: one.b, run: 1 / 3, wait: 1 / 7, pid: 5 });
  many.w.spawn({ cgroup: many.b, run: 1 / 3, wait: 1 / 7, pid: 5 });
  one.w.advance(7 * SEC);
  for (let i = 0; i < 7000; i++) many.w.advance(1_000_000);
  t.same(many.w.schedstat(5), one.w.schedstat(5));
  t.same(many.w.cputime(many.a), one.w.cputime(one.a));
  t.same(many.w.psi(many.a).total, one.w.psi(one.a).total);
});

t.test('cpu.stat splits usage into user, system and nice time', async (t) => {
  const { b, c, w } = tree();
  w.spawn({ cgroup: b, run: 0.5, system: 0.2 });
  w.spawn({ cgroup: c, run: 0.25, nice: 5 });
  w.advance(10 * SEC);
  t.same(w.cputime(b), { usageNs: 5 * SEC, userNs: 4 * SEC, systemNs: SEC, niceNs: 0 });
  t.same(w.cputime(c), { usageNs: 2.5 * SEC, userNs: 2.5 * SEC, systemNs: 0, niceNs: 2.5 * SEC }, 'a niced task counts as nice time');
});

t.test("a parent's cpu.stat is the sum of its subtree, and keeps time of tasks and children that left", async (t) => {
  const { h, a, b, c, w } = tree();
  const tb = w.spawn({ cgroup: b, run: 0.5 });
  w.spawn({ cgroup: c, run: 0.25 });
  w.spawn({ cgroup: a, run: 0.125 });
  w.advance(8 * SEC);
  t.equal(w.cputime(a).usageNs, w.cputime(b).usageNs + w.cputime(c).usageNs + SEC, 'a = b + c + its own');
  t.equal(w.cputime(h.root).usageNs, w.cputime(a).usageNs, 'the root sums everything');
  w.exit(tb.pid);
  w.advance(8 * SEC);
  t.equal(w.cputime(b).usageNs, 4 * SEC, 'an emptied cgroup keeps its time');
  h.remove(b);
  t.equal(w.cputime(a).usageNs, 4 * SEC + 4 * SEC + 2 * SEC, 'the parent keeps a removed child');
  w.advance(8 * SEC);
  t.equal(w.cputime(a).usageNs, 4 * SEC + 6 * SEC + 3 * SEC, 'and goes on from there');
});

t.test('migration charges time to the cgroup a task was in at the time', async (t) => {
  const { a, b, c, w } = tree();
  const task = w.spawn({ cgroup: b, run: 1 });
  w.advance(SEC);
  w.migrate(task.pid, c);
  w.advance(2 * SEC);
  t.equal(w.cputime(b).usageNs, SEC);
  t.equal(w.cputime(c).usageNs, 2 * SEC);
  t.equal(w.cputime(a).usageNs, 3 * SEC);
  t.same(w.procs(b), []);
  t.same(w.procs(c), [task.pid]);
  w.migrate(task.pid, c);
  t.same(w.procs(c), [task.pid], 'a move to the same cgroup is a no-op');
});

t.test('cgroup.procs lists a cgroup’s own tasks in the order they joined it', async (t) => {
  const { a, b, w } = tree();
  w.spawn({ cgroup: b, pid: 30 });
  w.spawn({ cgroup: a, pid: 10 });
  w.spawn({ cgroup: b, pid: 20 });
  w.migrate(10, b);
  t.same(w.procs(b), [30, 20, 10]);
  t.same(w.procs(a), [], 'descendants’ tasks are not listed');
  t.same(w.tasks().map((x) => x.pid), [30, 10, 20], 'tasks() in spawn order');
});

t.test('populated reflects a task anywhere in the subtree', async (t) => {
  const { h, a, b, c, w } = tree();
  t.notOk(w.populated(a));
  const task = w.spawn({ cgroup: b });
  t.ok(w.populated(b));
  t.ok(w.populated(a));
  t.ok(w.populated(h.root));
  t.notOk(w.populated(c));
  w.exit(task.pid);
  t.notOk(w.populated(a), 'not after the last task exits');
});

t.test('cpu pressure totals follow the some/full conditions of the subtree', async (t) => {
  const { h, a, b, c, w } = tree();
  w.spawn({ cgroup: b, run: 0.5, wait: 0.25 });
  w.spawn({ cgroup: c, run: 0.5, wait: 0.25 });
  w.advance(10 * SEC);
  t.match(line(w.pressure(b, 'cpu'), 'some'), / total=2500000$/, 'one task: some = wait');
  t.match(line(w.pressure(b, 'cpu'), 'full'), / total=2500000$/, 'one task: full = wait (waiting means not running)');
  // Independent tasks: some = 1 - 0.75^2, full = 0.5^2 - 0.25^2.
  t.match(line(w.pressure(a, 'cpu'), 'some'), / total=4375000$/, 'parent some');
  t.match(line(w.pressure(a, 'cpu'), 'full'), / total=1875000$/, 'parent full: a sibling running is not full stall');
  t.match(line(w.pressure(h.root, 'cpu'), 'full'), /^full avg10=0\.00 avg60=0\.00 avg300=0\.00 total=0$/, 'cpu full is undefined for the root');
  t.equal(
    w.pressure(a, 'memory'),
    'some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n',
    'memory stalls are not modelled',
  );
});

t.test('io pressure: some when a task waits on I/O, full when nothing else is runnable', async (t) => {
  const { a, b, c, w } = tree();
  w.spawn({ cgroup: b, io: 0.5 });
  w.advance(2 * SEC);
  t.match(line(w.pressure(b, 'io'), 'some'), / total=1000000$/);
  t.match(line(w.pressure(b, 'io'), 'full'), / total=1000000$/);
  w.spawn({ cgroup: c, run: 1 });
  w.advance(2 * SEC);
  t.match(line(w.pressure(a, 'io'), 'full'), / total=1000000$/, 'a running sibling stops full I/O stall');
  t.match(line(w.pressure(a, 'io'), 'some'), / total=2000000$/);
});

t.test('pressure averages are the kernel fixed-point EMAs folded every PSI period', async (t) => {
  const { b, w } = tree();
  const task = w.spawn({ cgroup: b, wait: 0.5 });
  w.advance(PSI_PERIOD_NS - 1);
  t.match(line(w.pressure(b, 'cpu'), 'some'), /^some avg10=0\.00 avg60=0\.00 avg300=0\.00 /, 'nothing folded before the period ends');
  w.advance(1);
  // 50% for one period: 50 * (1 - e^(-2/10)) = 9.06, in 11-bit fixed point 9.05; likewise 1.63 and 0.34.
  t.equal(line(w.pressure(b, 'cpu'), 'some'), 'some avg10=9.05 avg60=1.63 avg300=0.34 total=1000500');
  w.exit(task.pid);
  w.advance(PSI_PERIOD_NS);
  t.equal(line(w.pressure(b, 'cpu'), 'some'), 'some avg10=7.41 avg60=1.58 avg300=0.33 total=1000500', 'decays once stall stops');
  w.advance(3000 * PSI_PERIOD_NS);
  t.equal(line(w.pressure(b, 'cpu'), 'some'), 'some avg10=0.00 avg60=0.00 avg300=0.00 total=1000500', 'decays to zero; the total stays');
});

t.test('calc_load rounds up when the sample is above the average, down otherwise', async (t) => {
  t.equal(calcLoad(0, 1677, 102400), 18550);
  t.equal(calcLoad(18550, 1677, 0), 15189);
  t.equal(calcLoad(100, 2034, 100), 100, 'a steady sample keeps its average');
  t.equal(formatAvg(18550), '9.05');
  t.equal(formatAvg(2048 * 100), '100.00');
  const g = new PsiGroup(0);
  g.stall('cpu_some', 5 * SEC);
  g.update(SEC);
  t.equal(formatAvg(g.avg[4][0]), '18.11', 'a sample over the period is capped at 100%');
  g.update(SEC);
  t.ok(g.active, 'the overage is punted to the next period');
  g.update(2 * SEC);
  t.equal(g.show('cpu').split('\n')[0].endsWith('total=5000000'), true);
});

t.test('setRates changes figures from now on only', async (t) => {
  const { b, w } = tree();
  const task = w.spawn({ cgroup: b, run: 1 });
  w.advance(SEC);
  w.setRates(task.pid, { run: 0.5, wait: 0.5 });
  w.advance(SEC);
  t.same(w.schedstat(task.pid), { runNs: 1.5 * SEC, waitNs: 0.5 * SEC, slices: 500 });
  t.match(line(w.pressure(b, 'cpu'), 'some'), / total=500000$/);
});

t.test('bad input is refused with EINVAL, ESRCH, EEXIST or ENODEV', async (t) => {
  const { h, b, c, w } = tree();
  t.throws(() => w.spawn({ cgroup: b, run: 1.5 }), { code: 'EINVAL' }, 'a rate above 1');
  t.throws(() => w.spawn({ cgroup: b, run: -0.1 }), { code: 'EINVAL' }, 'a negative rate');
  t.throws(() => w.spawn({ cgroup: b, run: 0.6, wait: 0.3, io: 0.2 }), { code: 'EINVAL' }, 'run + wait + io above 1');
  t.throws(() => w.spawn({ cgroup: b, sliceNs: 0 }), { code: 'EINVAL' }, 'a zero slice');
  t.throws(() => w.advance(-1), { code: 'EINVAL' }, 'the clock does not go back');
  t.throws(() => w.advance(0.5), { code: 'EINVAL' }, 'whole ns only');
  w.spawn({ cgroup: b, pid: 50 });
  t.throws(() => w.spawn({ cgroup: b, pid: 50 }), { code: 'EEXIST' }, 'a pid in use');
  t.throws(() => w.setRates(50, { run: 2 }), { code: 'EINVAL' });
  t.throws(() => w.exit(51), { code: 'ESRCH' });
  t.throws(() => w.migrate(51, c), { code: 'ESRCH' });
  t.throws(() => w.schedstat(51), { code: 'ESRCH' });
  h.remove(c);
  t.throws(() => w.spawn({ cgroup: c }), { code: 'ENODEV' }, 'spawning into a removed cgroup');
  t.throws(() => w.migrate(50, c), { code: 'ENODEV' }, 'moving into a removed cgroup');
  w.spawn({ cgroup: b, pid: 100 });
  t.equal(w.spawn({ cgroup: b }).pid, 101, 'pids are allocated from 100, skipping those in use');
  t.equal(w.taskByPid(101)?.comm, 'task-101');
});

t.test('change events name the cgroups and tasks whose files must be rewritten', async (t) => {
  const { h, a, b, w } = tree();
  const seen: WorkloadChange[] = [];
  w.on('change', (c) => seen.push(c));
  const task = w.spawn({ cgroup: b });
  t.same(seen[0].cgroups, [b, a, h.root]);
  t.same(seen[0].tasks, [task]);
  w.exit(task.pid);
  t.same(seen[1].exited, [task.pid]);
  w.advance(1);
  t.same(seen[2].tasks, []);
});

t.test('released cgroups drop out of the pressure bookkeeping', async (t) => {
  const { h, b, w } = tree();
  const task = w.spawn({ cgroup: b, wait: 1 });
  w.advance(SEC);
  w.exit(task.pid);
  h.remove(b);
  t.equal(b.state, 'released');
  w.advance(PSI_PERIOD_NS);
  t.match(w.pressure(b, 'cpu'), /total=0/, 'a released cgroup reads as new');
});

t.test('the simulated source shows the workload in its files', async (t) => {
  const s = new SimCgroupSource();
  await s.start();
  const a = await s.mkdir('/a');
  s.workload.spawn({ cgroup: a, run: 0.5, wait: 0.5, system: 0.5 });
  s.workload.advance(PSI_PERIOD_NS);
  t.equal(
    await s.readFile(a, 'cpu.stat'),
    'usage_usec 1000500\nuser_usec 500250\nsystem_usec 500250\nnice_usec 0\n' +
      'nr_periods 0\nnr_throttled 0\nthrottled_usec 0\nnr_bursts 0\nburst_usec 0\n',
  );
  t.equal(
    await s.readFile(a, 'cpu.pressure'),
    'some avg10=9.05 avg60=1.63 avg300=0.34 total=1000500\nfull avg10=9.05 avg60=1.63 avg300=0.34 total=1000500\n',
  );
  t.equal(await s.readFile(a, 'io.pressure'), 'some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n');
});

t.test('a released cgroup leaves the bookkeeping at release, not at the next PSI period', async (t) => {
  const { h, b, w } = tree();
  const task = w.spawn({ cgroup: b, wait: 1 });
  w.advance(SEC);
  w.exit(task.pid);
  h.remove(b);
  t.equal(b.state, 'released');
  const changes: WorkloadChange[] = [];
  w.on('change', (c) => changes.push(c));
  w.advance(1);
  t.notOk(changes[0]!.cgroups.includes(b), 'the next change no longer names it');
  t.same(w.cputime(b), { usageNs: 0, userNs: 0, systemNs: 0, niceNs: 0 }, 'it reads as new');
  t.ok(changes[0]!.cgroups.includes(b.parent!), 'its parent keeps its account');
});

t.test('a migration that releases the cgroup the task left does not account it again', async (t) => {
  const { h, b, c, w } = tree();
  const task = w.spawn({ cgroup: b, run: 1 });
  w.advance(SEC);
  b.tryGet();
  h.remove(b);
  b.put();
  t.equal(b.state, 'dying', 'the task holds it');
  const changes: WorkloadChange[] = [];
  w.on('change', (ch) => changes.push(ch));
  w.migrate(task.pid, c);
  t.equal(b.state, 'released', 'the move dropped its last reference');
  t.ok(changes[0]!.cgroups.includes(b), 'the change still names the cgroup it left');
  w.advance(1);
  t.notOk(changes[1]!.cgroups.includes(b), 'but no account is kept for it');
  t.match(w.pressure(b, 'cpu'), /total=0/);
});
