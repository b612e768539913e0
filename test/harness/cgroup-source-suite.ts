/**
 * The conformance suite every CgroupSource must pass (host and simulated alike).
 *
 * Usage, in a test file:
 *
 *   import t from 'tap';
 *   import { cgroupSourceSuite } from './harness/cgroup-source-suite';
 *   cgroupSourceSuite(t, 'host', async () => {
 *     const source = ...; await source.start();
 *     const base = '/vbpffs-test-' + process.pid;   // made here, removed by cleanup
 *     await source.mkdir(base);
 *     return { source, base, cleanup: async () => { ...remove base and below...; await source.stop(); } };
 *   });
 *
 * make() is called once per rule, must return a started source and a cgroup path `base` (relative to
 * the cgroup2 root, live, empty) below which the suite creates what it needs; cleanup() must remove
 * everything below and including base even when a check failed. `outside` is how someone other than
 * the source changes the tree (a shell's mkdir/rmdir); it defaults to node:fs/promises mkdir/rmdir
 * under source.mountPoint, which is right for the host.
 */
import { mkdir as fsMkdir, rmdir as fsRmdir } from 'node:fs/promises';
import path from 'node:path';
import type { Test } from 'tap';
import type { CgroupSource } from '../../tags/source';
import type { KernfsNode } from '../../tags/kernfs-node';

export interface OutsideOps {
  mkdir(cgroupPath: string): Promise<void>;
  rmdir(cgroupPath: string): Promise<void>;
}

export interface SourceFixture {
  source: CgroupSource;
  cleanup(): Promise<void>;
  /** Path of a test-owned cgroup under which the suite may create. */
  base: string;
  outside?: OutsideOps;
}

/** How long live tracking may take to show an outside change (the host's inotify is asynchronous). */
const SETTLE_MS = 5000;

async function until(what: string, cond: () => boolean): Promise<void> {
  const deadline = Date.now() + SETTLE_MS;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

function hostOutside(source: CgroupSource): OutsideOps {
  return {
    mkdir: (p) => fsMkdir(path.join(source.mountPoint, p)).then(() => undefined),
    rmdir: (p) => fsRmdir(path.join(source.mountPoint, p)),
  };
}

async function rejectsWith(t: Test, p: Promise<unknown>, code: string, what: string): Promise<void> {
  try {
    await p;
    t.fail(`${what}: resolved, expected ${code}`);
  } catch (e) {
    t.equal((e as { code?: string }).code, code, what);
  }
}

export function cgroupSourceSuite(t: Test, name: string, make: () => Promise<SourceFixture>): void {
  const rule = (title: string, fn: (t: Test, f: SourceFixture & { outside: OutsideOps }) => Promise<void>): void => {
    t.test(`${name}: ${title}`, async (t) => {
      const f = await make();
      t.teardown(() => f.cleanup());
      await fn(t, { ...f, outside: f.outside ?? hostOutside(f.source) });
    });
  };

  rule('mkdir at depths 1 to 4 gives nodes with their own ids, parents, levels and paths', async (t, { source, base }) => {
    const h = source.hierarchy;
    const top = h.cgroupByPath(base) as KernfsNode;
    t.ok(top, 'base is in the hierarchy');
    let parent = top;
    let p = base;
    const ids = new Set<number>([top.id]);
    for (let depth = 1; depth <= 4; depth++) {
      p = `${p}/d${depth}`;
      const node = await source.mkdir(p);
      t.equal(node.path, p, `depth ${depth}: path`);
      t.equal(node.parent, parent, `depth ${depth}: parent`);
      t.equal(node.level, top.level + depth, `depth ${depth}: level`);
      t.equal(node.state, 'live', `depth ${depth}: live`);
      t.equal(h.cgroupById(node.id), node, `depth ${depth}: found by id`);
      t.equal(h.cgroupByPath(p), node, `depth ${depth}: found by path`);
      t.notOk(ids.has(node.id), `depth ${depth}: id ${node.id} is new`);
      t.ok(Number.isSafeInteger(node.id) && node.id > 0, `depth ${depth}: id is a positive integer`);
      ids.add(node.id);
      parent = node;
    }
  });

  rule('children are listed in creation order, not name order', async (t, { source, base }) => {
    for (const n of ['c', 'a', 'b']) await source.mkdir(`${base}/${n}`);
    const kids = (source.hierarchy.cgroupByPath(base) as KernfsNode).children.map((c) => c.name);
    t.same(kids, ['c', 'a', 'b']);
  });

  rule('rmdir makes a referenced node dying; it is released at the last put', async (t, { source, base }) => {
    const h = source.hierarchy;
    const node = await source.mkdir(`${base}/x`);
    t.ok(node.tryGet(), 'a reference is taken while live');
    const released: KernfsNode[] = [];
    h.on('release', (n) => released.push(n));
    await source.rmdir(`${base}/x`);
    t.equal(node.state, 'dying', 'dying after rmdir');
    t.equal(h.cgroupByPath(`${base}/x`), undefined, 'a dying node is not found by path');
    t.equal(h.cgroupById(node.id), node, 'a dying node is still found by id');
    t.ok(node.tryGet(), 'css_tryget succeeds on a dying node');
    t.notOk(node.tryGetOnline(), 'css_tryget_online fails on a dying node');
    node.put();
    t.equal(node.state, 'dying', 'still dying while a reference is held');
    node.put();
    t.equal(node.state, 'released', 'released at the last put');
    t.equal(h.cgroupById(node.id), undefined, 'a released node is not found by id');
    t.same(released, [node], 'one release event');
  });

  rule('a parent is released only after its dying children', async (t, { source, base }) => {
    await source.mkdir(`${base}/p`);
    const child = await source.mkdir(`${base}/p/c`);
    const parent = child.parent as KernfsNode;
    t.ok(child.tryGet());
    await source.rmdir(`${base}/p/c`);
    await source.rmdir(`${base}/p`);
    t.equal(parent.state, 'dying', 'the parent is held by its dying child');
    child.put();
    t.equal(child.state, 'released');
    t.equal(parent.state, 'released', 'released with its last child');
  });

  rule("a dying cgroup's name can be taken by a new cgroup with a new id", async (t, { source, base }) => {
    const old = await source.mkdir(`${base}/n`);
    t.ok(old.tryGet());
    await source.rmdir(`${base}/n`);
    const again = await source.mkdir(`${base}/n`);
    t.not(again, old);
    t.not(again.id, old.id, 'ids are never reused');
    t.equal(source.hierarchy.cgroupByPath(`${base}/n`), again, 'the path finds the new cgroup');
    t.equal(old.state, 'dying');
    old.put();
  });

  rule('mkdir and rmdir fail with the kernel errnos', async (t, { source, base }) => {
    await source.mkdir(`${base}/e`);
    await source.mkdir(`${base}/e/kid`);
    await rejectsWith(t, source.mkdir(`${base}/e`), 'EEXIST', 'mkdir of an existing cgroup is EEXIST');
    await rejectsWith(t, source.mkdir(`${base}/none/x`), 'ENOENT', 'mkdir under a missing parent is ENOENT');
    await rejectsWith(t, source.rmdir(`${base}/none`), 'ENOENT', 'rmdir of a missing cgroup is ENOENT');
    await rejectsWith(t, source.rmdir(`${base}/e`), 'EBUSY', 'rmdir of a cgroup with a child is EBUSY');
    await rejectsWith(t, source.rmdir('/'), 'EBUSY', 'rmdir of the root is EBUSY (a mount point)');
    t.equal(source.hierarchy.cgroupByPath(`${base}/e`)?.state, 'live', 'a refused rmdir leaves the cgroup live');
  });

  rule('live tracking sees outside mkdir and rmdir at every depth', async (t, { source, base, outside }) => {
    const h = source.hierarchy;
    let p = base;
    for (let depth = 1; depth <= 3; depth++) {
      p = `${p}/o${depth}`;
      await outside.mkdir(p);
      const at = p;
      await until(`${at} to appear`, () => h.cgroupByPath(at) !== undefined);
      t.equal(h.cgroupByPath(at)?.level, (h.cgroupByPath(base) as KernfsNode).level + depth, `depth ${depth} seen`);
    }
    for (let depth = 3; depth >= 1; depth--) {
      const node = h.cgroupByPath(p) as KernfsNode;
      await outside.rmdir(p);
      await until(`${p} to go`, () => node.dying);
      t.equal(h.cgroupByPath(p), undefined, `depth ${depth} removal seen`);
      p = p.slice(0, p.lastIndexOf('/'));
    }
  });

  rule('reconcile finds what changed while tracking was stopped', async (t, { source, base, outside }) => {
    const h = source.hierarchy;
    const gone = await source.mkdir(`${base}/gone`);
    const kept = await source.mkdir(`${base}/kept`);
    await source.stop();
    await outside.mkdir(`${base}/r1`);
    await outside.mkdir(`${base}/r1/r2`);
    await outside.rmdir(`${base}/gone`);
    await new Promise((r) => setTimeout(r, 20));
    t.equal(h.cgroupByPath(`${base}/r1`), undefined, 'a stopped source does not see mkdir');
    t.equal(gone.state, 'live', 'a stopped source does not see rmdir');
    const result = await source.reconcile();
    t.match(result, { added: 2, removed: 1 }, 'reconcile counts');
    const r2 = h.cgroupByPath(`${base}/r1/r2`);
    t.equal(r2?.parent, h.cgroupByPath(`${base}/r1`), 'the new subtree is linked');
    t.equal(gone.state, 'released', 'the removed cgroup is gone');
    t.equal(kept.state, 'live', 'an unchanged cgroup stays');
    t.match(await source.reconcile(), { added: 0, removed: 0 }, 'a second reconcile finds nothing');
    await source.start();
  });

  rule('interface files read in the kernel formats', async (t, { source, base }) => {
    const node = await source.mkdir(`${base}/f`);
    const cpu = await source.readFile(node, 'cpu.stat');
    t.match(cpu, /^usage_usec \d+\nuser_usec \d+\nsystem_usec \d+\n/, 'cpu.stat starts with the cputime lines');
    t.equal(await source.readFile(node, 'cgroup.procs'), '', 'a new cgroup has no tasks');
    t.equal(await source.readFile(node, 'cgroup.events'), 'populated 0\nfrozen 0\n', 'cgroup.events');
    t.match(
      await source.readFile(node, 'cpu.pressure'),
      /^some avg10=\d+\.\d\d avg60=\d+\.\d\d avg300=\d+\.\d\d total=\d+\nfull avg10=\d+\.\d\d avg60=\d+\.\d\d avg300=\d+\.\d\d total=\d+\n$/,
      'cpu.pressure',
    );
    await source.rmdir(`${base}/f`);
    await rejectsWith(t, source.readFile(node, 'cpu.stat'), 'ENOENT', 'a removed cgroup has no files');
  });
}
