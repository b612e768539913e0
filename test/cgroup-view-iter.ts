/**
 * The cgroup_view target (iter/targets/cgroup-view.ts, spec 1.3 item 7): one run per open, for the
 * cgroup of the directory the file is read in, no end-of-iteration call, empty for a cgroup that
 * can no longer be referenced, EAGAIN for a non-zero return. On the simulated source, and a read of
 * a real cgroup's interface file on the host.
 */
import t, { type Test } from 'tap';
import type { BpfProg, Collection } from '../progs';
import type { KernfsNode, SimCgroupSource } from '../tags';
import { bpfIterLinkCreate, type BpfIterLink, type IterSession } from '../iter';
import type { Handle } from '../progs';
import { load } from './harness/progs';
import { cgroupSkipReason } from './harness/cgroup-tree';
import { hostEnv, simEnv, type IterEnv } from './harness/iter-env';

const VIEWS = `import { SEC, bpf_seq_printf, bpf_seq_write, vbpffs_cgroup_id, vbpffs_cgroup_name, vbpffs_cgroup_read } from 'vbpffs/bpf';
export const show = SEC('cgroup_view', (ctx) => {
  bpf_seq_printf(ctx.meta.seq, "cgroup %llu %s seq_num %llu\\n", vbpffs_cgroup_id(ctx.cgroup), vbpffs_cgroup_name(ctx.cgroup), ctx.meta.seq_num);
  return 0;
});
export const retry = SEC('cgroup_view', (ctx) => {
  bpf_seq_printf(ctx.meta.seq, "partial\\n");
  return 1;
});
export const faulty = SEC('cgroup_view', (ctx) => {
  if (vbpffs_cgroup_id(ctx.cgroup) > 0n) throw new Error('view fault');
  return 0;
});
export const huge = SEC('cgroup_view', (ctx) => {
  const k = new Uint8Array(1024);
  for (let i = 0; i < 32; i++) bpf_seq_write(ctx.meta.seq, k);
  return 0;
});
export const cpu = SEC('cgroup_view', (ctx) => {
  const st = vbpffs_cgroup_read(ctx.cgroup, 'cpu.stat');
  bpf_seq_printf(ctx.meta.seq, "usage_usec %s\\n", st === null ? 'absent' : String(st.usage_usec));
  return 0;
});
export const clock = SEC('cgroup_view', (ctx) => {
  bpf_seq_printf(ctx.meta.seq, "now %llu %s\\n", ctx.now_ns, ctx.who);
  return 0;
});`;

const text = (b: Uint8Array): string => Buffer.from(b).toString('utf8');

interface Rig {
  env: IterEnv;
  coll: Collection;
  /** A cgroup_view link of the named program. */
  link(name: string): BpfIterLink;
}

async function rig(t: Test, env?: IterEnv): Promise<Rig> {
  const e = env ?? (await simEnv());
  const coll = load(e.kernel, VIEWS);
  const links: Handle<BpfIterLink>[] = [];
  t.teardown(() => {
    for (const l of links) l.close();
    coll.close();
  });
  return {
    env: e,
    coll,
    link(name) {
      const l = bpfIterLinkCreate(e.kernel, coll.program(name));
      links.push(l);
      return l.object;
    },
  };
}

async function readAll(s: IterSession, size = 4096): Promise<string> {
  let out = '';
  for (let b = await s.read(size); b.length > 0; b = await s.read(size)) out += text(b);
  s.close();
  return out;
}

const runs = (p: BpfProg): number => p.stats.runCnt;

t.test('the program runs exactly once per open, for the directory\'s cgroup, at seq_num 0, with no end-of-iteration call', async (t) => {
  const r = await rig(t);
  const web = await r.env.mkdir('web');
  const link = r.link('show');
  t.equal(link.target, 'cgroup_view');
  const s = link.open({ cgroup: web });
  t.equal(text(await s.read(4096)), `cgroup ${web.id} web seq_num 0\n`);
  t.equal((await s.read(4096)).length, 0, 'EOF');
  t.equal((await s.read(4096)).length, 0, 'and again');
  s.close();
  t.equal(runs(link.prog), 1, 'one run');
  t.equal(await readAll(link.open({ cgroup: r.env.base })), `cgroup ${r.env.base.id} cgroup-test-work-dir seq_num 0\n`, 'another open, another cgroup');
  t.equal(runs(link.prog), 2);
});

t.test('one byte at a time reproduces the output, and the program still runs once', async (t) => {
  const r = await rig(t);
  const web = await r.env.mkdir('web');
  const link = r.link('show');
  t.equal(await readAll(link.open({ cgroup: web }), 1), `cgroup ${web.id} web seq_num 0\n`);
  t.equal(runs(link.prog), 1);
});

t.test('no directory cgroup (an untagged directory) reads as empty, without running the program', async (t) => {
  const r = await rig(t);
  const link = r.link('show');
  t.equal(await readAll(link.open()), '');
  t.equal(runs(link.prog), 0);
});

t.test('a removed cgroup still referenced is shown; a released one reads as empty, without running the program', async (t) => {
  const r = await rig(t);
  const gone = await r.env.mkdir('gone');
  const link = r.link('show');
  t.ok(gone.tryGet());
  await r.env.rmdir('gone');
  t.equal(gone.state, 'dying');
  t.equal(await readAll(link.open({ cgroup: gone })), `cgroup ${gone.id} gone seq_num 0\n`, 'cgroup_tryget succeeds on a dying cgroup');
  const s = link.open({ cgroup: gone });
  gone.put();
  t.ok(gone.released);
  t.equal(await readAll(s), '', 'released between open and read');
  t.equal(runs(link.prog), 1);
});

t.test('a non-zero return fails the first read with EAGAIN, its output dropped; the next read is EOF', async (t) => {
  const r = await rig(t);
  const web = await r.env.mkdir('web');
  const link = r.link('retry');
  const s = link.open({ cgroup: web });
  await t.rejects(s.read(4096), { code: 'EAGAIN' });
  t.equal((await s.read(4096)).length, 0, '"Only one session is supported": the position moved on');
  s.close();
  t.equal(runs(link.prog), 1);
  t.equal(web.refs, 1, 'the cgroup reference start() took is dropped');
});

t.test('a faulting program fails the first read with EIO; the next read is EOF', async (t) => {
  const r = await rig(t);
  const web = await r.env.mkdir('web');
  const s = r.link('faulty').open({ cgroup: web });
  await t.rejects(s.read(4096), { code: 'EIO', message: /view fault/ });
  t.equal((await s.read(4096)).length, 0);
  s.close();
});

t.test('output that does not fit the 32 KiB buffer fails the read with E2BIG', async (t) => {
  const r = await rig(t);
  const web = await r.env.mkdir('web');
  const s = r.link('huge').open({ cgroup: web });
  await t.rejects(s.read(1 << 20), { code: 'E2BIG' });
  t.equal((await s.read(1 << 20)).length, 0);
  s.close();
});

t.test('the interface files the program names are read from the session\'s source before its run; without one they are absent', async (t) => {
  const r = await rig(t);
  const web = await r.env.mkdir('web');
  (r.env.source as SimCgroupSource).workload.spawn({ cgroup: web, run: 1 });
  (r.env.source as SimCgroupSource).workload.advance(2_000_000_000);
  const link = r.link('cpu');
  t.equal(await readAll(link.open({ cgroup: web, source: r.env.source })), 'usage_usec 2000000\n');
  t.equal(await readAll(link.open({ cgroup: web })), 'usage_usec absent\n');
});

t.test('extra ctx fields given at open reach every run (the reader\'s clock)', async (t) => {
  const r = await rig(t);
  const link = r.link('clock');
  t.equal(await readAll(link.open({ cgroup: r.env.base, ctx: { now_ns: 12345n, who: 'me' } })), 'now 12345 me\n');
});

t.test('the session drops its reference on the cgroup at the end of the read, or at close when it never read', async (t) => {
  const r = await rig(t);
  const web = await r.env.mkdir('web');
  const link = r.link('show');
  const s = link.open({ cgroup: web });
  t.equal(text(await s.read(3)), 'cgr');
  t.equal(web.refs, 1, 'dropped once the iteration is over, though bytes are left');
  s.close();
  const idle = link.open({ cgroup: web });
  idle.close();
  t.equal(web.refs, 1);
});

void (async () => {
  const skip = await cgroupSkipReason();
  t.test('host: a view of a real cgroup reads its cpu.stat', skip === false ? {} : { skip }, async (t) => {
    const r = await rig(t, await hostEnv(t));
    const cg: KernfsNode = await r.env.mkdir('view');
    t.match(await readAll(r.link('cpu').open({ cgroup: cg, source: r.env.source })), /^usage_usec \d+\n$/);
    t.equal(await readAll(r.link('show').open({ cgroup: cg })), `cgroup ${cg.id} view seq_num 0\n`);
  });
})();
