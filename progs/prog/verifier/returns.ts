/**
 * The return rules, the verifier's check_return_code (-EINVAL: "R0 is not a known value", "has value
 * ... should have been in ...") and check_reg_arg's "R0 !read_ok" (-EACCES):
 *
 * - Every `return` of a program function returns a value (EACCES); a literal must be an integer
 *   inside the program type's range (func-proto's returnRange; EINVAL). A fraction, string, boolean,
 *   null, undefined, bigint, object or function literal is rejected (EINVAL). Any other expression is accepted: the kernel tracks a
 *   register's range, this verifier does not, so the runtime re-checks the value every run.
 * - A program returns on every path: control must not reach the end of its body (an `if` without
 *   `else`, a loop that may exit, a switch without `default`). `throw` ends a path too (the runtime
 *   turns it into an error). The analysis is syntactic: a loop counts as infinite only when its
 *   condition is absent or the literal `true` and no `break` leaves it.
 *
 * Subprograms (functions a program calls) are not checked: the kernel checks only the main
 * program's R0 too.
 */
import ts from 'typescript';
import type { VerifierLog } from './log';
import { unwrap } from '../object-file';

/** The return values a program type allows, inclusive; what func-proto's returnRange gives. */
export interface RetRange {
  readonly min: number;
  readonly max: number;
}

type ProgramFn = ts.ArrowFunction | ts.FunctionExpression;

export function checkReturns(fn: ProgramFn, name: string, range: RetRange | undefined, source: ts.SourceFile, log: VerifierLog): void {
  if (!ts.isBlock(fn.body)) {
    checkValue(fn.body, name, range, source, log);
    return;
  }
  for (const r of returnsOf(fn.body)) {
    if (r.expression === undefined) log.reject(r, 'EACCES', `program '${name}': return without a value (R0 !read_ok)`);
    else checkValue(r.expression, name, range, source, log);
  }
  if (canComplete(fn.body)) {
    log.reject(fn, 'EACCES', `program '${name}': control reaches the end of the function without a return (R0 !read_ok)`);
  }
}

function checkValue(e: ts.Expression, name: string, range: RetRange | undefined, source: ts.SourceFile, log: VerifierLog): void {
  const x = unwrap(e);
  const n = numberLiteral(x);
  if (n !== undefined) {
    if (!Number.isInteger(n)) {
      log.reject(e, 'EINVAL', `program '${name}': return value ${n} is not an integer`, false);
    } else if (range !== undefined && (n < range.min || n > range.max)) {
      log.reject(e, 'EINVAL', `program '${name}': return value ${n} is outside [${range.min}, ${range.max}] for its program type`, false);
    }
    return;
  }
  if (isNonNumberLiteral(x)) log.reject(e, 'EINVAL', `program '${name}': returns ${x.getText(source)}, not a number`, false);
}

function numberLiteral(e: ts.Expression): number | undefined {
  if (ts.isNumericLiteral(e)) return Number(e.text);
  if (ts.isPrefixUnaryExpression(e) && ts.isNumericLiteral(e.operand)) {
    if (e.operator === ts.SyntaxKind.MinusToken) return -Number(e.operand.text);
    if (e.operator === ts.SyntaxKind.PlusToken) return Number(e.operand.text);
  }
  return undefined;
}

function isNonNumberLiteral(e: ts.Expression): boolean {
  switch (e.kind) {
    case ts.SyntaxKind.StringLiteral:
    case ts.SyntaxKind.NoSubstitutionTemplateLiteral:
    case ts.SyntaxKind.TemplateExpression:
    case ts.SyntaxKind.TrueKeyword:
    case ts.SyntaxKind.FalseKeyword:
    case ts.SyntaxKind.NullKeyword:
    case ts.SyntaxKind.BigIntLiteral:
    case ts.SyntaxKind.ObjectLiteralExpression:
    case ts.SyntaxKind.ArrayLiteralExpression:
    case ts.SyntaxKind.ArrowFunction:
    case ts.SyntaxKind.FunctionExpression:
    case ts.SyntaxKind.ClassExpression:
    case ts.SyntaxKind.RegularExpressionLiteral:
    case ts.SyntaxKind.VoidExpression:
      return true;
    default:
      return ts.isIdentifier(e) && e.text === 'undefined';
  }
}

/** The return statements of a function body, not of functions nested in it. */
function returnsOf(body: ts.Block): ts.ReturnStatement[] {
  const out: ts.ReturnStatement[] = [];
  const walk = (n: ts.Node): void => {
    if (ts.isReturnStatement(n)) out.push(n);
    if (ts.isFunctionLike(n) || ts.isClassLike(n)) return;
    ts.forEachChild(n, walk);
  };
  ts.forEachChild(body, walk);
  return out;
}

/** Whether control may run past the end of `s` (ECMAScript's "completes normally"), conservatively. */
export function canComplete(s: ts.Statement): boolean {
  if (ts.isReturnStatement(s) || ts.isThrowStatement(s)) return false;
  if (ts.isBlock(s)) return s.statements.every(canComplete);
  if (ts.isIfStatement(s)) return s.elseStatement === undefined || canComplete(s.thenStatement) || canComplete(s.elseStatement);
  if (ts.isSwitchStatement(s)) {
    const clauses = s.caseBlock.clauses;
    if (!clauses.some(ts.isDefaultClause) || breaks(s, undefined)) return true;
    return clauses[clauses.length - 1].statements.every(canComplete);
  }
  if (ts.isWhileStatement(s) || ts.isForStatement(s)) {
    const cond = ts.isWhileStatement(s) ? s.expression : s.condition;
    const forever = cond === undefined || unwrap(cond).kind === ts.SyntaxKind.TrueKeyword;
    return !forever || breaks(s, labelOf(s));
  }
  if (ts.isDoStatement(s)) {
    const forever = unwrap(s.expression).kind === ts.SyntaxKind.TrueKeyword;
    return breaks(s, labelOf(s)) || (!forever && (canComplete(s.statement) || continues(s.statement)));
  }
  if (ts.isTryStatement(s)) {
    if (s.finallyBlock !== undefined && !canComplete(s.finallyBlock)) return false;
    return canComplete(s.tryBlock) || (s.catchClause !== undefined && canComplete(s.catchClause.block));
  }
  if (ts.isWithStatement(s)) return canComplete(s.statement);
  if (ts.isLabeledStatement(s)) return canComplete(s.statement) || breaks(s.statement, s.label.text);
  return true;
}

function labelOf(s: ts.Statement): string | undefined {
  return ts.isLabeledStatement(s.parent) ? s.parent.label.text : undefined;
}

/** Whether a `break` inside `target` leaves it: unlabelled ones not inside a nested loop or switch, or labelled `label`. */
function breaks(target: ts.Statement, label: string | undefined): boolean {
  let found = false;
  const walk = (n: ts.Node, nested: boolean): void => {
    if (found || ts.isFunctionLike(n) || ts.isClassLike(n)) return;
    if (ts.isBreakStatement(n)) {
      if (n.label === undefined ? !nested : n.label.text === label) found = true;
      return;
    }
    const inner = nested || ts.isIterationStatement(n, false) || ts.isSwitchStatement(n);
    ts.forEachChild(n, (c) => walk(c, inner));
  };
  ts.forEachChild(target, (c) => walk(c, false));
  return found;
}

function continues(body: ts.Statement): boolean {
  let found = false;
  const walk = (n: ts.Node): void => {
    if (found || ts.isFunctionLike(n) || ts.isClassLike(n)) return;
    if (ts.isContinueStatement(n)) found = true;
    else ts.forEachChild(n, walk);
  };
  walk(body);
  return found;
}
