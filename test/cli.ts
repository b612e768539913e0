import { execFile } from 'node:child_process';
import { statSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { runCli } from '../fs/cli';
import { cgroupSkipReason, makeCgroupTree } from './harness/cgroup-tree';

/** Runs one command line in-process and collects what it prints. */
async function vbpffs(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(args, { stdout: (s) => void (stdout += s), stderr: (s) => void (stderr += s) });
  return { code, stdout, stderr };
}

t.test('the vbpffs command runs as its own process: output on stdout, errors on stderr, exit status', async (t) => {
  const run = promisify(execFile);
  // The TypeScript loader this test runs under, so the child runs the sources, not a stale build.
  const cli = [...process.execArgv, path.join(__dirname, '..', 'fs', 'cli.ts')];
  const ok = await run(process.execPath, [...cli, 'version']);
  t.match(ok.stdout, /^vbpffs v\d+\.\d+\.\d+\n$/);
  const bad = await run(process.execPath, [...cli, 'frob']).catch((e: { code: number; stderr: string }) => e);
  t.equal((bad as { code: number }).code, 1);
  t.equal((bad as { stderr: string }).stderr, "Error: unknown keyword 'frob' (EINVAL)\n");
});

t.test('no arguments and `help` print the usage', async (t) => {
  for (const args of [[], ['help'], ['he']]) {
    const r = await vbpffs(...args);
    t.equal(r.code, 0);
    t.match(r.stdout, /^Usage: vbpffs \[-j\|-p\] OBJECT COMMAND/);
  }
});

t.test('version prints the package version, as JSON with -j', async (t) => {
  const { version } = require('../package.json') as { version: string };
  t.equal((await vbpffs('version')).stdout, `vbpffs v${version}\n`);
  t.same(JSON.parse((await vbpffs('-j', 'version')).stdout), { version });
});

t.test('bad input is an `Error:` line on stderr with the errno name and exit status 1', async (t) => {
  const unknown = await vbpffs('frob');
  t.equal(unknown.code, 1);
  t.equal(unknown.stderr, "Error: unknown keyword 'frob' (EINVAL)\n");
  t.equal((await vbpffs('--frob', 'cgroup')).stderr, "Error: unknown option '--frob' (EINVAL)\n");
  const json = await vbpffs('-j', 'cgroup', 'frob');
  t.equal(json.code, 1);
  t.same(JSON.parse(json.stdout), { error: "unknown keyword 'frob' (EINVAL)" }, 'with -j the error is JSON on stdout');
  t.equal(json.stderr, '');
});

t.test('keywords may be abbreviated, as in bpftool, but not ambiguously', async (t) => {
  t.equal((await vbpffs('vers')).code, 0);
  const amb = await vbpffs('');
  t.equal(amb.stderr, "Error: ambiguous keyword '': mount, umount, status, prog, map, link, iter, cgroup, version, help (EINVAL)\n");
  t.equal((await vbpffs('m')).stderr, "Error: ambiguous keyword 'm': mount, map (EINVAL)\n");
});

t.test('cgroup tree on the host', async (t) => {
  const skip = await cgroupSkipReason();
  t.test('cgroup tree lists the host cgroup2 tree, pre-order, with ids equal to inode numbers', { skip }, async (t) => {
    const tree = await makeCgroupTree(t, 'cli');
    tree.mkdirp('a', 'b');
    const r = await vbpffs('-j', 'cgroup', 'tree', tree.cgroup);
    t.equal(r.code, 0, r.stderr);
    const nodes = JSON.parse(r.stdout) as { id: number; path: string; level: number }[];
    t.same(
      nodes.map((n) => n.path),
      [tree.cgroup, tree.cg('a'), tree.cg('a', 'b')],
    );
    t.equal(nodes[2]!.id, statSync(tree.hostPath('a', 'b')).ino);
    t.equal(nodes[2]!.level, 3);
    const pretty = await vbpffs('-p', 'c', 't', tree.cgroup);
    t.same(JSON.parse(pretty.stdout), nodes);
    t.match(pretty.stdout, /^\[\n  \{\n    "id": /, '-p indents');
    const plain = await vbpffs('cgroup', 'tree', tree.cgroup);
    t.match(plain.stdout, new RegExp(`^CgroupPath \\(cgroup2 at ${tree.mount}\\)\\n`));
    t.match(plain.stdout, new RegExp(`${statSync(tree.hostPath('a')).ino}\\s+${tree.cg('a')}\\n`));
    const whole = await vbpffs('-j', 'cgroup', 'tree');
    t.equal((JSON.parse(whole.stdout) as { path: string }[])[0]!.path, '/', 'without a path the tree starts at the root');
    const missing = await vbpffs('cgroup', 'tree', tree.cg('nope'));
    t.equal(missing.code, 1);
    t.equal(missing.stderr, `Error: no cgroup ${tree.cg('nope')} under ${tree.mount} (ENOENT)\n`);
  });
});
