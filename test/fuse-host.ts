/**
 * End to end on the host: a FUSE mount of the real cgroup2 hierarchy, real cgroups made and removed
 * under it by this test, read with cat, ls and find. Skips, saying why, without FUSE or without
 * permission to make cgroups.
 */
import { rmdirSync } from 'node:fs';
import { access } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { examplePath } from '../progs/examples';
import { cgroupSkipReason, makeCgroupTree } from './harness/cgroup-tree';
import { fuseSkipReason, mountVbpffs } from './harness/mount';

const CLI = path.join(__dirname, '..', 'fs', 'cli.ts');

/**
 * Whether a path exists in the mount. Asynchronous on purpose: the daemon answers FUSE on this
 * process's main thread, so a synchronous call on the mount from here would wait for itself forever.
 */
const exists = (p: string): Promise<boolean> => access(p).then(() => true, () => false);

/** Waits for a condition the host's tracking makes true soon; fails with `what` after 20 s. */
async function until(what: string, cond: () => boolean | Promise<boolean>): Promise<void> {
  for (const deadline = Date.now() + 20_000; !(await cond()); await sleep(50)) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
  }
}

t.test('a FUSE mount of the host cgroup2 tree', async (t) => {
  const skip = (await fuseSkipReason()) || (await cgroupSkipReason());
  t.test('(mounted, with real cgroups)', { skip }, async (t) => {
    const m = await mountVbpffs(t);
    const cli = (...args: string[]): Promise<string> => m.sh(process.execPath, ...process.execArgv.filter((a) => !a.includes('processinfo')), CLI, ...args);
    await cli('iter', 'pin', examplePath('procs'), m.p('procs'));
    const tree = await makeCgroupTree(t, 'fuse');
    tree.mkdirp('app', 'worker');
    const dir = m.p(tree.cgroup, 'app');
    await until('the new cgroup to be mirrored', () => exists(path.join(dir, 'worker', 'procs')));
    t.same((await m.sh('ls', dir)).trim().split('\n'), ['procs', 'worker'], 'a new cgroup appears with the inherited view');

    await tree.spawnIn('app', 'worker');
    t.equal(await m.sh('cat', path.join(dir, 'worker', 'procs')), 'procs     1\nthreads   1\n', 'the view counts the process this test put there');
    t.equal(await m.sh('cat', path.join(dir, 'procs')), 'procs     0\nthreads   0\n');
    const views = (await m.sh('find', m.p(tree.cgroup), '-name', 'procs')).trim().split('\n');
    t.equal(views.length, 3, 'find walks the mirror: one view per cgroup of the test tree');

    await t.rejects(m.sh('mkdir', path.join(dir, 'not-a-cgroup')), /No such file or directory/, 'mkdir must name a cgroup');
    tree.mkdirp('app', 'batch');
    await until('the second cgroup', () => exists(path.join(dir, 'batch')));
    rmdirSync(tree.hostPath('app', 'batch'));
    await until('the removed cgroup to leave the mirror', async () => !(await exists(path.join(dir, 'batch'))));
    t.pass('a removed cgroup takes its mirrored directory with it');
  });
});

t.test('the RFC selftest scenario on the host, with --mirror manual', async (t) => {
  const skip = (await fuseSkipReason()) || (await cgroupSkipReason());
  t.test('(mounted, with real cgroups)', { skip }, async (t) => {
    const m = await mountVbpffs(t, { mirror: 'manual' });
    const cli = (...args: string[]): Promise<string> => m.sh(process.execPath, ...process.execArgv.filter((a) => !a.includes('processinfo')), CLI, ...args);
    const tree = await makeCgroupTree(t, 'rfc');
    tree.mkdirp('child');
    await cli('iter', 'pin', examplePath('procs'), m.p('procs'));
    t.same((await m.sh('ls', m.mnt)).trim().split('\n'), ['procs'], 'manual mirror: only the pin, no cgroup directories');
    await t.rejects(m.sh('mkdir', m.p('no-such-cgroup')), /No such file or directory/, 'mkdir of a name that is no child cgroup is ENOENT');
    t.equal(await m.sh('ls', m.mnt), 'procs\n', 'and nothing was created');
    const own = m.p(tree.cgroup);
    await m.sh('mkdir', own);
    await m.sh('mkdir', path.join(own, 'child'));
    t.equal(await m.sh('ls', path.join(own, 'child')), 'procs\n', 'the inherited file is there');
    await tree.spawnIn('child');
    t.equal(await m.sh('cat', path.join(own, 'child', 'procs')), 'procs     1\nthreads   1\n', 'cat runs the view for that cgroup');
    await m.sh('rmdir', path.join(own, 'child'));
    t.equal(await m.sh('ls', own), 'procs\n', 'rmdir removed the inherited file first, then the directory');
    await m.sh('rmdir', own);
    await m.sh('rm', m.p('procs'));
    t.equal(await m.sh('ls', '-A', m.mnt), '', 'unlink drops the pin');
  });
});
