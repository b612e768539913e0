/**
 * The bundled programs (progs/examples): each loads from its source, verifies, and prints exactly
 * what its figures say on a simulated source driven by the workload clock, read as the filesystem
 * reads them (sessions of cgroup_view and iter/cgroup links); they typecheck against bpf.d.ts alone;
 * and the README quotes scripts/examples.ts's output verbatim.
 */
import path from 'node:path';
import { readFileSync } from 'node:fs';
import t, { type Test } from 'tap';
import ts from 'typescript';
import { BpfCgroupIterOrder, bpfError } from '../uapi';
import { Kernel, SchedSampler, loadCollection, type BpfProg, type Collection, type CgrpStorageMap, type HashMap } from '../progs';
import { EXAMPLES, examplePath } from '../progs/examples';
import { SimCgroupSource, type CgroupSource, type KernfsNode } from '../tags';
import { bpfIterLinkCreate, type IterOpenOpts } from '../iter';
import { runTs } from './harness/run-ts';
import './harness/ivm-exit';

const ROOT = path.join(__dirname, '..');
const SEC = 1_000_000_000;

interface World {
  src: SimCgroupSource;
  kernel: Kernel;
}

async function world(): Promise<World> {
  const src = new SimCgroupSource();
  await src.start();
  return { src, kernel: new Kernel({ cgroups: src.hierarchy, tasks: src }) };
}

async function load(t: Test, w: World, name: string): Promise<Collection> {
  const c = await loadCollection(w.kernel, examplePath(name));
  t.teardown(() => c.close());
  return c;
}

/** Opens a session of a new link of prog (made with opts), reads it to EOF and closes both. */
async function readIter(w: World, prog: BpfProg, open: IterOpenOpts, cgroup?: { order: BpfCgroupIterOrder; cgroup: KernfsNode }): Promise<string> {
  const link = bpfIterLinkCreate(w.kernel, prog, cgroup === undefined ? {} : { cgroup });
  const s = link.object.open(open);
  try {
    return Buffer.from(await s.readAll()).toString('utf8');
  } finally {
    s.close();
    link.close();
  }
}

/** One read of a cgroup_view file for cgroup: a session of a cgroup_view link, its interface files read from the simulator. */
function read(prog: BpfProg, w: World, cgroup: KernfsNode, ctx: Record<string, bigint | number> = {}): Promise<string> {
  return readIter(w, prog, { cgroup, source: w.src, ctx });
}

/** One read on a given snapshot of interface files (what a host with other files would give; null: absent). */
function run(prog: BpfProg, w: World, cgroup: KernfsNode, files: ReadonlyMap<string, string | null>): Promise<string> {
  const source = {
    readFile: async (_cg: KernfsNode, file: string): Promise<string> => files.get(file) ?? Promise.reject(bpfError('ENOENT', file)),
  } as unknown as CgroupSource;
  return readIter(w, prog, { cgroup, source });
}

/** A read of an iter/cgroup link walking from start in pre-order (BPF_CGROUP_ITER_DESCENDANTS_PRE). */
function walk(prog: BpfProg, w: World, start: KernfsNode): Promise<string> {
  return readIter(w, prog, { source: w.src }, { order: BpfCgroupIterOrder.DESCENDANTS_PRE, cgroup: start });
}

/** The simulator's clock, as the ctx's now_ns. */
const now = (w: World): { now_ns: bigint } => ({ now_ns: BigInt(w.src.workload.now) });

t.test('every example loads from its source path and verifies', async (t) => {
  const w = await world();
  for (const name of EXAMPLES) {
    const c = await load(t, w, name);
    t.ok(c.log.length > 0 && c.log.every((l) => l.endsWith(': verified')), `${name}: ${c.log.join('; ')}`);
  }
  t.equal(examplePath('cpu'), path.join(ROOT, 'progs', 'examples', 'cpu.ts'), 'from the sources: next to index.ts');
  t.equal(
    examplePath('cpu', path.join(ROOT, 'dist', 'progs', 'examples', 'index.js')),
    path.join(ROOT, 'progs', 'examples', 'cpu.ts'),
    'from the build: back to the sources, which the build does not copy',
  );
  t.throws(() => examplePath('nope'), { code: 'ENOENT' });
});

t.test('the examples typecheck against bpf.d.ts alone (ES2022, no Node types), as an author would check them', async (t) => {
  const files = [path.join(ROOT, 'progs', 'prog', 'bpf.d.ts'), ...EXAMPLES.map((n) => examplePath(n))];
  const program = ts.createProgram(files, {
    strict: true,
    noEmit: true,
    noUnusedLocals: true,
    noUnusedParameters: true,
    noImplicitReturns: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.CommonJS,
    lib: ['lib.es2022.d.ts'],
    types: [],
  });
  const diagnostics = ts.getPreEmitDiagnostics(program).map((d) => {
    const where = d.file === undefined ? '' : `${path.relative(ROOT, d.file.fileName)}:${d.file.getLineAndCharacterOfPosition(d.start ?? 0).line + 1}: `;
    return where + ts.flattenDiagnosticMessageText(d.messageText, '\n');
  });
  t.same(diagnostics, []);
});

t.test('cpu.ts: cpu.stat totals on the first read, then deltas and the rate over the reader\'s clock', async (t) => {
  const w = await world();
  const cpu = (await load(t, w, 'cpu')).program('cpu');
  const web = await w.src.mkdir('/web');
  const db = await w.src.mkdir('/db');
  // 0.6 of a CPU, a quarter of it in the kernel: 600000 us of usage per second, 150000 us system.
  w.src.workload.spawn({ cgroup: web, run: 0.6, system: 0.25 });
  w.src.workload.advance(2 * SEC);
  t.equal(
    await read(cpu, w, web, now(w)),
    'usage_usec     1200000\n' +
      'user_usec       900000\n' +
      'system_usec     300000\n' +
      'cpu            no rate yet: this is the first read\n',
  );
  w.src.workload.advance(SEC);
  t.equal(
    await read(cpu, w, web, now(w)),
    'usage_usec     1800000 (+600000)\n' +
      'user_usec      1350000 (+450000)\n' +
      'system_usec     450000 (+150000)\n' +
      'cpu              60.00% of one CPU over the last 1000 ms\n',
  );
  // A second task at 0.8 of a CPU: 1.4 CPUs for half a second is 700000 us in 500 ms.
  w.src.workload.spawn({ cgroup: web, run: 0.8 });
  w.src.workload.advance(SEC / 2);
  t.match(await read(cpu, w, web, now(w)), /^usage_usec     2500000 \(\+700000\)\n[^]*\ncpu             140\.00% of one CPU over the last 500 ms\n$/);
  t.match(await read(cpu, w, web, now(w)), /\ncpu            no time has passed since the last read\n$/, 'two reads at one instant');
  t.match(await read(cpu, w, db, { now_ns: w.src.workload.now }), /^usage_usec           0\n[^]*no rate yet/, 'each cgroup has its own storage: a first read again (now_ns may be a number)');
  const last = (await load(t, w, 'cpu')).map<CgrpStorageMap>('cpu_last');
  t.equal(last.nrElems, 0, 'another load of the object has its own, empty, map');

  // Without now_ns the program falls back to bpf_ktime_get_ns (the host's clock): a rate, not exact.
  const host = await w.src.mkdir('/host');
  await read(cpu, w, host);
  t.match(await read(cpu, w, host), /\ncpu +(\d+\.\d\d% of one CPU over the last \d+ ms|no time has passed since the last read)\n$/);
});

t.test('pressure.ts: the some and full lines of cpu, io and memory.pressure, every figure as the file has it', async (t) => {
  const w = await world();
  const pressure = (await load(t, w, 'pressure')).program('pressure');
  const web = await w.src.mkdir('/web');
  w.src.workload.spawn({ cgroup: web, run: 0.5, wait: 0.25, io: 0.2 });
  w.src.workload.spawn({ cgroup: web, run: 0.25, wait: 0.5 });
  w.src.workload.advance(20 * SEC);
  const out = await read(pressure, w, web);
  t.equal(
    out,
    'resource state  avg10  avg60 avg300   total_usec\n' +
      'cpu      some   51.73  16.04   3.71     12500000\n' +
      'cpu      full   25.87   8.02   1.85      6250000\n' +
      'io       some   16.69   5.17   1.19      4000000\n' +
      'io       full    4.17   1.29   0.30      1000000\n' +
      'memory   some    0.00   0.00   0.00            0\n' +
      'memory   full    0.00   0.00   0.00            0\n',
  );
  // Cross-check every row against the file's own line.
  for (const resource of ['cpu', 'io', 'memory'] as const) {
    const text = await w.src.readFile(web, `${resource}.pressure`);
    for (const line of text.trim().split('\n')) {
      const [state, ...kv] = line.split(' ');
      const v = Object.fromEntries(kv.map((x) => x.split('=') as [string, string]));
      const row = `${resource.padEnd(8)} ${state!.padEnd(5)} ${v.avg10!.padStart(6)} ${v.avg60!.padStart(6)} ${v.avg300!.padStart(6)} ${v.total!.padStart(12)}`;
      t.ok(out.includes(`${row}\n`), `${resource} ${state}: ${row}`);
    }
  }
  t.match(await read(pressure, w, w.src.hierarchy.root), /\ncpu      full    0\.00   0\.00   0\.00            0\n/, 'the root\'s cpu full line is zeros');
  t.equal(
    await run(pressure, w, web, new Map([['cpu.pressure', null], ['io.pressure', null], ['memory.pressure', null]])),
    'resource state  avg10  avg60 avg300   total_usec\n' +
      'cpu      no cpu.pressure file (PSI disabled?)\n' +
      'io       no io.pressure file (PSI disabled?)\n' +
      'memory   no memory.pressure file (PSI disabled?)\n',
    'a host without PSI files',
  );
});

t.test('procs.ts: the lines of cgroup.procs and cgroup.threads, the cgroup\'s own tasks only', async (t) => {
  const w = await world();
  const procs = (await load(t, w, 'procs')).program('procs');
  const web = await w.src.mkdir('/web');
  const cache = await w.src.mkdir('/web/cache');
  const wl = w.src.workload;
  const [a] = [wl.spawn({ cgroup: web }), wl.spawn({ cgroup: web }), wl.spawn({ cgroup: cache })];
  t.equal(await read(procs, w, web), 'procs     2\nthreads   2\n');
  t.equal(await read(procs, w, cache), 'procs     1\nthreads   1\n');
  t.equal(await read(procs, w, w.src.hierarchy.root), 'procs     0\nthreads   0\n', 'descendants are not counted');
  wl.migrate(a!.pid, cache);
  t.equal(await read(procs, w, cache), 'procs     2\nthreads   2\n', 'after a migration');
  t.equal(await run(procs, w, web, new Map([['cgroup.procs', null], ['cgroup.threads', '7\n8\n9\n']])), 'procs     -\nthreads   3\n', 'a file that could not be read');
});

t.test('memory.ts: memory.current, memory.max and memory.stat on cgroup2; one line where the controller is not there', async (t) => {
  const w = await world();
  const memory = (await load(t, w, 'memory')).program('memory');
  const web = await w.src.mkdir('/web');
  const absent = 'memory: no memory.current or memory.stat here (the memory controller is not on cgroup2 for this cgroup)\n';
  t.equal(await read(memory, w, web), absent, 'the simulated cgroupfs has no memory controller files');
  t.equal(await read(memory, w, w.src.hierarchy.root), absent);

  // What a cgroup2 host with the memory controller gives (a v6.x memory.stat, cut short).
  const stat = 'anon 73400320\nfile 25165824\nkernel 4194304\nkernel_stack 327680\npagetables 1048576\nsock 0\nshmem 2097152\nslab 2621440\npgfault 123456\n';
  t.equal(
    await run(memory, w, web, new Map([['memory.current', '104857600\n'], ['memory.max', 'max\n'], ['memory.stat', stat]])),
    'memory.current    104857600\n' +
      'memory.max     max\n' +
      'anon               73400320\n' +
      'file               25165824\n' +
      'kernel              4194304\n' +
      'shmem               2097152\n' +
      'sock                      0\n' +
      'slab                2621440\n',
  );
  t.equal(
    await run(memory, w, web, new Map([['memory.current', '1048576\n'], ['memory.max', '536870912\n'], ['memory.stat', stat.replace('kernel 4194304\n', '')]])),
    'memory.current      1048576\n' +
      'memory.max        536870912\n' +
      'anon               73400320\n' +
      'file               25165824\n' +
      'shmem               2097152\n' +
      'sock                      0\n' +
      'slab                2621440\n',
    'a limit in bytes; a kernel before v5.18 has no `kernel` line',
  );
  t.equal(await run(memory, w, w.src.hierarchy.root, new Map([['memory.current', null], ['memory.max', null], ['memory.stat', 'anon 4096\n']])), 'anon                   4096\n', 'the root: memory.stat only');
});

t.test('sched_latency.ts: the RFC selftest\'s three lines, the mean wait split by the cgroups\' CPU shares', async (t) => {
  const w = await world();
  const c = await load(t, w, 'sched_latency');
  const child = await w.src.mkdir('/child');
  const other = await w.src.mkdir('/other');
  const idle = await w.src.mkdir('/idle');
  // One CPU, four tasks that never sleep: each runs a quarter of the time and waits the rest. A slice
  // of 2.5 ms makes 100 slices (100 waits) a second, so one wait is 750 ms / 100 = 7.5 ms. In /child
  // (3 tasks) a task's cgroup mates had 2 of the 3 other tasks' CPU time: 5 ms behind its own cgroup,
  // 2.5 ms behind others. The task of /other waited behind others only.
  const wl = w.src.workload;
  for (const cgroup of [child, child, child, other]) wl.spawn({ cgroup, run: 0.25, wait: 0.75, sliceNs: 2_500_000 });
  const sampler = new SchedSampler(w.src);
  await sampler.sampleOnce(); // the baseline
  const sample = c.program('sched_sample');
  for (let i = 0; i < 4; i++) {
    wl.advance(SEC);
    for (const s of (await sampler.sampleOnce()).samples) {
      sample.run({ task: w.src.taskByPid(s.pid), cgroup: s.cgroup, run_ns: BigInt(s.runNs), wait_ns: BigInt(s.waitNs), slices: BigInt(s.slices) });
    }
  }
  const lat = c.map<CgrpStorageMap>('cgroup_lat');
  t.same(lat.valueSchema!.toJson(lat.lookupElem(child)), { run_ns: 3_000_000_000, wait_ns: 9_000_000_000, slices: 1200 }, 'the samples\' sums, in cgroup storage');

  const dump = c.program('dump_cgroup_lat');
  t.equal(await read(dump, w, child), `cgroup_id: ${String(child.id).padStart(8)}\nqueue_self:  5000000\nqueue_other:  2500000\n`);
  t.equal(await read(dump, w, other), `cgroup_id: ${String(other.id).padStart(8)}\nqueue_self:        0\nqueue_other:  7500000\n`);
  t.equal(await read(dump, w, idle), `cgroup_id: ${String(idle.id).padStart(8)}\nqueue_self:        0\nqueue_other:        0\n`, 'zeros where nothing was recorded');
  const parsed = /^cgroup_id: +(\d+)\nqueue_self: +(\d+)\nqueue_other: +(\d+)\n$/.exec(await read(dump, w, child));
  t.same(parsed?.slice(1).map(Number), [child.id, 5_000_000, 2_500_000], 'parses with the selftest\'s formats');
});

t.test('tree_summary.ts: a header on seq_num 0, a line per cgroup in pre-order, a total on the NULL call', async (t) => {
  const w = await world();
  const c = await load(t, w, 'tree_summary');
  const web = await w.src.mkdir('/web');
  const cache = await w.src.mkdir('/web/cache');
  const batch = await w.src.mkdir('/batch');
  const gone = await w.src.mkdir('/batch/gone');
  const wl = w.src.workload;
  wl.spawn({ cgroup: web, run: 0.5 });
  wl.spawn({ cgroup: web, run: 0.25 });
  wl.spawn({ cgroup: cache, run: 0.2 });
  wl.spawn({ cgroup: batch, run: 1 });
  wl.advance(2 * SEC);
  // Removed but still referenced: a dying cgroup, still in its parent's children, which walks skip.
  t.ok(gone.tryGet());
  await w.src.rmdir('/batch/gone');
  t.teardown(() => gone.put());
  t.equal(gone.state, 'dying');
  const id = (n: KernfsNode): string => String(n.id).padStart(8);
  t.equal(
    await walk(c.program('tree_summary'), w, w.src.hierarchy.root),
    '      id level   procs   usage_usec  cgroup\n' +
      `${id(w.src.hierarchy.root)}     0       0      3900000  /\n` +
      `${id(web)}     1       2      1900000    web\n` +
      `${id(cache)}     2       1       400000      cache\n` +
      `${id(batch)}     1       1      2000000    batch\n` +
      '4 cgroups, 4 processes\n',
  );
  t.equal(
    await walk(c.program('tree_summary'), w, web),
    '      id level   procs   usage_usec  cgroup\n' + `${id(web)}     1       2      1900000    web\n` + `${id(cache)}     2       1       400000      cache\n` + '2 cgroups, 3 processes\n',
    'a walk from /web',
  );
  t.equal(c.map<HashMap>('totals').count, 0, 'each session\'s totals are deleted by its epilogue');
});

t.test('scripts/examples.ts runs from the sources and the README quotes its output verbatim', async (t) => {
  const { stdout } = await runTs(path.join(ROOT, 'scripts', 'examples.ts'));
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Bundled programs'));
  t.ok(readme.includes('## Bundled programs'), 'the README has the section');
  t.ok(section.includes(`\`\`\`\n${stdout}\`\`\``), 'the README quotes the output verbatim, as one block');
  for (const name of EXAMPLES) t.ok(stdout.includes(`${name}.ts`), `the output shows ${name}.ts`);
});
