import t from 'tap';
import { insideMount, parseMountArgs } from '../fs/cli-daemon';

t.test('mount arguments: the mount point, the source, the mirror mode, the state directory', async (t) => {
  t.same(parseMountArgs(['/mnt/x', '--sim', 'demo', '--mirror', 'manual', '--foreground']), {
    foreground: true,
    allowOther: false,
    mountPoint: '/mnt/x',
    sim: 'demo',
    mirror: 'manual',
  });
  t.match(parseMountArgs(['rel', '--cgroup-root', '/sys/fs/cgroup/unified', '--state', 'st', '--allow-other']), {
    mountPoint: `${process.cwd()}/rel`,
    cgroupRoot: '/sys/fs/cgroup/unified',
    state: `${process.cwd()}/st`,
    allowOther: true,
  });
  t.match(parseMountArgs(['/m', '--reconcile-interval', '0.5']), { reconcileIntervalMs: 500 }, '--reconcile-interval is in seconds');
  t.match(parseMountArgs(['/m', '--reconcile-interval', '0']), { reconcileIntervalMs: 0 }, '0 turns the periodic walk off');
});

t.test('mount arguments: each mistake is EINVAL saying what was wrong', async (t) => {
  t.throws(() => parseMountArgs([]), { code: 'EINVAL', message: /usage: vbpffs mount MOUNTPOINT/ });
  t.throws(() => parseMountArgs(['/m', '--mirror', 'sometimes']), { code: 'EINVAL', message: /--mirror is auto or manual/ });
  t.throws(() => parseMountArgs(['/m', '--sim']), { code: 'EINVAL', message: /--sim needs a value/ });
  t.throws(() => parseMountArgs(['/m', '--frob']), { code: 'EINVAL', message: /unknown option '--frob' for mount/ });
  t.throws(() => parseMountArgs(['/m', '/n']), { code: 'EINVAL', message: /unexpected argument '\/n'/ });
  t.throws(() => parseMountArgs(['/m', '--sim', 'demo', '--cgroup-root', '/x']), { code: 'EINVAL', message: /exclude each other/ });
  for (const bad of ['-1', 'soon', '', 'Infinity']) {
    t.throws(() => parseMountArgs(['/m', '--reconcile-interval', bad]), { code: 'EINVAL', message: /--reconcile-interval takes seconds/ }, `--reconcile-interval ${bad}`);
  }
});

t.test('paths in a mount: relative to its root; a path outside it is EINVAL (no traversal out)', async (t) => {
  const m = { mountPoint: '/mnt/v', pid: 1, startedAt: '', socket: '', stateDir: '' };
  t.equal(insideMount(m, '/mnt/v'), '/');
  t.equal(insideMount(m, '/mnt/v/a/b'), '/a/b');
  t.throws(() => insideMount(m, '/mnt/v/../w'), { code: 'EINVAL', message: /outside \/mnt\/v/ });
  t.throws(() => insideMount(m, '/etc'), { code: 'EINVAL' });
});
