/**
 * Program object files: parsing without running anything. An object file is a TypeScript or
 * JavaScript module that imports only from 'vbpffs/bpf' and declares, as exported consts, maps
 * (`export const m = map({...})`, libbpf's SEC(".maps") structs) and programs (`export const p =
 * SEC('cgroup_view', (ctx) => ...)`, libbpf's SEC("...") functions). This file reads those
 * declarations off the syntax tree, the way libbpf reads an ELF's sections and BTF, and transpiles the
 * module (transpile.ts); the verifier (verifier.ts) then checks the programs.
 *
 * A map() literal is static, as a C initializer is: every member a literal, a 'vbpffs/bpf' constant,
 * a nested literal, or constants and literals joined by `|` (flags). Anything computed is EINVAL
 * naming the line. A malformed object (syntax, a map() or SEC() in the wrong place, an unknown
 * section, duplicate names) is EINVAL, as libbpf refuses such an ELF before the kernel sees it.
 */
import ts from 'typescript';
import { BpfMapType } from '../../uapi';
import { ValueSchema, type TypeDesc } from '../maps/schema';
import { parseSection, type SectionInfo } from '../helpers/func-proto';
import { transpile, type Transpiled } from './transpile';
import { BPF_CONSTANTS } from './verifier/constants';
import { VerifierError, VerifierLog } from './verifier/log';

/** The one module an object file may import from. */
export const BPF_MODULE = 'vbpffs/bpf';

/** A position in the original source, 1-based, as the log prints it. */
export interface SourcePos {
  readonly line: number;
  readonly column: number;
}

/** libbpf's pinning attribute: LIBBPF_PIN_NONE or LIBBPF_PIN_BY_NAME. */
export type MapPinning = 'none' | 'by_name';

/** A map declared with map({...}): what BPF_MAP_CREATE needs, plus libbpf's pinning. */
export interface MapDecl {
  readonly name: string;
  readonly type: BpfMapType;
  readonly flags: number;
  readonly key: TypeDesc | undefined;
  readonly value: TypeDesc;
  /** sizeof(key) (0 without a key type) and sizeof(value), from the schemas. */
  readonly keySize: number;
  readonly valueSize: number;
  /** max_entries; 0 when not given, as libbpf leaves it (local storage maps require 0). */
  readonly maxEntries: number;
  readonly pinning: MapPinning;
  readonly pos: SourcePos;
}

/** A program declared with SEC('section', fn). */
export interface ProgramDecl {
  readonly name: string;
  readonly section: string;
  /** What the section means: program type, attach type, how it runs (func-proto's parseSection). */
  readonly sec: SectionInfo;
  readonly pos: SourcePos;
  /** The function's source range, as offsets into the source text. */
  readonly range: { readonly start: number; readonly end: number };
}

export interface ObjectFileSpec {
  readonly filename: string;
  /** sha256 of the source text. */
  readonly hash: string;
  readonly maps: readonly MapDecl[];
  readonly programs: readonly ProgramDecl[];
  /** The interface files passed to vbpffs_cgroup_read as string literals, sorted. */
  readonly cgroupFiles: readonly string[];
  /** The whole module as CommonJS ES2022; programs are its exports of the same names. */
  readonly js: string;
  readonly sourceMap: string;
  readonly transpiled: Transpiled;
}

/** The parse result the verifier works on: the spec, the syntax tree and name resolution. */
export interface ParsedObject {
  readonly spec: ObjectFileSpec;
  readonly source: ts.SourceFile;
  readonly checker: ts.TypeChecker;
  readonly log: VerifierLog;
  /** The declaring node of each map (the const's name), by symbol. */
  readonly mapSymbols: ReadonlyMap<ts.Symbol, MapDecl>;
  /** Each program with its function node. */
  readonly programNodes: readonly { readonly decl: ProgramDecl; readonly fn: ts.ArrowFunction | ts.FunctionExpression }[];
}

const MAP_MEMBERS = new Set(['type', 'flags', 'key', 'value', 'maxEntries', 'pinning']);
const KNOWN_MAP_TYPES = new Set(Object.values(BpfMapType).filter((v) => typeof v === 'number' && v !== BpfMapType.UNSPEC));

/** Syntax kinds the parser takes as a declaration's initializer, unwrapped (`x as const`, `(x)`). */
export function unwrap(e: ts.Expression): ts.Expression {
  while (ts.isParenthesizedExpression(e) || ts.isAsExpression(e) || ts.isSatisfiesExpression(e) || ts.isNonNullExpression(e) || ts.isTypeAssertionExpression(e)) {
    e = e.expression;
  }
  return e;
}

/** The checker's symbol for an identifier, or undefined for a global (no declaration in the file). */
export function declaredSymbol(checker: ts.TypeChecker, id: ts.Identifier): ts.Symbol | undefined {
  const s = checker.getSymbolAtLocation(id);
  return s?.declarations?.length ? s : undefined;
}

/**
 * The name an expression imports from 'vbpffs/bpf', if it is one: `x` for `import { x }` (or
 * `import { x as y }` used as `y`), and `ns.x` for `import * as ns`.
 */
export function importedName(checker: ts.TypeChecker, e: ts.Expression): string | undefined {
  e = unwrap(e);
  if (ts.isIdentifier(e)) {
    const d = declaredSymbol(checker, e)?.declarations?.[0];
    // A type-only import is elided: the name is then the global of that name, not the export.
    if (d === undefined || !ts.isImportSpecifier(d) || d.isTypeOnly || d.parent.parent.isTypeOnly || !fromBpfModule(d.parent.parent.parent)) return undefined;
    return (d.propertyName ?? d.name).text;
  }
  if (ts.isPropertyAccessExpression(e) && ts.isIdentifier(e.expression) && ts.isIdentifier(e.name)) {
    const d = declaredSymbol(checker, e.expression)?.declarations?.[0];
    if (d === undefined || !ts.isNamespaceImport(d) || d.parent.isTypeOnly || !fromBpfModule(d.parent.parent)) return undefined;
    return e.name.text;
  }
  return undefined;
}

export function fromBpfModule(decl: ts.ImportDeclaration | ts.JSDocImportTag): boolean {
  return ts.isImportDeclaration(decl) && ts.isStringLiteral(decl.moduleSpecifier) && decl.moduleSpecifier.text === BPF_MODULE;
}

/** A single-file program, for name resolution only: no lib, no module resolution, no type check. */
function bindSource(source: ts.SourceFile): ts.TypeChecker {
  const options: ts.CompilerOptions = { noLib: true, noResolve: true, types: [], allowJs: true, target: ts.ScriptTarget.ES2022 };
  const host = ts.createCompilerHost(options);
  host.getSourceFile = () => source; // the only file: no lib, no imports resolved
  return ts.createProgram({ rootNames: [source.fileName], options, host }).getTypeChecker();
}

/**
 * Transpiles and parses an object file. Throws a VerifierError (EINVAL) for a syntax error; other
 * malformations are recorded in the returned log, which the verifier completes and throws.
 */
export function parseObjectFile(sourceText: string, filename: string): ParsedObject {
  let transpiled: Transpiled;
  try {
    transpiled = transpile(sourceText, filename);
  } catch (e) {
    // transpile() throws only EINVAL: a syntax error or a file that is not a module.
    const line = (e as Error).message.replace(/^EINVAL: /, '');
    throw new VerifierError('EINVAL', `${filename}: malformed object file (1 error)`, [line]);
  }
  const kind = /\.c?js$/i.test(filename) ? ts.ScriptKind.JS : ts.ScriptKind.TS;
  const source = ts.createSourceFile('object' + (kind === ts.ScriptKind.JS ? '.js' : '.ts'), sourceText, ts.ScriptTarget.ES2022, true, kind);
  const checker = bindSource(source);
  const log = new VerifierLog(source, filename);
  const p = new Parser(source, checker, log);
  p.parse();
  const spec: ObjectFileSpec = {
    filename,
    hash: transpiled.hash,
    maps: p.maps,
    programs: p.programs.map((x) => x.decl),
    cgroupFiles: [...p.cgroupFiles].sort(),
    js: transpiled.js,
    sourceMap: transpiled.sourceMap,
    transpiled,
  };
  return { spec, source, checker, log, mapSymbols: p.mapSymbols, programNodes: p.programs };
}

/** Thrown inside static evaluation; becomes one EINVAL log line at `node`. */
class NotStatic {
  constructor(readonly node: ts.Node, readonly reason: string) {}
}

class Parser {
  readonly maps: MapDecl[] = [];
  readonly programs: { decl: ProgramDecl; fn: ts.ArrowFunction | ts.FunctionExpression }[] = [];
  readonly mapSymbols = new Map<ts.Symbol, MapDecl>();
  readonly cgroupFiles = new Set<string>();
  readonly #names = new Set<string>();
  /** The map() and SEC() calls found in declaration position; any other is misplaced. */
  readonly #placed = new Set<ts.CallExpression>();

  constructor(readonly source: ts.SourceFile, readonly checker: ts.TypeChecker, readonly log: VerifierLog) {}

  parse(): void {
    for (const st of this.source.statements) {
      if (ts.isVariableStatement(st)) this.variableStatement(st);
    }
    const visit = (n: ts.Node): void => {
      if (ts.isCallExpression(n) && !this.#placed.has(n)) {
        const callee = importedName(this.checker, n.expression);
        if (callee === 'map' || callee === 'SEC') {
          this.log.reject(n, 'EINVAL', `${callee}() may only initialise an exported top-level const`);
        }
        const file = callee === 'vbpffs_cgroup_read' && n.arguments[1] !== undefined ? unwrap(n.arguments[1]) : undefined;
        if (file !== undefined && (ts.isStringLiteral(file) || ts.isNoSubstitutionTemplateLiteral(file))) this.cgroupFiles.add(file.text);
      }
      ts.forEachChild(n, visit);
    };
    visit(this.source);
  }

  variableStatement(st: ts.VariableStatement): void {
    const exported = st.modifiers?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword) ?? false;
    const isConst = (st.declarationList.flags & ts.NodeFlags.Const) !== 0;
    for (const d of st.declarationList.declarations) {
      if (d.initializer === undefined || !ts.isIdentifier(d.name)) continue;
      const init = unwrap(d.initializer);
      if (!ts.isCallExpression(init)) continue;
      const callee = importedName(this.checker, init.expression);
      if ((callee !== 'map' && callee !== 'SEC') || !exported || !isConst) continue;
      this.#placed.add(init);
      const name = d.name.text;
      if (this.#names.has(name)) {
        this.log.reject(d.name, 'EINVAL', `duplicate name '${name}': map and program names must be unique in an object file`);
        continue;
      }
      this.#names.add(name);
      if (callee === 'map') this.mapDecl(d.name, init);
      else this.programDecl(d.name, init);
    }
  }

  pos(node: ts.Node): SourcePos {
    const { line, character } = this.source.getLineAndCharacterOfPosition(node.getStart(this.source));
    return { line: line + 1, column: character + 1 };
  }

  // -------------------------------------------------------------------------------------------------
  // map({...})

  mapDecl(id: ts.Identifier, call: ts.CallExpression): void {
    let def: Record<string, unknown>;
    try {
      const arg = call.arguments.length === 1 ? unwrap(call.arguments[0]) : undefined;
      if (arg === undefined || !ts.isObjectLiteralExpression(arg)) throw new NotStatic(call, 'map() takes one object literal');
      def = this.objectLiteral(arg, true);
    } catch (e) {
      return this.notStatic(e as NotStatic);
    }
    const fail = (reason: string): void => this.log.reject(call, 'EINVAL', `map '${id.text}': ${reason}`);
    const { type, flags = 0, key, value, maxEntries = 0, pinning = 'none' } = def as Record<string, unknown>;
    if (typeof type !== 'number' || !KNOWN_MAP_TYPES.has(type)) return fail('type must be a BPF_MAP_TYPE_* constant of a map type vbpffs models');
    if (!isU32(flags)) return fail('flags must be a 32-bit unsigned integer');
    if (!isU32(maxEntries)) return fail('maxEntries must be a 32-bit unsigned integer');
    if (pinning !== 'none' && pinning !== 'by_name') return fail(`pinning must be 'none' or 'by_name'`);
    if (value === undefined) return fail('value type missing');
    let keySize = 0;
    let valueSize: number;
    try {
      if (key !== undefined) keySize = ValueSchema.define(key as TypeDesc).size;
      valueSize = ValueSchema.define(value as TypeDesc).size;
    } catch (e) {
      return fail((e as Error).message);
    }
    const decl: MapDecl = {
      name: id.text,
      type,
      flags,
      key: key as TypeDesc | undefined,
      value: value as TypeDesc,
      keySize,
      valueSize,
      maxEntries,
      pinning,
      pos: this.pos(id),
    };
    this.maps.push(decl);
    this.mapSymbols.set(this.checker.getSymbolAtLocation(id) as ts.Symbol, decl);
  }

  /** staticValue() and objectLiteral() throw only NotStatic. */
  notStatic(e: NotStatic): void {
    this.log.reject(e.node, 'EINVAL', e.reason);
  }

  objectLiteral(o: ts.ObjectLiteralExpression, top: boolean): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const p of o.properties) {
      if (!ts.isPropertyAssignment(p)) throw new NotStatic(p, 'map() members must be `name: value` (no shorthand, spread or methods)');
      const k = p.name;
      if (!ts.isIdentifier(k) && !ts.isStringLiteral(k) && !ts.isNumericLiteral(k)) throw new NotStatic(k, 'a computed member name is not static');
      const name = k.text;
      // Assigned into a plain object, `__proto__` would set its prototype and vanish from the schema.
      if (name === '__proto__') throw new NotStatic(k, `a map() member cannot be named '__proto__'`);
      if (top && !MAP_MEMBERS.has(name)) throw new NotStatic(k, `unknown map() member '${name}' (known: ${[...MAP_MEMBERS].join(', ')})`);
      if (Object.hasOwn(out, name)) throw new NotStatic(k, `member '${name}' given twice`);
      out[name] = this.staticValue(p.initializer);
    }
    return out;
  }

  /** A static value: a literal, a 'vbpffs/bpf' constant, nested literals, or `|` of numbers. */
  staticValue(e: ts.Expression): unknown {
    e = unwrap(e);
    if (ts.isNumericLiteral(e)) return Number(e.text);
    if (ts.isStringLiteral(e) || ts.isNoSubstitutionTemplateLiteral(e)) return e.text;
    if (e.kind === ts.SyntaxKind.TrueKeyword) return true;
    if (e.kind === ts.SyntaxKind.FalseKeyword) return false;
    if (ts.isPrefixUnaryExpression(e) && e.operator === ts.SyntaxKind.MinusToken && ts.isNumericLiteral(e.operand)) return -Number(e.operand.text);
    if (ts.isArrayLiteralExpression(e)) {
      return e.elements.map((x) => {
        if (ts.isSpreadElement(x) || ts.isOmittedExpression(x)) throw new NotStatic(x, 'an array element is not static');
        return this.staticValue(x);
      });
    }
    if (ts.isObjectLiteralExpression(e)) return this.objectLiteral(e, false);
    if (ts.isBinaryExpression(e) && e.operatorToken.kind === ts.SyntaxKind.BarToken) {
      const l = this.staticValue(e.left);
      const r = this.staticValue(e.right);
      if (typeof l !== 'number' || typeof r !== 'number') throw new NotStatic(e, '`|` joins numbers only');
      return (l | r) >>> 0;
    }
    const imported = importedName(this.checker, e);
    if (imported !== undefined && Object.hasOwn(BPF_CONSTANTS, imported)) return BPF_CONSTANTS[imported];
    throw new NotStatic(e, `'${e.getText(this.source)}' is not static: map() members are literals or '${BPF_MODULE}' constants`);
  }

  // -------------------------------------------------------------------------------------------------
  // SEC('section', fn)

  programDecl(id: ts.Identifier, call: ts.CallExpression): void {
    const [secArg, fnArg] = call.arguments;
    const sec = secArg === undefined ? undefined : unwrap(secArg);
    if (call.arguments.length !== 2 || sec === undefined || !(ts.isStringLiteral(sec) || ts.isNoSubstitutionTemplateLiteral(sec))) {
      this.log.reject(call, 'EINVAL', `program '${id.text}': SEC() takes a section name string literal and a function`);
      return;
    }
    const fn = unwrap(fnArg);
    if (!ts.isArrowFunction(fn) && !ts.isFunctionExpression(fn)) {
      this.log.reject(fnArg, 'EINVAL', `program '${id.text}': the program must be an arrow function or function expression`);
      return;
    }
    const info = parseSection(sec.text);
    if (info === undefined) {
      this.log.reject(sec, 'EINVAL', `program '${id.text}': unknown section '${sec.text}'`);
      return;
    }
    const decl: ProgramDecl = {
      name: id.text,
      section: sec.text,
      sec: info,
      pos: this.pos(id),
      range: { start: fn.getStart(this.source), end: fn.getEnd() },
    };
    this.programs.push({ decl, fn });
  }
}

const isU32 = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= 0xffffffff;
