/**
 * The verifier: static rules on a program object file's syntax tree, run before anything of it runs.
 * Each rejection is a `file:line:col: reason` line in the log that `vbpffs prog load` prints; the load
 * fails with EINVAL for a malformed object, and for a rule a program breaks with the errno the
 * kernel's verifier gives that rule (EINVAL or EACCES, see verifier/log.ts). The rules:
 *
 * - helpers (the kernel's check_helper_call against the type's func_proto, EINVAL): a helper call is
 *   checked against every program that may reach it (helperReach below): the program whose function
 *   holds it, and the programs calling, by name, the function that holds it. A function that is used
 *   any other way (a method, getter, class member, callback, a function stored in an object or array
 *   or assigned, an exported one) may be reached by any program of the file, so a helper call in it
 *   must be allowed for every program type in the file. Calling anything else imported from
 *   'vbpffs/bpf' is rejected, and a helper is only ever the direct callee of a call (`const f =
 *   bpf_seq_printf`, `bpf_seq_printf.call(...)` would hide the call from this check). A namespace
 *   import is used only as `ns.name`, then checked as the named import (`ns['name']`, `const { name
 *   } = ns`, `ns` as a value are rejected);
 * - maps (the kernel's map fd resolution): a helper's map argument is a map declared in this object
 *   file, named directly; a map is used for nothing else;
 * - host reach (verifier/host.ts): the global allowlist, imports, and constructor/prototype chains;
 * - return values (verifier/returns.ts): the type's range for literal returns (integers), a return on
 *   every path.
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
import { BPF_MODULE, declaredSymbol, fromBpfModule, importedName, unwrap, type ParsedObject, type ProgramDecl } from './object-file';
import { BPF_CONSTANTS } from './verifier/constants';
import { HostRules, isReference, outermostWrapper } from './verifier/host';
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
  checkHelpers(p);
  for (const { decl, fn } of p.programNodes) {
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
    if (isTypeOnly(n)) return;
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
  const d = sym?.declarations?.[0];
  let target: ts.Expression = id;
  if (d !== undefined && ts.isNamespaceImport(d) && fromBpfModule(d.parent.parent)) {
    // `ns.name` only: `ns['name']`, `const { name } = ns`, `(ns as any).name`, `f(ns)` would hide a helper.
    const access = id.parent;
    if (!ts.isPropertyAccessExpression(access) || access.expression !== id || !ts.isIdentifier(access.name)) {
      p.log.reject(id, 'EACCES', `namespace import '${id.text}' may only be used as ${id.text}.name`);
      return;
    }
    target = access;
  }
  const name = importedName(p.checker, target);
  if (name === undefined || !isHelper(name)) return;
  const callee = outermostWrapper(target);
  if (!ts.isCallExpression(callee.parent) || callee.parent.expression !== callee) {
    p.log.reject(id, 'EACCES', `helper ${name} may only be called directly, not used as a value`);
  }
}

/** Type positions emit nothing: `typeof bpf_seq_printf`, `typeof ns.map` are not uses. */
function isTypeOnly(n: ts.Node): boolean {
  return (ts.isTypeNode(n) && !ts.isExpressionWithTypeArguments(n)) || ts.isInterfaceDeclaration(n) || ts.isTypeAliasDeclaration(n);
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
  if (name === 'vbpffs_cgroup_read') {
    // The runtime reads a run's files before the run (progs/runtime/cgroup-files.ts): it must know them.
    const file = call.arguments[1] === undefined ? undefined : unwrap(call.arguments[1]);
    if (file === undefined || !(ts.isStringLiteral(file) || ts.isNoSubstitutionTemplateLiteral(file))) {
      p.log.reject(file ?? call, 'EINVAL', `vbpffs_cgroup_read: the file must be a string literal, so it can be read before the run`);
    }
  }
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

/** Any program of the file may reach it. */
const ANY = 'any';
type Reach = Set<ProgramDecl> | typeof ANY;

/**
 * check_helper_call, EINVAL as the kernel's "program of this type cannot use helper": every helper
 * call in the file against every program that may reach it (helperReach).
 */
function checkHelpers(p: ParsedObject): void {
  const reach = helperReach(p);
  const all = new Set(p.programNodes.map((x) => x.decl));
  const walk = (n: ts.Node): void => {
    if (ts.isCallExpression(n)) {
      const name = importedName(p.checker, n.expression);
      const scope = name !== undefined && isHelper(name) ? scopeOf(n) : undefined;
      if (scope !== undefined && scope !== MODULE) { // at module scope: callUse's load-time rule
        const r = scope === ANY ? ANY : reach.get(scope) ?? new Set<ProgramDecl>();
        for (const { decl, fn } of p.programNodes) {
          if ((r === ANY ? all : r).has(decl) && !helperAllowed(decl.sec, name as string)) {
            const via = scope === fn ? '' : r === ANY ? ' (in a function any program of this file may reach: it is used other than by a direct call)' :
              ` (in a function program '${decl.name}' calls)`;
            p.log.reject(n, 'EINVAL', `program '${decl.name}' (${decl.section}): helper ${name} is not allowed for this program type${via}`, false);
          }
        }
      }
    }
    ts.forEachChild(n, walk);
  };
  walk(p.source);
}

const MODULE = 'module';

/**
 * The function whose run executes `n`: the innermost function with a body around it; ANY inside a
 * class field initializer or static block (they run when a class is built or evaluated, whoever does
 * that); MODULE at module scope.
 */
function scopeOf(n: ts.Node): ts.Node | typeof ANY | typeof MODULE {
  for (let x = n.parent; !ts.isSourceFile(x); x = x.parent) {
    if (ts.isFunctionLike(x) && (x as ts.FunctionLikeDeclaration).body !== undefined) return x;
    if (ts.isPropertyDeclaration(x) || ts.isClassStaticBlockDeclaration(x)) return ANY;
  }
  return MODULE;
}

/**
 * Which programs may run each function of the file, the way the kernel verifies a subprogram in each
 * caller's context. A program's function is run by its program. A function with a name (a function
 * declaration, a variable initialised with a function) that is used only as the direct callee of
 * calls is run by whatever runs those calls' functions. Every other function (a method, accessor or
 * constructor, a callback, one stored in an object or array, assigned, exported, or called at module
 * scope; a program whose name is used) may be run by any program: ANY. A function never called is
 * run by none.
 */
function helperReach(p: ParsedObject): Map<ts.Node, Reach> {
  const refs = new Map<ts.Symbol, ts.Identifier[]>();
  const index = (n: ts.Node): void => {
    if (isTypeOnly(n)) return;
    if (ts.isIdentifier(n) && isReference(n)) {
      const sym = ts.isShorthandPropertyAssignment(n.parent) ? p.checker.getShorthandAssignmentValueSymbol(n.parent)
        : ts.isExportSpecifier(n.parent) ? p.checker.getExportSpecifierLocalTargetSymbol(n.parent) : p.checker.getSymbolAtLocation(n);
      if (sym !== undefined) (refs.get(sym) ?? refs.set(sym, []).get(sym)!).push(n);
    }
    ts.forEachChild(n, index);
  };
  index(p.source);

  const reach = new Map<ts.Node, Reach>();
  const callers = new Map<ts.Node, ts.Node[]>(); // caller function -> functions it calls by name
  const queue: ts.Node[] = [];
  const add = (fn: ts.Node, r: Reach): void => {
    const cur = reach.get(fn);
    if (cur === ANY) return;
    if (r === ANY) reach.set(fn, ANY);
    else {
      const next = new Set([...(cur ?? []), ...r]);
      if (cur !== undefined && next.size === cur.size) return;
      reach.set(fn, next);
    }
    queue.push(fn);
  };
  const programs = new Map<ts.Node, ProgramDecl>(p.programNodes.map(({ decl, fn }) => [fn, decl]));
  const visit = (n: ts.Node): void => {
    if (ts.isFunctionLike(n) && (n as ts.FunctionLikeDeclaration).body !== undefined) {
      const program = programs.get(n);
      const names = functionNames(p, n, program !== undefined);
      const uses = names?.flatMap((s) => refs.get(s) ?? []);
      if (program !== undefined) add(n, new Set([program]));
      if (uses === undefined) add(n, ANY);
      for (const use of uses ?? []) {
        const callee = outermostWrapper(use);
        const scope = program === undefined && ts.isCallExpression(callee.parent) && callee.parent.expression === callee ? scopeOf(use) : ANY;
        if (scope === ANY || scope === MODULE) add(n, ANY);
        else (callers.get(scope) ?? callers.set(scope, []).get(scope)!).push(n);
      }
    }
    ts.forEachChild(n, visit);
  };
  visit(p.source);
  while (queue.length > 0) {
    const fn = queue.shift() as ts.Node;
    for (const callee of callers.get(fn) ?? []) add(callee, reach.get(fn) as Reach);
  }
  return reach;
}

/**
 * The symbols that name a function, whose every use must be a direct call for the function to stay
 * out of ANY; undefined when it has none or it is exported (the runtime's exports object holds it).
 * For a program: the const SEC() initialises (any use of it is a use of the program's function).
 */
function functionNames(p: ParsedObject, fn: ts.Node, program: boolean): ts.Symbol[] | undefined {
  const exported = (d: ts.Declaration): boolean => (ts.getCombinedModifierFlags(d) & ts.ModifierFlags.Export) !== 0;
  const names: ts.Node[] = [];
  if (ts.isFunctionDeclaration(fn)) {
    if (fn.name === undefined || exported(fn)) return undefined;
    names.push(fn.name);
  } else if (ts.isArrowFunction(fn) || ts.isFunctionExpression(fn)) {
    let holder: ts.Node = outermostWrapper(fn);
    if (program) holder = outermostWrapper(holder.parent); // SEC('...', fn) -> the const it initialises
    const v = holder.parent;
    if (!ts.isVariableDeclaration(v) || !ts.isIdentifier(v.name)) return undefined;
    if (!program && exported(v)) return undefined;
    names.push(v.name);
    if (fn.name !== undefined) names.push(fn.name);
  } else {
    return undefined;
  }
  return names.map((n) => p.checker.getSymbolAtLocation(n) as ts.Symbol);
}
