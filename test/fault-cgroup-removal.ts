/**
 * Fault injection, cgroups removed under readers: on the host's cgroup2 tree mirrored by a real
 * mount, a view file is opened by a child process (`exec 3< FILE`), the cgroup is removed on the
 * host, and the child reads on from the same descriptor. Between open and read, during a read whose
 * output spans several reads, and during a cgroup iterator's walk that spans reads. Skips, saying
 * why, without FUSE or without permission to make cgroups.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { access } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { cgroupSkipReason, makeCgroupTree, type CgroupTree } from './harness/cgroup-tree';
import { fuseSkipReason, mountVbpffs, type TestMount } from './harness/mount';

t.setTimeout(180_000);
const HEAD = `import { SEC, bpf_seq_printf, vbpffs_cgroup_name } from 'vbpffs/bpf';\n`;

/** A view that names its cgroup, and one that prints 300 numbered lines (8,700 bytes) about it. */
const VIEW = `${HEAD}export const view = SEC('cgroup_view', (ctx) => {
  bpf_seq_printf(ctx.meta.seq, 'view of %s\\n', vbpffs_cgroup_name(ctx.cgroup));
  return 0;
});`;
const LONG = `${HEAD}export const long = SEC('cgroup_view', (ctx) => {
  for (let i = 0; i < 300; i++) bpf_seq_printf(ctx.meta.seq, 'line %03d of %s\\n', i, vbpffs_cgroup_name(ctx.cgroup));
  return 0;
});`;
const longText = (name: string): string => Array.from({ length: 300 }, (_, i) => `line ${String(i).padStart(3, '0')} of ${name}\n`).join('');
/** A cgroup iterator printing each cgroup's name and seq_num. */
const WALK = `${HEAD}export const walk = SEC('iter/cgroup', (ctx) => {
  if (ctx.cgroup !== null) bpf_seq_printf(ctx.meta.seq, '%s seq %llu\\n', vbpffs_cgroup_name(ctx.cgroup), ctx.meta.seq_num);
  return 0;
});`;

const exists = (p: string): Promise<boolean> => access(p).then(() => true, () => false);

async function until(what: string, cond: () => Promise<boolean>): Promise<void> {
  for (const deadline = Date.now() + 20_000; !(await cond()); await sleep(25)) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
  }
}

/**
 * A child shell holding a file of the mount open on fd 3 and reading it on command: `dd N` reads N
 * bytes one read(2) of 1 byte at a time, `cat` reads to the end; each appends to its output file and
 * answers with the command's exit status.
 */
class FdReader {
  readonly #child: ChildProcessWithoutNullStreams;
  readonly #lines: AsyncIterator<string>;
  readonly #out: string;

  private constructor(child: ChildProcessWithoutNullStreams, out: string) {
    this.#child = child;
    this.#out = out;
    this.#lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  }

  static async open(file: string, dir: string): Promise<FdReader> {
    const out = path.join(dir, `out-${path.basename(file)}-${Date.now()}`);
    writeFileSync(out, '');
    writeFileSync(`${out}.err`, '');
    const script = 'exec 3< "$1" || exit 9; echo opened; while read cmd n; do case $cmd in ' +
      'dd) dd bs=1 count="$n" <&3 >>"$2" 2>/dev/null; echo "$?";; cat) cat <&3 >>"$2" 2>>"$2.err"; echo "$?";; esac; done';
    const r = new FdReader(spawn('sh', ['-c', script, 'sh', file, out]), out);
    const first = await r.#lines.next();
    if (first.value !== 'opened') throw new Error(`could not open ${file}`);
    return r;
  }

  /** Runs a command; its exit status. */
  async step(cmd: string): Promise<number> {
    this.#child.stdin.write(`${cmd}\n`);
    return Number((await this.#lines.next()).value);
  }

  get output(): string {
    return readFileSync(this.#out, 'utf8');
  }

  /** What cat said on stderr. */
  get errors(): string {
    return readFileSync(`${this.#out}.err`, 'utf8');
  }

  close(): void {
    this.#child.stdin.end();
  }
}

interface Fixture {
  m: TestMount;
  tree: CgroupTree;
  base: string;
  /** The program ids of the pinned views, by name. */
  progIds: Record<string, number>;
  /** The mount's directory of a cgroup of the test tree. */
  dir(...parts: string[]): string;
  /** Removes a test cgroup on the host and waits for the mirror to drop its directory. */
  rmcg(...parts: string[]): Promise<void>;
}

/**
 * One mount and one test tree for every case: the views pinned at the mount's root (so every
 * mirrored directory has them), through the control operation `vbpffs iter pin` sends (the CLI
 * itself is exercised by test/fault-programs.ts; here its start-up would only cost time).
 */
async function fixture(t: { teardown(fn: () => void | Promise<void>): void }): Promise<Fixture> {
  const m = await mountVbpffs(t);
  const tree = await makeCgroupTree(t, 'fault');
  const base = mkdtempSync(path.join(tmpdir(), 'vbpffs-fault-cg-'));
  const dir = (...parts: string[]): string => m.p(tree.cgroup, ...parts);
  const progIds: Record<string, number> = {};
  const pin = async (name: string, source: string, opts: { order?: string; cgroup?: string } = {}): Promise<void> => {
    const obj = path.join(base, `${name}.ts`);
    writeFileSync(obj, source);
    progIds[name] = (await m.daemon.engine.iterPin(obj, `/${name}`, opts)).progId;
  };
  // The walk starts at w/, a subtree of its own: the other cases make cgroups beside it.
  tree.mkdirp('w');
  await Promise.all([pin('view', VIEW), pin('long', LONG), pin('victim', VIEW), pin('walk', WALK, { order: 'descendants_pre', cgroup: tree.cg('w') })]);
  return {
    m,
    tree,
    base,
    progIds,
    dir,
    async rmcg(...parts) {
      rmdirSync(tree.hostPath(...parts));
      await until(`the mirror to drop ${parts.join('/')}`, async () => !(await exists(dir(...parts))));
    },
  };
}

t.test('cgroups removed under readers of a host mirror', async (t) => {
  const skip = (await fuseSkipReason()) || (await cgroupSkipReason());
  if (skip) {
    t.test('(mounted, with real cgroups)', { skip }, async () => undefined);
    return;
  }
  const f = await fixture(t);
  const runs = async (name: string): Promise<number> => (await f.m.daemon.engine.progShow()).find((p) => p.id === f.progIds[name])!.run_cnt;

  t.test('removed between open and read: the view reads as empty and runs nothing', async (t) => {
    f.tree.mkdirp('gone');
    f.tree.mkdirp('kept');
    await until('the mirror', async () => (await exists(f.dir('gone', 'view'))) && (await exists(f.dir('kept', 'view'))));
    // A symlink of the user's own keeps kept/'s directory (and its tag) after the cgroup goes.
    await f.m.sh('ln', '-s', '/nowhere', f.dir('kept', 'mine'));
    const runsBefore = await runs('view');

    const gone = await FdReader.open(f.dir('gone', 'view'), f.base);
    const kept = await FdReader.open(f.dir('kept', 'view'), f.base);
    t.teardown(() => (gone.close(), kept.close()));
    await f.rmcg('gone');
    rmdirSync(f.tree.hostPath('kept'));
    await until('the mirror to empty kept/', async () => (await f.m.sh('ls', f.dir('kept'))) === 'mine\n');

    t.equal(await gone.step('cat'), 0, 'the read of a released cgroup succeeds');
    t.equal(gone.errors, '');
    t.equal(gone.output, '', 'and is empty: cgroup_tryget fails');
    t.equal(await kept.step('cat'), 0, 'the read of a removed cgroup whose directory is kept succeeds');
    t.equal(kept.output, '', 'and is empty too: a view reads as empty from its cgroup\'s rmdir');
    t.equal(await runs('view'), runsBefore, 'the program ran for neither');
    t.equal((await f.m.sh('cat', f.dir('view'))).trim(), `view of ${f.tree.cgroup.slice(1)}`, 'the parent\'s view still reads');
  });

  t.test('a pin unlinked, or renamed over, while a reader holds it open: both succeed and the reader reads on', async (t) => {
    // libfuse hides an open file before unlinking it, by renaming it to .fuse_hiddenNNN, which bpffs
    // refused: rm failed with EBUSY. The kernel's bpffs unlinks an open pin as any other.
    f.tree.mkdirp('held');
    await until('the mirror', () => exists(f.dir('held', 'view')));
    const unlinked = await FdReader.open(f.m.p('victim'), f.base);
    const replaced = await FdReader.open(f.dir('held', 'view'), f.base);
    t.teardown(() => (unlinked.close(), replaced.close()));
    await f.m.sh('rm', f.m.p('victim'));
    await f.m.sh('mv', f.dir('held', 'long'), f.dir('held', 'view'));
    t.notOk((await f.m.sh('ls', f.m.mnt)).split('\n').includes('victim'), 'the name is gone');
    t.equal(await unlinked.step('cat'), 0);
    t.equal(unlinked.output, `view of \n`, 'the unlinked pin\'s reader reads it on (the root cgroup has no name)');
    t.equal(await replaced.step('cat'), 0);
    t.equal(replaced.output, 'view of held\n', 'the replaced pin\'s reader reads the old one');
    t.equal(await f.m.sh('cat', f.dir('held', 'view')), longText('held'), 'and the name is the new one');
  });

  t.test('removed during a read: the rest of the output comes from the one run made at the first read', async (t) => {
    f.tree.mkdirp('busy');
    await until('the mirror', () => exists(f.dir('busy', 'long')));
    const r = await FdReader.open(f.dir('busy', 'long'), f.base);
    t.teardown(() => r.close());
    t.equal(await r.step('dd 1000'), 0, 'the first 1,000 bytes, one read each');
    t.equal(r.output, longText('busy').slice(0, 1000));
    await f.rmcg('busy');
    t.equal(await r.step('cat'), 0, 'the reads after the cgroup went succeed');
    t.equal(r.output, longText('busy'), 'and give the rest of the same output, exactly, then EOF');
  });

  t.test('removed during a cgroup iterator walk (descendants_pre) that spans reads', async (t) => {
    for (const p of [['a', 'a1'], ['a', 'a2'], ['b', 'b1'], ['c']]) f.tree.mkdirp('w', ...p);
    await until('the mirror', () => exists(f.dir('w', 'c')));
    t.equal(await f.m.sh('cat', f.m.p('walk')), 'w seq 0\na seq 1\na1 seq 2\na2 seq 3\nb seq 4\nb1 seq 5\nc seq 6\n', 'the whole walk, read at once');

    const r = await FdReader.open(f.m.p('walk'), f.base);
    t.teardown(() => r.close());
    const head = 'w seq 0\na seq 1\na1 seq 2\n';
    t.equal(await r.step(`dd ${head.length}`), 0);
    t.equal(r.output, head, 'read one byte at a time up to a1: the walk stands at a2, not shown yet');
    // a2 is where the walk stands (the session holds it); b and b1 are ahead of it; d is new, at the end.
    await f.rmcg('w', 'a', 'a2');
    await f.rmcg('w', 'b', 'b1');
    await f.rmcg('w', 'b');
    f.tree.mkdirp('w', 'd');
    await until('the mirror to show d', () => exists(f.dir('w', 'd')));
    t.equal(await r.step('cat'), 0, 'the walk goes on after the removals');
    t.equal(r.output, `${head}c seq 4\nd seq 5\n`, 'a2 (removed where the walk stood) is skipped, dead, with its seq_num 3; removed b and b1 are not visited; d, made ahead, is');
  });
});
