/**
 * Fuzzing through a real FUSE mount (scripts/fuzz/fuse-*.ts) inside the normal test run: a daemon
 * process per run, an actor process making every file operation and `vbpffs` command, and the
 * library alone fed the same steps; after every step the errno, what was read or printed and the
 * tree must be the same. A fixed small seed set on the host's cgroup2 hierarchy (real cgroups under
 * a fuzz-owned one) and on the simulated tree; then the comparators, each shown to catch a
 * difference, and a planted difference found, minimised on fresh mounts and reported.
 */
import t from 'tap';
import { FUSE_OP_WEIGHTS, areaRoots, describe, generateFuse, resolveFuse, type Action, type Outcome } from '../scripts/fuzz/fuse-ops';
import {
  canonical,
  compareOutcome,
  compareTrees,
  formatFuseFailure,
  fuzzFuseSeed,
  libTreeLines,
  reachedPaths,
  realTreeLines,
  runFuseOps,
  translateIds,
} from '../scripts/fuzz/fuse-run';
import { LibWorld, type TreeEntry } from '../scripts/fuzz/fuse-oracle';
import { serve } from '../scripts/fuzz/fuse-actor';
import { fuseSkipReason } from './harness/mount';
import { cgroupSkipReason } from './harness/cgroup-tree';
import './harness/ivm-exit';

// A daemon and an actor process per run, each a child of the TypeScript loader: on a loaded host, past the default.
t.setTimeout(600_000);

/**
 * The seed and length run on every `npm test`. Starting a daemon and an actor under the TypeScript
 * loader costs most of a run (15-25 s on a loaded two-core host), the steps little (120 take 5-10 s):
 * one long run on the host's cgroup2 (the simulated tree where there is none), and the planted
 * differences below run on the simulated tree.
 */
const SEED = 1;
const OPS = 120;

t.test('through the mount', async (t) => {
  const fuse = await fuseSkipReason();
  const sim = fuse === false && (await cgroupSkipReason()) !== false;
  t.test(`${sim ? 'simulated tree' : 'host cgroup2'}, seed ${SEED}: ${OPS} operations by real processes show what the library shows`, { skip: fuse }, async (t) => {
    const rep = await fuzzFuseSeed(SEED, OPS, { sim, minimiseMs: 60_000 });
    t.equal(rep.result.failure, null, rep.result.failure === null ? 'no difference' : formatFuseFailure(rep));
    t.ok(rep.result.executed > OPS / 2, `${rep.result.executed} operations ran, in ${rep.result.ms} ms after the mount`);
  });
});

t.test('the same seed gives the same sequence of operations', async (t) => {
  t.same(generateFuse(5, 30), generateFuse(5, 30));
  t.notSame(generateFuse(5, 30), generateFuse(6, 30));
});

t.test('outcomes: a different errno or output is a difference, equal ones are not', async (t) => {
  t.equal(compareOutcome({ errno: null, out: 'x' }, { errno: null, out: 'x' }), null);
  t.match(compareOutcome({ errno: 'EPERM' }, { errno: null }), { signature: 'errno', message: 'the mount gave EPERM, the library success' });
  t.match(compareOutcome({ errno: null }, { errno: 'ENOENT' }), { signature: 'errno', message: 'the mount gave success, the library ENOENT' });
  t.match(compareOutcome({ errno: null, out: '5 1\n' }, { errno: null, out: '5 2\n' }), { signature: 'output' });
  t.equal(canonical('{"b":1,"a":[{"d":2,"c":3}]}'), canonical('{"a":[{"c":3,"d":2}],"b":1}'), 'key order is not a difference');
  t.not(canonical('{"a":1}'), canonical('{"a":2}'));
  t.equal(canonical('not json'), 'not json');
  t.equal(canonical(undefined), undefined);
});

t.test('cgroup ids print as the paths they name on each side; an id the side does not know stays visible', async (t) => {
  const host = new Map([
    [9001, '/'],
    [9417, '/f/a'],
  ]);
  const sim = new Map([
    [1, '/'],
    [3, '/f/a'],
  ]);
  t.equal(translateIds('9417 1\n9001\nend\n', host), translateIds('3 1\n1\nend\n', sim));
  t.equal(translateIds('{9417,1}: 0\n', host), '{/f/a,1}: 0\n');
  t.equal(translateIds('42 1\n', host), '?42 1\n');
  t.not(translateIds('9417 1\n', host), translateIds('1 1\n', sim), 'a view naming the wrong cgroup differs');
});

t.test('trees: find\'s listing against the library\'s, with directories\' link counts and loose paths\' attributes left out', async (t) => {
  const find = ['d 1777 4 /m/f -> ', 'f 600 2 /m/f/v -> ', 'l 777 1 /m/f/s -> v', 'd 755 2 /m/U -> '].join('\n') + '\n';
  const lib = [
    { type: 'd', mode: 0o1777, nlink: 9, ino: 1, path: '/f', target: '' },
    { type: 'f', mode: 0o600, nlink: 2, ino: 2, path: '/f/v', target: '' },
    { type: 'l', mode: 0o777, nlink: 1, ino: 3, path: '/f/s', target: 'v' },
    { type: 'd', mode: 0o755, nlink: 2, ino: 4, path: '/U', target: '' },
  ];
  t.equal(compareTrees(realTreeLines(find, '/m', new Set()), libTreeLines(lib, new Set())), null, 'the same tree');
  const moreLinks = lib.map((e) => (e.path === '/f/v' ? { ...e, nlink: 3 } : e));
  t.match(compareTrees(realTreeLines(find, '/m', new Set()), libTreeLines(moreLinks, new Set())), /mount only: {3}f 600 2 \/f\/v\n {2}library only: f 600 3 \/f\/v/);
  const chmodded = moreLinks.map((e) => (e.path === '/f/v' ? { ...e, mode: 0o644 } : e));
  t.equal(compareTrees(realTreeLines(find, '/m', new Set(['/f/v'])), libTreeLines(chmodded, new Set(['/f/v']))), null, 'a loose path\'s mode and link count are not compared');
  t.match(compareTrees(realTreeLines(find, '/m', new Set()), libTreeLines(chmodded, new Set())), /library only: f 644 3 \/f\/v/);
  t.match(compareTrees(realTreeLines(find, '/m', new Set()), libTreeLines(lib.slice(0, 3), new Set())), /mount only: {3}d 755 - \/U$/);
  t.match(compareTrees(realTreeLines(`${find}find: '/m/x': Input/output error\n`, '/m', new Set()), libTreeLines(lib, new Set())), /mount only: {3}\? find: /, 'find\'s complaints differ');
  t.match(compareTrees(realTreeLines(find.replace('-> v', '-> w'), '/m', new Set()), libTreeLines(lib, new Set())), /library only: l 777 1 \/f\/s -> v/);
});

t.test('a step reaches the paths its symlinks lead to, which the kernel may have cached too', async (t) => {
  const l = (p: string, target: string): TreeEntry => ({ type: 'l', mode: 0o777, nlink: 1, ino: 0, path: p, target });
  const tree = [l('/U/a/w', '/m/f/b'), l('/U/s', 'a'), l('/U/loop', 'loop'), l('/U/out', '/etc')];
  t.same(reachedPaths({ t: 'cat', p: '/U/a/w' }, tree, '/m').sort(), ['/U/a/w', '/f/b']);
  t.same(reachedPaths({ t: 'cat', p: '/U/s/w/x' }, tree, '/m').sort(), ['/U/a/w/x', '/U/s/w/x', '/f/b/x'], 'two links deep');
  t.same(reachedPaths({ t: 'cat', p: '/U/loop' }, tree, '/m'), ['/U/loop'], 'a loop ends');
  t.same(reachedPaths({ t: 'cat', p: '/U/out/x' }, tree, '/m'), ['/U/out/x'], 'a target outside the mount is not the mount\'s');
  t.same(reachedPaths({ t: 'symlink', p: '/U/z', target: '/U/a' }, tree, '/m'), ['/U/z'], 'a new symlink\'s target is not reached');
  t.same(reachedPaths({ t: 'mapUpdate', map: '/U/s/m', key: { cgroup: '/f' }, value: 1, flag: 'any' }, tree, '/m').sort(), ['/U/a/m', '/U/s/m', '/f']);
});

t.test('the library side runs each action as the kernel call the command stands for, with the kernel\'s errnos', async (t) => {
  const lib = await LibWorld.create({ sim: false, fuzzCgroup: '/f', mnt: '/m', objects: { view: '/o/view.ts', iter: '/o/iter.ts', skb: '/o/skb.ts' } });
  t.teardown(() => lib.dispose());
  const run = async (a: Action): Promise<Outcome> => lib.exec(a);
  const ok = { errno: null };
  t.match(await run({ t: 'mkdir', p: '/U' }), ok);
  t.match(await run({ t: 'iterPin', obj: 'view', p: '/v0' }), ok);
  t.equal(lib.tagOf('/f'), '/f', 'the view at the root mirrored the fuzz cgroup');
  t.equal(lib.tagOf('/U'), null);
  t.equal(lib.tagOf('/f/v0'), null);
  const f = lib.source.hierarchy.cgroupByPath('/f')!;
  t.same(await run({ t: 'cat', p: '/f/v0' }), { errno: null, out: `${f.id} 1\n` });
  t.match(await run({ t: 'progLoad', obj: 'skb', p: '/U/p' }), ok);
  t.match(await run({ t: 'attach', cg: '/f', type: 'egress', prog: '/U/p', mode: 'multi' }), ok);
  t.match(await run({ t: 'attach', cg: '/f', type: 'egress', prog: '/U/p', mode: 'override' }), { errno: 'EPERM' });
  const fired = JSON.parse((await run({ t: 'run', cg: '/f', type: 'egress' })).out!) as { progs: { name: string; ret: number }[]; verdict: string };
  t.match(fired, { progs: [{ name: 'egress', ret: 1 }], verdict: 'allow' });
  t.match(JSON.parse((await run({ t: 'cgShow', cg: '/f' })).out!), [{ attach_type: 'egress', attach_flags: 'multi', name: 'egress' }]);
  t.match(JSON.parse((await run({ t: 'show', what: 'prog' })).out!), [{ section: 'cgroup_view', run_cnt: 1 }, { name: 'egress', run_cnt: 1 }]);
  t.match(JSON.parse((await run({ t: 'show', what: 'link' })).out!), [{ type: 'BpfIterLink' }]);
  const maps = JSON.parse((await run({ t: 'show', what: 'map' })).out!) as { id: number; type: string }[];
  t.same(maps.map((m) => m.type), ['cgrp_storage', 'hash', 'cgroup_storage', 'hash'], 'the view\'s and the skb program\'s maps');
  t.match(await run({ t: 'detach', cg: '/f', type: 'ingress', prog: '/U/p' }), { errno: 'EINVAL' }, 'an egress program is pinned to egress (DIFFERENCES)');
  t.match(await run({ t: 'detach', cg: '/f', type: 'egress', prog: '/U/p' }), ok);
  t.match(await run({ t: 'detach', cg: '/f', type: 'egress', prog: '/U/p' }), { errno: 'ENOENT' });

  t.match(await run({ t: 'progLoad', obj: 'view', p: '/U/vp' }), ok);
  t.match(await run({ t: 'detach', cg: '/f', type: 'egress', prog: '/U/vp' }), { errno: 'EINVAL' }, 'the wrong program type first');
  t.match(await run({ t: 'iterPin', obj: { pinned: '/U/vp' }, p: '/f/w' }), ok);
  t.match(await run({ t: 'iterPin', obj: { pinned: '/U/p' }, p: '/U/x' }), { errno: 'EINVAL' }, 'not an iterator program');
  t.match(await run({ t: 'iterPin', obj: 'iter', p: '/U/i', order: 'self_only', cgroup: '/f' }), ok);
  t.same(await run({ t: 'cat', p: '/U/i' }), { errno: null, out: `${f.id}\nend\n` });
  t.ok(lib.namesCgroups('/U/i'));
  t.match(await run({ t: 'linkUpdate', link: '/f/v0', prog: '/U/vp' }), ok);
  t.match(await run({ t: 'linkUpdate', link: '/U/p', prog: '/U/vp' }), { errno: 'EINVAL' }, 'a pinned prog is no link');
  t.match(await run({ t: 'linkDetach', link: '/U/i' }), { errno: 'EOPNOTSUPP' });

  // The skb program's counters (the view's maps went with its program at the link update).
  const hash = maps[3]!.id;
  t.match(await run({ t: 'objPin', kind: 'map', ref: { id: hash }, p: '/U/m' }), ok);
  t.notOk(lib.namesCgroups('/U/m'));
  t.match(await run({ t: 'mapUpdate', map: '/U/m', key: 1, value: 5, flag: 'noexist' }), ok);
  t.match(await run({ t: 'mapUpdate', map: '/U/m', key: 1, value: 5, flag: 'noexist' }), { errno: 'EEXIST' });
  t.match(await run({ t: 'mapUpdate', map: '/U/m', key: 2, value: 5, flag: 'exist' }), { errno: 'ENOENT' });
  t.match(await run({ t: 'mapUpdate', map: '/U/m', key: { cgroup: '/f' }, value: 5, flag: 'any' }), { errno: 'EINVAL' });
  t.match(await run({ t: 'mapUpdate', map: '/U/p', key: 1, value: 5, flag: 'any' }), { errno: 'EINVAL' }, 'a pinned prog is no map');
  t.match(await run({ t: 'mapDelete', map: '/U/m', key: 3 }), { errno: 'ENOENT' });
  t.match(await run({ t: 'mapDelete', map: '/U/m', key: 1 }), ok);
  t.match(await run({ t: 'mapCreate', p: '/U/c', type: 'cgrp_storage' }), ok);
  t.match(await run({ t: 'mapUpdate', map: '/U/c', key: { cgroup: '/f' }, value: 1, flag: 'any' }), ok);
  t.match(await run({ t: 'mapUpdate', map: '/U/c', key: 1, value: 1, flag: 'any' }), { errno: 'EINVAL' });
  t.match(await run({ t: 'objPin', kind: 'prog', ref: { id: 999 }, p: '/U/q' }), { errno: 'ENOENT' });
  t.match(await run({ t: 'cgMkdir', cg: '/f/a' }), ok);
  t.ok(lib.tree(['/f']).some((e) => e.path === '/f/a/v0'), 'the mirror made its directory with the view');
  t.match(await run({ t: 'cgRmdir', cg: '/f/a' }), ok);
  t.match(await run({ t: 'symlink', p: '/U/s', target: 'i' }), ok);
  t.match(await run({ t: 'link', p: '/U/i', to: '/U/j' }), ok);
  t.match(await run({ t: 'rename', p: '/U/j', to: '/U/k' }), ok);
  t.match(lib.tree(['/U']).find((e) => e.path === '/U/s'), { type: 'l', target: 'i' });
  t.match(await run({ t: 'unlink', p: '/U/k' }), ok);
  t.match(await run({ t: 'rmdir', p: '/U' }), { errno: 'ENOTEMPTY' });
  t.equal(lib.objectAt('/U/nope'), null);
  t.equal(lib.tagOf('/nope/x'), null);
  t.same(lib.tree(['/nope']), []);
  t.equal(lib.idPaths().get(f.id), '/f');
  await t.rejects(lib.exec({ t: 'cat', p: 7 as never }), TypeError, 'what is not a BpfError is thrown, not an outcome');
});

t.test('every kind of operation resolves against the library\'s state and runs there, on both trees', async (t) => {
  for (const sim of [false, true]) {
    const fuzzCgroup = sim ? '/system.slice' : '/f';
    const resolved = new Set<string>();
    for (let seed = 1; seed <= 6; seed++) {
      const lib = await LibWorld.create({ sim, fuzzCgroup, mnt: '/m', objects: { view: '/o/view.ts', iter: '/o/iter.ts', skb: '/o/skb.ts' } });
      const ctx = { lib, fuzzCgroup, host: !sim, mnt: '/m' };
      await lib.exec({ t: 'mkdir', p: '/U' });
      await lib.exec({ t: 'iterPin', obj: 'view', p: '/v0' });
      for (const op of generateFuse(seed, 150)) {
        const a = resolveFuse(ctx, op);
        if (a === null) continue;
        resolved.add(op.kind);
        const out = await lib.exec(a);
        if (a.t === 'iterPin' && a.obj === 'view' && out.errno === null && !sim) t.not(lib.tagOf(a.p.slice(0, a.p.lastIndexOf('/'))), null, 'a view pin on the host goes to a tagged directory');
      }
      await lib.dispose();
    }
    const kinds = Object.keys(FUSE_OP_WEIGHTS).filter((k) => !(sim && k.startsWith('cg') && k !== 'cgShow'));
    t.same([...resolved].sort(), kinds.sort(), `${sim ? 'simulated tree' : 'host'}: every kind ran${sim ? ' (no cgroup mkdir or rmdir)' : ''}`);
  }
});

t.test('the actor reports an errno as the kernel gave it', async (t) => {
  t.match(await serve({ fs: 'stat', p: '/nonexistent-vbpffs' }), { ok: false, errno: 'ENOENT' });
  t.match(await serve({ fs: 'cat', p: '/proc/self/comm' }), { ok: true, out: /\S/ });
  t.match(await serve({ find: ['/nonexistent-vbpffs'] }), { ok: true, out: '' });
});

t.test('actions print as the commands a user would type', async (t) => {
  const lines = (
    [
      { t: 'mkdir', p: '/U/a' },
      { t: 'unlink', p: '/U/v' },
      { t: 'rename', p: '/U/a', to: '/U/b' },
      { t: 'link', p: '/U/v', to: '/U/w' },
      { t: 'symlink', p: '/U/s', target: 'v' },
      { t: 'chmod', p: '/U/a', mode: 0o700 },
      { t: 'cgMkdir', cg: '/f/a' },
      { t: 'cgRmdir', cg: '/f/a' },
      { t: 'iterPin', obj: 'iter', p: '/U/i', order: 'children', cgroup: '/f' },
      { t: 'iterPin', obj: { pinned: '/U/p' }, p: '/U/i' },
      { t: 'progLoad', obj: 'skb', p: '/U/p' },
      { t: 'objPin', kind: 'map', ref: { id: 3 }, p: '/U/m' },
      { t: 'objPin', kind: 'link', ref: { pinned: '/U/i' }, p: '/U/j' },
      { t: 'mapCreate', p: '/U/h', type: 'hash' },
      { t: 'mapUpdate', map: '/U/h', key: 1, value: 2, flag: 'any' },
      { t: 'mapDelete', map: '/U/h', key: { cgroup: '/f' } },
      { t: 'linkUpdate', link: '/U/i', prog: '/U/p' },
      { t: 'linkDetach', link: '/U/i' },
      { t: 'attach', cg: '/f', type: 'egress', prog: '/U/p', mode: 'multi' },
      { t: 'attach', cg: '/f', type: 'egress', prog: '/U/p' },
      { t: 'detach', cg: '/f', type: 'ingress', prog: '/U/p' },
      { t: 'run', cg: '/f', type: 'egress' },
      { t: 'show', what: 'map' },
      { t: 'cgShow', cg: '/f' },
    ] as Action[]
  ).map(describe);
  t.same(lines, [
    'mkdir /U/a',
    'rm /U/v',
    'mv /U/a /U/b',
    'ln /U/v /U/w',
    'ln -s v /U/s',
    'chmod 700 /U/a',
    'mkdir <cgroup2>/f/a',
    'rmdir <cgroup2>/f/a',
    'vbpffs iter pin fuzz-iter.ts /U/i order children cgroup /f',
    'vbpffs iter pin pinned /U/p /U/i',
    'vbpffs prog load fuzz-skb.ts /U/p',
    'vbpffs map pin id 3 /U/m',
    'vbpffs link pin pinned /U/i /U/j',
    'vbpffs map create /U/h type hash',
    'vbpffs map update pinned /U/h key 1 value 2 any',
    'vbpffs map delete pinned /U/h key cgroup /f',
    'vbpffs link update pinned /U/i pinned /U/p',
    'vbpffs link detach pinned /U/i',
    'vbpffs cgroup attach /f egress pinned /U/p multi',
    'vbpffs cgroup attach /f egress pinned /U/p',
    'vbpffs cgroup detach /f ingress pinned /U/p',
    'vbpffs cgroup run /f egress',
    'vbpffs map show',
    'vbpffs cgroup show /f',
  ]);
  t.same(areaRoots({ fuzzCgroup: '/f' } as never), ['/f', '/U']);
});

t.test('a difference planted in the library is caught at its step, minimised on fresh mounts and reported with its seed', async (t) => {
  const skip = await fuseSkipReason();
  t.test('(mounted)', { skip }, async (t) => {
    // Once a map is pinned in the area, the library alone gets a directory the mount never sees.
    // Seed 480 starts with a prog show, a cat and a map create.
    const planted = new WeakSet<LibWorld>();
    const tamper = (lib: LibWorld): void => {
      if (planted.has(lib)) return;
      const map = lib.tree(['/system.slice', '/U']).find((e) => e.type === 'f' && lib.objectAt(e.path)?.kind === 'map');
      if (map === undefined) return;
      planted.add(lib);
      lib.fs.mkdir('/U/planted', 0o755);
    };
    const rep = await fuzzFuseSeed(480, 10, { sim: true, tamper, minimiseMs: 120_000 });
    t.equal(rep.result.failure?.signature, 'tree', rep.result.failure?.message ?? 'no failure');
    t.equal(rep.result.failure?.index, 2, 'caught at the step that broke it');
    t.match(rep.result.failure?.message, /library only: d 755 - \/U\/planted/);
    t.same(
      rep.minimised?.ops.map((o) => o.kind),
      ['mapCreate'],
      'a map pin is all it takes',
    );
    t.equal(rep.minimised?.failure?.signature, 'tree', 'the minimised sequence fails the same way on its own mount');
    const text = formatFuseFailure(rep);
    t.match(text, /^FAIL seed 480 through the mount: op 2 of 10, tree\n {2}reproduce: npm run fuzz -- --fuse --sim --ops 10 --seed 480\n/);
    t.match(text, /minimised to 1 operations:\n(.*\n){2} {4}0: vbpffs map create \/\S+ type \w+: ok\n/);
  });
});

t.test('an exception on the library side is a crash, reported with the step and the daemon\'s stderr', async (t) => {
  const skip = await fuseSkipReason();
  t.test('(mounted)', { skip }, async (t) => {
    // A cgroup rmdir first, which the simulated tree skips (its cgroups are the preset's).
    const r = await runFuseOps([{ kind: 'cgRmdir', r: [0, 0, 0, 0] }, { kind: 'show', r: [0, 0, 0, 0] }], {
      sim: true,
      tamper: () => {
        throw new TypeError('planted');
      },
    });
    t.equal(r.failure?.signature, 'crash');
    t.match(r.failure?.message, /^step 1: vbpffs prog show: TypeError: planted/);
    t.same(r.log, ['-1: mkdir /U: ok', '-1: vbpffs iter pin fuzz-view.ts /v0: ok', '0: cgRmdir: skipped', r.log[3]]);
    t.equal(r.executed, 1);
  });
});
