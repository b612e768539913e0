/**
 * Auto-mirror (fs/bpffs mirror.ts), vbpffs's addition to the RFC: tagged directories follow their
 * cgroups' children as the simulated host makes and removes cgroups; the user's own pins keep a
 * directory whose cgroup is gone; a view pinned later reaches the whole tree.
 */
import t, { type Test } from 'tap';
import { S_IFDIR } from '../uapi';
import type { KernfsNode } from '../tags';
import { Bpffs } from '../fs/bpffs';
import { UID, bpffsWorld, type BpffsWorld } from './harness/bpffs';

async function mount(t: Test, opts = {}): Promise<BpffsWorld> {
  const w = await bpffsWorld(opts);
  t.teardown(() => w.end());
  return w;
}

t.test('auto is the default: pinning a view mirrors every live cgroup below, each directory with the view', async (t) => {
  const w = await mount(t);
  await w.mkcg('/system.slice', '/system.slice/cron.service', '/user.slice');
  w.fs.pin('/cpu', w.view());
  t.same(w.fs.readdir('/').sort(), ['cpu', 'system.slice', 'user.slice']);
  t.same(w.fs.readdir('/system.slice').sort(), ['cpu', 'cron.service']);
  t.same(w.fs.readdir('/system.slice/cron.service'), ['cpu']);
  t.equal(await w.readAll('/system.slice/cron.service/cpu'), `cgroup_id: ${w.source.hierarchy.cgroupByPath('/system.slice/cron.service')!.id} name: cron.service\n`);
});

t.test('mirrored directories are S_IFDIR | 0777 & ~umask, owned by the mount owner', async (t) => {
  const w = await mount(t);
  await w.mkcg('/a');
  w.fs.pin('/v', w.view(), { uid: 1, gid: 1 });
  const st = w.fs.getattr('/a');
  t.equal(st.mode, S_IFDIR | 0o755);
  t.equal(st.uid, UID);
  t.equal(w.fs.getattr('/a/v').uid, UID);
});

t.test('a directory anywhere tagged by a pin mirrors the whole tree from the root cgroup', async (t) => {
  const w = await mount(t);
  await w.mkcg('/a');
  w.fs.mkdir('/views', 0o755);
  w.fs.pin('/views/cpu', w.view());
  t.same(w.fs.readdir('/views').sort(), ['a', 'cpu']);
  t.same(w.fs.readdir('/'), ['views']);
});

t.test('a cgroup made later appears under every directory tagged with its parent, with the inherited files', async (t) => {
  const w = await mount(t);
  w.fs.mkdir('/x', 0o755);
  w.fs.mkdir('/y', 0o755);
  w.fs.pin('/x/v', w.view());
  w.fs.pin('/y/w', w.view());
  await w.mkcg('/a', '/a/b');
  t.same(w.fs.readdir('/x/a').sort(), ['b', 'v']);
  t.same(w.fs.readdir('/y/a/b'), ['w'], 'each tree with its own list');
});

t.test('a cgroup removed takes its directory with it at rmdir, and the directory lets go of the cgroup', async (t) => {
  const w = await mount(t);
  const [a] = await w.mkcg('/a', '/a/b');
  w.fs.pin('/v', w.view());
  const b = w.source.hierarchy.cgroupByPath('/a/b')!;
  await w.rmcg('/a/b');
  t.same(w.fs.readdir('/a'), ['v']);
  t.ok(b.released, 'no tag holds the removed cgroup');
  await w.rmcg('/a');
  t.same(w.fs.readdir('/'), ['v']);
  t.ok(a!.released);
});

t.test('while a removed cgroup is still held (dying), its directory is already gone from readdir', async (t) => {
  const w = await mount(t);
  const [a] = await w.mkcg('/a');
  w.fs.pin('/v', w.view());
  a!.tryGet();
  await w.rmcg('/a');
  t.equal(a!.state, 'dying');
  t.same(w.fs.readdir('/'), ['v']);
  t.throws(() => w.fs.getattr('/a'), { code: 'ENOENT' });
  a!.put();
});

t.test('a dying cgroup is not mirrored when a tree is tagged', async (t) => {
  const w = await mount(t);
  const [a] = await w.mkcg('/a', '/b');
  a!.tryGet();
  await w.rmcg('/a');
  w.fs.pin('/v', w.view());
  t.same(w.fs.readdir('/').sort(), ['b', 'v']);
  a!.put();
});

t.test('a directory holding the user\'s own pins stays when its cgroup goes, and its views read empty', async (t) => {
  const w = await mount(t);
  await w.mkcg('/a', '/a/b');
  const view = w.view();
  w.fs.pin('/v', view);
  w.fs.pin('/a/b/mine', w.hash());
  await w.rmcg('/a/b');
  await w.rmcg('/a');
  t.same(w.fs.readdir('/a'), ['b'], 'the parent stays for the kept child; its inherited file is gone');
  t.same(w.fs.readdir('/a/b'), ['mine'], 'the inherited files go, the user\'s pin stays');
  w.fs.link('/v', '/a/b/v');
  const runs = view.prog.stats.runCnt;
  t.equal(await w.readAll('/a/b/v'), '', 'a view there reads empty');
  t.equal(view.prog.stats.runCnt, runs, 'and runs nothing');
  w.fs.unlink('/a/b/v');
  w.fs.unlink('/a/b/mine');
  w.fs.rmdir('/a/b');
  w.fs.rmdir('/a');
});

t.test('a cgroup that comes back under the same name takes over the directory kept for the user\'s pins', async (t) => {
  const w = await mount(t);
  await w.mkcg('/a');
  w.fs.pin('/v', w.view());
  w.fs.pin('/a/mine', w.hash());
  await w.rmcg('/a');
  t.same(w.fs.readdir('/a'), ['mine']);
  const [again] = await w.mkcg('/a', '/a/c');
  t.same(w.fs.readdir('/a').sort(), ['c', 'mine', 'v'], 'repopulated and refilled');
  t.equal(await w.readAll('/a/v'), `cgroup_id: ${again!.id} name: a\n`);
});

t.test('a name the user holds in a tagged directory keeps its entry when a cgroup of that name appears', async (t) => {
  const w = await mount(t);
  w.fs.mkdir('/u', 0o755);
  w.fs.pin('/v', w.view());
  w.fs.pin('/a', w.hash());
  w.fs.rename('/u', '/b');
  await w.mkcg('/a', '/b');
  t.equal(w.fs.getattr('/a').mode & S_IFDIR, 0, 'the pin stays');
  t.same(w.fs.readdir('/b'), [], 'an untagged directory stays as it is');
});

t.test('a directory kept in another tree is not taken over by a cgroup of this one', async (t) => {
  const w = await mount(t);
  await w.mkcg('/a');
  w.fs.mkdir('/x', 0o755);
  w.fs.mkdir('/y', 0o755);
  w.fs.pin('/x/v', w.view());
  w.fs.pin('/y/w', w.view());
  w.fs.pin('/x/a/mine', w.hash());
  await w.rmcg('/a');
  t.same(w.fs.readdir('/y'), ['w'], 'the other tree let its directory go');
  w.fs.rename('/x/a', '/y/a');
  const [again] = await w.mkcg('/a');
  t.same(w.fs.readdir('/y/a'), ['mine'], 'left as it is');
  t.same(w.fs.readdir('/x/a'), ['v'], 'the tree it came from mirrors the new cgroup afresh');
  t.equal(await w.readAll('/x/a/v'), `cgroup_id: ${again!.id} name: a\n`);
});

t.test('a view pinned later reaches every directory of the tree at once, except where its name is taken', async (t) => {
  const w = await mount(t);
  await w.mkcg('/a', '/a/b');
  w.fs.pin('/v', w.view());
  w.fs.pin('/a/b/mem', w.hash());
  const mem = w.view();
  w.fs.pin('/a/mem', mem);
  t.same(w.fs.readdir('/').sort(), ['a', 'mem', 'v']);
  t.same(w.fs.readdir('/a/b').sort(), ['mem', 'v']);
  const h = w.fs.get('/a/b/mem');
  t.not(h.object, mem, 'the user\'s pin keeps the name');
  h.close();
  t.equal(await w.readAll('/mem'), 'cgroup_id: 1 name: /\n');
  w.fs.unlink('/a/b/v');
  w.fs.unlink('/a/v');
  w.fs.pin('/a/v', w.view());
  t.same(w.fs.readdir('/a/b'), ['mem'], 'a name already on the list reaches nothing');
});

t.test('mkdir of a mirrored cgroup\'s name is EEXIST; after rmdir the user may make it again, and it is refilled', async (t) => {
  const w = await mount(t);
  await w.mkcg('/a', '/a/b');
  w.fs.pin('/v', w.view());
  t.throws(() => w.fs.mkdir('/a', 0o755), { code: 'EEXIST' });
  t.throws(() => w.fs.rmdir('/a'), { code: 'ENOTEMPTY' }, 'rmdir is not recursive');
  w.fs.rmdir('/a/b');
  w.fs.rmdir('/a');
  t.same(w.fs.readdir('/'), ['v']);
  w.fs.mkdir('/a', 0o700);
  t.same(w.fs.readdir('/a').sort(), ['b', 'v']);
});

t.test('a cgroup made and removed before its mkdir event is delivered gets no directory', async (t) => {
  const w = await mount(t);
  const h = w.source.hierarchy;
  const a = h.add(h.root, 'a', 10_000);
  w.fs.pin('/v', w.view());
  // A listener that makes and removes a cgroup while the hierarchy is delivering an event: both
  // events are queued behind it, so bpffs sees the mkdir of a cgroup that is already dying.
  h.once('mkdir', (n: KernfsNode) => {
    const tmp = h.add(n, 'tmp', 10_002);
    h.remove(tmp);
  });
  h.add(a, 'b', 10_001);
  t.same(w.fs.readdir('/a').sort(), ['b', 'v']);
  t.notOk(w.fs.readdir('/a/b').includes('tmp'));
});

t.test('a mkdir event for a cgroup already mirrored changes nothing', async (t) => {
  const w = await mount(t);
  const h = w.source.hierarchy;
  // A listener ahead of bpffs's tags the tree during the event: the fill mirrors the new cgroup
  // first, then bpffs's own listener meets its directory.
  const fs = new Bpffs({ kernel: w.kernel, source: w.source });
  t.teardown(() => fs.dispose());
  h.prependOnceListener('mkdir', () => fs.pin('/v', w.view()));
  await w.mkcg('/a');
  t.same(fs.readdir('/').sort(), ['a', 'v']);
  t.same(fs.readdir('/a'), ['v']);
});

t.test('manual mode subscribes to nothing; dispose unsubscribes the mirror', async (t) => {
  const w = await bpffsWorld({ mirror: 'manual' });
  const h = w.source.hierarchy;
  const base = { mkdir: h.listenerCount('mkdir'), rmdir: h.listenerCount('rmdir') };
  const auto = new Bpffs({ kernel: w.kernel, source: w.source });
  t.equal(h.listenerCount('mkdir'), base.mkdir + 1);
  t.equal(h.listenerCount('rmdir'), base.rmdir + 1);
  auto.pin('/v', w.view());
  auto.dispose();
  t.equal(h.listenerCount('mkdir'), base.mkdir);
  t.equal(h.listenerCount('rmdir'), base.rmdir);
  await w.mkcg('/a');
  t.throws(() => auto.readdir('/'), { code: 'ENODEV' });
  w.end();
});

t.test('unmounting a mirrored tree drops every tag: the cgroups are released when removed', async (t) => {
  const w = await bpffsWorld();
  const [a] = await w.mkcg('/a');
  const view = w.view();
  w.fs.pin('/v', view);
  view.put();
  w.fs.pin('/a/mine', w.hash());
  w.end();
  t.ok(view.released, 'the pins and the inherit list are gone');
  await w.rmcg('/a');
  t.ok(a!.released);
});
