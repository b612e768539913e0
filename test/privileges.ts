/**
 * Privilege boundaries (issue 8), tried as a real unprivileged user (uid 65534, through setpriv or
 * runuser) against real mounts: the control socket and the registry refuse others, saying so; the
 * mount is the daemon's user's alone unless --allow-other, and then the kernel enforces the modes
 * (default_permissions); a daemon refuses a state directory others could tamper with. What the CLI
 * itself refuses (paths out of the mount, huge arguments, bytes that are not text, hostile
 * programs) is in cli-reach.ts.
 */
import { execFile } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, statSync } from 'node:fs';
import { chmod, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import t, { type Test } from 'tap';
import { examplePath } from '../progs/examples';
import { secureStateDir } from '../fs/control/registry';
import { fuseSkipReason, mountVbpffs, type TestMount } from './harness/mount';
import { settle, type Out } from './harness/cli-result';
import { reachableCheckout } from './harness/reachable';

const run = promisify(execFile);
// Three mounts and a dozen children of the TypeScript loader: past the default file timeout.
t.setTimeout(600_000);
const CLI = path.join(__dirname, '..', 'fs', 'cli.ts');
const NOBODY = 65534;

/** How this host switches to another user, or why the tests that need one skip. */
async function switchUser(): Promise<{ skip: string | false; prefix: string[] }> {
  if (process.getuid!() !== 0) return { skip: 'not root: these tests switch to an unprivileged uid, which only root can', prefix: [] };
  const has = (cmd: string): Promise<boolean> => run(cmd, ['--version']).then(() => true, () => false);
  if (await has('setpriv')) return { skip: false, prefix: ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups'] };
  if (await has('runuser')) return { skip: false, prefix: ['runuser', '-u', 'nobody', '--'] };
  return { skip: 'neither setpriv nor runuser is installed (Debian: util-linux)', prefix: [] };
}

/**
 * The TypeScript loader without tap's coverage tracking: a child running as another user could not
 * write its coverage into this worktree. tap puts its tracking back into every child's environment,
 * so env(1), after the switch of user, removes it (as harness/run-ts.ts does).
 */
const execArgv = process.execArgv.filter((a) => !a.includes('processinfo') && !a.includes('@tapjs/mock'));
const UNTRACK = ['NODE_OPTIONS', 'NODE_V8_COVERAGE', ...Object.keys(process.env).filter((k) => k.startsWith('_TAPJS_PROCESSINFO'))].flatMap((k) => ['-u', k]);

/** A mount whose path others can reach (the temporary directory above it is 0700 otherwise). */
async function sharedMount(t: Test, allowOther: boolean): Promise<TestMount> {
  const m = await mountVbpffs(t, { sim: 'demo', allowOther });
  await chmod(path.dirname(m.mnt), 0o755);
  return m;
}

t.test('privilege boundaries', async (t) => {
  const [user, fuse] = await Promise.all([switchUser(), fuseSkipReason()]);
  const skip = user.skip || fuse;
  /** A command run as uid 65534. */
  const asNobody = (env: NodeJS.ProcessEnv, cmd: string, ...args: string[]): Promise<Out> =>
    settle(run(user.prefix[0]!, [...user.prefix.slice(1), 'env', ...UNTRACK, cmd, ...args], { env, encoding: 'utf8', cwd: '/' }));

  t.test('the control socket and the registry refuse another user, saying only root may control the daemons', { skip }, async (t) => {
    const m = await sharedMount(t, false);
    const env = { ...process.env, VBPFFS_STATE_ROOT: m.stateRoot };
    // The checkout may be private to root (a clone under /root): the CLI runs from a bind of it.
    const reach = await reachableCheckout(t);
    const vbpffs = (...args: string[]): Promise<Out> => asNobody(env, process.execPath, ...reach.execArgv(execArgv), reach.at(CLI), ...args);
    const [status, show, create, umount] = await Promise.all([
      vbpffs('status'),
      vbpffs('prog', 'show'),
      vbpffs('map', 'create', m.p('x'), 'type', 'hash', 'key', '4', 'value', '4', 'entries', '1', 'name', 'x'),
      vbpffs('umount', m.mnt),
    ]);
    const refused = `Error: ${m.stateRoot}: permission denied: only root, who runs these vbpffs daemons, may control them (EACCES)\n`;
    for (const [what, r] of Object.entries({ status, show, create, umount })) {
      t.same({ code: r.code, stderr: r.stderr }, { code: 1, stderr: refused }, `vbpffs ${what} as uid ${NOBODY}`);
    }
    t.equal(await m.sh('ls', '-A', m.mnt), '', 'nothing was made');

    // Under the registry's directories, the socket's own mode refuses a connect.
    const sock = m.daemon.socket;
    const connect = `require('net').connect(${JSON.stringify(sock)}).on('error', (e) => { console.log(e.code); process.exit(1); }).on('connect', () => { console.log('connected'); process.exit(0); })`;
    t.match(await asNobody(env, process.execPath, '-e', connect), { code: 1, stdout: 'EACCES\n' }, 'connect() through the 0700 directories');
    await chmod(m.stateRoot, 0o711);
    await chmod(path.dirname(sock), 0o711);
    const direct = await asNobody(env, process.execPath, '-e', connect);
    await chmod(path.dirname(sock), 0o700);
    await chmod(m.stateRoot, 0o700);
    t.match(direct, { code: 1, stdout: 'EACCES\n' }, 'connect() to the 0600 socket itself, its directories opened up');

    const modes: Record<string, string> = {};
    for (const p of [m.stateRoot, path.dirname(sock), ...(await readdir(path.dirname(sock))).map((f) => path.join(path.dirname(sock), f))]) {
      modes[path.relative(m.stateRoot, p) || '.'] = ((await stat(p)).mode & 0o7777).toString(8);
    }
    const dir = path.relative(m.stateRoot, path.dirname(sock));
    t.same(modes, { '.': '700', [dir]: '700', [`${dir}/control.sock`]: '600', [`${dir}/info.json`]: '600', [`${dir}/lock`]: '600' }, 'no state file or directory is open to others');
  });

  t.test('without --allow-other the mount is its daemon user\'s alone: others get EACCES', { skip }, async (t) => {
    const m = await sharedMount(t, false);
    await m.sh(process.execPath, ...execArgv, CLI, 'iter', 'pin', examplePath('procs'), m.p('procs'));
    const env = process.env;
    const [ls, cat, st, parent] = await Promise.all([
      asNobody(env, 'ls', m.mnt),
      asNobody(env, 'cat', m.p('system.slice', 'postgres.service', 'procs')),
      asNobody(env, 'stat', m.p('procs')),
      asNobody(env, 'ls', path.dirname(m.mnt)),
    ]);
    t.match(ls, { code: 2, stderr: /Permission denied/ });
    t.match(cat, { code: 1, stderr: /Permission denied/ });
    t.match(st, { code: 1, stderr: /Permission denied/ });
    t.match(parent, { code: 0, stdout: 'mnt\nstate\n' }, 'the directory above is open: the refusal is FUSE\'s');
    t.equal(await m.sh('ls', m.p('system.slice', 'postgres.service')), 'procs\n', 'root reaches what they may not');
  });

  t.test('with --allow-other, default_permissions enforces the modes', { skip }, async (t) => {
    const m = await sharedMount(t, true);
    const cli = (...args: string[]): Promise<string> => m.sh(process.execPath, ...execArgv, CLI, ...args);
    await Promise.all([
      cli('iter', 'pin', examplePath('procs'), m.p('procs')),
      cli('map', 'create', m.p('m'), 'type', 'hash', 'key', '4', 'value', '4', 'entries', '1', 'name', 'm'),
    ]);
    const env = process.env;
    const mode = (await m.sh('stat', '-c', '%a %U', m.mnt, m.p('procs'), m.p('system.slice'))).trim().split('\n');
    t.same(mode, ['1755 root', '600 root', '755 root'], 'the root is 01755 (not bpffs\'s 01777), pins 0600, directories 0755, all root\'s');
    const [ls, lsSub, catPin, catView, mkdir, symlink, touch, rm, mv, chmodPin, rmdir, mkdirSub] = await Promise.all([
      asNobody(env, 'ls', m.mnt),
      asNobody(env, 'ls', m.p('system.slice')),
      asNobody(env, 'cat', m.p('m')),
      asNobody(env, 'cat', m.p('system.slice', 'postgres.service', 'procs')),
      asNobody(env, 'mkdir', m.p('nobody')),
      asNobody(env, 'ln', '-s', '/etc', m.p('ln')),
      asNobody(env, 'touch', m.p('f')),
      asNobody(env, 'rm', '-f', m.p('procs')),
      asNobody(env, 'mv', m.p('m'), m.p('m2')),
      asNobody(env, 'chmod', '666', m.p('m')),
      asNobody(env, 'rmdir', m.p('user.slice', 'session-1.scope')),
      asNobody(env, 'mkdir', m.p('system.slice', 'x')),
    ]);
    t.match(ls, { code: 0, stdout: 'm\nprocs\nsystem.slice\nuser.slice\n' }, 'others list a directory whose mode lets them');
    t.match(lsSub, { code: 0, stdout: 'cron.service\npostgres.service\nprocs\n' });
    t.match(catPin, { code: 1, stderr: /Permission denied/ }, 'a 0600 pin is not theirs to open');
    t.match(catView, { code: 1, stderr: /Permission denied/ }, 'nor an inherited 0600 view');
    for (const [what, r] of Object.entries({ mkdir, symlink, touch, rm, mv, rmdir, mkdirSub })) {
      t.match(r, { code: 1, stderr: /Permission denied/ }, `${what} in a directory others may not write: EACCES`);
    }
    t.match(chmodPin, { code: 1, stderr: /Operation not permitted/ }, 'chmod of what is not theirs: EPERM');
    t.equal((await m.sh('ls', m.mnt)), 'm\nprocs\nsystem.slice\nuser.slice\n', 'nothing they tried changed the tree');

    await m.sh('ln', '-s', 'procs', m.p('alias'));
    await m.sh('chmod', '644', m.p('procs'));
    // The read runs the view; on a loaded host its cold first run may pass the 50 ms deadline (EIO):
    // what matters here is that the kernel let them open it.
    const opened = await asNobody(env, 'cat', m.p('procs'));
    t.match(opened, opened.code === 0 ? { stdout: /^procs +\d+\nthreads +\d+\n$/ } : { stderr: /Input\/output error/ }, 'a pin root made 0644 is theirs to open');
    await m.sh('rm', m.p('alias'));
    t.equal(await m.sh('ls', m.mnt), 'm\nprocs\nsystem.slice\nuser.slice\n', 'root makes and removes entries where others may not');
  });
});

t.test('a daemon refuses a state directory others could tamper with (EPERM), before it mounts anything', async (t) => {
  const base = mkdtempSync(path.join(tmpdir(), 'vbpffs-state-'));
  t.teardown(() => rm(base, { recursive: true, force: true }));
  const fresh = path.join(base, 'fresh', 'state');
  await secureStateDir(fresh);
  t.equal(statSync(fresh).mode & 0o7777, 0o700, 'a state directory it makes is 0700, and so are the ones above it that it makes');
  t.equal(statSync(path.dirname(fresh)).mode & 0o7777, 0o700);
  const open = path.join(base, 'open');
  mkdirSync(open, { mode: 0o700 });
  chmodSync(open, 0o777);
  await t.rejects(secureStateDir(open), { code: 'EPERM', message: new RegExp(`state directory ${open} is writable by others \\(mode 777\\)`) });
  const theirs = path.join(base, 'theirs');
  mkdirSync(theirs, { mode: 0o700 });
  chownSync(theirs, NOBODY, NOBODY);
  await t.rejects(secureStateDir(theirs), { code: 'EPERM', message: /belongs to uid 65534, not to the daemon's user \(uid 0\)/ }, 'or is another user\'s');
  const shared = path.join(base, 'shared');
  mkdirSync(shared, { mode: 0o700 });
  chmodSync(shared, 0o777);
  await t.rejects(secureStateDir(path.join(shared, 'state')), { code: 'EPERM', message: /writable by others and not sticky \(mode 777\): they could replace the state directory/ }, 'or sits where others could swap it');
  const sticky = path.join(base, 'sticky');
  mkdirSync(sticky, { mode: 0o700 });
  chmodSync(sticky, 0o1777);
  await secureStateDir(path.join(sticky, 'state'));
  t.pass('a sticky world-writable parent (as /tmp) is fine: others cannot rename what is ours there');

  // The whole path, as users meet it: `vbpffs mount --state` says why and mounts nothing.
  const mnt = path.join(base, 'mnt');
  const r = await settle(run(process.execPath, [...process.execArgv, CLI, 'mount', mnt, '--sim', 'demo', '--state', open], { encoding: 'utf8' }));
  t.match(r, { code: 1, stderr: /^Error: state directory .* is writable by others \(mode 777\): chmod go-w it, or choose another --state \(EPERM\)\n$/ });
});
