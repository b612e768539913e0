/**
 * The package as `npm run build` makes it (CommonJS in dist/), transpiled from the sources into a
 * temporary directory, for tests that start many daemons and CLI processes. Through the TypeScript
 * loader each child compiles every file it loads again: a daemon takes 5-15 s to come up on a
 * loaded 2-core host, a CLI command 3 s; from JavaScript, about 1.5 s and 0.3 s. Transpiling only
 * (no type check: `npm test` runs tsc first) takes a few seconds, once per source tree: the output
 * is kept under a name made of a hash of the sources.
 *
 * Processes run from here report no coverage (their files are not the sources): code they run must
 * be covered by in-process tests too.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, symlinkSync, writeFileSync, realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import ts from 'typescript';

const ROOT = path.join(__dirname, '..', '..');
const DIRS = ['uapi', 'tags', 'progs', 'iter', 'fs'];

function sources(dir: string): string[] {
  return readdirSync(path.join(ROOT, dir), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts'))
    .map((e) => path.relative(ROOT, path.join(e.parentPath, e.name)))
    .sort();
}

/** The package root of the build: `node ROOT/dist/fs/cli.js` is the `vbpffs` command. */
export function buildJs(): string {
  const files = DIRS.flatMap(sources);
  const hash = createHash('sha256');
  for (const f of files) hash.update(f).update('\0').update(readFileSync(path.join(ROOT, f)));
  // The build links to this checkout's node_modules: another checkout's build of the same sources
  // (one that may since have been removed) is not this one's.
  const modules = realpathSync(path.join(ROOT, 'node_modules'));
  hash.update('\0').update(modules);
  const out = path.join(tmpdir(), `vbpffs-build-${hash.digest('hex').slice(0, 16)}`);
  if (existsSync(path.join(out, 'dist', 'fs', 'cli.js'))) return out;
  // Built aside and renamed into place, so a concurrent test never sees half a build.
  const tmp = `${out}.${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  const options: ts.CompilerOptions = { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true };
  for (const f of files) {
    const js = ts.transpileModule(readFileSync(path.join(ROOT, f), 'utf8'), { fileName: f, compilerOptions: options }).outputText;
    const dest = path.join(tmp, 'dist', f.replace(/\.ts$/, '.js'));
    mkdirSync(path.dirname(dest), { recursive: true });
    writeFileSync(dest, js);
  }
  // The examples stay sources (the build leaves them out) where examplePath looks for them.
  for (const f of sources(path.join('progs', 'examples'))) {
    mkdirSync(path.dirname(path.join(tmp, f)), { recursive: true });
    writeFileSync(path.join(tmp, f), readFileSync(path.join(ROOT, f)));
  }
  writeFileSync(path.join(tmp, 'package.json'), readFileSync(path.join(ROOT, 'package.json')));
  symlinkSync(modules, path.join(tmp, 'node_modules'));
  try {
    renameSync(tmp, out);
  } catch {
    rmSync(tmp, { recursive: true, force: true }); // another test built it first
  }
  return out;
}
