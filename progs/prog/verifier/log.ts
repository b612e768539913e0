/**
 * The verifier log: one `file:line:col: reason` line per rejection, in source order, as `vbpffs prog
 * load` prints it. Two classes of rejection: a malformed object (EINVAL: syntax, a map() literal that
 * is not static, an unknown section, duplicate names, a namespace) and a program that breaks a rule,
 * with the kernel verifier's errno for that rule: EINVAL for a helper the type may not call and a
 * forbidden return value (check_helper_call, check_return_code), EACCES for the rest (an undeclared
 * map, as check_func_arg's wrong argument type; a missing return, as "R0 !read_ok"; host reach).
 * When both errnos occur, EINVAL wins.
 */
import ts from 'typescript';
import { BpfError, type ErrnoName } from '../../../uapi';

export type RejectCode = 'EINVAL' | 'EACCES';

interface Entry {
  readonly pos: number;
  readonly line: string;
  readonly code: RejectCode;
  readonly malformed: boolean;
}

/** A load failure: the errno, and the log that says why (`err.log`, one line per rejection). */
export class VerifierError extends BpfError {
  readonly log: readonly string[];
  constructor(code: ErrnoName, summary: string, log: readonly string[]) {
    super(code, `${summary}\n${log.join('\n')}`);
    this.log = log;
  }
}

export class VerifierLog {
  readonly #entries: Entry[] = [];
  readonly #file: ts.SourceFile;
  readonly #filename: string;

  constructor(file: ts.SourceFile, filename: string) {
    this.#file = file;
    this.#filename = filename;
  }

  /**
   * Records a rejection at `node`'s first token. `malformed`: the object is not well-formed (the
   * default for EINVAL), rather than a program breaking a rule.
   */
  reject(node: ts.Node, code: RejectCode, reason: string, malformed = code === 'EINVAL'): void {
    const pos = node.getStart(this.#file);
    const { line, character } = this.#file.getLineAndCharacterOfPosition(pos);
    this.#entries.push({ pos, code, malformed, line: `${this.#filename}:${line + 1}:${character + 1}: ${reason}` });
  }

  get failed(): boolean {
    return this.#entries.length > 0;
  }

  /** The log lines in source order. */
  get lines(): string[] {
    return [...this.#entries].sort((a, b) => a.pos - b.pos).map((e) => e.line);
  }

  /** Throws the VerifierError this log amounts to, if it holds any rejection. */
  throwIfFailed(): void {
    if (!this.failed) return;
    const code = this.#entries.some((e) => e.code === 'EINVAL') ? 'EINVAL' : 'EACCES';
    const n = this.#entries.length;
    const what = this.#entries.some((e) => e.malformed) ? 'malformed object file' : 'program rejected by the verifier';
    throw new VerifierError(code, `${this.#filename}: ${what} (${n} error${n === 1 ? '' : 's'})`, this.lines);
  }
}
