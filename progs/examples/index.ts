/**
 * The bundled example programs: object files in TypeScript, loaded from their source at run time
 * (`loadCollection(kernel, examplePath('cpu'))`, `vbpffs iter pin progs/examples/cpu.ts ...`). The
 * build does not compile them (tsconfig.json leaves this folder out; only this file is built, as the
 * scripts import it), so from dist/ the path leads back to the sources in the package.
 */
import path from 'node:path';
import { bpfError } from '../../uapi';

/** The examples, one object file each. */
export const EXAMPLES = ['cpu', 'pressure', 'procs', 'memory', 'sched_latency', 'tree_summary'] as const;

export type ExampleName = (typeof EXAMPLES)[number];

/**
 * The source path of an example. `from` is the file asking (this one by default): from the sources
 * (progs/examples/index.ts) the examples are next to it; from the build (dist/progs/examples/index.js)
 * they are in the package's progs/examples. ENOENT for a name that is not an example.
 */
export function examplePath(name: string, from: string = __filename): string {
  if (!(EXAMPLES as readonly string[]).includes(name)) throw bpfError('ENOENT', `no example '${name}' (there are ${EXAMPLES.join(', ')})`);
  const here = path.dirname(from);
  const dir = path.extname(from) === '.ts' ? here : path.resolve(here, '..', '..', '..', 'progs', 'examples');
  return path.join(dir, `${name}.ts`);
}
