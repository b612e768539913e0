/**
 * `npm run bench`: runs every benchmark module in scripts/bench/ (each exports `run()`), one after the
 * other so they do not disturb each other, or only those named on the command line:
 *   npm run bench -- local-storage
 * Figures are printed as ratios against a baseline measured in the same run, since machines are noisy.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

interface BenchModule {
  run(): Promise<void>;
}

async function main(): Promise<void> {
  const dir = join(__dirname, 'bench');
  const wanted = process.argv.slice(2);
  const names = readdirSync(dir)
    .filter((f) => f.endsWith('.js'))
    .map((f) => f.slice(0, -3))
    .filter((n) => wanted.length === 0 || wanted.includes(n))
    .sort();
  if (names.length === 0) throw new Error(`no benchmark matches ${wanted.join(', ')}`);
  console.log(`vbpffs bench: node ${process.version}, ${new Date().toISOString()}`);
  for (const name of names) {
    console.log(`\n== ${name}`);
    const mod = (await import(join(dir, `${name}.js`))) as BenchModule;
    await mod.run();
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
