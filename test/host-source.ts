/**
 * The host cgroup source on real cgroups and real inotify, inside a test-owned cgroup that is removed
 * afterwards (test/harness/cgroup-tree.ts). Other processes may make cgroups elsewhere on the mount
 * meanwhile, so tests look only at their own subtree.
 */
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { HostCgroupSource, type HostSourceOptions } from '../tags/host/host-source';
import { scanTreeSync } from '../tags/host/scan';
import { sharedScanWorker } from '../tags/host/scanner';
import { cgroupPids, cgroupTasks, hostTask, parsePids, parseProcCgroup, readTaskInfo, taskCgroupPath } from '../tags/host/tasks';
import type { KernfsNode } from '../tags/kernfs-node';
import { cgroupSourceSuite } from './harness/cgroup-source-suite';
import { cgroupSkipReason, makeCgroupTree, removeTree, type CgroupTree } from './harness/cgroup-tree';

const WAIT_MS = 3000;

/** What test/harness/watch-limit-child.ts prints. */
interface WatchLimitReport {
  startError: string | null;
  loaded: string[];
  afterStart: { watches: number; unwatched: number; watchFailures: number };
  listedBelowUnwatched: boolean;
  secondStart: { watches: number; unwatched: number; watchFailures: number };
  foundByWalk: boolean;
  final: { watches: number; unwatched: number; watchFailures: number };
}

/** Why a child cannot get its own user namespace with its own inotify limit, or false. */
function userNsSkip(): string | false {
  try {
    execFileSync('unshare', ['-U', '-r', 'sh', '-c', 'echo 4 > /proc/sys/user/max_inotify_watches'], { stdio: 'pipe' });
    return false;
  } catch (e) {
    return `no user namespace with its own inotify limit: ${(e as Error).message}`;
  }
}

interface Fixture {
  tree: CgroupTree;
  src: HostCgroupSource;
  /** The node at a path below the test-owned cgroup, once the hierarchy has it (or times out). */
  seen(...parts: string[]): Promise<KernfsNode>;
  /** Resolves once the hierarchy has no live node at that path. */
  gone(...parts: string[]): Promise<void>;
}

async function until<T>(src: HostCgroupSource, probe: () => T | undefined, what: string, waitMs = WAIT_MS): Promise<T> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise<void>((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        src.hierarchy.off('mkdir', wake).off('rmdir', wake);
        resolve();
      };
      const timer = setTimeout(wake, 50);
      src.hierarchy.on('mkdir', wake).on('rmdir', wake);
    });
  }
}

/** A test-owned tree (made before the source starts, by `before`) and a started host source. */
async function fixture(t: Test, before?: (tree: CgroupTree) => void, opts: HostSourceOptions = {}): Promise<Fixture> {
  const tree = await makeCgroupTree(t);
  before?.(tree);
  const src = await HostCgroupSource.open({ reconcileIntervalMs: 0, ...opts });
  t.teardown(() => src.stop());
  await src.start();
  const byPath = (parts: string[]): KernfsNode | undefined => src.hierarchy.cgroupByPath(tree.cg(...parts));
  return {
    tree,
    src,
    seen: (...parts) => until(src, () => byPath(parts), `mkdir of ${parts.join('/')}`),
    gone: async (...parts) => void (await until(src, () => (byPath(parts) === undefined ? true : undefined), `rmdir of ${parts.join('/')}`)),
  };
}

/** mkdir and rmdir events below prefix while fn runs: other processes may change the rest of the mount. */
async function changesBelow(src: HostCgroupSource, prefix: string, fn: () => Promise<unknown>): Promise<string[]> {
  const seen: string[] = [];
  const mk = (n: KernfsNode): void => void (n.path.startsWith(`${prefix}/`) && seen.push(`mkdir ${n.path}`));
  const rm = (n: KernfsNode): void => void (n.path.startsWith(`${prefix}/`) && seen.push(`rmdir ${n.path}`));
  src.hierarchy.on('mkdir', mk).on('rmdir', rm);
  try {
    await fn();
  } finally {
    src.hierarchy.off('mkdir', mk).off('rmdir', rm);
  }
  return seen;
}

function ino(p: string): number {
  return fs.statSync(p).ino;
}

/** Within the test-owned subtree only (other processes may make cgroups elsewhere): [watched, live]. */
function watchedBelow(src: HostCgroupSource, tree: CgroupTree): [number, number] {
  const own = src.hierarchy.cgroupByPath(tree.cg())!;
  const live = [...src.hierarchy.walk(own)].filter((n) => !n.dying);
  return [live.filter((n) => src.isWatched(n)).length, live.length];
}

async function main(): Promise<void> {
  const skip = await cgroupSkipReason();

  t.test('the load: ids are inode numbers, children in creation order', { skip }, async (t) => {
    const { tree, src } = await fixture(t, (tree) => {
      for (const name of ['zz', 'aa', 'mm']) tree.mkdirp(name);
      tree.mkdirp('aa', 'x', 'y', 'z');
    });
    t.equal(src.hierarchy.root.id, ino(tree.mount), 'the root is the mount point inode');
    const own = src.hierarchy.cgroupByPath(tree.cg())!;
    t.ok(own, 'the test-owned cgroup was loaded');
    t.same(
      own.children.map((c) => c.name),
      ['zz', 'aa', 'mm'],
      'creation order, not name order',
    );
    for (const node of src.hierarchy.walk(own)) t.equal(node.id, ino(path.join(tree.mount, node.path)), `id of ${node.path}`);
    t.equal(src.hierarchy.cgroupByPath(tree.cg('aa', 'x', 'y', 'z'))?.level, own.level + 4);
    const [watched, live] = watchedBelow(src, tree);
    t.equal(live, 7, 'the test cgroup and the six below it');
    t.equal(watched, live, 'one watch per cgroup');
    t.ok(src.isWatched(src.hierarchy.root), 'the root too');
    await src.start();
    t.same(watchedBelow(src, tree), [7, 7], 'start() again changes nothing');
  });

  t.test('live tracking sees mkdir and rmdir at every depth', { skip }, async (t) => {
    const { tree, seen, gone, src } = await fixture(t);
    const parts = ['d1', 'd2', 'd3', 'd4'];
    for (let depth = 1; depth <= parts.length; depth++) {
      const p = tree.mkdirp(...parts.slice(0, depth));
      const node = await seen(...parts.slice(0, depth));
      t.equal(node.id, ino(p), `depth ${depth}: id is the inode`);
    }
    const nodes = parts.map((_, i) => src.hierarchy.cgroupByPath(tree.cg(...parts.slice(0, i + 1)))!);
    for (let depth = parts.length; depth >= 1; depth--) {
      fs.rmdirSync(tree.hostPath(...parts.slice(0, depth)));
      await gone(...parts.slice(0, depth));
      const node = nodes[depth - 1]!;
      t.equal(node.state, 'released', `depth ${depth}: unreferenced, so released at once`);
      t.equal(src.hierarchy.cgroupById(node.id), undefined, `depth ${depth}: its id no longer resolves`);
    }
  });

  t.test('mkdir -p in one go: the grandchildren are found by the scan of each new cgroup', { skip }, async (t) => {
    const { tree, seen, src } = await fixture(t);
    execFileSync('mkdir', ['-p', tree.hostPath('p', 'q', 'r', 's'), tree.hostPath('p', 'q2')]);
    const s = await seen('p', 'q', 'r', 's');
    t.equal(s.id, ino(tree.hostPath('p', 'q', 'r', 's')));
    await seen('p', 'q2');
    t.same(
      src.hierarchy.cgroupByPath(tree.cg('p'))!.children.map((c) => c.name),
      ['q', 'q2'],
    );
    // The new cgroups are watched too: a change below the deepest is seen.
    tree.mkdirp('p', 'q', 'r', 's', 't');
    await seen('p', 'q', 'r', 's', 't');
    // And a shell's rmdir of the whole subtree in one go, deepest first as cgroupfs requires.
    execFileSync('sh', ['-c', 'cd "$1" && rmdir q2 q/r/s/t q/r/s q/r q && cd .. && rmdir p', 'sh', tree.hostPath('p')]);
    await until(src, () => (src.hierarchy.cgroupByPath(tree.cg('p')) ? undefined : true), 'the whole p subtree gone');
  });

  t.test('mkdir/rmdir churn converges to the tree on the host', { skip }, async (t) => {
    const { tree, src } = await fixture(t);
    // Each cgroup lives for microseconds: events arrive for entries already gone, and some new
    // cgroups are gone before their watch or listing.
    const script = 'cd "$1" && for i in $(seq 1 40); do mkdir -p c$i/a/b && rmdir c$i/a/b c$i/a; [ $((i % 3)) = 0 ] || rmdir c$i; done';
    execFileSync('sh', ['-c', script, 'sh', tree.dir]);
    const expected = fs
      .readdirSync(tree.dir, { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .map((d) => d.name)
      .sort();
    t.equal(expected.length, 13, 'every third survives');
    const own = src.hierarchy.cgroupByPath(tree.cg())!;
    const liveNames = (): string[] => own.children.filter((c) => !c.dying).map((c) => c.name).sort();
    await until(src, () => (JSON.stringify(liveNames()) === JSON.stringify(expected) ? true : undefined), 'the churn to settle');
    await sleep(100);
    t.same(liveNames(), expected, 'the hierarchy has exactly the survivors');
    for (const c of own.children.filter((c) => !c.dying)) {
      t.equal(c.id, ino(tree.hostPath(c.name)));
      t.same(c.children.filter((k) => !k.dying), [], `${c.name} has no live children left`);
    }
    t.same(await changesBelow(src, tree.cg(), () => src.reconcile()), [], 'nothing left for a reconcile to repair');
  });

  t.test('a removed cgroup stays dying while referenced and is released after the last put', { skip }, async (t) => {
    const { tree, seen, gone, src } = await fixture(t);
    tree.mkdirp('held');
    const node = await seen('held');
    const id = node.id;
    let releasedHook = 0;
    node.onRelease(() => releasedHook++);
    node.get();
    fs.rmdirSync(tree.hostPath('held'));
    await gone('held');
    t.equal(node.state, 'dying');
    t.equal(src.hierarchy.cgroupById(id), node, 'a dying cgroup is still found by id');
    t.notOk(node.tryGetOnline(), 'css_tryget_online fails');
    t.notOk(src.isWatched(node), 'its watch is closed');
    const [watched, live] = watchedBelow(src, tree);
    t.equal(watched, live, 'the live ones keep theirs');
    await t.rejects(src.readFile(node, 'cpu.stat'), { code: 'ENOENT' }, 'its files are gone');
    t.equal(releasedHook, 0);
    node.put();
    t.equal(node.state, 'released');
    t.equal(releasedHook, 1, 'release hooks ran');
    t.equal(src.hierarchy.cgroupById(id), undefined);

    // The name is free again: a new cgroup of that name is a new node with a new id.
    tree.mkdirp('held');
    const again = await seen('held');
    t.not(again, node);
    t.not(again.id, id);
  });

  t.test('reconcile catches changes made while tracking was paused', { skip }, async (t) => {
    const { tree, seen, src } = await fixture(t, (tree) => {
      tree.mkdirp('old', 'child');
      tree.mkdirp('kept');
      tree.mkdirp('replaced');
    });
    const old = await seen('old');
    const replaced = await seen('replaced');
    src.pause();
    t.ok(src.paused);
    tree.mkdirp('new', 'a', 'b');
    fs.rmdirSync(tree.hostPath('old', 'child'));
    fs.rmdirSync(tree.hostPath('old'));
    fs.rmdirSync(tree.hostPath('replaced'));
    tree.mkdirp('replaced');
    await sleep(200);
    t.ok(src.hierarchy.cgroupByPath(tree.cg('old')), 'paused: the rmdir was not seen');
    t.notOk(src.hierarchy.cgroupByPath(tree.cg('new')), 'paused: the mkdir was not seen');

    const { added, removed } = await src.reconcile();
    t.ok(added >= 4, `added ${added}: new, new/a, new/a/b and the new replaced`);
    t.ok(removed >= 3, `removed ${removed}: old, old/child and the old replaced`);
    t.equal(old.state, 'released');
    t.equal(replaced.state, 'released');
    t.equal(src.hierarchy.cgroupByPath(tree.cg('replaced'))?.id, ino(tree.hostPath('replaced')));
    t.equal(src.hierarchy.cgroupByPath(tree.cg('new', 'a', 'b'))?.id, ino(tree.hostPath('new', 'a', 'b')));
    t.ok(src.hierarchy.cgroupByPath(tree.cg('kept')));
    t.same(await changesBelow(src, tree.cg(), () => src.reconcile()), [], 'a second reconcile finds nothing to repair');

    src.resume();
    tree.mkdirp('new', 'a', 'b', 'c');
    await seen('new', 'a', 'b', 'c');
    t.pass('cgroups added by reconcile are watched');
  });

  t.test('the periodic reconcile repairs the hierarchy on its own', { skip }, async (t) => {
    const { tree, seen, src } = await fixture(t, undefined, { reconcileIntervalMs: 100 });
    src.pause();
    tree.mkdirp('late');
    const node = await seen('late');
    t.equal(node.id, ino(tree.hostPath('late')));
    // The next walk comes after max(100 ms, 200 x the last walk's time): a second change is found too.
    tree.mkdirp('later');
    // On a loaded machine a walk can take 100 ms and more, so the next one may be 20 s or more away.
    const later = await until(src, () => src.hierarchy.cgroupByPath(tree.cg('later')), 'the second periodic walk', 60_000);
    t.equal(later.id, ino(tree.hostPath('later')));
  });

  t.test('stop() ends tracking; start() again catches up', { skip }, async (t) => {
    const { tree, seen, src } = await fixture(t, (tree) => tree.mkdirp('doomed'));
    const doomed = await seen('doomed');
    await src.stop();
    t.equal(src.watchCount, 0, 'no watches after stop');
    tree.mkdirp('while-stopped');
    fs.rmdirSync(tree.hostPath('doomed'));
    await sleep(100);
    t.notOk(src.hierarchy.cgroupByPath(tree.cg('while-stopped')));
    t.equal(doomed.state, 'live');
    await src.start();
    t.ok(await seen('while-stopped'));
    t.equal(doomed.state, 'released', 'a cgroup removed while stopped cannot be watched and is found gone');
    const [watched, live] = watchedBelow(src, tree);
    t.equal(watched, live);
    t.equal(src.status().unwatched, 0, 'a vanished directory is no watch failure');
    t.equal(src.status().watchFailures, 0);
  });

  t.test('reconcile without start loads the tree without watching it', { skip }, async (t) => {
    const tree = await makeCgroupTree(t);
    tree.mkdirp('a', 'b');
    const src = await HostCgroupSource.open({ reconcileIntervalMs: 0 });
    t.teardown(() => src.stop());
    const { added } = await src.reconcile();
    t.ok(added >= 3, 'the test cgroup and its two below');
    t.equal(src.hierarchy.cgroupByPath(tree.cg('a', 'b'))?.id, ino(tree.hostPath('a', 'b')));
    t.equal(src.watchCount, 0);
  });

  t.test('mkdir and rmdir through the source', { skip }, async (t) => {
    const { tree, src } = await fixture(t);
    src.pause(); // the source's own changes do not wait for inotify
    const node = await src.mkdir(tree.cg('made'));
    t.equal(node.id, ino(tree.hostPath('made')));
    t.equal(node.parent?.path, tree.cg());
    const deep = await src.mkdir(`${tree.cg('made')}/deeper/`.slice(1));
    t.equal(deep.path, tree.cg('made', 'deeper'), 'a path without the leading slash');
    await t.rejects(src.mkdir(tree.cg('made')), { code: 'EEXIST', message: new RegExp(`mkdir ${tree.cg('made')}`) });
    await t.rejects(src.mkdir(tree.cg('missing', 'x')), { code: 'ENOENT' });
    await t.rejects(src.mkdir(`${tree.cg()}/../escape`), { code: 'EINVAL' });
    await t.rejects(src.rmdir(tree.cg('made')), { code: 'EBUSY' }, 'a cgroup with children');
    await t.rejects(src.rmdir(tree.cg('nothing')), { code: 'ENOENT' });

    await src.rmdir(tree.cg('made', 'deeper'));
    t.equal(deep.state, 'released');
    await tree.spawnIn('made');
    await t.rejects(src.rmdir(tree.cg('made')), { code: 'EBUSY' }, 'a cgroup with tasks');
    t.equal(node.state, 'live');
  });

  t.test('mkdir below a parent the hierarchy has not seen yet waits for the parent to arrive', { skip }, async (t) => {
    const { tree, src } = await fixture(t);
    src.pause();
    fs.mkdirSync(tree.hostPath('fresh'));
    const made = src.mkdir(tree.cg('fresh', 'child'));
    await sleep(50);
    t.notOk(src.hierarchy.cgroupByPath(tree.cg('fresh')), 'paused: the parent is not in the hierarchy');
    await src.reconcile(); // brings the parent, and its listing the child
    const node = await made;
    t.equal(node.id, ino(tree.hostPath('fresh', 'child')));
    t.equal(node.parent?.id, ino(tree.hostPath('fresh')));
  });

  t.test('mkdir that the hierarchy never shows times out with ETIMEDOUT', { skip }, async (t) => {
    const { tree, src } = await fixture(t, undefined, { settleTimeoutMs: 200 });
    await src.stop();
    // Stopped, and the parent is not in the hierarchy yet: nothing will report the new cgroup.
    tree.mkdirp('unknown');
    await t.rejects(src.mkdir(tree.cg('unknown', 'x')), { code: 'ETIMEDOUT' });
  });

  t.test('readFile reads interface files; ENOENT for missing ones', { skip }, async (t) => {
    const { tree, seen, src } = await fixture(t);
    tree.mkdirp('r');
    const node = await seen('r');
    const child = await tree.spawnIn('r');
    t.match(await src.readFile(node, 'cpu.stat'), /^usage_usec \d+$/m);
    t.same(parsePids(await src.readFile(node, 'cgroup.procs')), [child.pid]);
    t.same(await cgroupPids(src, node, true), [child.pid], 'cgroup.threads');
    t.match(await src.readFile(node, 'cgroup.events'), /^populated 1$/m);
    t.match(await src.readFile(node, 'cpu.pressure'), /^some avg10=/);
    const hasMemory = fs.existsSync(tree.hostPath('r', 'memory.current'));
    if (hasMemory) t.match(await src.readFile(node, 'memory.current'), /^\d+\n$/);
    else await t.rejects(src.readFile(node, 'memory.current'), { code: 'ENOENT', message: /memory\.current/ }, 'no memory controller here');
    await t.rejects(src.readFile(node, '../cgroup.procs' as 'cgroup.procs'), { code: 'EINVAL' });
  });

  t.test('host tasks: pid, comm and cgroup from /proc', { skip }, async (t) => {
    const { tree, seen, src } = await fixture(t);
    tree.mkdirp('tasks');
    const node = await seen('tasks');
    const child = await tree.spawnIn('tasks');
    const tasks = await cgroupTasks(src, node);
    t.equal(tasks.length, 1);
    t.match(tasks[0], { pid: child.pid, comm: 'sleep', cgroup: node });
    t.equal(node.refs, 2, 'the task holds a reference on its cgroup');
    tasks[0]!.exit();
    t.equal(node.refs, 1);

    const self = await readTaskInfo(process.pid);
    t.equal(self.comm, fs.readFileSync('/proc/self/comm', 'utf8').trim());
    t.equal(self.cgroupPath, /^0::(.*)$/m.exec(fs.readFileSync('/proc/self/cgroup', 'utf8'))![1]);
    const me = await hostTask(src, process.pid);
    t.equal(me.cgroup, src.hierarchy.cgroupByPath(self.cgroupPath));
    const myCgroup = me.cgroup;
    const refs = myCgroup.refs;
    me.exit();
    t.equal(myCgroup.refs, refs - 1, 'exit drops the reference the task held');

    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    await t.rejects(taskCgroupPath(child.pid!), { code: 'ESRCH', message: new RegExp(`no task ${child.pid}`) });
  });

  t.test('cgroupTasks leaves out a task that exited between the list and /proc', { skip }, async (t) => {
    const { tree, seen, src } = await fixture(t);
    tree.mkdirp('procs');
    const node = await seen('procs');
    const child = await tree.spawnIn('procs');
    const proc = t.testdir({ [String(child.pid)]: { comm: 'sleep\n' } });
    t.same(await cgroupTasks(src, node, { procRoot: proc }), [], 'no cgroup file: as if it exited');
    fs.writeFileSync(path.join(proc, String(child.pid), 'cgroup'), `0::${tree.cg('elsewhere')}\n`);
    await t.rejects(cgroupTasks(src, node, { procRoot: proc }), { code: 'ENOENT', message: /which the hierarchy does not have/ });
    fs.rmSync(path.join(proc, String(child.pid), 'comm'));
    fs.mkdirSync(path.join(proc, String(child.pid), 'comm'));
    await t.rejects(cgroupTasks(src, node, { procRoot: proc }), { code: 'EISDIR', message: new RegExp(`read ${proc}/${child.pid}/comm`) }, 'other errors surface');
  });

  t.test('cgroupTasks drops the Tasks it built when another task fails: the cgroup can be released', { skip }, async (t) => {
    const { tree, seen, src } = await fixture(t);
    tree.mkdirp('leak');
    const node = await seen('leak');
    const good = await tree.spawnIn('leak');
    const bad = await tree.spawnIn('leak');
    const proc = t.testdir({
      [String(good.pid)]: { comm: 'sleep\n', cgroup: `0::${tree.cg('leak')}\n` },
      [String(bad.pid)]: { comm: {}, cgroup: `0::${tree.cg('leak')}\n` },
    });
    t.equal(node.refs, 1);
    await t.rejects(cgroupTasks(src, node, { procRoot: proc }), { code: 'EISDIR' });
    await sleep(50); // a Task still being built when the error came would show up by now
    t.equal(node.refs, 1, 'no Task is left holding the cgroup');
    node.get();
    good.kill('SIGKILL');
    bad.kill('SIGKILL');
    await Promise.all([good, bad].map((c) => new Promise((resolve) => (c.exitCode !== null ? resolve(null) : c.once('exit', resolve)))));
    await removeTree(tree.mount, tree.hostPath('leak'));
    await until(src, () => (node.dying ? true : undefined), 'rmdir of leak');
    t.equal(node.state, 'dying');
    node.put();
    t.equal(node.state, 'released', 'released at the last put');
  });

  t.test('a stop() during start() leaves no periodic reconcile armed', { skip }, async (t) => {
    const tree = await makeCgroupTree(t);
    const src = await HostCgroupSource.open({ reconcileIntervalMs: 20 });
    t.teardown(() => src.stop());
    const started = src.start();
    await src.stop();
    await started;
    t.equal(src.watchCount, 0, 'no watches');
    tree.mkdirp('after-stop');
    await sleep(300);
    t.equal(src.hierarchy.cgroupByPath(tree.cg('after-stop')), undefined, 'the stopped source did not see it');
    t.notOk(src.status().tracking);
  });

  t.test('start and stop are serialised: start, stop, start ends tracking with every watch set', { skip }, async (t) => {
    const tree = await makeCgroupTree(t);
    tree.mkdirp('a', 'b');
    const src = await HostCgroupSource.open({ reconcileIntervalMs: 0 });
    t.teardown(() => src.stop());
    const first = src.start();
    const stopped = src.stop();
    const second = src.start();
    t.equal(src.start(), second, 'start() while starting is the same start');
    await Promise.all([first, stopped, second]);
    t.ok(src.status().tracking);
    t.same(watchedBelow(src, tree), [3, 3], 'the stop did not close the second start’s watches');
    tree.mkdirp('a', 'b', 'c');
    await until(src, () => src.hierarchy.cgroupByPath(tree.cg('a', 'b', 'c')), 'mkdir after the second start');
    await src.stop();
    t.equal(src.watchCount, 0);
  });

  t.test('a reconcile goes on past an entry whose re-read fails', { skip }, async (t) => {
    // A plain directory standing in for a mount, and a source whose root id collides with b's inode:
    // re-reading b fails (EEXIST from the hierarchy), a real failure without mocking anything.
    const dir = fs.realpathSync(t.testdir({ a: {}, b: {}, c: { d: {} } }));
    const src = new HostCgroupSource(dir, ino(path.join(dir, 'b')), { reconcileIntervalMs: 0 });
    t.teardown(() => src.stop());
    const counts = await src.reconcile();
    t.same(counts, { added: 3, removed: 0 }, 'a, c and c/d');
    for (const p of ['/a', '/c', '/c/d']) t.equal(src.hierarchy.cgroupByPath(p)?.id, ino(path.join(dir, p)), p);
    t.equal(src.hierarchy.cgroupByPath('/b'), undefined);
    const st = src.status();
    t.equal(st.rereadFailures, 1);
    t.match(st.lastReconcile, { added: 3, removed: 0, failures: 1 });
    t.ok(st.lastReconcile!.at instanceof Date && st.lastReconcile!.durationMs >= 0);
  });

  t.test('watch failures (ENOSPC past max_user_watches) degrade: listed, counted, covered by the walk', { skip: skip || userNsSkip() }, async (t) => {
    // A child process in its own user namespace with 4 inotify watches allowed: the kernel itself
    // refuses the rest with ENOSPC. It runs the source over a plain directory and prints what it saw.
    const dir = fs.realpathSync(t.testdir({ a: { x: {} }, b: {}, c: {}, d: {} }));
    const child = path.join(__dirname, 'harness', 'watch-limit-child.ts');
    const out = execFileSync(
      'unshare',
      ['-U', '-r', 'sh', '-c', 'echo 4 > /proc/sys/user/max_inotify_watches && exec "$@"', 'sh', process.execPath, ...process.execArgv, child, dir],
      { encoding: 'utf8', timeout: 60_000 },
    );
    const r = JSON.parse(out.trim().split('\n').pop()!) as WatchLimitReport;
    t.equal(r.startError, null, 'start() succeeds');
    t.same(r.loaded, ['/', '/a', '/a/x', '/b', '/c', '/d'], 'the whole tree is loaded');
    t.equal(r.afterStart.watches, 4, 'as many watches as allowed');
    t.equal(r.afterStart.unwatched, 2);
    t.equal(r.afterStart.watchFailures, 2);
    t.ok(r.listedBelowUnwatched, 'a new cgroup whose watch fails still has its children listed');
    t.ok(r.foundByWalk, 'a change below an unwatched directory is found by the periodic walk');
    t.same(r.secondStart, { watches: 4, unwatched: 4, watchFailures: 4 }, 'c, d, e and e/f unwatched');
    t.ok(r.final.watchFailures > r.secondStart.watchFailures, 'each walk retries the missing watches');
    t.equal(r.final.watches, 4);
  });

  t.test('/proc parsing', async (t) => {
    t.equal(parseProcCgroup('1:cpu:/\n0::/a/b\n', 1), '/a/b', 'the 0:: line of a hybrid host');
    t.equal(parseProcCgroup('0::/gone (deleted)\n', 1), '/gone');
    t.throws(() => parseProcCgroup('1:cpu:/\n2:memory:/x\n', 7), { code: 'ENODEV', message: /task 7 has no cgroup2 line/ });
    t.same(parsePids('1\n22\n333\n'), [1, 22, 333]);
    t.same(parsePids(''), []);
    t.throws(() => parsePids('12\nabc\n'), { code: 'EINVAL', message: /bad pid "abc"/ });
    await t.rejects(readTaskInfo(0), { code: 'EINVAL' });
  });

  t.test('the harness removes a tree with tasks in it', { skip }, async (t) => {
    const tree = await makeCgroupTree({ teardown: () => undefined });
    tree.mkdirp('a', 'b');
    const child = await tree.spawnIn('a', 'b');
    await removeTree(tree.mount, tree.dir);
    t.notOk(fs.existsSync(tree.dir));
    t.match(fs.readFileSync(`/proc/${child.pid}/cgroup`, 'utf8'), /^0::\/$/m, 'the task went back to the root');
    child.kill('SIGKILL');
  });

  t.test('the walk lists every cgroup once, parents before children, siblings oldest first', { skip }, async (t) => {
    const { tree, src } = await fixture(t, (tree) => {
      for (const name of ['c', 'b', 'a']) tree.mkdirp(name, 'x');
    });
    const { rootIno, names, parents, inos } = scanTreeSync(tree.dir);
    t.equal(Number(rootIno), ino(tree.dir));
    const built = [...src.hierarchy.walk(src.hierarchy.cgroupByPath(tree.cg())!)].slice(1);
    t.same(names, built.map((n) => n.name), 'the same cgroups the source built, in the same order');
    t.same([...parents], built.map((n) => built.indexOf(n.parent!)), 'with the same parents');
    t.same([...inos].map(Number), built.map((n) => n.id), 'and the same ids');
    t.same(names.slice(0, 2), ['c', 'x'], 'pre-order, siblings oldest first');
    t.throws(() => scanTreeSync(tree.hostPath('none')), { code: 'ENOENT', message: /scan of .*none/ });
    await t.rejects(new HostCgroupSource(tree.hostPath('none'), 1).start(), { code: 'ENOENT' }, 'a failed walk in the worker');
    await sharedScanWorker().close();
    t.equal((await sharedScanWorker().scan(tree.dir)).names.length, names.length, 'a closed worker starts again on the next walk');
  });

  t.test('the CgroupSource conformance suite', { skip }, async (t) => {
    cgroupSourceSuite(t, 'host', async () => {
      const teardowns: (() => void | Promise<void>)[] = [];
      const tree = await makeCgroupTree({ teardown: (fn) => void teardowns.push(fn) }, 'suite');
      const source = await HostCgroupSource.open({ reconcileIntervalMs: 0 });
      await source.start();
      const cleanup = async (): Promise<void> => {
        await source.stop();
        for (const fn of teardowns) await fn();
      };
      return { source, base: tree.cgroup, cleanup };
    });
  });

  t.test('bad mounts are clear errors', async (t) => {
    const dir = fs.realpathSync(t.testdir({}));
    const info = path.join(dir, 'mountinfo');
    fs.writeFileSync(info, `70 1 0:60 / / rw - ext4 /dev/vda1 rw\n71 70 0:61 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n`);
    await t.rejects(HostCgroupSource.open({ mountinfo: info }), {
      code: 'ENODEV',
      message: `ENODEV: no cgroup2 mount in ${info} (found cgroup on /sys/fs/cgroup/cpu)`,
    });
    await t.rejects(HostCgroupSource.open({ mountPoint: dir, mountinfo: info }), { code: 'EINVAL', message: `EINVAL: ${dir} is ext4, not cgroup2` });
    const stale = new HostCgroupSource(dir, 1);
    await t.rejects(stale.start(), { code: 'ESTALE' }, 'a root whose inode is not the id it was opened with');
    await stale.stop();
  });
}

void main();
