import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { runTs } from './harness/run-ts';

const ROOT = path.join(__dirname, '..');

/** The code block under a README heading, and the output block after it. */
function example(heading: string): { code: string; output: string } {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf(`## ${heading}`));
  const code = /```ts\n([\s\S]*?)```/.exec(section)![1]!;
  const output = /\nprints\n\n```\n([\s\S]*?)```/.exec(section)![1]!;
  return { code, output };
}

t.test('the README library example runs and prints what the README says', async (t) => {
  const { code, output } = example('Using the library');
  // The README imports the package as a user would; here the same modules come from the sources.
  const source = code.replace(/'vbpffs\/dist\/(\w+)'/g, (_, layer: string) => JSON.stringify(path.join(ROOT, layer)));
  const dir = mkdtempSync(path.join(tmpdir(), 'vbpffs-readme-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'example.ts');
  writeFileSync(file, source);
  const { stdout } = await runTs(file);
  t.equal(stdout, output);
});

t.test('the README quickstart runs as written and prints what the README shows', async (t) => {
  const { fuseSkipReason } = await import('./harness/mount');
  const { LOADER_TIMEOUT } = await import('./harness/cli-result');
  const skip = await fuseSkipReason();
  t.test('(mounting)', { skip }, async (t) => {
    const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('## Quickstart'));
    const commands = /```\n([\s\S]*?)```/.exec(section)![1]!.trim().split('\n');
    const shown = /\nReal output:\n\n```\n([\s\S]*?)```/.exec(section)![1]!;
    // The same commands on a private mount point and state root; npx vbpffs is the CLI from the sources.
    const dir = mkdtempSync(path.join(tmpdir(), 'vbpffs-quick-'));
    const mnt = path.join(dir, 'vbpffs');
    const env = { ...process.env, VBPFFS_STATE_ROOT: path.join(dir, 'state') };
    const execArgv = process.execArgv.filter((a) => !a.includes('processinfo'));
    const { execFile } = await import('node:child_process');
    const { promisify } = await import('node:util');
    const run = promisify(execFile);
    t.teardown(async () => {
      await run(process.execPath, [...execArgv, path.join(ROOT, 'fs', 'cli.ts'), 'umount', mnt], { env }).catch(() => undefined);
    });
    let out = '';
    for (const line of commands) {
      const [cmd, ...args] = line.replaceAll('/tmp/vbpffs', mnt).split(/\s+/);
      const cli = [process.execPath, ...execArgv, path.join(ROOT, 'fs', 'cli.ts'), ...args.slice(1), ...(args[1] === 'mount' ? ['--timeout', LOADER_TIMEOUT] : [])];
      const argv = cmd === 'npx' ? cli : [cmd!, ...args];
      out += (await run(argv[0]!, argv.slice(1), { env, cwd: ROOT, encoding: 'utf8' })).stdout;
    }
    const normal = (s: string): string =>
      s.replaceAll(mnt, '/tmp/vbpffs').replace(/\(pid \d+, log [^)]*\)/, '(pid N, log L)').replace(/link \d+ \(prog \d+\)/, 'link N (prog N)');
    t.equal(normal(out), normal(shown));
  });
});
