/**
 * Reading and verifying an object file: parse, transpile, verify. Nothing of the file runs here.
 */
import { readFile } from 'node:fs/promises';
import { bpfError } from '../../uapi';
import { parseObjectFile, type ObjectFileSpec } from './object-file';
import { verifyParsed } from './verifier';

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
