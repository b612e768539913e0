/**
 * A daemon's state directory, with real `vbpffs mount` daemons on real FUSE mounts (from the
 * transpiled build, harness/build-js.ts, as separate processes): one daemon per state directory,
 * whatever the race; `--state` mounts found by every command; no symlink followed in the state;
 * control connections that time out and are capped; a timed-out command that says it may still be
 * carried out. In-process starts at the end cover the same paths of fs/daemon.ts for coverage.
 */
import { execFile } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import t, { type Test } from 'tap';
import { examplePath } from '../progs/examples';
import { isMountPoint, startDaemon } from '../fs/daemon';
import { externalEntryFor, listMounts, stateDirFor } from '../fs/control/registry';
import { buildJs } from './harness/build-js';
import { start, type Exit, type Running } from './harness/daemon-proc';
import { fuseSkipReason, mountVbpffs } from './harness/mount';

const run = promisify(execFile);
t.setTimeout(600_000);

interface Env {
  base: string;
  root: string;
  /** `vbpffs ARGS` as its own process, against this test's state root. */
  cli(...args: string[]): Promise<Exit>;
  /** `vbpffs mount MNT --sim demo ARGS --foreground`, as its own process. */
  daemon(mnt: string, ...args: string[]): Daemon;
}

interface Daemon {
  readonly run: Running;
  readonly pid: number;
  /** Resolves once mounted ('mounted'), or with how it exited. */
  readonly settled: Promise<'mounted' | Exit>;
}

async function setup(t: Test, build: string): Promise<Env> {
  const base = mkdtempSync(path.join(tmpdir(), 'vbpffs-dstate-'));
  const root = path.join(base, 'root');
  const cliJs = path.join(build, 'dist', 'fs', 'cli.js');
  const daemons: Running[] = [];
  const mounts: string[] = [];
  t.teardown(async () => {
    for (const d of daemons) if (d.child.exitCode === null && d.child.signalCode === null) d.child.kill('SIGKILL');
    await Promise.all(daemons.map((d) => d.done));
    for (const m of mounts) if (await isMountPoint(m)) await run('fusermount', ['-uz', m]).catch(() => undefined);
  });
  const cli = (...args: string[]): Promise<Exit> => start(process.execPath, [cliJs, ...args], { VBPFFS_STATE_ROOT: root }).done;
  const daemon = (mnt: string, ...args: string[]): Daemon => {
    mounts.push(mnt);
    const r = start(process.execPath, [cliJs, 'mount', mnt, '--sim', 'demo', ...args, '--foreground'], { VBPFFS_STATE_ROOT: root });
    daemons.push(r);
    let out = '';
    r.child.stdout!.on('data', (s: string) => (out += s));
    const settled = (async (): Promise<'mounted' | Exit> => {
      for (;;) {
        if (out.startsWith('vbpffs mounted at') && (await isMountPoint(mnt))) return 'mounted';
        const e = await Promise.race([r.done, sleep(25).then(() => null)]);
        if (e !== null) return e;
      }
    })();
    return { run: r, pid: r.child.pid!, settled };
  };
  return { base, root, cli, daemon };
}

const json = <T>(e: Exit): T => JSON.parse(e.stdout) as T;
const running = async (env: Env): Promise<{ mountPoint: string; pid: number; state: string }[]> =>
  json<{ mountPoint: string; pid: number; state: string }[]>(await env.cli('-j', 'status')).filter((m) => m.state === 'running');

t.test('one daemon per state directory', async (t) => {
  const skip = await fuseSkipReason();
  const build = skip ? '' : buildJs();

  t.test('a second daemon on a state directory in use is refused, naming the holder (pid, mount point), and the first keeps its socket and entry', { skip }, async (t) => {
    const env = await setup(t, build);
    const [m1, m2, st] = ['m1', 'm2', 'st'].map((n) => path.join(env.base, n)) as [string, string, string];
    const a = env.daemon(m1, '--state', st);
    t.equal(await a.settled, 'mounted');
    const refused = `Error: state directory ${st} is in use by the vbpffs daemon pid ${a.pid} mounted at ${m1}: one daemon per state directory; vbpffs umount ${m1} first, or choose another --state (EBUSY)\n`;
    const fg = await env.daemon(m2, '--state', st).settled;
    t.match(fg, { code: 1, stderr: refused }, 'in the foreground');
    const bg = await env.cli('mount', m2, '--sim', 'demo', '--state', st, '--timeout', '60');
    t.match(bg, { code: 1, stderr: refused }, 'in the background');
    t.notOk(await isMountPoint(m2), 'nothing mounted');
    t.ok(lstatSync(path.join(st, 'control.sock')).isSocket(), "the first daemon's socket is still there");
    t.same((await running(env)).map((m) => [m.mountPoint, m.pid]), [[m1, a.pid]], 'and status finds it');
    t.equal((await env.cli('umount', m1)).code, 0);
    t.notOk(await isMountPoint(m1));
  });

  t.test('of daemons started at once on one state directory, exactly one mounts; the others are refused naming it', { skip }, async (t) => {
    const env = await setup(t, build);
    const st = path.join(env.base, 'st');
    for (let round = 1; round <= 2; round++) {
      const mnts = [1, 2, 3].map((i) => path.join(env.base, `r${round}-${i}`));
      const ds = mnts.map((m) => env.daemon(m, '--state', st));
      const settled = await Promise.all(ds.map((d) => d.settled));
      const won = settled.flatMap((s, i) => (s === 'mounted' ? [i] : []));
      t.equal(won.length, 1, `round ${round}: one of three mounted (${won.map((i) => mnts[i]).join(', ')})`);
      const w = won[0] ?? 0;
      settled.forEach((s, i) => {
        if (i !== w) t.match(s, { code: 1, stderr: new RegExp(`is in use by the vbpffs daemon pid ${ds[w]!.pid} mounted at ${mnts[w]}.* \\(EBUSY\\)\\n$`) }, `round ${round}: the loser names the winner`);
      });
      t.same((await running(env)).map((m) => m.pid), [ds[w]!.pid], `round ${round}: status finds the winner, and only it`);
      for (const m of mnts) if (m !== mnts[w]) t.notOk(await isMountPoint(m), `round ${round}: ${path.basename(m)} not mounted`);
      t.equal((await env.cli('umount', mnts[w]!)).code, 0, `round ${round}: umount finds it`);
      // A daemon that wrongly mounted too is not left running into the next round.
      for (const d of ds) if (d.run.child.exitCode === null && d.run.child.signalCode === null) d.run.child.kill('SIGKILL');
      for (const d of ds) await d.run.done;
      for (const m of mnts) if (await isMountPoint(m)) await run('fusermount', ['-uz', m]).catch(() => undefined);
    }
  });

  t.test("a mount's clean-up never deletes another daemon's socket or registry entry (two background mounts at once)", { skip }, async (t) => {
    const env = await setup(t, build);
    const st = path.join(env.base, 'st');
    for (let round = 1; round <= 2; round++) {
      const mnts = [1, 2].map((i) => path.join(env.base, `r${round}-${i}`));
      const rs = await Promise.all(mnts.map((m) => env.cli('mount', m, '--sim', 'demo', '--state', st, '--timeout', '20')));
      const won = rs.flatMap((r, i) => (r.code === 0 ? [i] : []));
      t.equal(won.length, 1, `round ${round}: one mount succeeded: ${rs.map((r) => r.stderr.trim()).join(' | ')}`);
      const w = won[0] ?? 0;
      t.match(rs[1 - w], { code: 1, stderr: /\(EBUSY\)\n$/ });
      t.ok(lstatSync(path.join(st, 'control.sock')).isSocket(), `round ${round}: the winner's socket is there`);
      t.same((await running(env)).map((m) => m.mountPoint), [mnts[w]], `round ${round}: status finds the winner`);
      t.equal((await env.cli('umount', mnts[w]!)).code, 0, `round ${round}: umount finds it`);
      for (const m of mnts) t.notOk(await isMountPoint(m), `round ${round}: nothing left mounted at ${path.basename(m)}`);
    }
  });

  t.test('a daemon killed with -9 leaves no lock behind: the next one on its state directory mounts at once', { skip }, async (t) => {
    const env = await setup(t, build);
    const st = path.join(env.base, 'st');
    for (let i = 1; i <= 3; i++) {
      const m = path.join(env.base, `k${i}`);
      const d = env.daemon(m, '--state', st);
      t.equal(await d.settled, 'mounted', `daemon ${i} mounts after its predecessor's kill -9`);
      d.run.child.kill('SIGKILL');
      await d.run.done;
      for (let j = 0; j < 200 && (await isMountPoint(m)); j++) await sleep(25);
    }
  });
});

t.test('a --state mount is found by status, umount and every command', async (t) => {
  const skip = await fuseSkipReason();
  t.test('(mounted)', { skip }, async (t) => {
    const env = await setup(t, buildJs());
    const mnt = path.join(env.base, 'mnt');
    const st = path.join(env.base, 'elsewhere', 'st');
    const up = await env.cli('mount', mnt, '--sim', 'demo', '--state', st, '--timeout', '60');
    t.equal(up.code, 0, up.stderr);
    const [s] = await running(env);
    t.match(s, { mountPoint: mnt, state: 'running' }, 'status lists it');
    t.equal((await env.cli('iter', 'pin', examplePath('procs'), path.join(mnt, 'procs'))).code, 0, 'a command naming a path in it');
    t.equal((await run('cat', [path.join(mnt, 'system.slice', 'postgres.service', 'procs')])).stdout, 'procs     2\nthreads   2\n');
    t.match(await env.cli('-j', 'prog', 'show'), { code: 0, stdout: /"name":"procs"/ }, 'a command naming no path (the only mount)');
    t.equal((await env.cli('map', 'create', path.join(mnt, 'm'), 'type', 'hash', 'key', '4', 'value', '4', 'entries', '4', 'name', 'm', 'mount', mnt)).code, 0, "a command naming it with 'mount'");
    // Killed: status says so, and the next mount on the same state recovers the pins.
    process.kill(s!.pid, 'SIGKILL');
    for (let i = 0; i < 200 && (await isMountPoint(mnt)); i++) await sleep(25);
    t.match(json<{ state: string }[]>(await env.cli('-j', 'status')), [{ mountPoint: mnt, state: /^dead/ }], 'a killed one is listed dead');
    t.equal((await env.cli('mount', mnt, '--sim', 'demo', '--state', st, '--timeout', '60')).code, 0);
    t.equal((await run('cat', [path.join(mnt, 'system.slice', 'postgres.service', 'procs')])).stdout, 'procs     2\nthreads   2\n', 'its journal restored');
    t.equal((await running(env)).length, 1, 'listed once');
    const down = await env.cli('umount', mnt);
    t.same([down.code, down.stdout], [0, `vbpffs unmounted ${mnt}\n`], 'umount finds it');
    t.notOk(await isMountPoint(mnt));
    t.equal((await env.cli('status')).stdout, 'no vbpffs mounts\n', 'its entry went with it');
    t.notOk(existsSync(externalEntryFor(mnt, env.root)));
  });
});

t.test('state files are not followed through symlinks: a symlink on the state path or in it is refused (ELOOP)', async (t) => {
  const skip = await fuseSkipReason();
  t.test('(mounted)', { skip }, async (t) => {
    const env = await setup(t, buildJs());
    const mnt = path.join(env.base, 'mnt');
    const real = path.join(env.base, 'real');
    mkdirSync(real, { mode: 0o700 });
    const link = path.join(env.base, 'link');
    symlinkSync(real, link);
    t.match(await env.daemon(mnt, '--state', link).settled, { code: 1, stderr: `Error: state directory ${link}: ${link} is a symlink (to ${real}); vbpffs follows none in its state: name the real directory, or remove it (ELOOP)\n` }, 'a symlinked state directory');
    t.match(await env.cli('mount', mnt, '--sim', 'demo', '--state', path.join(link, 'st'), '--timeout', '60'), { code: 1, stderr: new RegExp(`${link} is a symlink .*\\(ELOOP\\)\\n$`) }, 'a symlink above it (background mount)');
    t.same(readdirSync(real), [], 'nothing made through the symlinks');

    const outside = path.join(env.base, 'outside');
    for (const file of ['journal.jsonl', 'daemon.log', 'control.sock']) {
      const st = path.join(env.base, `st-${file}`);
      mkdirSync(st, { mode: 0o700 });
      writeFileSync(outside, 'precious\n');
      symlinkSync(outside, path.join(st, file));
      const r = file === 'daemon.log' ? await env.cli('mount', mnt, '--sim', 'demo', '--state', st, '--timeout', '60') : await env.daemon(mnt, '--state', st).settled;
      if (r === 'mounted' || r.code === 0) {
        await run('mkdir', [path.join(mnt, 'x')]).catch(() => undefined); // a journalled change, through the symlink
        await env.cli('umount', mnt);
      }
      t.match(r, { code: 1, stderr: new RegExp(`^Error: state directory ${st}: ${st}/${file} is a symlink \\(to ${outside}\\).* \\(ELOOP\\)\\n$`) }, `a symlinked ${file}`);
      t.equal(readFileSync(outside, 'utf8'), 'precious\n', `nothing written through the symlinked ${file}`);
      t.notOk(await isMountPoint(mnt));
    }
  });
});

t.test('control connections time out when idle and are capped: thousands of idle ones neither use up the daemon\'s descriptors nor lock out the CLI', async (t) => {
  const skip = await fuseSkipReason();
  t.test('(mounted)', { skip }, async (t) => {
    const env = await setup(t, buildJs());
    const mnt = path.join(env.base, 'mnt');
    const d = env.daemon(mnt);
    t.equal(await d.settled, 'mounted');
    const fds = (): number => readdirSync(`/proc/${d.pid}/fd`).length;
    const before = fds();
    const socket = path.join(stateDirFor(mnt, env.root), 'control.sock');
    const conns: net.Socket[] = [];
    let closed = 0;
    t.teardown(() => conns.forEach((c) => c.destroy()));
    for (let i = 0; i < 2000; i++) {
      const c = net.connect(socket);
      c.on('error', () => undefined);
      c.on('close', () => closed++);
      c.resume(); // reads, so that it sees the daemon close it
      conns.push(c);
      if (i % 100 === 99) await sleep(10);
    }
    await Promise.all(conns.map((c) => new Promise<void>((r) => (c.connecting ? c.once('connect', () => r()).once('close', () => r()) : r()))));
    await sleep(500);
    const during = fds();
    t.ok(during <= before + 64 + 16, `the daemon holds ${during} descriptors with 2,000 connections made (${before} before): capped`);
    const started = Date.now();
    const status = await env.cli('-j', 'status');
    t.equal(status.code, 0, `the CLI still gets in (${Date.now() - started} ms)`);
    // Idle ones are closed by the daemon after 10 s.
    for (const deadline = Date.now() + 20_000; closed < conns.length && Date.now() < deadline; ) await sleep(200);
    t.equal(closed, conns.length, 'every idle connection closed by the daemon');
    t.ok(fds() <= before + 4, 'and their descriptors freed');
    t.equal((await env.cli('umount', mnt)).code, 0);
  });
});

t.test('a command that timed out says it may still be carried out, and how to check; and it is carried out', async (t) => {
  const skip = await fuseSkipReason();
  t.test('(mounted)', { skip }, async (t) => {
    const env = await setup(t, buildJs());
    const mnt = path.join(env.base, 'mnt');
    const d = env.daemon(mnt);
    t.equal(await d.settled, 'mounted');
    process.kill(d.pid, 'SIGSTOP');
    t.teardown(() => {
      try {
        process.kill(d.pid, 'SIGCONT');
      } catch {
        // Gone already.
      }
    });
    const cliJs = path.join(buildJs(), 'dist', 'fs', 'cli.js');
    const cmd = start(process.execPath, [cliJs, 'map', 'create', path.join(mnt, 'm'), 'type', 'hash', 'key', '4', 'value', '4', 'entries', '4', 'name', 'late'], {
      VBPFFS_STATE_ROOT: env.root,
      VBPFFS_CONTROL_TIMEOUT: '1',
    });
    // A CLI that does not time out would wait for the stopped daemon for good: it is let go after 8 s.
    const letGo = setTimeout(() => process.kill(d.pid, 'SIGCONT'), 8000);
    const r = await cmd.done;
    clearTimeout(letGo);
    t.match(r, { code: 1, stderr: /^Error: the daemon at .*control\.sock did not answer mapCreate in 1 s: the request was sent and may still be carried out; check with vbpffs map show, or ls the pin path before trying again \(ETIMEDOUT\)\n$/ });
    process.kill(d.pid, 'SIGCONT');
    let shown = '';
    for (const deadline = Date.now() + 15_000; !shown.includes('late') && Date.now() < deadline; await sleep(200)) shown = (await env.cli('map', 'show')).stdout;
    t.match(shown, /name late/, 'the map was made after all, as the error said it might be');
    t.equal((await env.cli('umount', mnt)).code, 0);
  });
});

t.test('in-process: the state lock, --state entries and their clean-up in fs/daemon.ts', async (t) => {
  const skip = await fuseSkipReason();
  t.test('(mounted)', { skip }, async (t) => {
    const m = await mountVbpffs(t, { sim: 'demo' });
    const stateDir = stateDirFor(m.mnt, m.stateRoot);
    const other = path.join(path.dirname(m.mnt), 'other');
    await t.rejects(startDaemon({ mountPoint: other, sim: 'demo', state: stateDir, stateRoot: m.stateRoot }), { code: 'EBUSY', message: new RegExp(`state directory .* is in use by the vbpffs daemon pid ${process.pid} mounted at ${m.mnt}`) });
    await t.rejects(startDaemon({ mountPoint: m.mnt, sim: 'demo', state: path.join(path.dirname(m.mnt), 'st2'), stateRoot: m.stateRoot }), { code: 'EBUSY', message: `${m.mnt} is already mounted by vbpffs (pid ${process.pid}); vbpffs umount ${m.mnt} first` }, 'its mount point under another state directory');
    t.notOk(await isMountPoint(other));
    // A --state mount: recorded under the root while it runs, removed when it stops.
    const ext = await startDaemon({ mountPoint: other, sim: 'demo', state: path.join(path.dirname(m.mnt), 'ext-state'), stateRoot: m.stateRoot });
    t.same((await listMounts(m.stateRoot)).map((x) => x.mountPoint).sort(), [m.mnt, other].sort());
    await ext.stop();
    t.same((await listMounts(m.stateRoot)).map((x) => x.mountPoint), [m.mnt]);
    // A registry that cannot be written: the mount is undone and the lock freed.
    const fileRoot = path.join(path.dirname(m.mnt), 'not-a-dir');
    writeFileSync(fileRoot, '');
    const st3 = path.join(path.dirname(m.mnt), 'st3');
    await t.rejects(startDaemon({ mountPoint: other, sim: 'demo', state: st3, stateRoot: fileRoot }), { code: 'ENOTDIR' });
    t.notOk(await isMountPoint(other), 'unmounted again');
    const again = await startDaemon({ mountPoint: other, sim: 'demo', state: st3, stateRoot: m.stateRoot });
    t.pass('its state directory free again');
    await again.stop();
  });
});
