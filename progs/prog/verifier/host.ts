/**
 * The host-reach rules: what an object file may name. They run over the whole module (top-level code
 * runs when the runtime evaluates it), all EACCES:
 *
 * - Globals are an allowlist: ECMAScript's own data globals (Math, JSON, Number, BigInt, typed
 *   arrays, Map, ...). Everything else a name can reach without declaring it is rejected: process,
 *   require, module, exports, global, globalThis, self, window, console, Buffer, timers,
 *   queueMicrotask, fetch, and the code-making or meta-object globals eval, Function, Reflect, Proxy,
 *   WebAssembly, Atomics, SharedArrayBuffer, Promise. A declaration that emits no value does not
 *   shadow a global: `declare`, a body-less function signature (an overload), an interface or type,
 *   a type-only import.
 * - The global Object only as `Object(x)`, `new Object()`, `x instanceof Object` or `Object.name`
 *   with a name other than its reflective members (getOwnPropertyDescriptor(s), getOwnPropertyNames,
 *   getOwnPropertySymbols, defineProperty/ies, assign; get/setPrototypeOf are forbidden names anyway):
 *   they read and write properties by a name computed at run time. (Reflect is a rejected global.)
 * - No namespace or module declarations (EINVAL: a namespace's exported variables are properties
 *   written from anywhere, out of the numeric-key rule's sight). Enums are allowed: their members
 *   are never "provably numbers" as keys, and string members are string literals (below).
 * - No import but 'vbpffs/bpf', no import() or import.meta, no `import x = require()`, no `export =`.
 * - No `with`, no `debugger`, no tagged templates (they call a function without a call expression,
 *   out of the helper rules' sight), no async functions or await (a program runs to completion: work
 *   queued for later would run after its deadline).
 * - `this` only inside a function or class (at module scope it is CommonJS `exports`).
 * - Property names that climb to constructors and prototypes are rejected however they are written:
 *   constructor, __proto__, prototype, __defineGetter__ and friends, getPrototypeOf, setPrototypeOf,
 *   caller, callee, V8's stack trace API (prepareStackTrace, captureStackTrace, stackTraceLimit) and
 *   RegExp's legacy statics (input, lastMatch, lastParen, leftContext, rightContext, $_ $& $+ $` $'
 *   $1..$9); as `x.name`, a destructuring `{ name }` (declarations, parameters, catch bindings,
 *   for-in/of heads), a key of an object literal or class member (in an assignment pattern such as
 *   `({ name: x } = y)` a key reads the property), an object literal's `__proto__:`, and any string
 *   literal (or template without substitutions) equal to one of them anywhere in the file, whatever
 *   it is used for (`x['name']`, an argument, a value): a string is how code names a property
 *   without writing `.name`.
 * - A computed member access `x[k]`, and a computed key in a literal, class or pattern (`{ [k]: v }`,
 *   but for a well-known symbol such as `[Symbol.iterator]`), needs a key that is a literal or provably a number: a numeric
 *   literal, arithmetic (`- * / % ** | & ^ << >> >>>`, unary `- + ~`, `++`/`--`), `+` of two
 *   numbers, a conditional of two numbers, or a variable every declaration of which has a numeric
 *   initializer and every write to which (`=`, compound assignments, destructuring, for-in/of) is
 *   numeric (`++`/`--` always are). Anything else (a parameter, a string built at run time: ''['constr' + 'uctor']) is
 *   rejected; write `x[+k]` or `x[k | 0]` to index with a value of unknown type.
 */
import ts from 'typescript';
import type { VerifierLog } from './log';
import { BPF_MODULE, declaredSymbol, unwrap } from '../object-file';

/** ECMAScript's data globals a program may use. */
const ALLOWED_GLOBALS = new Set([
  'undefined', 'NaN', 'Infinity', 'Math', 'JSON', 'Number', 'String', 'Boolean', 'BigInt', 'Symbol',
  'Array', 'Object', 'Map', 'Set', 'WeakMap', 'WeakSet', 'Date', 'RegExp',
  'Error', 'TypeError', 'RangeError', 'parseInt', 'parseFloat', 'isNaN', 'isFinite',
  'ArrayBuffer', 'DataView', 'Uint8Array', 'Uint8ClampedArray', 'Int8Array', 'Uint16Array', 'Int16Array',
  'Uint32Array', 'Int32Array', 'Float32Array', 'Float64Array', 'BigInt64Array', 'BigUint64Array',
]);

/** Globals with their own reason, so the log says why rather than only "not allowed". */
const HOST_GLOBALS: Readonly<Record<string, string>> = {
  eval: 'compiles code at run time',
  Function: 'compiles code at run time',
  Reflect: 'reaches prototypes and constructors',
  Proxy: 'intercepts objects the runtime hands out',
  WebAssembly: 'compiles code at run time',
  Atomics: 'can block the thread (Atomics.wait)',
  SharedArrayBuffer: 'shares memory across threads',
  Promise: 'queues work past the program\'s end',
};

/** Property names that lead to constructors, prototypes or the caller. */
export const FORBIDDEN_PROPERTIES = new Set([
  'constructor', '__proto__', 'prototype', '__defineGetter__', '__defineSetter__', '__lookupGetter__',
  '__lookupSetter__', 'getPrototypeOf', 'setPrototypeOf', 'caller', 'callee',
  // V8's stack trace API: Error.prepareStackTrace hands out CallSite objects (getThis, getFunction).
  'prepareStackTrace', 'captureStackTrace', 'stackTraceLimit',
  // RegExp's legacy statics: the last match of any code in the isolate, the host's included.
  'input', 'lastMatch', 'lastParen', 'leftContext', 'rightContext', '$_', '$&', '$+', '$`', "$'",
  '$1', '$2', '$3', '$4', '$5', '$6', '$7', '$8', '$9',
]);

/**
 * Object's reflective members: they read and write properties by a name given as a string, out of the
 * property-name rule's sight (Object.getOwnPropertyDescriptor(f, 'constr' + 'uctor')). Programs need
 * none of them; the global Object is usable only as `Object.name` with a name not in this set.
 */
export const OBJECT_REFLECTIVE = new Set([
  'getOwnPropertyDescriptor', 'getOwnPropertyDescriptors', 'getOwnPropertyNames', 'getOwnPropertySymbols',
  'defineProperty', 'defineProperties', 'assign', // getPrototypeOf, setPrototypeOf: FORBIDDEN_PROPERTIES
]);

const NUMERIC_OPERATORS = new Set([
  ts.SyntaxKind.MinusToken, ts.SyntaxKind.AsteriskToken, ts.SyntaxKind.SlashToken, ts.SyntaxKind.PercentToken,
  ts.SyntaxKind.AsteriskAsteriskToken, ts.SyntaxKind.BarToken, ts.SyntaxKind.AmpersandToken, ts.SyntaxKind.CaretToken,
  ts.SyntaxKind.LessThanLessThanToken, ts.SyntaxKind.GreaterThanGreaterThanToken,
  ts.SyntaxKind.GreaterThanGreaterThanGreaterThanToken,
]);

/** Compound assignments whose result is a number whatever the right side: `x -= y` ... */
const NUMERIC_COMPOUND = new Set([
  ts.SyntaxKind.MinusEqualsToken, ts.SyntaxKind.AsteriskEqualsToken, ts.SyntaxKind.SlashEqualsToken,
  ts.SyntaxKind.PercentEqualsToken, ts.SyntaxKind.AsteriskAsteriskEqualsToken, ts.SyntaxKind.BarEqualsToken,
  ts.SyntaxKind.AmpersandEqualsToken, ts.SyntaxKind.CaretEqualsToken, ts.SyntaxKind.LessThanLessThanEqualsToken,
  ts.SyntaxKind.GreaterThanGreaterThanEqualsToken, ts.SyntaxKind.GreaterThanGreaterThanGreaterThanEqualsToken,
]);

export class HostRules {
  /** Per variable: the expressions written to it; `null` marks a write that is not an expression. */
  readonly #writes = new Map<ts.Symbol, (ts.Expression | null)[]>();
  readonly #numeric = new Map<ts.Symbol, boolean>();
  /** Variables whose isNumericVariable() is under way, with their depth; and the lowest depth read. */
  readonly #inProgress = new Map<ts.Symbol, number>();
  #lowestRead = Infinity;

  constructor(readonly source: ts.SourceFile, readonly checker: ts.TypeChecker, readonly log: VerifierLog) {}

  check(): void {
    this.collectWrites(this.source);
    this.visit(this.source);
  }

  reject(node: ts.Node, reason: string): void {
    this.log.reject(node, 'EACCES', reason);
  }

  visit(n: ts.Node): void {
    if ((ts.isTypeNode(n) && !ts.isExpressionWithTypeArguments(n)) || ts.isInterfaceDeclaration(n) || ts.isTypeAliasDeclaration(n)) return;
    if (ts.isModuleDeclaration(n)) {
      // A namespace's exported variables are properties of its object, written from outside as
      // `N.k = ...` where the numeric-key rule cannot see; `declare global`/`declare module` augment
      // host typings. Neither has a place in an object file.
      this.log.reject(n, 'EINVAL', 'namespace and module declarations have no place in an object file');
      return;
    }
    this.node(n);
    ts.forEachChild(n, (c) => this.visit(c));
  }

  node(n: ts.Node): void {
    switch (n.kind) {
      case ts.SyntaxKind.ImportDeclaration:
      case ts.SyntaxKind.ExportDeclaration: {
        const spec = (n as ts.ImportDeclaration | ts.ExportDeclaration).moduleSpecifier;
        if (spec !== undefined && !(ts.isStringLiteral(spec) && spec.text === BPF_MODULE)) {
          this.reject(spec, `import from ${spec.getText(this.source)}: an object file imports only from '${BPF_MODULE}'`);
        }
        return;
      }
      case ts.SyntaxKind.ImportEqualsDeclaration:
        return this.reject(n, '`import = require()` reaches the host module loader');
      case ts.SyntaxKind.ExportAssignment:
        if ((n as ts.ExportAssignment).isExportEquals) this.reject(n, '`export =` writes the host\'s module.exports');
        return;
      case ts.SyntaxKind.CallExpression:
        if ((n as ts.CallExpression).expression.kind === ts.SyntaxKind.ImportKeyword) this.reject(n, 'import() reaches the host module loader');
        return;
      case ts.SyntaxKind.MetaProperty:
        if ((n as ts.MetaProperty).keywordToken === ts.SyntaxKind.ImportKeyword) this.reject(n, 'import.meta reaches the host module');
        return;
      case ts.SyntaxKind.WithStatement:
        return this.reject(n, '`with` makes names unresolvable');
      case ts.SyntaxKind.DebuggerStatement:
        return this.reject(n, '`debugger` stops the host');
      case ts.SyntaxKind.TaggedTemplateExpression:
        return this.reject(n, 'tagged templates call a function out of the helper rules\' sight');
      case ts.SyntaxKind.AwaitExpression:
        return this.reject(n, 'await: a program runs to completion');
      case ts.SyntaxKind.AsyncKeyword:
        return this.reject(n.parent, 'async functions: a program runs to completion');
      case ts.SyntaxKind.ThisKeyword:
        if (this.atModuleScope(n)) this.reject(n, '`this` at module scope is the host\'s exports object');
        return;
      case ts.SyntaxKind.Identifier:
        return this.identifier(n as ts.Identifier);
      case ts.SyntaxKind.StringLiteral:
      case ts.SyntaxKind.NoSubstitutionTemplateLiteral: {
        // However it is later used (an argument, a key, a value passed along), a string naming one of
        // these properties is how code reaches them without writing `.name`.
        const text = (n as ts.StringLiteralLike).text;
        if (FORBIDDEN_PROPERTIES.has(text)) this.reject(n, `property '${text}' leads to constructors or prototypes`);
        return;
      }
      case ts.SyntaxKind.PropertyAccessExpression:
        return this.propertyName((n as ts.PropertyAccessExpression).name);
      case ts.SyntaxKind.ElementAccessExpression:
        return this.elementKey((n as ts.ElementAccessExpression).argumentExpression);
      case ts.SyntaxKind.BindingElement:
        return this.bindingElement(n as ts.BindingElement);
      case ts.SyntaxKind.PropertyAssignment:
      case ts.SyntaxKind.ShorthandPropertyAssignment:
      case ts.SyntaxKind.MethodDeclaration:
      case ts.SyntaxKind.PropertyDeclaration:
      case ts.SyntaxKind.GetAccessor:
      case ts.SyntaxKind.SetAccessor:
        // Every key an object literal or class can name. In an assignment pattern
        // (`({ constructor: C } = x)`, `for ({ constructor } of xs)`) a key reads that property, so
        // keys follow the member-access rules wherever they appear.
        return this.memberKey((n as ts.ObjectLiteralElementLike | ts.ClassElement).name);
    }
  }

  atModuleScope(n: ts.Node): boolean {
    for (let p = n.parent; !ts.isSourceFile(p); p = p.parent) {
      if ((ts.isFunctionLike(p) && !ts.isArrowFunction(p)) || ts.isClassLike(p)) return false;
    }
    return true;
  }

  /** An identifier in a reference position that no declaration of this file binds: a global. */
  identifier(id: ts.Identifier): void {
    if (!isReference(id)) return;
    const sym = ts.isShorthandPropertyAssignment(id.parent)
      ? this.checker.getShorthandAssignmentValueSymbol(id.parent)
      : declaredSymbol(this.checker, id);
    const decls = sym?.declarations?.filter((d) => !emitsNoValue(d)) ?? [];
    if (decls.length > 0) return;
    const name = id.text;
    if (name === 'Object') return this.objectUse(id);
    if (ALLOWED_GLOBALS.has(name)) return;
    const why = HOST_GLOBALS[name];
    if (why !== undefined) return this.reject(id, `'${name}' ${why}`);
    this.reject(id, `'${name}' is not declared in this file and is not an allowed global: programs cannot reach the host`);
  }

  /** The global Object: called, constructed, or `Object.name` with a name that is not reflective. */
  objectUse(id: ts.Identifier): void {
    const x = outermostWrapper(id);
    const p = x.parent;
    if ((ts.isCallExpression(p) || ts.isNewExpression(p)) && p.expression === x) return;
    if (ts.isBinaryExpression(p) && p.operatorToken.kind === ts.SyntaxKind.InstanceOfKeyword && p.right === x) return;
    let member: string | undefined;
    if (ts.isPropertyAccessExpression(p) && p.expression === x) member = p.name.text;
    else if (ts.isElementAccessExpression(p) && p.expression === x && ts.isStringLiteralLike(unwrap(p.argumentExpression))) {
      member = (unwrap(p.argumentExpression) as ts.StringLiteralLike).text;
    }
    if (member === undefined) return this.reject(id, `'Object' may only be called or used as Object.name: its reflective members reach prototypes`);
    if (OBJECT_REFLECTIVE.has(member)) this.reject(p, `Object.${member} reads or writes properties by a computed name`);
  }

  /** A key of an object literal or class member: a forbidden name, or a computed key that is not safe. */
  memberKey(name: ts.PropertyName | undefined): void {
    if (name === undefined) return;
    if (ts.isComputedPropertyName(name)) return this.computedKey(name.expression);
    if (ts.isIdentifier(name) || ts.isPrivateIdentifier(name)) {
      if (name.text === '__proto__') this.reject(name, '`__proto__:` sets an object\'s prototype');
      else if (FORBIDDEN_PROPERTIES.has(name.text)) this.reject(name, `property '${name.text}' leads to constructors or prototypes`);
    }
    // A string literal key is checked as every string literal is (node()).
  }

  /** A computed key in a literal or pattern: the element-access rule, or a well-known symbol (`[Symbol.iterator]`). */
  computedKey(e: ts.Expression): void {
    const k = unwrap(e);
    if (ts.isPropertyAccessExpression(k) && ts.isIdentifier(k.expression) && k.expression.text === 'Symbol' &&
      declaredSymbol(this.checker, k.expression) === undefined) return;
    this.elementKey(e);
  }

  propertyName(name: ts.MemberName): void {
    if (FORBIDDEN_PROPERTIES.has(name.text)) this.reject(name, `property '${name.text}' leads to constructors or prototypes`);
  }

  elementKey(key: ts.Expression): void {
    const k = unwrap(key);
    if (ts.isStringLiteral(k) || ts.isNoSubstitutionTemplateLiteral(k)) return; // node(): every string literal
    if (!this.isNumeric(k)) {
      this.reject(key, `computed key '${key.getText(this.source)}' is neither a literal nor provably a number (write [+k] or [k | 0])`);
    }
  }

  bindingElement(b: ts.BindingElement): void {
    if (!ts.isObjectBindingPattern(b.parent)) return;
    const prop = b.propertyName ?? b.name;
    if (ts.isComputedPropertyName(prop)) return this.computedKey(prop.expression);
    if (ts.isIdentifier(prop) && FORBIDDEN_PROPERTIES.has(prop.text)) {
      this.reject(prop, `property '${prop.text}' leads to constructors or prototypes`);
    }
  }

  // -------------------------------------------------------------------------------------------------
  // "Provably a number": a syntactic type inference just strong enough for loop counters.

  isNumeric(e: ts.Expression): boolean {
    e = unwrap(e);
    if (ts.isNumericLiteral(e) || ts.isBigIntLiteral(e)) return true;
    if (ts.isPrefixUnaryExpression(e)) return e.operator !== ts.SyntaxKind.ExclamationToken;
    if (ts.isPostfixUnaryExpression(e)) return true;
    if (ts.isConditionalExpression(e)) return this.isNumeric(e.whenTrue) && this.isNumeric(e.whenFalse);
    if (ts.isBinaryExpression(e)) {
      const op = e.operatorToken.kind;
      if (NUMERIC_OPERATORS.has(op) || NUMERIC_COMPOUND.has(op)) return true;
      if (op === ts.SyntaxKind.PlusToken || op === ts.SyntaxKind.PlusEqualsToken) return this.isNumeric(e.left) && this.isNumeric(e.right);
      if (op === ts.SyntaxKind.CommaToken) return this.isNumeric(e.right);
      return false;
    }
    if (ts.isIdentifier(e)) {
      const sym = declaredSymbol(this.checker, e);
      return sym !== undefined && this.isNumericVariable(sym);
    }
    return false;
  }

  /**
   * Whether every value a variable can hold is a number: every declaration of it (`var k = 0; var k =
   * 'x'` declares twice) is a variable with a numeric initializer, and every write is numeric.
   * Assignments can form cycles (a = b; b = a): a variable read while its own answer is under way is
   * assumed numeric, and an answer that used such an assumption about another variable is not cached
   * (that variable may yet turn out not numeric); a `false` answer is always final.
   */
  isNumericVariable(sym: ts.Symbol): boolean {
    const known = this.#numeric.get(sym);
    if (known !== undefined) return known;
    const pending = this.#inProgress.get(sym);
    if (pending !== undefined) {
      this.#lowestRead = Math.min(this.#lowestRead, pending);
      return true;
    }
    const decls = sym.declarations as ts.Declaration[]; // declaredSymbol(): at least one
    const initializers = decls.map((d) => (ts.isVariableDeclaration(d) && ts.isVariableDeclarationList(d.parent) &&
      !ts.isForInStatement(d.parent.parent) && !ts.isForOfStatement(d.parent.parent) ? d.initializer : undefined));
    if (!initializers.every((i) => i !== undefined)) {
      this.#numeric.set(sym, false);
      return false;
    }
    const depth = this.#inProgress.size;
    const outer = this.#lowestRead;
    this.#inProgress.set(sym, depth);
    this.#lowestRead = Infinity;
    const ok = initializers.every((i) => this.isNumeric(i as ts.Expression)) &&
      (this.#writes.get(sym) ?? []).every((w) => w !== null && this.isNumeric(w));
    this.#inProgress.delete(sym);
    if (!ok || this.#lowestRead >= depth) this.#numeric.set(sym, ok);
    this.#lowestRead = Math.min(outer, this.#lowestRead);
    return ok;
  }

  /** Records every write to a variable: `=`, compound assignments, ++/--, destructuring, for-in/of. */
  collectWrites(n: ts.Node): void {
    const record = (target: ts.Expression, value: ts.Expression | null): void => {
      const t = unwrap(target);
      if (ts.isIdentifier(t)) {
        const sym = declaredSymbol(this.checker, t);
        if (sym !== undefined) (this.#writes.get(sym) ?? this.#writes.set(sym, []).get(sym)!).push(value);
      } else if (ts.isObjectLiteralExpression(t) || ts.isArrayLiteralExpression(t)) {
        // Destructuring assignment: every target inside takes a value of unknown type.
        for (const id of identifiersIn(t)) record(id, null);
      }
    };
    if (ts.isBinaryExpression(n)) {
      const op = n.operatorToken.kind;
      if (op === ts.SyntaxKind.EqualsToken) record(n.left, n.right);
      else if (op === ts.SyntaxKind.PlusEqualsToken) record(n.left, n); // numeric only when both sides are
      else if (NUMERIC_COMPOUND.has(op)) record(n.left, n);
      else if (op >= ts.SyntaxKind.FirstCompoundAssignment && op <= ts.SyntaxKind.LastCompoundAssignment) record(n.left, n.right);
    } else if ((ts.isForInStatement(n) || ts.isForOfStatement(n)) && !ts.isVariableDeclarationList(n.initializer)) {
      record(n.initializer, null);
    }
    ts.forEachChild(n, (c) => this.collectWrites(c));
  }
}

function identifiersIn(n: ts.Node): ts.Identifier[] {
  const out: ts.Identifier[] = [];
  const walk = (c: ts.Node): void => {
    if (ts.isIdentifier(c) && isReference(c)) out.push(c);
    ts.forEachChild(c, walk);
  };
  walk(n);
  return out;
}

/**
 * Whether a declaration emits no value, so a name it declares still reaches the global at run time:
 * `declare` (ambient), a function signature without a body (an overload), a type-only import. (An
 * interface or type alias is in the type namespace: a value name never resolves to one.)
 */
function emitsNoValue(d: ts.Declaration): boolean {
  if (ts.isFunctionDeclaration(d) && d.body === undefined) return true;
  if (ts.isImportSpecifier(d) && (d.isTypeOnly || d.parent.parent.isTypeOnly)) return true;
  if (ts.isNamespaceImport(d) && d.parent.isTypeOnly) return true; // (a default import is EINVAL anyway)
  for (let n: ts.Node | undefined = d; n !== undefined; n = n.parent) {
    if (ts.canHaveModifiers(n) && ts.getModifiers(n)?.some((m) => m.kind === ts.SyntaxKind.DeclareKeyword)) return true;
  }
  return false;
}

/** `x` itself, or the outermost of the parentheses and type assertions around it (what unwrap() removes). */
export function outermostWrapper(x: ts.Node): ts.Node {
  while (ts.isParenthesizedExpression(x.parent) || ts.isAsExpression(x.parent) || ts.isNonNullExpression(x.parent) ||
    ts.isSatisfiesExpression(x.parent) || ts.isTypeAssertionExpression(x.parent)) {
    x = x.parent;
  }
  return x;
}

/** Whether an identifier names a value in an expression (not a property, label or declared name). */
export function isReference(id: ts.Identifier): boolean {
  const p = id.parent;
  if (ts.isPropertyAccessExpression(p) && p.name === id) return false;
  if ((ts.isQualifiedName(p) && p.right === id) || ts.isMetaProperty(p)) return false;
  if ((ts.isPropertyAssignment(p) || ts.isMethodDeclaration(p) || ts.isPropertyDeclaration(p) || ts.isGetAccessor(p) ||
    ts.isSetAccessor(p) || ts.isPropertySignature(p) || ts.isMethodSignature(p) || ts.isEnumMember(p)) && p.name === id) return false;
  if ((ts.isBindingElement(p) && p.propertyName === id) || ts.isImportSpecifier(p)) return false;
  if (ts.isLabeledStatement(p) || ts.isBreakOrContinueStatement(p)) return false;
  if ((ts.isVariableDeclaration(p) || ts.isParameter(p) || ts.isFunctionDeclaration(p) || ts.isFunctionExpression(p) ||
    ts.isClassDeclaration(p) || ts.isClassExpression(p) || ts.isBindingElement(p) ||
    ts.isImportClause(p) || ts.isNamespaceImport(p) || ts.isTypeParameterDeclaration(p) || ts.isEnumDeclaration(p) ||
    ts.isModuleDeclaration(p)) && p.name === id) return false;
  if (ts.isExportSpecifier(p)) return p.propertyName === id || p.propertyName === undefined;
  return true;
}
