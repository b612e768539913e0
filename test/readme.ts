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
