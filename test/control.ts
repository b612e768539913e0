import t from 'tap';
import net from 'node:net';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { bpfError } from '../uapi';
import { controlCall, defaultTimeoutMs } from '../fs/control/client';
import { lockStateDir } from '../fs/control/lock';
import { startControlServer } from '../fs/control/server';
import { MAX_REQUEST_BYTES } from '../fs/control/protocol';
import { externalEntryFor, listMounts, readInfo, registerMount, removeInfo, secureStateDir, stateDirFor, unregisterMount, writeInfo } from '../fs/control/registry';

/** Sends raw text, returns the first reply line parsed. */
function raw(socket: string, text: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const c = net.connect(socket);
    let buf = '';
    c.setEncoding('utf8');
    c.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        c.destroy();
        resolve(JSON.parse(buf.slice(0, nl)));
      }
    });
    c.on('error', reject);
    c.write(text);
  });
}

t.test('control socket: a request is forwarded; its BpfError comes back with its errno', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'vbpffs-ctl-'));
  const sock = path.join(dir, 'control.sock');
  const calls: [string, unknown[]][] = [];
  const server = await startControlServer(sock, async (method, args) => {
    calls.push([method, args]);
    if (method === 'mapDump') throw bpfError('ENOENT', 'no map with id 9');
    if (method === 'linkShow') throw new Error('a bug');
    return { ok: true };
  });
  t.teardown(() => void server.close());
  t.equal(statSync(sock).mode & 0o777, 0o600, 'only the owner may connect');
  t.same(await controlCall(sock, 'status'), { ok: true });
  await t.rejects(controlCall(sock, 'mapDump', [9]), { code: 'ENOENT', message: 'ENOENT: no map with id 9' });
  await t.rejects(controlCall(sock, 'linkShow'), { code: 'EIO', message: /a bug/ }, 'an unexpected error is EIO, the server lives on');
  t.same(calls, [['status', []], ['mapDump', [9]], ['linkShow', []]]);
});

t.test('control socket: bad input gets EINVAL or E2BIG and never reaches the engine', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'vbpffs-ctl-'));
  const sock = path.join(dir, 'control.sock');
  let reached = 0;
  const server = await startControlServer(sock, async () => void reached++);
  t.teardown(() => void server.close());
  t.match(await raw(sock, 'not json\n'), { error: { code: 'EINVAL', message: /one JSON object per line/ } });
  t.match(await raw(sock, '{"method": 3}\n'), { error: { code: 'EINVAL' } });
  t.match(await raw(sock, '{"method": "toString", "args": []}\n'), { error: { code: 'EINVAL', message: /unknown method 'toString'/ } });
  t.match(await raw(sock, '{"method": "status", "args": [1]}\n'), { error: { code: 'EINVAL', message: /at most 0 arguments/ } });
  t.match(await raw(sock, 'x'.repeat(MAX_REQUEST_BYTES + 1)), { error: { code: 'E2BIG' } });
  t.match(await raw(sock, '{"method": "\\udc00", "args": []}\n'), { error: { code: 'EINVAL' } }, 'invalid UTF-16 in a name is just an unknown method');
  t.equal(reached, 0);
});

t.test('control client: no daemon answering is ENOENT, with the socket named', async (t) => {
  await t.rejects(controlCall('/nonexistent/control.sock', 'status'), { code: 'ENOENT', message: /no daemon answers/ });
});

t.test('registry: one directory per mount point, listed with whether its daemon lives', async (t) => {
  const root = mkdtempSync(path.join(tmpdir(), 'vbpffs-reg-'));
  const stateDir = stateDirFor('/mnt/a b/%x', root);
  t.equal(path.basename(stateDir), '%2Fmnt%2Fa b%2F%25x', 'the mount point, escaped, names the directory');
  await writeInfo({ mountPoint: '/mnt/a b/%x', pid: process.pid, startedAt: 'now', socket: path.join(stateDir, 'control.sock'), stateDir });
  await writeInfo({ mountPoint: '/mnt/dead', pid: 2 ** 22 + 12345, startedAt: 'then', socket: 'x', stateDir: stateDirFor('/mnt/dead', root) });
  const list = await listMounts(root);
  t.same(list.map((m) => [m.mountPoint, m.alive]), [['/mnt/a b/%x', true], ['/mnt/dead', false]]);
  t.equal(statSync(path.join(stateDir, 'info.json')).mode & 0o777, 0o600);
  await removeInfo(stateDir);
  t.equal(await readInfo(stateDir), undefined);
  await writeFile(path.join(stateDirFor('/mnt/dead', root), 'info.json'), '{"mountPoint": "/mnt/de');
  t.equal(await readInfo(stateDirFor('/mnt/dead', root)), undefined, 'a torn info file is as if absent');
  t.same(await listMounts(path.join(root, 'nope')), []);
});

/** A connection that stays open, with what it was sent and whether the daemon closed it. */
function idleConn(socket: string): Promise<{ sock: net.Socket; got: () => string; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(socket);
    let got = '';
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => (got += d));
    const closed = new Promise<void>((r) => sock.on('close', () => r()));
    sock.on('error', () => undefined);
    sock.once('connect', () => resolve({ sock, got: () => got, closed }));
    sock.once('error', reject);
  });
}

t.test('control socket: an idle connection is closed after the idle timeout, saying so (ETIMEDOUT)', async (t) => {
  const sock = path.join(mkdtempSync(path.join(tmpdir(), 'vbpffs-ctl-')), 'control.sock');
  const server = await startControlServer(sock, async () => 'ok', { idleMs: 300 });
  t.teardown(() => void server.close());
  const started = Date.now();
  const silent = await idleConn(sock);
  await silent.closed;
  t.ok(Date.now() - started >= 250, 'not before its time');
  t.match(JSON.parse(silent.got()), { error: { code: 'ETIMEDOUT', message: /no request in 0.3 s/ } }, 'a connection that never sent a request');
  // A request trickled a byte at a time is still idle: only a whole request stops the clock.
  const trickle = await idleConn(sock);
  const drip = setInterval(() => trickle.sock.write('{'), 50);
  await trickle.closed;
  clearInterval(drip);
  t.match(JSON.parse(trickle.got()), { error: { code: 'ETIMEDOUT' } }, 'a request trickled in slower than the timeout');
  // After a reply the clock starts again.
  const after = await idleConn(sock);
  after.sock.write('{"method": "status", "args": []}\n');
  await after.closed;
  const [reply, closing] = after.got().trim().split('\n');
  t.same(JSON.parse(reply!), { value: 'ok' });
  t.match(JSON.parse(closing!), { error: { code: 'ETIMEDOUT' } }, 'a connection idle after its reply');
});

t.test('control socket: a connection with a request under way is never closed as idle', async (t) => {
  const sock = path.join(mkdtempSync(path.join(tmpdir(), 'vbpffs-ctl-')), 'control.sock');
  const server = await startControlServer(sock, async () => {
    await sleep(900);
    return 'done';
  }, { idleMs: 200 });
  t.teardown(() => void server.close());
  t.equal(await controlCall(sock, 'progLoad', [], 5000), 'done', 'a request slower than the idle timeout is answered');
  const two = await idleConn(sock);
  two.sock.write('{"method": "status", "args": []}\n{"method": "status", "args": []}\n');
  await two.closed;
  t.same(two.got().trim().split('\n').map((l) => JSON.parse(l) as unknown).slice(0, 2), [{ value: 'done' }, { value: 'done' }], 'two requests on one connection');
});

t.test('control socket: connections are capped; an idle one makes room, and when every one is busy a new one is refused (EAGAIN)', async (t) => {
  const sock = path.join(mkdtempSync(path.join(tmpdir(), 'vbpffs-ctl-')), 'control.sock');
  let release!: () => void;
  let gate = new Promise<void>((r) => (release = r));
  const server = await startControlServer(sock, async (method) => {
    if (method === 'progLoad') await gate;
    return method;
  }, { idleMs: 60_000, maxConnections: 4 });
  t.teardown(() => void server.close());
  // Idle connections fill the cap: each newer one takes the place of the one idle longest.
  const idle = [];
  for (let i = 0; i < 10; i++) idle.push(await idleConn(sock));
  await Promise.all(idle.slice(0, 6).map((c) => c.closed));
  t.same(idle.map((c) => c.sock.destroyed), [true, true, true, true, true, true, false, false, false, false], 'the oldest idle ones are closed, the newest kept');
  t.match(JSON.parse(idle[0]!.got()), { error: { code: 'EAGAIN', retry: true, message: /to make room/ } });
  t.equal(await controlCall(sock, 'status', [], 2000), 'status', 'the CLI gets in past a cap full of idle connections');
  idle.forEach((c) => c.sock.destroy());
  await sleep(50);
  // Every connection busy: a new one is refused cleanly, with a reply, not reset.
  const busy = [0, 1, 2, 3].map(() => controlCall(sock, 'progLoad', [], 10_000));
  await sleep(200);
  const over = await idleConn(sock);
  await over.closed;
  t.match(JSON.parse(over.got()), { error: { code: 'EAGAIN', retry: true, message: /answering 4 control connections, the most it takes/ } });
  await t.rejects(controlCall(sock, 'status', [], 300), { code: 'EAGAIN', message: /the most it takes: try again/ }, 'the client retries, then gives up at its timeout with EAGAIN');
  // Retried: once room frees, a refused request goes through.
  const waiting = controlCall(sock, 'status', [], 5000);
  await sleep(300);
  release();
  t.same(await Promise.all(busy), ['progLoad', 'progLoad', 'progLoad', 'progLoad'], 'the busy requests complete');
  t.equal(await waiting, 'status', 'a client refused for the cap retries until there is room');
  gate = Promise.resolve();
});

t.test('control client: a request that timed out says it may still be carried out, and how to check', async (t) => {
  const sock = path.join(mkdtempSync(path.join(tmpdir(), 'vbpffs-ctl-')), 'control.sock');
  const applied: string[] = [];
  const server = await startControlServer(sock, async (method) => {
    await sleep(400);
    applied.push(method);
  });
  t.teardown(() => void server.close());
  const cases: [string, RegExp][] = [
    ['mapCreate', /did not answer mapCreate in 0.1 s: the request was sent and may still be carried out; check with vbpffs map show, or ls the pin path before trying again/],
    ['cgroupAttach', /may still be carried out; check with vbpffs cgroup show CGROUP/],
    ['iterPin', /may still be carried out; check with ls the pin path/],
    ['shutdown', /may still be carried out; check with vbpffs status/],
    ['progShow', /did not answer progShow in 0.1 s \(a read: it changed nothing\)/],
  ];
  for (const [method, message] of cases) await t.rejects(controlCall(sock, method, [], 100), { code: 'ETIMEDOUT', message }, method);
  await sleep(600);
  t.same(applied.sort(), ['cgroupAttach', 'iterPin', 'mapCreate', 'progShow', 'shutdown'], 'and every one of them was carried out after all');
});

t.test('control client: VBPFFS_CONTROL_TIMEOUT sets how long it waits', async (t) => {
  t.equal(defaultTimeoutMs({}), 30_000);
  t.equal(defaultTimeoutMs({ VBPFFS_CONTROL_TIMEOUT: '2.5' }), 2500);
  for (const bad of ['', '0', '-1', 'soon']) t.equal(defaultTimeoutMs({ VBPFFS_CONTROL_TIMEOUT: bad }), 30_000, `'${bad}' is ignored`);
});

t.test('registry: a mount with its state elsewhere (--state) is recorded under the root, listed once, and removed only by its own daemon', async (t) => {
  const base = mkdtempSync(path.join(tmpdir(), 'vbpffs-reg-'));
  const root = path.join(base, 'root');
  const stateDir = path.join(base, 'elsewhere', 'st');
  await secureStateDir(stateDir);
  const info = { mountPoint: '/mnt/ext', pid: process.pid, startedAt: 'now', socket: path.join(stateDir, 'control.sock'), stateDir };
  await registerMount(info, root);
  t.equal(statSync(externalEntryFor('/mnt/ext', root)).mode & 0o777, 0o600);
  t.same((await listMounts(root)).map((m) => [m.mountPoint, m.stateDir, m.alive]), [['/mnt/ext', stateDir, true]], 'found under the root');
  // Another live daemon of the same mount point keeps its entry.
  const other = { ...info, pid: process.ppid, stateDir: path.join(base, 'other') };
  await secureStateDir(other.stateDir);
  await t.rejects(registerMount(other, root), { code: 'EBUSY', message: `/mnt/ext is already mounted by vbpffs (pid ${process.pid}); vbpffs umount /mnt/ext first` });
  await unregisterMount(other, root);
  t.same((await listMounts(root)).map((m) => m.pid), [process.pid], 'a clean-up by another pid removes nothing of this one');
  // A state directory directly under the root is found by its info file, and listed once.
  const under = { ...info, mountPoint: '/mnt/under', stateDir: path.join(root, 'state') };
  await secureStateDir(under.stateDir);
  await registerMount(under, root);
  t.same((await listMounts(root)).map((m) => m.mountPoint), ['/mnt/ext', '/mnt/under']);
  await unregisterMount(info, root);
  await unregisterMount(under, root);
  t.same(await listMounts(root), [], 'each removed by its own daemon');
  // A dead --state mount's entry is replaced by the next mount of that mount point, wherever its state.
  await writeFile(externalEntryFor('/mnt/ext', root), JSON.stringify({ ...info, pid: 2 ** 22 + 12345 }));
  await registerMount({ ...info, stateDir: stateDirFor('/mnt/ext', root) }, root);
  t.same((await listMounts(root)).map((m) => [m.pid, m.stateDir]), [[process.pid, stateDirFor('/mnt/ext', root)]], 'a dead entry goes when its mount point is mounted again');
});

t.test('registry: state files and directories are never followed through a symlink (ELOOP)', async (t) => {
  const base = mkdtempSync(path.join(tmpdir(), 'vbpffs-reg-'));
  const real = path.join(base, 'real');
  mkdirSync(real, { mode: 0o700 });
  symlinkSync(real, path.join(base, 'link'));
  await t.rejects(secureStateDir(path.join(base, 'link')), { code: 'ELOOP', message: new RegExp(`state directory ${base}/link: ${base}/link is a symlink \\(to ${real}\\)`) }, 'the state directory itself');
  await t.rejects(secureStateDir(path.join(base, 'link', 'st')), { code: 'ELOOP', message: new RegExp(`${base}/link is a symlink`) }, 'a directory above it');
  t.notOk(existsSync(path.join(real, 'st')), 'nothing made through it');
  const st = path.join(base, 'st');
  await secureStateDir(st);
  const outside = path.join(base, 'outside');
  await writeFile(outside, 'precious\n');
  for (const name of ['journal.jsonl', 'daemon.log', 'info.json', 'lock']) {
    symlinkSync(outside, path.join(st, name));
    await t.rejects(secureStateDir(st), { code: 'ELOOP', message: new RegExp(`${st}/${name} is a symlink \\(to ${outside}\\)`) }, `a symlinked ${name} in it`);
    if (name === 'info.json') await t.rejects(readInfo(st), { code: 'ELOOP' }, 'info.json is read with O_NOFOLLOW');
    if (name === 'lock') await t.rejects(lockStateDir(st, { pid: process.pid, mountPoint: '/m' }), { code: 'ELOOP' }, 'the lock file is read with O_NOFOLLOW');
    rmSync(path.join(st, name));
  }
  symlinkSync(outside, path.join(st, 'info.json'));
  await writeInfo({ mountPoint: '/m', pid: process.pid, startedAt: 'now', socket: 'x', stateDir: st });
  t.equal(readFileSync(outside, 'utf8'), 'precious\n', 'writing the info file replaces a symlink, never writes through it');
  t.notOk(lstatSync(path.join(st, 'info.json')).isSymbolicLink());
  const root = path.join(base, 'root');
  mkdirSync(root, { mode: 0o700 });
  symlinkSync(st, path.join(root, '%2Fm'));
  await t.rejects(listMounts(root), { code: 'ELOOP', message: /the state root .*%2Fm is a symlink/ }, 'a symlink in the registry');
});

t.test('state lock: one daemon per state directory, the refusal naming the holder (pid, mount point)', async (t) => {
  const st = path.join(mkdtempSync(path.join(tmpdir(), 'vbpffs-lock-')), 'st');
  await secureStateDir(st);
  const first = await lockStateDir(st, { pid: 4242, mountPoint: '/mnt/first' });
  t.equal(statSync(path.join(st, 'lock')).mode & 0o777, 0o600, 'its token is private');
  t.match(readFileSync(path.join(st, 'lock'), 'utf8'), /^[0-9a-f]{32}\n$/);
  await t.rejects(lockStateDir(st, { pid: 1, mountPoint: '/mnt/second' }), {
    code: 'EBUSY',
    message: `state directory ${st} is in use by the vbpffs daemon pid 4242 mounted at /mnt/first: one daemon per state directory; vbpffs umount /mnt/first first, or choose another --state`,
  });
  await t.rejects(lockStateDir(st, { pid: 1, mountPoint: '/mnt/first' }), { code: 'EBUSY', message: '/mnt/first is already mounted by vbpffs (pid 4242); vbpffs umount /mnt/first first' }, 'the same mount point');
  await first.release();
  const again = await lockStateDir(st, { pid: 1, mountPoint: '/mnt/second' });
  t.pass('free once released');
  // Taken at the same time by many: exactly one wins, whatever the order.
  await again.release();
  const rivals = await Promise.allSettled([1, 2, 3, 4, 5, 6].map((i) => lockStateDir(st, { pid: i, mountPoint: `/mnt/${i}` })));
  t.equal(rivals.filter((r) => r.status === 'fulfilled').length, 1, 'one of six racing holders');
  for (const r of rivals) if (r.status === 'fulfilled') await r.value.release();
  // A fresh directory raced for its token: every racer reads the same one.
  const fresh = path.join(path.dirname(st), 'fresh');
  await secureStateDir(fresh);
  const racers = await Promise.allSettled([1, 2, 3, 4].map((i) => lockStateDir(fresh, { pid: i, mountPoint: `/mnt/${i}` })));
  t.equal(racers.filter((r) => r.status === 'fulfilled').length, 1, 'one holder, though all made a token at once');
  for (const r of racers) if (r.status === 'fulfilled') await r.value.release();
  t.same(readdirSync(fresh), ['lock'], 'and no token file left behind');
  // A holder that does not answer (stopped) is named from its info file.
  await writeFile(path.join(st, 'lock'), `${'0'.repeat(32)}\n`);
  const squat = net.createServer(() => undefined);
  await new Promise<void>((r) => squat.listen(`\0vbpffs-state-lock/${'0'.repeat(32)}`, r));
  t.teardown(() => void squat.close());
  await t.rejects(lockStateDir(st, { pid: 1, mountPoint: '/mnt/x' }), { code: 'EBUSY', message: /is in use by another vbpffs daemon, which does not say which/ });
  await writeInfo({ mountPoint: '/mnt/quiet', pid: 777, startedAt: 'now', socket: 'x', stateDir: st });
  await t.rejects(lockStateDir(st, { pid: 1, mountPoint: '/mnt/x' }), { code: 'EBUSY', message: /in use by the vbpffs daemon pid 777 mounted at \/mnt\/quiet, which does not answer \(stopped\?\)/ });
  await writeFile(path.join(st, 'lock'), 'garbage');
  await t.rejects(lockStateDir(st, { pid: 1, mountPoint: '/mnt/x' }), { code: 'EIO', message: /lock is damaged/ });
});
