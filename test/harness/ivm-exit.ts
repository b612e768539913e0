/**
 * isolated-vm 5.0.4 aborts the process at exit under NODE_V8_COVERAGE (tap's coverage) when its
 * handle objects are still waiting for the garbage collector: V8's coverage teardown collects
 * garbage after isolated-vm's environment is gone, and its finalizers assert
 * (`IsolateEnvironment::GetCurrent(): environment != nullptr`). A collection at 'exit', while the
 * environment is alive, leaves nothing for that last one. Reproduced without vbpffs: create and
 * dispose an isolate after require('debug'), exit with NODE_V8_COVERAGE set. Tests only: the daemon
 * does not run under coverage.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
process.on('exit', () => gc());
