/**
 * Runs a TypeScript file in its own Node process with the TypeScript loader this test runs under,
 * but outside tap's process tracking, so the child reports no coverage. For tests that check
 * documentation (the README's examples, the demo), whose children would otherwise count the index
 * files' re-export getters they load as uncovered functions.
 *
 * tap's processinfo patches child_process to put its tracking back into every child's environment,
 * so the variables are removed by env(1) between us and node, where the patch cannot reach.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export async function runTs(file: string, args: string[] = []): Promise<{ stdout: string; stderr: string }> {
  const execArgv = process.execArgv.filter((a) => !a.includes('@tapjs/processinfo') && !a.includes('@tapjs/mock'));
  const tracking = Object.keys(process.env).filter((k) => k.startsWith('_TAPJS_PROCESSINFO'));
  const unset = ['NODE_OPTIONS', 'NODE_V8_COVERAGE', ...tracking].flatMap((k) => ['-u', k]);
  return run('env', [...unset, process.execPath, ...execArgv, file, ...args]);
}
