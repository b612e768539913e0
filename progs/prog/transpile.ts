/**
 * Transpiling a program object file: TypeScript (or JavaScript) to a CommonJS ES2022 module with a
 * source map, once per source. The TypeScript compiler's first transpile in a process costs tens of
 * milliseconds; later ones of the same text are a cache hit.
 *
 * The cache is keyed by the sha256 of the source text and the file's extension (the extension picks
 * the dialect: .ts, .cts, .js, .cjs; .mts and .mjs are refused, EINVAL: the compiler emits those as
 * ES modules whatever the options say, and an object file is CommonJS); the file name itself is not part of the key, so the map's
 * `sources` names a fixed stand-in and callers name the file when they report a position
 * (originalPosition). It holds at most TRANSPILE_CACHE_MAX entries and forgets the least recently used.
 */
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import ts from 'typescript';
import { bpfError } from '../../uapi';

/** How many transpiled sources the cache keeps. */
export const TRANSPILE_CACHE_MAX = 64;

/** Extensions an object file may have, and the stand-in file name each transpiles as. */
const DIALECT: Readonly<Record<string, string>> = {
  '.ts': 'object.ts',
  '.cts': 'object.cts',
  '.js': 'object.js',
  '.cjs': 'object.cjs',
};

export interface Transpiled {
  /** sha256 of the source text, hex. */
  readonly hash: string;
  /** The CommonJS module, without the sourceMappingURL comment. */
  readonly js: string;
  /** The source map (version 3) as JSON text. */
  readonly sourceMap: string;
  /** Generated line (0-based) -> its segments, decoded once, for originalPosition. */
  readonly lines: readonly (readonly Segment[])[];
}

/** One decoded mapping: generated column -> original line and column (all 0-based). */
export interface Segment {
  readonly genCol: number;
  readonly line: number;
  readonly col: number;
}

export interface TranspileStats {
  hits: number;
  misses: number;
  size: number;
}

const cache = new Map<string, Transpiled>();
const stats = { hits: 0, misses: 0 };

/** The stand-in name a file transpiles as; EINVAL for an extension that is not a module. */
export function dialectOf(filename: string): string {
  const name = DIALECT[path.extname(filename).toLowerCase()];
  if (name === undefined) throw bpfError('EINVAL', `${filename}: an object file is a .ts or .js module (or .cts, .cjs: CommonJS, so not .mts, .mjs)`);
  return name;
}

export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/**
 * Transpiles `source` (named `filename` for its dialect), or returns the cached result. Only
 * syntax is checked here (transpileModule reports no type errors); a syntax error is EINVAL with
 * file:line:col.
 */
export function transpile(source: string, filename: string): Transpiled {
  const dialect = dialectOf(filename);
  const hash = sha256(source);
  const key = `${hash}${dialect}`;
  const hit = cache.get(key);
  if (hit !== undefined) {
    stats.hits++;
    cache.delete(key); // re-insert: a Map iterates in insertion order, so the first key is the LRU
    cache.set(key, hit);
    return hit;
  }
  stats.misses++;
  const out = ts.transpileModule(source, {
    fileName: dialect,
    reportDiagnostics: true,
    compilerOptions: {
      module: ts.ModuleKind.CommonJS,
      target: ts.ScriptTarget.ES2022,
      sourceMap: true,
      inlineSources: false,
      esModuleInterop: false,
      allowJs: true,
      removeComments: false,
    },
  });
  const first = out.diagnostics?.find((d) => d.category === ts.DiagnosticCategory.Error);
  if (first !== undefined) throw bpfError('EINVAL', formatDiagnostic(first, filename));
  const js = out.outputText.replace(/\n\/\/# sourceMappingURL=.*\s*$/, '\n');
  const sourceMap = out.sourceMapText as string;
  const result: Transpiled = { hash, js, sourceMap, lines: decodeMappings(JSON.parse(sourceMap).mappings) };
  cache.set(key, result);
  if (cache.size > TRANSPILE_CACHE_MAX) cache.delete(cache.keys().next().value as string);
  return result;
}

/** `file:line:col: message` for a syntax diagnostic (which always has a file and a position). */
function formatDiagnostic(d: ts.Diagnostic, filename: string): string {
  const text = ts.flattenDiagnosticMessageText(d.messageText, '\n');
  const { line, character } = (d.file as ts.SourceFile).getLineAndCharacterOfPosition(d.start as number);
  return `${filename}:${line + 1}:${character + 1}: ${text}`;
}

/**
 * Maps a position in the generated JS (1-based line and column, as a stack trace prints them) back
 * to the original source (1-based), or undefined when that line has no mapping.
 */
export function originalPosition(t: Transpiled, line: number, column: number): { line: number; column: number } | undefined {
  const segs = t.lines[line - 1];
  if (segs === undefined || segs.length === 0) return undefined;
  let best = segs[0];
  for (const s of segs) {
    if (s.genCol > column - 1) break;
    best = s;
  }
  return { line: best.line + 1, column: best.col + 1 };
}

export function transpileCacheStats(): TranspileStats {
  return { ...stats, size: cache.size };
}

/** Empties the cache and zeroes its counters (tests). */
export function clearTranspileCache(): void {
  cache.clear();
  stats.hits = 0;
  stats.misses = 0;
}

// ---------------------------------------------------------------------------------------------------
// Source map "mappings": base64 VLQ, fields relative to the previous segment (columns reset per line).

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** Decodes a source map's `mappings` into segments per generated line. */
export function decodeMappings(mappings: string): Segment[][] {
  const lines: Segment[][] = [];
  let srcLine = 0;
  let srcCol = 0;
  for (const lineText of mappings.split(';')) {
    const segs: Segment[] = [];
    let genCol = 0;
    for (const segText of lineText.split(',')) {
      if (segText === '') continue;
      const f = decodeVlq(segText);
      genCol += f[0];
      // A 1-field segment maps to nothing; TypeScript writes at least 4 fields otherwise.
      if (f.length < 4) continue;
      srcLine += f[2];
      srcCol += f[3];
      segs.push({ genCol, line: srcLine, col: srcCol });
    }
    lines.push(segs);
  }
  return lines;
}

function decodeVlq(text: string): number[] {
  const out: number[] = [];
  let value = 0;
  let shift = 0;
  for (const ch of text) {
    const digit = B64.indexOf(ch);
    value += (digit & 31) << shift;
    if (digit & 32) {
      shift += 5;
      continue;
    }
    out.push(value & 1 ? -(value >>> 1) : value >>> 1);
    value = 0;
    shift = 0;
  }
  return out;
}
