import t, { type Test } from 'tap';
import * as path from 'node:path';
import { VerifierError, loadObjectFile, verify } from '../progs/prog';

const IMPORTS = `import { SEC, map, BPF_MAP_TYPE_CGRP_STORAGE, BPF_MAP_TYPE_HASH, BPF_ANY, BPF_LOCAL_STORAGE_GET_F_CREATE,
  bpf_seq_printf, bpf_cgrp_storage_get, bpf_cgrp_storage_delete, bpf_map_lookup_elem, bpf_map_update_elem,
  bpf_ktime_get_ns } from 'vbpffs/bpf';
export const stats = map({ type: BPF_MAP_TYPE_CGRP_STORAGE, key: 'u32', value: { n: 'u64' } });
export const counts = map({ type: BPF_MAP_TYPE_HASH, key: 'u32', value: 'u64', maxEntries: 8 });
`;
/** The line of the first statement after IMPORTS. */
const L = 6;

/** A cgroup_view program with `body` as its function body. */
const view = (body: string, extra = ''): string => IMPORTS + extra + `export const p = SEC('cgroup_view', (ctx: any): number => {\n${body}\n});\n`;

function accepted(t: Test, source: string, filename = 'obj.ts'): string[] {
  try {
    return verify({ source, filename }).log;
  } catch (e) {
    t.fail(`rejected: ${(e as Error).message}`);
    return [];
  }
}

function rejected(t: Test, source: string, code: 'EINVAL' | 'EACCES' = 'EACCES'): string[] {
  try {
    verify({ source, filename: 'obj.ts' });
  } catch (e) {
    t.type(e, VerifierError);
    t.equal((e as VerifierError).code, code, 'errno');
    return [...(e as VerifierError).log];
  }
  t.fail('verified, but should have been rejected');
  return [];
}

/** A rejection meant to give exactly these log lines: the count, then each line. */
function only(t: Test, log: string[], patterns: RegExp[], msg = 'log lines'): void {
  t.equal(log.length, patterns.length, `${msg}: ${log.length} lines\n${log.join('\n')}`);
  t.match(log, patterns, msg);
}

t.test('a correct program verifies; the log has one line per program', async (t) => {
  const log = accepted(t, view(`const v = bpf_cgrp_storage_get(stats, ctx.cgroup, null, BPF_LOCAL_STORAGE_GET_F_CREATE);
  if (v === null) return 0;
  v.n += 1n;
  bpf_map_update_elem(counts, 1, bpf_ktime_get_ns(), BPF_ANY);
  bpf_seq_printf(ctx.meta.seq, '%llu\\n', v.n);
  return 0;`));
  t.same(log, [`prog 'p' (cgroup_view): verified`]);
});

// ---------------------------------------------------------------------------------------------------
// Rule: helpers.

t.test('rule helper-not-allowed: a helper the program type may not call is EINVAL (check_helper_call)', async (t) => {
  const source = IMPORTS + `export const q = SEC('tp/cgroup/mkdir', (ctx: any): number => {\n  bpf_seq_printf(ctx.meta.seq, 'x');\n  return 0;\n});\n`;
  t.match(rejected(t, source, 'EINVAL'), [new RegExp(`^obj\\.ts:${L + 1}:3: program 'q' \\(tp/cgroup/mkdir\\): helper bpf_seq_printf is not allowed for this program type$`)]);
});

t.test('rule helper-not-allowed: also in a function the program calls, transitively', async (t) => {
  const source = IMPORTS + `function inner(seq: any): void { bpf_seq_printf(seq, 'x'); }\nconst outer = (seq: any): void => inner(seq);\n` +
    `export const q = SEC('tp/cgroup/rmdir', (ctx: any): number => { outer(ctx); outer(ctx); return 0; });\n` +
    `export const v = SEC('cgroup_view', (ctx: any): number => { outer(ctx.meta.seq); return 0; });\n`;
  only(t, rejected(t, source, 'EINVAL'), [/obj\.ts:6:34: program 'q' \(tp\/cgroup\/rmdir\): helper bpf_seq_printf is not allowed for this program type \(in a function program 'q' calls\)/]);
});

t.test('rule not-a-helper: calling an imported constant, or a name vbpffs/bpf does not provide, is EACCES', async (t) => {
  const log = rejected(t, `import { SEC, BPF_ANY, bpf_probe_write_user } from 'vbpffs/bpf';\n` +
    `export const p = SEC('cgroup_view', (ctx: any): number => { (BPF_ANY as any)(); bpf_probe_write_user(ctx); return 0; });\n`);
  only(t, log, [/obj\.ts:2:61: calling BPF_ANY: a constant/, /obj\.ts:2:81: calling bpf_probe_write_user: not a helper 'vbpffs\/bpf' provides/]);
});

t.test('rule helper-as-value: a helper is only called directly', async (t) => {
  const log = rejected(t, view(`const f = bpf_seq_printf;\n  f(ctx.meta.seq, 'x');\n  return [bpf_ktime_get_ns][0]() === 0n ? 0 : 1;`));
  only(t, log, [/:7:11: helper bpf_seq_printf may only be called directly/, /:9:11: helper bpf_ktime_get_ns may only be called directly/]);
});

t.test('rule helper-at-load-time: a helper called at module scope is EACCES', async (t) => {
  only(t, rejected(t, IMPORTS + `const t0 = bpf_ktime_get_ns();\nexport const p = SEC('cgroup_view', (ctx: any): number => Number(t0) & 0);\n`),
    [/obj\.ts:6:12: helper bpf_ktime_get_ns called at load time/]);
});

// ---------------------------------------------------------------------------------------------------
// Rule: maps.

t.test('rule cgroup-read-literal: vbpffs_cgroup_read names its file with a string literal (EINVAL)', async (t) => {
  const imports = `import { SEC, vbpffs_cgroup_read } from 'vbpffs/bpf';\n`;
  const ok = imports + `export const p = SEC('cgroup_view', (ctx: any): number => {\n  const f = vbpffs_cgroup_read(ctx.cgroup, 'cpu.stat');\n  return f === null ? 0 : 0;\n});\n`;
  t.same(accepted(t, ok), [`prog 'p' (cgroup_view): verified`], 'a literal file name verifies');
  const bad = imports + `export const p = SEC('cgroup_view', (ctx: any): number => {\n  const name = 'cpu' + '.stat';\n  vbpffs_cgroup_read(ctx.cgroup, name);\n  return 0;\n});\n`;
  only(t, rejected(t, bad, 'EINVAL'), [/^obj\.ts:4:34: vbpffs_cgroup_read: the file must be a string literal, so it can be read before the run$/]);
  t.same((await import('../progs/prog')).parseObjectFile(ok, 'obj.ts').spec.cgroupFiles, ['cpu.stat'], 'the spec lists the files the object reads');
});

t.test('rule undeclared-map: a helper\'s map argument must be a map declared in this file', async (t) => {
  const log = rejected(t, view(`const other: any = {};\n  bpf_cgrp_storage_get(other, ctx.cgroup, null, 0);\n  bpf_map_lookup_elem(ctx.map, 1);\n  (bpf_cgrp_storage_delete as any)();\n  return 0;`));
  only(t, log, [
    /:8:24: bpf_cgrp_storage_get: the map argument is not a map declared in this object file/,
    /:9:23: bpf_map_lookup_elem: the map argument is not a map declared in this object file/,
    /:10:3: bpf_cgrp_storage_delete: the map argument is not a map declared in this object file/,
  ]);
});

t.test('rule undeclared-map: a local that shadows a map name is not the map', async (t) => {
  only(t, rejected(t, view(`{ const stats = {}; bpf_cgrp_storage_delete(stats as any, ctx.cgroup); }\n  return 0;`)),
    [/:7:45: bpf_cgrp_storage_delete: the map argument is not a map declared in this object file/]);
});

t.test('rule map-as-value: a map is only a helper\'s map argument', async (t) => {
  const log = rejected(t, view(`const m = stats;\n  (counts as any).x = 1;\n  bpf_seq_printf(ctx.meta.seq, '%d', stats);\n  return m ? 0 : 1;`));
  only(t, log, [/:7:11: map 'stats' may only be passed/, /:8:4: map 'counts' may only be passed/, /:9:38: map 'stats' may only be passed/]);
  accepted(t, view(`bpf_cgrp_storage_delete((stats), ctx.cgroup);\n  return 0;`));
});

// ---------------------------------------------------------------------------------------------------
// Rule: host reach.

t.test('rule host-globals: process, require, module, exports, global, globalThis, self, window ... are EACCES', async (t) => {
  const names = ['process', 'require', 'module', 'exports', 'global', 'globalThis', 'self', 'window', 'Buffer',
    'setTimeout', 'setInterval', 'setImmediate', 'queueMicrotask', 'console', 'fetch', '__dirname', 'arguments'];
  for (const name of names) {
    only(t, rejected(t, view(`void ${name};\n  return 0;`)), [new RegExp(`:7:6: '${name}' is not declared in this file and is not an allowed global`)], name);
  }
});

t.test('rule code-and-meta-globals: eval, Function, Reflect, Proxy, WebAssembly, Atomics, SharedArrayBuffer, Promise', async (t) => {
  const cases: [string, RegExp][] = [
    ['eval', /compiles code at run time/], ['Function', /compiles code at run time/], ['WebAssembly', /compiles code/],
    ['Reflect', /reaches prototypes/], ['Proxy', /intercepts objects/], ['Atomics', /can block the thread/],
    ['SharedArrayBuffer', /shares memory/], ['Promise', /queues work/],
  ];
  for (const [name, re] of cases) only(t, rejected(t, view(`void ${name};\n  return 0;`)), [re], name);
});

t.test('rule host-globals: ECMAScript data globals are allowed; a declared local of a host name is not the host', async (t) => {
  accepted(t, view(`const a = Math.max(1, 2) + Number('3') + JSON.stringify([]).length + new Uint8Array(2).length;
  const m = new Map<string, number>(); m.set('x', a);
  const process = { x: 1 };
  const o = { process };
  return o.process.x === 1 && !isNaN(a) && undefined === void 0 ? 0 : 1;`));
});

t.test('rule host-globals: a `declare`d global is still a global', async (t) => {
  only(t, rejected(t, view(`return process.pid & 0;`, `declare const process: { pid: number };\n`)), [/'process' is not declared in this file/]);
});

t.test('rule host-globals: a shorthand property naming a global is a reference', async (t) => {
  only(t, rejected(t, view(`const o = { require };\n  return o ? 0 : 1;`)), [/'require' is not declared/]);
});

t.test('rule imports: any import other than vbpffs/bpf, import(), import.meta, import = require, export =', async (t) => {
  const log = rejected(t, `import * as fs from 'fs';\nimport x = require('os');\nimport y = Math.max;\nexport { readFile } from 'node:fs';\n` +
    `import { SEC } from 'vbpffs/bpf';\nexport const p = SEC('cgroup_view', (ctx: any): number => { void import('fs'); void import.meta; void fs; void x; return 0; });\n`);
  only(t, log, [
    /obj\.ts:1:21: import from 'fs': an object file imports only from 'vbpffs\/bpf'/,
    /obj\.ts:2:1: `import = require\(\)` reaches the host module loader/,
    /obj\.ts:3:1: `import = require\(\)`/,
    /obj\.ts:4:26: import from 'node:fs'/,
    /obj\.ts:6:66: import\(\) reaches the host module loader/,
    /obj\.ts:6:85: import\.meta reaches the host module/,
  ]);
  only(t, rejected(t, `import { SEC } from 'vbpffs/bpf';\nexport = SEC;\n`), [/`export =` writes the host's module\.exports/]);
  accepted(t, `import 'vbpffs/bpf';\nimport { SEC } from 'vbpffs/bpf';\nexport { BPF_ANY } from 'vbpffs/bpf';\nexport const p = SEC('cgroup_view', (ctx: any): number => 0);\nexport default p;\n`);
});

t.test('rule imports: a default import of vbpffs/bpf is EINVAL (the module has none)', async (t) => {
  only(t, rejected(t, `import bpf, { SEC } from 'vbpffs/bpf';\nexport const p = SEC('cgroup_view', (ctx: any): number => bpf ? 0 : 1);\n`, 'EINVAL'),
    [/obj\.ts:1:8: 'vbpffs\/bpf' has no default export/]);
});

t.test('rule statements: with and debugger are EACCES', async (t) => {
  const log = rejected(t, IMPORTS + `export const p = SEC('cgroup_view', function (ctx: any): number {\n  debugger;\n  return 0;\n});\n`);
  only(t, log, [/:7:3: `debugger` stops the host/]);
  const js = `import { SEC } from 'vbpffs/bpf';\nexport const p = SEC('cgroup_view', function (ctx) {\n  with (ctx) { return 0; }\n});\n`;
  try {
    verify({ source: js, filename: 'obj.js' });
    t.fail('with accepted');
  } catch (e) {
    t.match((e as VerifierError).log, [/obj\.js:3:3: `with` makes names unresolvable/]);
  }
});

t.test('rule tagged-templates: a tagged template is EACCES', async (t) => {
  only(t, rejected(t, view(`const tag = (s: TemplateStringsArray): number => s.length;\n  return tag\`x\`;`)), [/:8:10: tagged templates call a function/]);
});

t.test('rule async: async functions and await are EACCES (a program runs to completion)', async (t) => {
  const log = rejected(t, IMPORTS + `const f = async (): Promise<number> => 1;\nexport const p = SEC('cgroup_view', (ctx: any): number => { void (async () => { await f(); })(); return 0; });\n`);
  only(t, log, [/:6:11: async functions/, /:7:67: async functions/, /:7:81: await: a program runs to completion/]);
});

t.test('rule this: `this` at module scope (CommonJS exports) is EACCES; inside functions and classes it is fine', async (t) => {
  only(t, rejected(t, view(`return (this as any).x;`)), [/:7:9: `this` at module scope is the host's exports object/]);
  accepted(t, view(`return new C().get();`, `class C { x = 0; get(): number { const f = (): number => this.x; return f(); } }\nfunction g(this: any): number { return this ? 1 : 0; }\nvoid g;\n`));
});

t.test('rule forbidden-properties: constructor, __proto__, prototype and friends, by dot, string key or destructuring', async (t) => {
  const log = rejected(t, view(`const a = (ctx as any).constructor;
  const b = ctx['__proto__'];
  const c = Object.prototype;
  const { constructor: d } = ctx;
  const { caller } = ctx;
  const e = Object.getPrototypeOf(ctx);
  const f = ({} as any).__defineGetter__;
  const g = { __proto__: null };
  const h = ctx?.[\`__lookupGetter__\`];
  void [a, b, c, d, e, f, g, h, caller];
  return 0;`));
  only(t, log, [
    /:7:24: property 'constructor' leads to constructors or prototypes/,
    /:8:17: property '__proto__'/,
    /:9:20: property 'prototype'/,
    /:10:11: property 'constructor'/,
    /:11:11: property 'caller'/,
    /:12:20: property 'getPrototypeOf'/,
    /:13:25: property '__defineGetter__'/,
    /:14:15: `__proto__:` sets an object's prototype/,
    /:15:19: property '__lookupGetter__'/,
  ]);
});

t.test('rule computed-keys: a computed key must be a literal or provably a number (closes \'\'[\'constr\'+\'uctor\'])', async (t) => {
  const log = rejected(t, view(`const k = 'constr' + 'uctor';
  const a = ''['constr' + 'uctor'];
  const b = ({} as any)[k];
  const c = (ctx as any)[ctx.key];
  const { [k]: d } = ctx;
  let n = 0; n = ctx.n;
  const e = [1][n];
  const f = (i: number): number => [1][i];
  let s = 1; s += ctx.x;
  const g = [1][s];
  void [a, b, c, d, e, f, g];
  return 0;`));
  only(t, log, [
    /:8:16: computed key ''constr' \+ 'uctor'' is neither a literal nor provably a number \(write \[\+k\] or \[k \| 0\]\)/,
    /:9:25: computed key 'k'/,
    /:10:26: computed key 'ctx\.key'/,
    /:11:12: computed key 'k'/,
    /:13:17: computed key 'n'/,
    /:14:40: computed key 'i'/,
    /:16:17: computed key 's'/,
  ]);
});

t.test('rule computed-keys: loop counters, arithmetic and coercions are numbers', async (t) => {
  accepted(t, view(`const a = [1, 2, 3, 4];
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += a[i];
  for (let j = a.length - 1; j >= 0; j -= 1) sum += a[j] + a[j % 2] + a[-j + 3] + a[~~j] + a[j++ - 1] + a[(j, 0)];
  let k = 0; k = 2; k = k * 1; let w = 1; w += 1; w = k; w ||= 3;
  const p = (x: unknown): number => a[+(x as number)] + a[(x as number) | 0] + a[x ? 1 : 2];
  const m = { 'x': 1 }; const s = 'x';
  let cyc = 0; let cyc2 = cyc; cyc = cyc2;
  sum += a[cyc2++];
  const { 0: first, ['x']: x } = a as any;
  sum += m['x'] + a[0] + a[k] + a[w] + a[cyc] + p(1) + a[1n as any] + first + x + (s ? 0 : 1);
  return sum & 0;`));
  only(t, rejected(t, view(`let u = 1; [u] = [2]; for (u in {}) {} return [0][u];`)), [/computed key 'u'/]);
  only(t, rejected(t, view(`let v = 1; ({ v } = { v: 2 } as any); v &&= ctx.x; return [0][v] + [0][!v as any] + [0][v && 1];`)),
    [/computed key 'v'/, /computed key '!v as any'/, /computed key 'v && 1'/]);
});

t.test('the escape fixture: each escape attempt is its own EACCES line', async (t) => {
  const err = await loadObjectFile(path.join(__dirname, 'fixtures', 'progs', 'escape.ts')).then(() => undefined, (e: unknown) => e as VerifierError);
  t.equal(err?.code, 'EACCES');
  only(t, [...(err?.log ?? [])], [
    /escape\.ts:5:16: computed key/,
    /escape\.ts:6:23: property 'constructor'/,
    /escape\.ts:7:13: 'globalThis' is not declared/,
    /escape\.ts:8:13: 'require'/,
    /escape\.ts:9:13: 'eval' compiles code/,
    /escape\.ts:10:29: property '__proto__'/,
  ]);
  t.match(err?.message, /program rejected by the verifier \(6 errors\)/);
});

// ---------------------------------------------------------------------------------------------------
// Rule: return values.

t.test('rule return-range: a literal return outside the type\'s range is EINVAL (check_return_code)', async (t) => {
  const log = rejected(t, IMPORTS + `export const p = SEC('cgroup/sock_create', (ctx: any): number => {\n  if (ctx.x) return 2;\n  if (ctx.y) return -1;\n  return +1;\n});\n` +
    `export const q = SEC('cgroup_skb/ingress', (ctx: any): number => 7);\n`, 'EINVAL');
  only(t, log, [
    /:7:21: program 'p': return value 2 is outside \[0, 1\] for its program type/,
    /:8:21: program 'p': return value -1 is outside \[0, 1\]/,
    /:11:66: program 'q': return value 7 is outside/,
  ]);
});

t.test('rule return-type: a non-number literal return is EINVAL; a computed value is left to the runtime', async (t) => {
  const cases = [`'0'`, '`0`', '`${1}`', 'true', 'false', 'null', 'undefined', '0n', '{}', '[]', '() => 0', 'function () { return 0; }', 'class {}', '/x/', 'void 0'];
  for (const c of cases) {
    only(t, rejected(t, view(`return (${c}) as any;`), 'EINVAL'), [/returns .*, not a number/], c);
  }
  accepted(t, view(`return ctx.x + 1;`));
  accepted(t, IMPORTS + `export const t = SEC('tp/timer/tick', (ctx: any): number => -22);\n`);
});

t.test('rule return-missing: `return;` and falling off the end are EACCES (R0 !read_ok)', async (t) => {
  const cases: [string, RegExp][] = [
    ['return;', /return without a value \(R0 !read_ok\)/],
    ['if (ctx.x) return 0;', /control reaches the end of the function without a return/],
    ['while (ctx.x) { return 0; }', /control reaches the end/],
    ['for (;;) { if (ctx.x) break; }', /control reaches the end/],
    ['switch (ctx.x) { case 1: return 0; }', /control reaches the end/],
    ['switch (ctx.x) { case 1: break; default: return 0; }', /control reaches the end/],
    ['switch (ctx.x) { default: return 0; case 1: }', /control reaches the end/],
    ['do { if (ctx.x) continue; return 1; } while (ctx.y);', /control reaches the end/],
    ['do { if (ctx.x) break; } while (true);', /control reaches the end/],
    ['try { return 0; } catch { ctx.x = 1; }', /control reaches the end/],
    ['l: { if (ctx.x) break l; return 0; }', /control reaches the end/],
    ['outer: while (true) { while (true) { break outer; } }', /control reaches the end/],
  ];
  for (const [body, re] of cases) only(t, rejected(t, view(body)), [re], body);
});

t.test('rule return-missing: every path returning or throwing verifies', async (t) => {
  const bodies = [
    'if (ctx.x) return 0; else return 1;',
    'if (ctx.x) { return 0; } else { throw new Error("x"); }',
    'while (true) { if (ctx.x) return 0; }',
    'for (;;) { switch (ctx.x) { case 1: break; } for (;;) { break; } }',
    'do { } while (true);',
    'do { return 0; } while (ctx.x);',
    'switch (ctx.x) { case 1: ctx.y = 2; default: return 1; }',
    'try { ctx.x(); } finally { return 0; }',
    'try { ctx.x(); return 1; } catch { return 0; }',
    'l: { return 0; }',
    'l: while (true) { while (true) { break; } }',
    'const f = (): void => { return; }; f(); { return 0; }',
  ];
  for (const b of bodies) accepted(t, view(b));
});

// ---------------------------------------------------------------------------------------------------
// Review findings: sources that verified but must not.

t.test('rule forbidden-strings: a string naming a forbidden property is EACCES wherever it appears (an argument, a value)', async (t) => {
  const log = rejected(t, view(`const gp = (Object as any).getOwnPropertyDescriptor(Object, 'getPrototypeOf')!.value;
  const F = (Object as any).getOwnPropertyDescriptor(gp(() => 0), 'constructor')!.value;
  const names = ['__proto__', \`prototype\`, '__defineSetter__', 'callee'];
  return F('return process')().pid + names.length;`));
  only(t, log, [
    /:7:12: Object\.getOwnPropertyDescriptor reads or writes properties by a computed name/,
    /:7:53: 'Object' may only be called or used as Object\.name/,
    /:7:61: property 'getPrototypeOf' leads to constructors or prototypes/,
    /:8:13: Object\.getOwnPropertyDescriptor reads/,
    /:8:67: property 'constructor' leads/,
    /:9:18: property '__proto__'/,
    /:9:31: property 'prototype'/,
    /:9:44: property '__defineSetter__'/,
    /:9:64: property 'callee'/,
  ]);
});

t.test('rule object-reflection: Object only as Object(x), new Object(), instanceof Object, Object.name of a non-reflective member', async (t) => {
  const members = ['getOwnPropertyDescriptor', 'getOwnPropertyDescriptors', 'getOwnPropertyNames', 'getOwnPropertySymbols',
    'defineProperty', 'defineProperties', 'assign'];
  for (const m of members) {
    only(t, rejected(t, view(`void Object.${m};\n  return 0;`)), [new RegExp(`:7:6: Object\\.${m} reads or writes properties`)], m);
    only(t, rejected(t, view(`void Object['${m}'];\n  return 0;`)), [new RegExp(`:7:6: Object\\.${m} reads`)], `['${m}']`);
  }
  only(t, rejected(t, view(`const O = Object;\n  const { assign } = Object;\n  return (O as any)(assign) ? 0 : 1;`)),
    [/:7:11: 'Object' may only be called or used as Object\.name/, /:8:22: 'Object' may only be called/]);
  accepted(t, view(`const o = Object.freeze(Object.fromEntries(Object.entries({ a: 1 })));
  return Object.keys(o).length + Object.values(o).length + (Object(1) instanceof Object ? 1 : 0) + (new Object() ? 0 : 1) + (Object['hasOwn'](o, 'a') ? 0 : 1);`));
});

t.test('rule host-globals: a declaration that emits no value (overload signature, type-only import) does not shadow a global', async (t) => {
  const extra = `function process(): any;\nimport type { bpf_ktime_get_ns as require } from 'vbpffs/bpf';\nimport { type bpf_seq_write as module } from 'vbpffs/bpf';\n`;
  only(t, rejected(t, view(`return process().pid + (require as any)('fs') + (module as any).x;`, extra)), [
    /:10:8: 'process' is not declared in this file/,
    /:10:25: 'require' is not declared/,
    /:10:50: 'module' is not declared/,
  ]);
  only(t, rejected(t, view(`return console.log ? 0 : 1;`, `import type * as console from 'vbpffs/bpf';\ninterface process { pid: number }\n`)),
    [/:9:8: 'console' is not declared/]);
  only(t, rejected(t, view(`return (process as any).pid;`, `interface process { pid: number }\ntype require = number;\n`)),
    [/:9:9: 'process' is not declared/]);
  accepted(t, view(`return f(1);`, `function f(x: number): number;\nfunction f(x: number): number { return x & 0; }\n`));
});

t.test('rule computed-keys: every declaration of a var counts (var k = 0; var k = ...), for-in/of declarations are writes', async (t) => {
  only(t, rejected(t, view(`var k: any = 0;
  var k: any = ctx.name;
  var j = 0;
  for (var j in ctx) void j;
  let n = 0;
  for (n of ctx.list) void n;
  return (((() => 0) as any)[k]) + [0][j] + [0][n];`)), [/:13:30: computed key 'k'/, /:13:40: computed key 'j'/, /:13:49: computed key 'n'/]);
  accepted(t, view(`var k = 0;\n  var k = 1;\n  let i = 0;\n  i++; --i; i += 1; i <<= 1;\n  return [0][k] + [0][i];`));
});

t.test('rule computed-keys: a cycle of assignments does not cache an optimistic answer (a -> b -> a)', async (t) => {
  only(t, rejected(t, view(`let a = 0;
  let b = 0;
  b = a;
  a = b;
  a = ctx.s;
  const x = [0][a];
  const y = (ctx as any)[b];
  return x + y;`)), [/:12:17: computed key 'a'/, /:13:26: computed key 'b'/]);
  accepted(t, view(`let a = 0;\n  let b = 0;\n  let c = 0;\n  b = a; c = b; a = c;\n  return [0][a] + [0][b] + [0][c];`));
});

t.test('rule namespaces: namespace and module declarations are EINVAL (an exported variable is a property written from outside)', async (t) => {
  const source = IMPORTS + `namespace N { export let k: any = 0; }\n(N as any).k = 'constr' + 'uctor';\nnamespace N { export const F = (() => 0)[k]; }\n` +
    `declare global { var x: number; }\nexport const p = SEC('cgroup_view', (ctx: any): number => 0);\n`;
  only(t, rejected(t, source, 'EINVAL'), [
    /obj\.ts:6:1: namespace and module declarations have no place in an object file/,
    /obj\.ts:8:1: namespace and module/,
    /obj\.ts:9:1: namespace and module/,
  ]);
  // An enum's members are properties too, but never "provably numbers" as keys, and string members are literals.
  only(t, rejected(t, view(`return 0;`, `enum E { a = 0 }\n(E as any).a = 'constr' + 'uctor';\nenum E { b = [0][a] }\n`)), [/:8:18: computed key 'a'/]);
});

t.test('rule forbidden-properties: the stack trace API and RegExp\'s legacy statics', async (t) => {
  const names = ['prepareStackTrace', 'captureStackTrace', 'stackTraceLimit', 'input', 'lastMatch', 'lastParen', 'leftContext',
    'rightContext', '$_', '$1', '$5', '$9'];
  for (const n of names) {
    only(t, rejected(t, view(`return (Error as any).${n} ? 0 : 1;`)), [new RegExp(`:7:23: property '${n.replace(/\$/, '\\$')}' leads`)], n);
  }
  for (const n of ['$&', '$+', '$`', "$'", 'input']) {
    only(t, rejected(t, view(`return (RegExp as any)[${JSON.stringify(n)}] ? 0 : 1;`)), [/:7:24: property '.+' leads/], n);
  }
});

const HELPERS = `import * as bpf from 'vbpffs/bpf';\nimport { SEC, bpf_seq_printf, bpf_map_lookup_elem, map, BPF_MAP_TYPE_HASH } from 'vbpffs/bpf';\n` +
  `export const m = map({ type: BPF_MAP_TYPE_HASH, key: 'u32', value: 'u64', maxEntries: 1 });\n`;
/** A tp/cgroup/mkdir program (which may not call bpf_seq_printf) with `body`, after `extra`; its body starts on line 5 + extra's lines. */
const mkdir = (body: string, extra = ''): string => HELPERS + extra + `export const q = SEC('tp/cgroup/mkdir', (ctx: any): number => {\n${body}\n});\n`;

t.test('rule helper-as-value: .call and .apply on a helper are EACCES (a helper is only the direct callee of a call)', async (t) => {
  only(t, rejected(t, mkdir(`bpf_seq_printf.call(undefined, ctx, 'x');\n  (bpf_seq_printf as any).apply(undefined, [ctx, 'x']);\n  bpf.bpf_seq_printf.call(undefined, ctx, 'x');\n  return 0;`)), [
    /:5:1: helper bpf_seq_printf may only be called directly, not used as a value/,
    /:6:4: helper bpf_seq_printf may only be called directly/,
    /:7:3: helper bpf_seq_printf may only be called directly/,
  ]);
});

t.test('rule namespace-import: a vbpffs/bpf namespace is used only as ns.name, then checked as the named import', async (t) => {
  only(t, rejected(t, mkdir(`bpf['bpf_seq_printf'](ctx, 'x');\n  const { bpf_seq_printf: f } = bpf;\n  f(ctx, 'x');\n  (bpf as any).bpf_seq_printf(ctx, 'x');\n  return 0;`,
    `const { bpf_seq_printf: g } = bpf;\nconst ns = bpf;\n`)), [
    /:4:31: namespace import 'bpf' may only be used as bpf\.name/,
    /:5:12: namespace import 'bpf'/,
    /:7:1: namespace import 'bpf'/,
    /:8:33: namespace import 'bpf'/,
    /:10:4: namespace import 'bpf'/,
  ]);
  only(t, rejected(t, mkdir(`bpf.bpf_seq_printf(ctx, 'x');\n  return 0;`), 'EINVAL'),
    [/:5:1: program 'q' \(tp\/cgroup\/mkdir\): helper bpf_seq_printf is not allowed for this program type$/]);
  accepted(t, HELPERS + `let t: typeof bpf.bpf_ktime_get_ns | undefined;\nexport const v = SEC('cgroup_view', (ctx: any): number => { bpf.bpf_seq_printf(ctx.meta.seq, 'x'); void t; return bpf.BPF_ANY; });\n`);
});

t.test('rule undeclared-map: an undeclared map through .call, ns[...] or destructuring is rejected', async (t) => {
  only(t, rejected(t, mkdir(`bpf_map_lookup_elem.call(undefined, {} as any, 1);\n  bpf['bpf_map_lookup_elem']({} as any, 1);\n  const { bpf_map_lookup_elem: l } = bpf;\n  l({} as any, 1);\n  return 0;`)), [
    /:5:1: helper bpf_map_lookup_elem may only be called directly/,
    /:6:3: namespace import 'bpf'/,
    /:7:38: namespace import 'bpf'/,
  ]);
  accepted(t, mkdir(`bpf.bpf_map_lookup_elem(m, 1);\n  bpf_map_lookup_elem(m, 1);\n  return 0;`));
});

t.test('rule helper-not-allowed: a helper in a method, getter, object or array of functions is checked against every program of the file', async (t) => {
  const extra = `class C { get x(): number { bpf_seq_printf(null as any, 'a'); return 0; } m(): void { bpf_seq_printf(null as any, 'b'); } }\n` +
    `const o = { f(): void { bpf_seq_printf(null as any, 'c'); }, g: (): void => { bpf_seq_printf(null as any, 'd'); } };\n` +
    `const fs = [(): void => { bpf_seq_printf(null as any, 'e'); }];\n` +
    `let saved: any;\n` +
    `export const v = SEC('cgroup_view', (ctx: any): number => { saved = (): void => { bpf_seq_printf(ctx.meta.seq, 'f'); }; return 0; });\n`;
  const log = rejected(t, mkdir(`void new C().x; new C().m(); o.f(); o.g(); fs[0](); saved();\n  return 0;`, extra), 'EINVAL');
  const any = `program 'q' \\(tp\\/cgroup\\/mkdir\\): helper bpf_seq_printf is not allowed for this program type \\(in a function any program of this file may reach`;
  only(t, log, [
    new RegExp(`:4:29: ${any}`), new RegExp(`:4:87: ${any}`), new RegExp(`:5:25: ${any}`), new RegExp(`:5:79: ${any}`),
    new RegExp(`:6:27: ${any}`), new RegExp(`:8:83: ${any}`),
  ]);
  // The same in a file whose only program may call it.
  accepted(t, HELPERS + extra.split('\n').slice(0, 3).join('\n') + `\nexport const v = SEC('cgroup_view', (ctx: any): number => { void new C().x; o.f(); fs[0](); return 0; });\n`);
});

t.test('rule helper-not-allowed: a function used other than by a direct call, or a program named elsewhere, may be reached by any program', async (t) => {
  const extra = `function inner(): void { bpf_seq_printf(null as any, 'x'); }\nconst alias = inner;\nconst arrow = (): void => inner();\n` +
    `export const v = SEC('cgroup_view', (ctx: any): number => { bpf_seq_printf(ctx.meta.seq, 'v'); return 0; });\n` +
    `const named = function self(n: number): void { if (n > 0) self(n - 1); else bpf_seq_printf(null as any, 'n'); };\n` +
    `const esc = function me(): unknown { bpf_seq_printf(null as any, 'm'); return me; };\n`;
  const log = rejected(t, mkdir(`alias();\n  (v as any)(ctx);\n  arrow();\n  named(1);\n  void esc;\n  return 0;`, extra), 'EINVAL');
  only(t, log, [
    /:4:26: program 'q' \(tp\/cgroup\/mkdir\): helper bpf_seq_printf is not allowed for this program type \(in a function any program/,
    /:7:61: program 'q' \(tp\/cgroup\/mkdir\): helper bpf_seq_printf is not allowed for this program type \(in a function any program/,
    /:8:77: program 'q' \(tp\/cgroup\/mkdir\): helper bpf_seq_printf is not allowed for this program type \(in a function program 'q' calls\)$/,
    /:9:38: program 'q' \(tp\/cgroup\/mkdir\): helper bpf_seq_printf is not allowed for this program type \(in a function any program/,
  ]);
});

t.test('rule return-range: a fractional literal return is EINVAL (a return value is an integer)', async (t) => {
  for (const v of ['0.5', '-0.5', '+1e-1']) {
    only(t, rejected(t, view(`return ${v};`), 'EINVAL'), [/:7:8: program 'p': return value -?0\.\d+ is not an integer/], v);
  }
  accepted(t, view(`return 1.0;`));
  accepted(t, view(`return 1e0;`));
});

t.test('log summary: a rule broken with EINVAL is "rejected by the verifier", a malformed object "malformed"', async (t) => {
  t.throws(() => verify({ source: view(`return 0.5;`), filename: 'obj.ts' }), { code: 'EINVAL', message: /program rejected by the verifier \(1 error\)/ });
  t.throws(() => verify({ source: view(`return 0.5;`, `namespace N {}\n`), filename: 'obj.ts' }), { code: 'EINVAL', message: /malformed object file \(2 errors\)/ });
});

t.test('rule helper-not-allowed: exported functions, class fields and static blocks may be reached by any program; a function never called by none', async (t) => {
  const extra = `export function ex(): void { bpf_seq_printf(null as any, 'a'); }\nexport const ex2 = (): void => { bpf_seq_printf(null as any, 'b'); };\n` +
    `class K { static { bpf_seq_printf(null as any, 'c'); } y = bpf_seq_printf(null as any, 'd'); }\n` +
    `const { length: len } = (): void => { bpf_seq_printf(null as any, 'e'); };\n` +
    `function unused(): void { bpf_seq_printf(null as any, 'f'); }\n` +
    `export default function (): void { bpf_seq_printf(null as any, 'g'); }\n`;
  const any = /program 'q' \(tp\/cgroup\/mkdir\): helper bpf_seq_printf is not allowed for this program type \(in a function any program/;
  const log = rejected(t, mkdir(`ex(); ex(); void new K(); void len;\n  return 0;`, extra), 'EINVAL');
  // The class's static block and field initializer are also outside any function: the load-time rule.
  const load = /helper bpf_seq_printf called at load time/;
  only(t, log, [any, any, load, any, load, any, any, any]);
  t.match(log, [/:4:30:/, /:5:34:/, /:6:20:/, /:6:20:/, /:6:60:/, /:6:60:/, /:7:39:/, /:9:36:/]);
});

t.test('rule forbidden-properties: every binding and pattern form, assignment patterns included, is checked', async (t) => {
  // Each form reads `constructor` (or another climbing name) without writing `.constructor`.
  const forms: [string, string][] = [
    ['an assignment pattern', 'let C: any; ({ constructor: C } = ctx.cgroup); return C ? 0 : 1;'],
    ['a shorthand assignment pattern', 'let constructor: any; ({ constructor } = ctx.cgroup); return constructor ? 0 : 1;'],
    ['a nested assignment pattern', 'let C: any; [{ constructor: C }] = [ctx.cgroup]; return C ? 0 : 1;'],
    ['a for-of head pattern', 'let C: any; for ({ constructor: C } of [ctx.cgroup]) {} return C ? 0 : 1;'],
    ['a for-in head pattern', 'let C: any; for ({ prototype: C } in { a: 1 }) {} return C ? 0 : 1;'],
    ['a pattern with a default', 'let C: any; ({ __proto__: C = 1 } = ctx.cgroup); return C ? 0 : 1;'],
    ['a parameter pattern', 'const f = ({ constructor: C }: any) => C; return f(ctx.cgroup) ? 0 : 1;'],
    ['a catch binding', 'try { throw ctx.cgroup; } catch ({ constructor: C }) { return C ? 0 : 1; } return 0;'],
    ['a for-of declaration', 'for (const { caller: C } of [ctx.cgroup]) return C ? 0 : 1; return 0;'],
    ['an object method key', 'const o = { prototype() { return 1; } }; return o ? 0 : 1;'],
    ['a class member', 'class A { static caller = 1; } return A ? 0 : 1;'],
    ['a getter key', 'const o = { get callee() { return 1; } }; return o ? 0 : 1;'],
  ];
  for (const [what, body] of forms) {
    const log = rejected(t, view(body));
    t.ok(log.some((l) => /leads to constructors or prototypes|sets an object's prototype/.test(l)), `${what} is rejected:\n${log.join('\n')}`);
  }
});

t.test('rule computed-keys: a computed key in a literal or pattern follows the element-access rule', async (t) => {
  const forms: [string, string][] = [
    ['a computed key built at run time in an assignment pattern', "let C: any; const k = 'constr'; ({ [k + 'uctor']: C } = ctx.cgroup); return C ? 0 : 1;"],
    ['a parameter as a computed key in a declaration pattern', 'const f = (k: string): unknown => { const { [k]: v } = ctx.cgroup; return v; }; return f(\'x\') ? 0 : 1;'],
    ['a computed key in an object literal', "const k = 'a' + 'b'; const o = { [k]: 1 }; return o ? 0 : 1;"],
  ];
  for (const [what, body] of forms) {
    const log = rejected(t, view(body));
    t.ok(log.some((l) => /computed key .* is neither a literal nor provably a number/.test(l)), `${what} is rejected:\n${log.join('\n')}`);
  }
  accepted(t, view('const o = { [Symbol.iterator]: 1, [2 + 3]: 2 }; let a = 0; ({ [1]: a } = [0, 1]); return o && a ? 0 : 1;'));
});
