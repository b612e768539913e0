/**
 * The daemon as users run it: `vbpffs mount` in the background, `vbpffs umount`, a busy mount point,
 * a daemon killed with SIGKILL (no dead mount left; the next mount on the same state directory
 * restores every pin from the journal).
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, watch } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { examplePath } from '../progs/examples';
import { isMountPoint } from '../fs/daemon';
import { stateDirFor } from '../fs/control/registry';
import { fuseSkipReason } from './harness/mount';
import { LOADER_TIMEOUT } from './harness/cli-result';

const run = promisify(execFile);
// A dozen children of the TypeScript loader, two daemons: on a loaded host, past the default file timeout.
t.setTimeout(600_000);
const CLI = path.join(__dirname, '..', 'fs', 'cli.ts');

t.test('vbpffs mount / umount as processes', async (t) => {
  const skip = await fuseSkipReason();
  t.test('(mounted)', { skip }, async (t) => {
    const base = mkdtempSync(path.join(tmpdir(), 'vbpffs-d-'));
    const mnt = path.join(base, 'mnt');
    const env = { ...process.env, VBPFFS_STATE_ROOT: path.join(base, 'state') };
    const execArgv = process.execArgv.filter((a) => !a.includes('processinfo'));
    const cli = async (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => {
      try {
        const r = await run(process.execPath, [...execArgv, CLI, ...args], { env, encoding: 'utf8' });
        return { code: 0, ...r };
      } catch (e) {
        const x = e as { code: number; stdout: string; stderr: string };
        return { code: x.code, stdout: x.stdout, stderr: x.stderr };
      }
    };
    t.teardown(async () => {
      await cli('umount', mnt);
      if (await isMountPoint(mnt)) await run('fusermount', ['-uz', mnt]).catch(() => undefined);
    });
    const daemonPid = async (): Promise<number> => {
      const [s] = JSON.parse((await cli('-j', 'status')).stdout) as { pid: number }[];
      return s!.pid;
    };

    const up = await cli('mount', mnt, '--sim', 'demo', '--timeout', LOADER_TIMEOUT);
    t.equal(up.code, 0, up.stderr);
    t.match(up.stdout, new RegExp(`^vbpffs mounted at ${mnt} \\(pid \\d+, log `));
    t.ok(await isMountPoint(mnt), 'the mount is there when mount returns');
    t.equal((await cli('iter', 'pin', examplePath('procs'), path.join(mnt, 'procs'))).code, 0);
    t.equal((await run('cat', [path.join(mnt, 'system.slice', 'postgres.service', 'procs')])).stdout, 'procs     2\nthreads   2\n');

    const again = await cli('mount', mnt, '--sim', 'demo', '--timeout', LOADER_TIMEOUT);
    t.equal(again.code, 1, 'a mount point in use is refused');
    t.match(again.stderr, /^Error: .* is already mounted by vbpffs \(pid \d+\).* \(EBUSY\)\n$/);

    // SIGKILL: no clean-up runs. auto_unmount takes the mount away; the info file stays behind.
    process.kill(await daemonPid(), 'SIGKILL');
    for (let i = 0; i < 100 && (await isMountPoint(mnt)); i++) await sleep(50);
    t.notOk(await isMountPoint(mnt), 'a killed daemon leaves no mount (auto_unmount)');
    t.match((await cli('status')).stdout, /pid \d+  dead/, 'status says the daemon is gone');

    const back = await cli('mount', mnt, '--sim', 'demo', '--timeout', LOADER_TIMEOUT);
    t.equal(back.code, 0, `the next mount recovers: ${back.stderr}`);
    t.equal((await run('cat', [path.join(mnt, 'system.slice', 'postgres.service', 'procs')])).stdout, 'procs     2\nthreads   2\n', 'the journal restored the pin');
    const status = JSON.parse((await cli('-j', 'status')).stdout) as { journal: { records: number; failed: string[] } }[];
    t.match(status[0]!.journal, { records: 1, failed: [] });

    const down = await cli('umount', mnt);
    t.equal(down.code, 0, down.stderr);
    t.equal(down.stdout, `vbpffs unmounted ${mnt}\n`);
    t.notOk(await isMountPoint(mnt));
    t.equal((await cli('umount', mnt)).stderr, `Error: ${mnt} is not a vbpffs mount point (vbpffs status lists them) (ENOENT)\n`);
    t.ok(existsSync(path.join(base, 'state')), 'the state directory stays for the next mount');

    // A daemon slower than --timeout: the user is told the mount failed, so none may turn up later.
    const slow = await cli('mount', mnt, '--sim', 'demo', '--timeout', '0.05');
    t.equal(slow.code, 1, 'mount past its --timeout fails');
    t.match(slow.stderr, /^Error: the daemon did not come up in 0\.05 s \(--timeout\), so it was stopped; see .*daemon\.log \(ETIMEDOUT\)\n$/);
    await sleep(3000); // longer than a demo daemon takes to mount: one left running would be up by now
    t.notOk(await isMountPoint(mnt), 'a mount that timed out leaves no daemon to mount later');
    const left = JSON.parse((await cli('-j', 'status')).stdout) as { state: string }[];
    t.same(left.filter((m) => m.state === 'running'), [], 'and no daemon running');

    // A daemon listening but too busy to answer the mount's status within that call's own 2 s: it is
    // stopped (SIGSTOP) the moment its socket appears, and continued 2.5 s later. The mount waits it
    // out rather than failing with ETIMEDOUT. The stop races the mount's first poll (every 100 ms);
    // a try the poll won proves nothing, so it is made again, up to three times.
    const stateDir = stateDirFor(mnt, env.VBPFFS_STATE_ROOT);
    const signal = (pid: number, sig: NodeJS.Signals): void => {
      try {
        process.kill(pid, sig);
      } catch {
        // Gone already: the mount reports why.
      }
    };
    let busy: { code: number; stdout: string; stderr: string } | undefined;
    let stopped = false;
    for (let attempt = 1; attempt <= 3 && !stopped; attempt++) {
      if (attempt > 1) await cli('umount', mnt);
      let pid = 0;
      // An object, as the watch and the timer change it behind the compiler's back.
      const daemon: { state: 'waiting' | 'stopped' | 'continued' } = { state: 'waiting' };
      const watcher = watch(stateDir, (_event, name) => {
        if (name === 'info.json' && pid === 0) {
          try {
            pid = (JSON.parse(readFileSync(path.join(stateDir, name), 'utf8')) as { pid: number }).pid;
          } catch {
            // Seen created but not yet written: its next event has the pid.
          }
        }
        if (name === 'control.sock' && pid !== 0 && daemon.state === 'waiting') {
          signal(pid, 'SIGSTOP');
          daemon.state = 'stopped';
          setTimeout(() => {
            signal(pid, 'SIGCONT');
            daemon.state = 'continued';
          }, 2500);
        }
      });
      // Never leave a stopped daemon holding a mount, whatever happens to this test.
      t.teardown(() => void (daemon.state === 'stopped' && signal(pid, 'SIGCONT')));
      busy = await cli('mount', mnt, '--sim', 'demo', '--timeout', LOADER_TIMEOUT);
      stopped = daemon.state === 'continued';
      watcher.close();
      t.comment(`attempt ${attempt}: pid ${pid}, the daemon was ${stopped ? 'stopped before the mount was answered' : `${daemon.state} when the mount returned`}`);
    }
    t.equal(busy!.code, 0, `a daemon that answers its first status late still mounts: ${busy!.stderr}`);
    t.ok(stopped, 'the mount returned only once the stopped daemon went on');
  });
});
