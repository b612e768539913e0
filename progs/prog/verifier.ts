/**
 * The verifier: static rules on a program object file's syntax tree, run before anything of it runs.
 * Each rejection is a `file:line:col: reason` line in the log that `vbpffs prog load` prints; the load
 * fails with EACCES for a rule a program breaks and EINVAL for a malformed object (see
 * verifier/log.ts). The rules:
 *
 * - helpers (the kernel's check_helper_call against the type's func_proto): a program and every
 *   function it calls may call only the helpers its program type allows (func-proto.ts); calling
 *   anything else imported from 'vbpffs/bpf' is rejected, and a helper is only ever called directly
 *   (`const f = bpf_seq_printf` would hide the call from this check);
 * - maps (the kernel's map fd resolution): a helper's map argument is a map declared in this object
 *   file, named directly; a map is used for nothing else;
 * - host reach (verifier/host.ts): the global allowlist, imports, and constructor/prototype chains;
 * - return values (verifier/returns.ts): the type's range for literal returns, a return on every path.
 *
 * The verifier is not a sandbox. It gives early, clear errors for the mistakes and escapes it can see
 * in the source; the isolated runtime is the security boundary and re-checks what matters at run time
 * (return values, helper arguments, deadlines, memory).
 *
 * Deliberate differences from the kernel: the kernel verifies bytecode by simulating every path with
 * register ranges; this verifier reads the source. It cannot bound a computed return value (the
 * runtime checks it), it does not reject unbounded loops (the runtime's CPU deadline ends them), and a
 * map must be named at the helper call rather than tracked through variables.
 */
import ts from 'typescript';
import { helperAllowed, helperInfo, returnRange } from '../helpers/func-proto';
import { BPF_MODULE, declaredSymbol, importedName, unwrap, type ParsedObject, type ProgramDecl } from './object-file';
import { BPF_CONSTANTS } from './verifier/constants';
import { HostRules, isReference } from './verifier/host';
import { checkReturns } from './verifier/returns';

const isHelper = (name: string): boolean => helperInfo(name) !== undefined;

/** Helpers whose first argument is a map (ARG_CONST_MAP_PTR). */
const MAP_ARG_HELPER = /^bpf_(map_[a-z_]+|[a-z]+_storage_(get|delete)|for_each_map_elem)$/;

/**
 * Checks a parsed object file and returns the log (empty of rejections: one summary line per
 * program). Throws a VerifierError (EINVAL or EACCES) carrying the log when any rule fails.
 */
export function verifyParsed(p: ParsedObject): string[] {
  checkImports(p);
  new HostRules(p.source, p.checker, p.log).check();
  checkNames(p);
  for (const { decl, fn } of p.programNodes) {
    checkHelpers(p, decl, fn);
    checkReturns(fn, decl.name, returnRange(decl.sec) ?? undefined, p.source, p.log);
  }
  p.log.throwIfFailed();
  return p.programNodes.map(({ decl }) => `prog '${decl.name}' (${decl.section}): verified`);
}

/** `import x from 'vbpffs/bpf'`: the module has no default export (an import elsewhere is host reach). */
function checkImports(p: ParsedObject): void {
  for (const st of p.source.statements) {
    if (!ts.isImportDeclaration(st) || st.importClause?.name === undefined) continue;
    const spec = st.moduleSpecifier;
    if (ts.isStringLiteral(spec) && spec.text === BPF_MODULE) {
      p.log.reject(st.importClause.name, 'EINVAL', `'${BPF_MODULE}' has no default export: import { ... } or * as`);
    }
  }
}

/**
 * Uses of helpers and maps anywhere in the module: a helper is only called, with its map argument a
 * declared map; a map is only a helper's map argument; nothing else imported is called.
 */
function checkNames(p: ParsedObject): void {
  const visit = (n: ts.Node): void => {
    if (ts.isIdentifier(n) && isReference(n)) identifierUse(p, n);
    if (ts.isCallExpression(n)) callUse(p, n);
    ts.forEachChild(n, visit);
  };
  visit(p.source);
}

function identifierUse(p: ParsedObject, id: ts.Identifier): void {
  const sym = declaredSymbol(p.checker, id);
  const map = sym === undefined ? undefined : p.mapSymbols.get(sym);
  if (map !== undefined) {
    if (!isMapArgument(p, id)) p.log.reject(id, 'EACCES', `map '${map.name}' may only be passed as a helper's map argument`);
    return;
  }
  const target = ts.isPropertyAccessExpression(id.parent) && id.parent.expression === id ? id.parent : id;
  const name = importedName(p.checker, target);
  if (name === undefined || !isHelper(name)) return;
  const callee = outermostWrapper(target);
  if (!ts.isCallExpression(callee.parent) || callee.parent.expression !== callee) {
    p.log.reject(id, 'EACCES', `helper ${name} may only be called directly, not used as a value`);
  }
}

/** `x` itself, or the outermost of the parentheses and type assertions around it (what unwrap() removes). */
function outermostWrapper(x: ts.Node): ts.Node {
  while (ts.isParenthesizedExpression(x.parent) || ts.isAsExpression(x.parent) || ts.isNonNullExpression(x.parent) ||
    ts.isSatisfiesExpression(x.parent) || ts.isTypeAssertionExpression(x.parent)) {
    x = x.parent;
  }
  return x;
}

function isMapArgument(p: ParsedObject, id: ts.Identifier): boolean {
  const arg = outermostWrapper(id);
  const call = arg.parent;
  if (!ts.isCallExpression(call) || call.arguments[0] !== arg) return false;
  const name = importedName(p.checker, call.expression);
  return name !== undefined && MAP_ARG_HELPER.test(name) && isHelper(name);
}

function callUse(p: ParsedObject, call: ts.CallExpression): void {
  const name = importedName(p.checker, call.expression);
  if (name === undefined || name === 'map' || name === 'SEC') return; // map() and SEC(): object-file.ts
  if (!isHelper(name)) {
    const what = Object.hasOwn(BPF_CONSTANTS, name) ? 'a constant' : `not a helper '${BPF_MODULE}' provides`;
    p.log.reject(call, 'EACCES', `calling ${name}: ${what}`);
    return;
  }
  if (atModuleScope(call)) p.log.reject(call, 'EACCES', `helper ${name} called at load time: helpers are called from programs`);
  if (MAP_ARG_HELPER.test(name)) {
    const arg = call.arguments[0] === undefined ? undefined : unwrap(call.arguments[0]);
    const sym = arg !== undefined && ts.isIdentifier(arg) ? declaredSymbol(p.checker, arg) : undefined;
    if (sym === undefined || !p.mapSymbols.has(sym)) {
      p.log.reject(arg ?? call, 'EACCES', `${name}: the map argument is not a map declared in this object file`);
    }
  }
}

function atModuleScope(n: ts.Node): boolean {
  for (let x = n.parent; !ts.isSourceFile(x); x = x.parent) if (ts.isFunctionLike(x)) return false;
  return true;
}

/**
 * check_helper_call for one program: the helpers called by the program's function and by every
 * function of this file it calls, transitively (the kernel verifies subprograms in the caller's
 * context the same way).
 */
function checkHelpers(p: ParsedObject, decl: ProgramDecl, fn: ts.FunctionLikeDeclaration): void {
  const seen = new Set<ts.Node>([fn]);
  const queue: ts.Node[] = [fn];
  while (queue.length > 0) {
    const body = queue.shift() as ts.Node;
    const via = body === fn ? '' : ` (in a function program '${decl.name}' calls)`;
    const walk = (n: ts.Node): void => {
      if (ts.isCallExpression(n)) {
        const name = importedName(p.checker, n.expression);
        if (name !== undefined && isHelper(name) && !helperAllowed(decl.sec, name)) {
          p.log.reject(n, 'EACCES', `program '${decl.name}' (${decl.section}): helper ${name} is not allowed for this program type${via}`);
        }
      }
      if (ts.isIdentifier(n) && isReference(n)) {
        const target = subprogram(p, n);
        if (target !== undefined && !seen.has(target)) {
          seen.add(target);
          queue.push(target);
        }
      }
      ts.forEachChild(n, walk);
    };
    ts.forEachChild(body, walk);
  }
}

/** The function a name refers to, when it is one declared in this file (a subprogram). */
function subprogram(p: ParsedObject, id: ts.Identifier): ts.Node | undefined {
  const d = declaredSymbol(p.checker, id)?.declarations?.[0];
  if (d === undefined) return undefined;
  if (ts.isFunctionDeclaration(d) && d.body !== undefined) return d;
  if (ts.isVariableDeclaration(d) && d.initializer !== undefined) {
    const init = unwrap(d.initializer);
    if (ts.isArrowFunction(init) || ts.isFunctionExpression(init)) return init;
  }
  return undefined;
}
