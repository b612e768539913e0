/**
 * The journal records exactly what happened, through a real mount and real processes: the daemon
 * is `vbpffs mount --foreground` in its own process (test/harness/daemon-proc.ts), changed with
 * coreutils and the vbpffs command, killed with SIGKILL and started again on its state directory.
 * test/journal-compact.ts has the same rules in-process, with more variants.
 */
import { mkdtempSync, mkdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { controlCall } from '../fs/control/client';
import { examplePath } from '../progs/examples';
import { buildJs } from './harness/build-js';
import { DaemonProc, start } from './harness/daemon-proc';
import { fuseSkipReason } from './harness/mount';

function daemon(build: string): DaemonProc {
  const base = mkdtempSync(path.join(tmpdir(), 'vbpffs-jm-'));
  const root = path.join(base, 'root');
  mkdirSync(root);
  return new DaemonProc(build, { mnt: path.join(base, 'mnt'), root, state: path.join(root, 'state') });
}
const sh = async (cmd: string): Promise<{ code: number | null; out: string; err: string }> => {
  const e = await start('sh', ['-c', cmd]).done;
  return { code: e.code, out: e.stdout, err: e.stderr };
};
const journal = (d: DaemonProc): string[] => readFileSync(path.join(d.state, 'journal.jsonl'), 'utf8').split('\n').filter(Boolean);

t.test('the journal through a real mount', async (t) => {
  const skip = await fuseSkipReason();
  t.test('(mounted)', { skip }, async (t) => {
    const build = buildJs();

    t.test('refused mkdir and rmdir are not replayed, chown and chmod are, and a NUL path is refused: after kill -9 the mount is as it was', async (t) => {
      const d = daemon(build);
      t.teardown(() => d.down());
      await d.up();
      const m = d.mnt;
      t.equal((await sh(`mkdir ${m}/d ${m}/d/sub ${m}/t && chown 1234:5678 ${m}/d && chmod 750 ${m}/d`)).code, 0);
      t.equal((await d.cli('iter', 'pin', examplePath('procs'), `${m}/t/procs`).done).code, 0, 'a view tags /t: the mirror fills it');
      t.match((await sh(`rmdir ${m}/d`)).err, /Directory not empty/, 'rmdir of a non-empty directory is refused');
      t.match((await sh(`mkdir ${m}/t/nosuch`)).err, /No such file or directory/, 'mkdir of a name no cgroup has is refused');
      t.match((await sh(`rmdir ${m}/t/system.slice`)).err, /Directory not empty/, 'rmdir of a tagged directory with child cgroups is refused, its inherited view gone');
      const sock = path.join(d.state, 'control.sock');
      for (const bad of [`/bad\0name`, `/d/x\0`, `/d\ud800`]) {
        await t.rejects(controlCall(sock, 'mapCreate', [bad, { type: 'hash', key: 4, value: 4, entries: 4, name: 'm' }]), { code: 'EINVAL' }, `a socket request pinning at ${JSON.stringify(bad)}`);
        await t.rejects(controlCall(sock, 'iterPin', [examplePath('procs'), bad, {}]), { code: 'EINVAL' });
      }
      const before = (await sh(`find ${m} -printf '%y %m %U:%G %P\\n' | sort`)).out;
      t.match(before, /^d 750 1234:5678 d$/m);
      t.notMatch(before, /bad|nosuch|system\.slice\/procs/);
      await d.kill();
      const out = await d.up();
      t.notMatch(out, /warning/, `no record fails on replay: ${out}`);
      t.equal((await sh(`find ${m} -printf '%y %m %U:%G %P\\n' | sort`)).out, before, 'the tree, modes and owners as they were');
      t.notOk(journal(d).some((l) => l.includes('\\u0000')), 'nothing with a NUL reached the journal');
    });

    t.test('the journal compacts itself as it goes, and a kill -9 leaves a journal that replays to the state', async (t) => {
      const d = daemon(build);
      t.teardown(() => d.down());
      process.env.VBPFFS_JOURNAL_COMPACT = '8';
      t.teardown(() => void delete process.env.VBPFFS_JOURNAL_COMPACT);
      await d.up();
      const m = d.mnt;
      await sh(`mkdir ${m}/keep && chown 7:7 ${m}/keep`);
      for (let i = 0; i < 8; i++) t.equal((await sh(`for j in 1 2 3 4 5; do mkdir ${m}/x$j ${m}/x$j/y && mv ${m}/x$j/y ${m}/x$j/z && rmdir ${m}/x$j/z ${m}/x$j || exit 1; done`)).code, 0);
      await sh(`mkdir ${m}/keep/last`);
      const before = (await sh(`find ${m} -printf '%y %m %U:%G %P\\n' | sort`)).out;
      await d.kill();
      const n = journal(d).length;
      t.ok(n < 20, `${n} records for ${3 + 8 * 5 * 5} operations`);
      await d.up();
      t.equal((await sh(`find ${m} -printf '%y %m %U:%G %P\\n' | sort`)).out, before, 'the restart gives the tree as it was');
    });
  });
});
