import t from 'tap';
import { SimCgroupSource, type SimSourceOptions } from '../tags/sim/source';
import { cgroupSourceSuite, type SourceFixture } from './harness/cgroup-source-suite';

async function started(opts: ConstructorParameters<typeof SimCgroupSource>[0] = {}): Promise<SimCgroupSource> {
  const s = new SimCgroupSource(opts);
  await s.start();
  return s;
}

async function rejects(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (e) {
    return (e as { code?: string }).code;
  }
}

/** A started simulated source with a test-owned /suite; outside changes go through its cgroupfs. */
async function suiteFixture(opts?: SimSourceOptions): Promise<SourceFixture> {
  const source = await started(opts);
  await source.mkdir('/suite');
  return {
    source,
    base: '/suite',
    cleanup: async () => source.stop(),
    outside: {
      mkdir: async (p) => void source.cgroupfs.mkdir(p),
      rmdir: async (p) => void source.cgroupfs.rmdir(p),
    },
  };
}

cgroupSourceSuite(t, 'simulated', () => suiteFixture());
cgroupSourceSuite(t, 'simulated, ids above 2^32', () => suiteFixture({ firstId: 2 ** 32 + 7 }));

t.test('a cgroup id is its directory inode number, counted from firstId and never truncated', async (t) => {
  const s = await started({ firstId: 2 ** 32 + 1 });
  t.equal(s.hierarchy.root.id, 2 ** 32 + 1, 'the root takes firstId');
  const a = await s.mkdir('/a');
  t.ok(a.id > 2 ** 32 + 1, 'later ids count up');
  t.equal(Number(s.fs.statSync(`${s.mountPoint}/a`).ino), a.id, 'stat ino = cgroup id');
  t.equal(s.fs.statSync(`${s.mountPoint}/a`, { bigint: true }).ino, BigInt(a.id), 'exact as a bigint too');
  await s.rmdir('/a');
  const b = await s.mkdir('/a');
  t.ok(b.id > a.id, 'a freed id is not handed out again');
  t.throws(() => new SimCgroupSource({ firstId: 0 }), { code: 'EINVAL' }, 'firstId must be positive');
  t.throws(() => new SimCgroupSource({ firstId: Number.MAX_SAFE_INTEGER }), { code: 'EOVERFLOW' }, 'ids past 2^53 - 1 cannot be exact');
  t.equal(s.cgroupfs.idOf('/cgroup.procs'), undefined, 'a file has no cgroup id');
  t.equal(s.cgroupfs.idOf('/nope'), undefined);
});

t.test('a cgroup directory has the interface files of cgroup2; the root lacks the not-on-root ones', async (t) => {
  const s = await started();
  await s.mkdir('/a');
  const rootFiles = s.fs.readdirSync(s.mountPoint) as string[];
  const aFiles = s.fs.readdirSync(`${s.mountPoint}/a`) as string[];
  for (const f of ['cgroup.procs', 'cgroup.threads', 'cgroup.stat', 'cgroup.controllers', 'cgroup.subtree_control', 'cgroup.max.depth', 'cgroup.max.descendants', 'cpu.stat', 'cpu.pressure', 'io.pressure', 'memory.pressure']) {
    t.ok(rootFiles.includes(f), `root has ${f}`);
    t.ok(aFiles.includes(f), `child has ${f}`);
  }
  for (const f of ['cgroup.events', 'cgroup.type', 'cgroup.freeze']) {
    t.notOk(rootFiles.includes(f), `root has no ${f}`);
    t.ok(aFiles.includes(f), `child has ${f}`);
  }
  const a = s.hierarchy.cgroupByPath('/a')!;
  t.equal(await s.readFile(a, 'cgroup.type'), 'domain\n');
  t.equal(await s.readFile(a, 'cgroup.max.depth'), 'max\n');
  t.equal(await s.readFile(a, 'cgroup.controllers'), 'cpu io memory pids\n');
  t.equal(await s.readFile(s.hierarchy.root, 'cgroup.subtree_control'), 'cpu io memory pids\n');
  t.equal(
    await s.readFile(a, 'cpu.stat'),
    'usage_usec 0\nuser_usec 0\nsystem_usec 0\nnice_usec 0\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\nnr_bursts 0\nburst_usec 0\n',
  );
  t.equal(await rejects(s.readFile(s.hierarchy.root, 'cgroup.events')), 'ENOENT', 'reading a not-on-root file of the root is ENOENT');
  t.equal(await rejects(s.readFile(a, 'memory.current')), 'ENOENT', 'controller knobs are not simulated');
});

t.test('cgroup.stat counts live and dying descendants per subsystem', async (t) => {
  const s = await started();
  await s.mkdir('/a');
  await s.mkdir('/a/b');
  const c = await s.mkdir('/a/c');
  const a = s.hierarchy.cgroupByPath('/a')!;
  c.tryGet();
  await s.rmdir('/a/c');
  t.equal(
    await s.readFile(a, 'cgroup.stat'),
    'nr_descendants 1\nnr_subsys_cpu 2\nnr_subsys_io 2\nnr_subsys_memory 2\nnr_subsys_pids 2\n' +
      'nr_dying_descendants 1\nnr_dying_subsys_cpu 1\nnr_dying_subsys_io 1\nnr_dying_subsys_memory 1\nnr_dying_subsys_pids 1\n',
  );
  c.put();
  t.match(await s.readFile(a, 'cgroup.stat'), /nr_dying_descendants 0\n/, 'a released descendant is no longer dying');
  t.match(await s.readFile(s.hierarchy.root, 'cgroup.stat'), /^nr_descendants 2\n/, 'the root counts the whole tree');
});

t.test('mkdir rejects bad names and paths with the kernel errnos', async (t) => {
  const s = await started();
  t.equal(await rejects(s.mkdir('/')), 'EEXIST', 'the root exists');
  t.equal(await rejects(s.mkdir('/a\nb')), 'EINVAL', 'a newline in a name is EINVAL');
  t.equal(await rejects(s.mkdir(`/${'x'.repeat(256)}`)), 'ENAMETOOLONG', 'a name over 255 bytes');
  t.equal(await rejects(s.mkdir('/a/../b')), 'EINVAL', 'a .. component');
  t.equal(await rejects(s.mkdir('/cgroup.procs/x')), 'ENOTDIR', 'under an interface file is ENOTDIR');
  t.equal(await rejects(s.mkdir('/cgroup.procs')), 'EEXIST', 'the name of an interface file is taken');
  t.equal(await rejects(s.rmdir('/cpu.stat')), 'ENOTDIR', 'rmdir of an interface file is ENOTDIR');
  await s.mkdir('a');
  t.equal((await s.mkdir('a/b.slice')).path, '/a/b.slice', 'relative paths and dotted names are accepted');
});

t.test('rmdir of a cgroup with tasks is EBUSY, and allowed once they exit', async (t) => {
  const s = await started();
  const a = await s.mkdir('/a');
  const task = s.workload.spawn({ cgroup: a });
  t.equal(await rejects(s.rmdir('/a')), 'EBUSY');
  t.equal(a.state, 'live');
  t.ok(task.tryGet(), 'someone holds the task past its exit');
  s.workload.exit(task.pid);
  await s.rmdir('/a');
  t.equal(a.state, 'dying', 'an exited but unreleased task still holds its cgroup');
  task.put();
  t.equal(a.state, 'released', 'released with the task');
});

t.test('a stopped source still records its own mkdir and rmdir, adding missed parents', async (t) => {
  const s = await started();
  await s.pause();
  t.notOk(s.tracking);
  s.cgroupfs.mkdir('/out');
  t.equal(s.hierarchy.cgroupByPath('/out'), undefined, 'an outside mkdir is not seen while paused');
  const n = await s.mkdir('/out/mine');
  t.equal(n.parent?.path, '/out', 'the missed parent was added on the way');
  t.equal(s.hierarchy.cgroupByPath('/out')?.id, s.cgroupfs.idOf('/out'));
  await s.rmdir('/out/mine');
  t.equal(n.state, 'released', 'its own rmdir is recorded');
  await s.resume();
  t.ok(s.tracking);
  await s.start();
  t.ok(s.tracking, 'start is idempotent');
});

t.test('reconcile replaces a cgroup removed and made again under the same name while paused', async (t) => {
  const s = await started();
  await s.mkdir('/x');
  const old = await s.mkdir('/x/y');
  await s.stop();
  s.cgroupfs.rmdir('/x/y');
  s.cgroupfs.rmdir('/x');
  s.cgroupfs.mkdir('/x');
  const r = await s.reconcile();
  t.same(r, { added: 1, removed: 2 });
  t.equal(old.state, 'released');
  t.equal(s.hierarchy.cgroupByPath('/x')?.id, s.cgroupfs.idOf('/x'));
  // Our own mkdir under a stale name: the hierarchy follows the volume's id.
  s.cgroupfs.rmdir('/x');
  s.cgroupfs.mkdir('/x');
  const y = await s.mkdir('/x/y');
  t.equal(y.parent?.id, s.cgroupfs.idOf('/x'), 'a stale node for a replaced directory is dropped');
});

t.test('a directory made directly in the volume gets its files and an id at reconcile', async (t) => {
  const s = await started();
  s.fs.mkdirSync(`${s.mountPoint}/raw/deeper`, { recursive: true });
  t.notOk(s.fs.existsSync(`${s.mountPoint}/raw/cgroup.procs`), 'no files before the sim looks');
  t.same(await s.reconcile(), { added: 2, removed: 0 });
  const raw = s.hierarchy.cgroupByPath('/raw/deeper')!;
  t.equal(await s.readFile(raw, 'cgroup.events'), 'populated 0\nfrozen 0\n');
  t.equal(raw.id, Number(s.fs.statSync(`${s.mountPoint}/raw/deeper`).ino));
  s.fs.mkdirSync(`${s.mountPoint}/raw2`);
  s.cgroupfs.mkdir('/raw2/kid');
  t.equal(s.hierarchy.cgroupByPath('/raw2/kid'), undefined, 'tracking cannot place a child of an unseen parent');
  t.same(await s.reconcile(), { added: 2, removed: 0 }, 'reconcile does');
});

t.test('a populated cgroup removed behind the kernel’s back leaves its task in a dying cgroup', async (t) => {
  const s = await started();
  const a = await s.mkdir('/a');
  s.workload.spawn({ cgroup: a, pid: 77 });
  s.fs.rmSync(`${s.mountPoint}/a`, { recursive: true });
  t.same(await s.reconcile(), { added: 0, removed: 1 });
  t.equal(a.state, 'dying', 'the task still holds it');
  s.workload.advance(1);
  t.equal(s.fs.readFileSync('/proc/77/cgroup', 'utf8'), '0::/a (deleted)\n', 'as /proc shows a removed cgroup');
});

t.test('readFile of a node whose directory was replaced behind the source is ENOENT', async (t) => {
  const s = await started();
  const a = await s.mkdir('/a');
  await s.stop();
  s.cgroupfs.rmdir('/a');
  s.cgroupfs.mkdir('/a');
  t.equal(await rejects(s.readFile(a, 'cgroup.procs')), 'ENOENT');
});

t.test('cgroup.procs writes move a task, with the kernel errnos', async (t) => {
  const s = await started();
  const a = await s.mkdir('/a');
  const b = await s.mkdir('/b');
  const task = s.workload.spawn({ cgroup: a, pid: 42 });
  await s.writeFile(b, 'cgroup.procs', '42\n');
  t.equal(task.cgroup, b);
  t.equal(await s.readFile(b, 'cgroup.procs'), '42\n');
  t.equal(await s.readFile(a, 'cgroup.procs'), '');
  t.equal(await s.readFile(b, 'cgroup.threads'), '42\n', 'one thread per process');
  t.equal(await rejects(s.writeFile(a, 'cgroup.procs', 'abc')), 'EINVAL', 'not a pid');
  t.equal(await rejects(s.writeFile(a, 'cgroup.procs', '7')), 'ESRCH', 'no such task');
  t.equal(await rejects(s.writeFile(a, 'cpu.stat', '7')), 'EACCES', 'a read-only file');
  a.tryGet();
  await s.rmdir('/a');
  t.equal(await rejects(s.writeFile(a, 'cgroup.procs', '42')), 'ENODEV', 'a removed cgroup');
  a.put();
});

t.test('/proc/<pid> of a simulated task has comm, cgroup and schedstat, and goes at exit', async (t) => {
  const s = await started();
  const a = await s.mkdir('/a.slice');
  const task = s.workload.spawn({ cgroup: a, comm: 'worker', run: 0.5, wait: 0.25, pid: 300 });
  s.workload.advance(1_000_000_000);
  t.equal(s.fs.readFileSync('/proc/300/comm', 'utf8'), 'worker\n');
  t.equal(s.fs.readFileSync('/proc/300/cgroup', 'utf8'), '0::/a.slice\n');
  t.equal(s.fs.readFileSync('/proc/300/schedstat', 'utf8'), '500000000 250000000 167\n');
  t.equal(s.taskByPid(300), task);
  s.workload.exit(300);
  t.notOk(s.fs.existsSync('/proc/300'), 'gone at exit');
  t.equal(s.taskByPid(300), undefined, 'an exited task is not found');
});

t.test('the volume files follow the workload: cpu.stat and cgroup.events are rewritten', async (t) => {
  const s = await started();
  const a = await s.mkdir('/a');
  const b = await s.mkdir('/a/b');
  s.workload.spawn({ cgroup: b, run: 1 });
  t.equal(await s.readFile(a, 'cgroup.events'), 'populated 1\nfrozen 0\n', 'populated reflects a task in the subtree');
  s.workload.advance(2_000_000);
  t.match(await s.readFile(a, 'cpu.stat'), /^usage_usec 2000\n/);
  t.match(await s.readFile(s.hierarchy.root, 'cpu.stat'), /^usage_usec 2000\n/, 'the root sums the whole tree');
});

t.test('options place the mount and procfs where asked', async (t) => {
  const s = await started({ mountPoint: '/mnt/cg', procRoot: '/p', clockNs: 5 });
  t.equal(s.mountPoint, '/mnt/cg');
  t.equal(s.kind, 'simulated');
  t.ok(s.fs.existsSync('/mnt/cg/cgroup.procs'));
  t.equal(s.workload.now, 5);
  const a = await s.mkdir('/a');
  s.workload.spawn({ cgroup: a, pid: 9 });
  t.ok(s.fs.existsSync('/p/9/schedstat'));
});

t.test('cgroup.stat counts are kept per node: mkdir, rmdir and release do not walk the tree', async (t) => {
  const s = await started();
  const h = s.hierarchy;
  let walked = 0;
  const walk = h.walk.bind(h);
  h.walk = function* (from) {
    walked++;
    yield* walk(from);
  };
  for (let i = 0; i < 50; i++) await s.mkdir(`/flat${i}`);
  const deep = await s.mkdir('/flat0/x');
  deep.tryGet();
  await s.rmdir('/flat0/x');
  const root = h.root;
  const f0 = h.cgroupByPath('/flat0')!;
  t.equal(root.nrDescendants, 50);
  t.equal(root.nrDyingDescendants, 1);
  t.equal(f0.nrDyingDescendants, 1);
  deep.put();
  t.equal(root.nrDyingDescendants, 0);
  t.equal(walked, 0, 'no walk of the tree');
  t.match(await s.readFile(root, 'cgroup.stat'), /^nr_descendants 50\n(.|\n)*nr_dying_descendants 0\n/);
  t.match(await s.readFile(f0, 'cgroup.stat'), /^nr_descendants 0\n(.|\n)*nr_dying_descendants 0\n/);
});

t.test('cgroup.stat counters: a dying node stays counted until released, then leaves every ancestor', async (t) => {
  const s = await started();
  const a = await s.mkdir('/a');
  const b = await s.mkdir('/a/b');
  const c = await s.mkdir('/a/b/c');
  c.tryGet();
  await s.rmdir('/a/b/c');
  await s.rmdir('/a/b');
  t.equal(b.state, 'dying', 'held by its dying child');
  t.same([a.nrDescendants, a.nrDyingDescendants], [0, 2]);
  t.same([s.hierarchy.root.nrDescendants, s.hierarchy.root.nrDyingDescendants], [1, 2]);
  t.match(await s.readFile(a, 'cgroup.stat'), /^nr_descendants 0\n(.|\n)*nr_dying_descendants 2\n/);
  c.put();
  t.equal(b.state, 'released');
  t.same([a.nrDescendants, a.nrDyingDescendants], [0, 0]);
  t.match(await s.readFile(a, 'cgroup.stat'), /nr_dying_descendants 0\n/);
  t.match(await s.readFile(s.hierarchy.root, 'cgroup.stat'), /^nr_descendants 1\n(.|\n)*nr_dying_descendants 0\n/);
});

t.test('a throwing hierarchy listener does not escape SimCgroupfs.mkdir/rmdir or the source', async (t) => {
  const s = await started();
  s.hierarchy.on('mkdir', () => {
    throw new Error('mkdir listener boom');
  });
  s.hierarchy.on('rmdir', () => {
    throw new Error('rmdir listener boom');
  });
  const id = s.cgroupfs.mkdir('/a');
  const a = s.hierarchy.cgroupById(id)!;
  t.equal(a.path, '/a', 'tracked despite the listener');
  t.match(await s.readFile(s.hierarchy.root, 'cgroup.stat'), /^nr_descendants 1\n/, 'the other listeners ran');
  s.cgroupfs.rmdir('/a');
  t.equal(a.state, 'released');
  const b = await s.mkdir('/b');
  await s.rmdir('/b');
  t.equal(b.state, 'released');
});

t.test('workload changes of a node whose directory was replaced behind the source leave the new one alone', async (t) => {
  const s = await started();
  const a = await s.mkdir('/a');
  await s.stop();
  s.cgroupfs.rmdir('/a');
  const newId = s.cgroupfs.mkdir('/a');
  t.equal(a.state, 'live', 'stopped: the hierarchy still has the old node');
  s.workload.spawn({ cgroup: a, pid: 50 });
  t.equal(s.fs.readFileSync(`${s.mountPoint}/a/cgroup.procs`, 'utf8'), '', 'the new cgroup’s files are not the old node’s');
  t.not(newId, a.id);
});

t.test('a throwing cgroupfs listener does not make SimCgroupfs.mkdir/rmdir fail after the volume changed', async (t) => {
  const s = await started();
  const seen: string[] = [];
  s.cgroupfs.on('mkdir', () => {
    throw new Error('cgroupfs listener boom');
  });
  s.cgroupfs.on('rmdir', () => {
    throw new Error('cgroupfs listener boom');
  });
  s.cgroupfs.on('mkdir', (p) => seen.push(`mkdir ${p}`));
  s.cgroupfs.on('rmdir', (p) => seen.push(`rmdir ${p}`));
  const id = s.cgroupfs.mkdir('/x');
  t.equal(s.hierarchy.cgroupById(id)?.path, '/x');
  t.equal(s.cgroupfs.rmdir('/x'), id);
  t.same(seen, ['mkdir /x', 'rmdir /x']);
  t.equal(s.hierarchy.cgroupById(id), undefined);
});
