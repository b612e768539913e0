/**
 * An engine thread that dies is restarted from the journal, with the mount kept (issue 14, class 3).
 *
 * The engine is killed for real: its heap limit is lowered (VBPFFS_ENGINE_HEAP_MB, the one knob for
 * it) and it is sent a request whose work outgrows it, `prog load` of a 24 MB object file (the
 * TypeScript AST of a file is many times its size). The file is refused by nothing before it is
 * parsed, and is not journalled (it never passed the verifier), so the restarted engine replays
 * only what the user made. Everything after is looked at with real processes through the mount.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import t, { type Test } from 'tap';
import { examplePath } from '../progs/examples';
import { controlCall } from '../fs/control/client';
import { EngineClient, MAX_CRASHES } from '../fs/engine/client';
import { fuseSkipReason, mountVbpffs } from './harness/mount';

const run = promisify(execFile);
// Each engine start compiles its sources again through the TypeScript loader: 5-20 s on a loaded host.
t.setTimeout(600_000);

/** The heap limit the tests give the engine: room to start under the loader, none for a big parse. */
const HEAP_MB = '160';

/** An object file far past what the engine's heap can parse. */
function hugeObjectFile(dir: string): string {
  const file = path.join(dir, 'huge.ts');
  const lines: string[] = [];
  for (let i = 0, size = 0; size < 24 << 20; i++) {
    const line = `export const value_${i} = ${i};\n`;
    lines.push(line);
    size += line.length;
  }
  writeFileSync(file, lines.join(''));
  return file;
}

/** Waits until cond() holds, polling; fails the test after ms. */
async function until(t: Test, what: string, cond: () => boolean | Promise<boolean>, ms = 180_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) {
      t.fail(`timed out waiting for ${what}`);
      return;
    }
    await sleep(100);
  }
}

/** Collects what the engine client logs to stderr (a background daemon's log file). */
function captureStderr(t: Test): () => string {
  let text = '';
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((chunk: string | Uint8Array, ...rest: never[]) => {
    text += String(chunk);
    return write(chunk, ...rest);
  }) as typeof process.stderr.write;
  t.teardown(() => void (process.stderr.write = write));
  return () => text;
}

t.test('an engine thread that dies is restarted from the journal, with the mount kept', async (t) => {
  const skip = await fuseSkipReason();
  t.test('(mounted)', { skip }, async (t) => {
    process.env.VBPFFS_ENGINE_HEAP_MB = HEAP_MB;
    t.teardown(() => void delete process.env.VBPFFS_ENGINE_HEAP_MB);
    const log = captureStderr(t);
    const m = await mountVbpffs(t, { sim: 'demo' });
    const call = <T>(method: string, ...args: unknown[]): Promise<T> => controlCall<T>(m.daemon.socket, method, args);
    const view = m.p('system.slice', 'postgres.service', 'procs');

    // What the journal must bring back: a directory, a view, a map with a value in it.
    await run('mkdir', [m.p('kept')]);
    await call('iterPin', examplePath('procs'), '/procs', {});
    const { id: mapId } = await call<{ id: number }>('mapCreate', '/kept/counts', { type: 'hash', key: 4, value: 8, entries: 16, name: 'counts' });
    await call('mapUpdate', { pinned: '/kept/counts' }, { hex: '07000000' }, { hex: '2a00000000000000' });
    const before = await run('cat', [view]);

    // A reader holding the view open across the restart: its file is the old engine's.
    const holder = spawn('sh', ['-c', 'exec 3<"$0"; echo opened; read go; cat <&3', view], { stdio: ['pipe', 'pipe', 'pipe'] });
    let holderOut = '';
    let holderErr = '';
    holder.stdout.setEncoding('utf8').on('data', (d: string) => (holderOut += d));
    holder.stderr.setEncoding('utf8').on('data', (d: string) => (holderErr += d));
    const holderDone = new Promise<number | null>((resolve) => holder.on('close', resolve));
    await until(t, 'the holder to open the view', () => holderOut.includes('opened'));

    const dir = mkdtempSync(path.join(tmpdir(), 'vbpffs-restart-'));
    const killed = await call('progLoad', hugeObjectFile(dir), '/huge').then(
      () => null,
      (e: Error) => e,
    );
    t.match(killed, { code: 'EIO', message: /the engine died \(.*memory limit.*\) before answering; it is being restarted/ }, 'the request that killed it fails with EIO');

    // While it restarts, requests wait for it rather than fail: ls, started now, lists the new engine's tree.
    const t0 = Date.now();
    const during = await run('ls', [m.mnt]);
    t.comment(`ls made during the restart answered in ${Date.now() - t0} ms`);
    t.same(during.stdout.split('\n').filter(Boolean).sort(), ['kept', 'procs', 'system.slice', 'user.slice'].sort());
    t.equal(m.daemon.engine.restarts, 1, 'one restart');

    t.equal((await run('cat', [view])).stdout, before.stdout, 'the view is back and reads as before');
    t.same((await run('ls', [m.p('kept')])).stdout, 'counts\n');
    t.match(await call('mapLookup', { pinned: '/kept/counts' }, { hex: '07000000' }), { value: ['0x2a', '0x00', '0x00', '0x00', '0x00', '0x00', '0x00', '0x00'] }, 'the map and its value are back');
    t.match(await call('mapShow'), [{ id: mapId, name: 'counts' }], 'with the id it had');
    await t.rejects(run('ls', [m.p('huge')]), 'the load that killed the engine made nothing');
    const status = await call<{ engine: { restarts: number; recentCrashes: number; lastCrash: { reason: string }; gaveUp: boolean }; journal: { failed: string[] } }>('status');
    t.match(status.engine, { restarts: 1, recentCrashes: 1, lastCrash: { reason: /memory limit/ }, gaveUp: false });
    t.same(status.journal.failed, []);
    t.match(log(), /vbpffs: the engine thread died \(.*memory limit.*\); restarting it from the journal in 200 ms/, 'the death is logged');
    t.match(log(), /vbpffs: the engine is back after \d+ ms, 4 journal records replayed, 0 failed/, 'and the restart');

    // The file opened before the restart: the new engine never opened it.
    holder.stdin.end('go\n');
    t.not(await holderDone, 0, 'reading a file opened before the restart fails');
    t.match(holderErr, /Input\/output error/);
    t.equal((await run('cat', [view])).stdout, before.stdout, 'and a new open reads');
  });
});

t.test('an engine that keeps dying is restarted with back-off, then given up', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'vbpffs-restart-'));
  const huge = hugeObjectFile(dir);
  const lines: string[] = [];
  const client = await EngineClient.start({ sim: 'demo' }, { heapMb: Number(HEAP_MB), log: (l) => lines.push(l), maxCrashes: 1 });
  t.teardown(() => client.stop());
  const first = await client.status();
  await t.rejects(client.call('progLoad', huge, '/huge'), { code: 'EIO' });
  const second = await client.status();
  t.ok(second.startedAt > first.startedAt, 'a call made during the restart waits for it, and the new engine answers');
  t.match(second.engine, { restarts: 1, recentCrashes: 1, gaveUp: false });

  await t.rejects(client.call('progLoad', huge, '/huge'), { code: 'EIO' }, 'killed again within the window');
  await t.rejects(client.call('readdir', '/'), { code: 'EIO', message: /the engine died 2 times within 60 s .*gave up restarting it: unmount and mount again/ });
  t.match(client.threadStatus(), { restarts: 1, recentCrashes: 2, gaveUp: true });
  t.match(lines, [/restarting it from the journal in 200 ms \(death 1 of at most 1/, /the engine is back/, /gave up/]);
  t.equal(MAX_CRASHES, 5, 'the daemon allows five deaths a minute');
});

t.test('stop() during a restart ends the new engine too', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'vbpffs-restart-'));
  const lines: string[] = [];
  const client = await EngineClient.start({ sim: 'demo' }, { heapMb: Number(HEAP_MB), log: (l) => lines.push(l) });
  await t.rejects(client.call('progLoad', hugeObjectFile(dir), '/huge'), { code: 'EIO' });
  const waiting = t.rejects(client.call('readdir', '/'), { code: 'EIO', message: /the engine is stopped/ }, 'a call waiting for the restart fails');
  await sleep(500); // past the back-off: the new engine is starting
  await client.stop();
  await waiting;
  await t.rejects(client.call('readdir', '/'), { code: 'EIO', message: /the engine is stopped/ });
  t.equal(client.restarts, 0, 'the engine started meanwhile was not taken into service');
  t.same(lines.length, 1);
});

t.test('an engine that cannot start again is retried with back-off, then given up', async (t) => {
  // The host's cgroup2 mounted again at a directory of the test's: the engine mirrors it, and once it
  // is unmounted no new engine can start (its source is gone), as after a host's cgroup2 went away.
  const dir = mkdtempSync(path.join(tmpdir(), 'vbpffs-restart-'));
  const cgroupRoot = path.join(dir, 'cgroup');
  await run('mkdir', [cgroupRoot]);
  const mounted = await run('mount', ['-t', 'cgroup2', 'none', cgroupRoot]).then(
    () => true,
    () => false,
  );
  t.test('(cgroup2 mounted)', { skip: mounted ? false : 'cannot mount cgroup2 here' }, async (t) => {
    let unmounted = false;
    t.teardown(async () => void (unmounted || (await run('umount', [cgroupRoot]))));
    const lines: string[] = [];
    const client = await EngineClient.start({ cgroupRoot, reconcileIntervalMs: 0 }, { heapMb: Number(HEAP_MB), log: (l) => lines.push(l), maxCrashes: 2 });
    t.teardown(() => client.stop());
    await run('umount', [cgroupRoot]);
    unmounted = true;
    await t.rejects(client.call('progLoad', hugeObjectFile(dir), '/huge'), { code: 'EIO' });
    // Each restart starts an engine thread through the TypeScript loader, seconds apiece on a loaded
    // machine: a call may outwait its 30 s (EAGAIN, "try again") before the third death gives up.
    let answer: unknown;
    for (let i = 0; i < 6; i++) {
      answer = await client.call('readdir', '/').then(() => null, (e: unknown) => e);
      if ((answer as { code?: string } | null)?.code !== 'EAGAIN') break;
    }
    t.match(answer, { code: 'EIO', message: /died 3 times within 60 s \(last: the restarted engine failed: .*\); vbpffs gave up/ });
    t.match(lines, [/in 200 ms \(death 1 of at most 2/, /the restarted engine failed: .*; restarting it from the journal in 400 ms \(death 2/, /gave up/]);
    t.match(client.threadStatus(), { restarts: 0, recentCrashes: 3, gaveUp: true });
  });
});
