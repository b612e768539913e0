/**
 * progs/prog: program object files. loadObjectFile parses, transpiles and verifies one; what it
 * returns (the maps and programs it declares and the module's JavaScript) is what program loading
 * and the isolated runtime take from here. Nothing of the file runs in this folder.
 */
import { readFile } from 'node:fs/promises';
import { bpfError } from '../../uapi';
import { parseObjectFile, type ObjectFileSpec } from './object-file';
import { verifyParsed } from './verifier';

export {
  BPF_MODULE,
  parseObjectFile,
  type MapDecl,
  type MapPinning,
  type ObjectFileSpec,
  type ParsedObject,
  type ProgramDecl,
  type SourcePos,
} from './object-file';
export { verifyParsed } from './verifier';
export { BPF_CONSTANTS } from './verifier/constants';
export { VerifierError } from './verifier/log';
export {
  TRANSPILE_CACHE_MAX,
  clearTranspileCache,
  originalPosition,
  transpile,
  transpileCacheStats,
  type Transpiled,
} from './transpile';

/** An object file given as text, named for the log and its dialect (.ts or .js). */
export interface ObjectSource {
  source: string;
  filename: string;
}

export interface LoadedObject {
  spec: ObjectFileSpec;
  /** The verifier's log: one line per verified program. */
  log: string[];
}

/**
 * Parses, transpiles and verifies an object file, given as text. Throws a VerifierError: EINVAL
 * for a malformed object, EACCES for a rule a program breaks; `err.log` holds one line per rejection.
 */
export function verify(obj: ObjectSource): LoadedObject {
  if (typeof obj.source !== 'string') throw bpfError('EINVAL', `${obj.filename}: the source must be text`);
  const parsed = parseObjectFile(obj.source, obj.filename);
  const log = verifyParsed(parsed);
  return { spec: parsed.spec, log };
}

/** Reads (when given a path), parses, transpiles and verifies an object file; see verify(). */
export async function loadObjectFile(file: string | ObjectSource): Promise<LoadedObject> {
  if (typeof file !== 'string') return verify(file);
  let source: string;
  try {
    source = await readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw bpfError(code === 'ENOENT' ? 'ENOENT' : 'EINVAL', `${file}: cannot read the object file (${code})`, e);
  }
  return verify({ source, filename: file });
}
