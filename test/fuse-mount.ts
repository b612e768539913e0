/**
 * End to end on a real FUSE mount of the simulated source (`--sim demo`): the daemon runs here, real
 * processes (cat, ls, find, stat, mkdir, touch, mkfifo, the vbpffs command) use the mount.
 */
import path from 'node:path';
import t from 'tap';
import { examplePath } from '../progs/examples';
import { fuseSkipReason, mountVbpffs } from './harness/mount';

const CLI = path.join(__dirname, '..', 'fs', 'cli.ts');

t.test('a FUSE mount of the simulated tree', async (t) => {
  const skip = await fuseSkipReason();
  t.test('(mounted)', { skip }, async (t) => {
    const m = await mountVbpffs(t, { sim: 'demo' });
    const cli = (...args: string[]): Promise<string> => m.sh(process.execPath, ...process.execArgv.filter((a) => !a.includes('processinfo')), CLI, ...args);

    t.test('an empty mount is a bpffs root: mode 01777, empty', async (t) => {
      t.equal((await m.sh('stat', '-c', '%a %F', m.mnt)).trim(), '1777 directory');
      t.equal(await m.sh('ls', '-A', m.mnt), '');
    });

    t.test('vbpffs iter pin of a cgroup_view tags the root; every cgroup gets a file; cat runs the view', async (t) => {
      const out = await cli('iter', 'pin', examplePath('procs'), m.p('procs'));
      t.match(out, /^pinned cgroup_view iterator link \d+ \(prog \d+\) at /);
      t.same((await m.sh('ls', m.mnt)).trim().split('\n'), ['procs', 'system.slice', 'user.slice'], 'the root mirrors the cgroups and holds the pin');
      t.same((await m.sh('ls', m.p('system.slice'))).trim().split('\n'), ['cron.service', 'postgres.service', 'procs']);
      t.equal(await m.sh('cat', m.p('system.slice', 'postgres.service', 'procs')), 'procs     2\nthreads   2\n');
      const found = (await m.sh('find', m.mnt, '-name', 'procs')).trim().split('\n').sort();
      t.equal(found.length, 6, 'one view per cgroup, the root included');
      t.equal((await m.sh('stat', '-c', '%a %s', m.p('procs'))).trim(), '600 0', 'pins are 0600, size 0');
    });

    t.test('bpffs errnos reach processes: a regular file EACCES, a FIFO EPERM, a dotted pin name EPERM, mkdir of no cgroup ENOENT', async (t) => {
      await t.rejects(m.sh('touch', m.p('file')), /Permission denied/);
      await t.rejects(m.sh('mkfifo', m.p('fifo')), /Operation not permitted/);
      await t.rejects(m.sh('mkdir', m.p('nocgroup')), /No such file or directory/, 'the root is tagged: mkdir must name a cgroup');
      await t.rejects(cli('iter', 'pin', examplePath('procs'), m.p('system.slice', 'x.y')), /EPERM/);
    });

    t.test('every bundled program reads through the mount', async (t) => {
      const pg = m.p('system.slice', 'postgres.service');
      for (const name of ['cpu', 'pressure', 'memory', 'sched_latency']) await cli('iter', 'pin', examplePath(name), m.p(name));
      await cli('iter', 'pin', examplePath('tree_summary'), m.p('tree_summary'), 'order', 'descendants_pre');
      t.match(await m.sh('cat', path.join(pg, 'cpu')), /^usage_usec +\d+\nuser_usec +\d+\nsystem_usec +\d+\ncpu +no rate yet: this is the first read\n$/);
      t.match(await m.sh('cat', path.join(pg, 'cpu')), /\ncpu +\d+\.\d\d% of one CPU over the last \d+ ms\n$/, 'the second read has a rate');
      t.match(await m.sh('cat', path.join(pg, 'pressure')), /^resource state  avg10  avg60 avg300   total_usec\ncpu      some /);
      t.match(await m.sh('cat', path.join(pg, 'memory')), /^memory: no memory.current or memory.stat here/);
      t.match(await m.sh('cat', path.join(pg, 'sched_latency')), /^cgroup_id: +\d+\nqueue_self: +\d+\nqueue_other: +\d+\n$/);
      const summary = await m.sh('cat', m.p('tree_summary'));
      t.match(summary, /postgres\.service/, 'the iter/cgroup walk lists the tree');
      t.match(summary, /\n6 cgroups, 4 processes\n$/, 'and totals it in its end call');
    });

    t.test('vbpffs status and prog show talk to the daemon', async (t) => {
      const status = JSON.parse(await cli('-j', 'status')) as { mountPoint: string; state: string; objects: { progs: number } }[];
      t.match(status, [{ mountPoint: m.mnt, state: 'running', objects: { progs: 6 } }]);
      t.match(await cli('prog', 'show'), /^\d+: cgroup_view  name procs  tag [0-9a-f]{16}  run_time_ns \d+ run_cnt \d+/);
    });
  });
});


