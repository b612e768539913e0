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

t.test('rule helper-not-allowed: a helper the program type may not call is EACCES', async (t) => {
  const source = IMPORTS + `export const q = SEC('tp/cgroup/mkdir', (ctx: any): number => {\n  bpf_seq_printf(ctx.meta.seq, 'x');\n  return 0;\n});\n`;
  t.match(rejected(t, source), [new RegExp(`^obj\\.ts:${L + 1}:3: program 'q' \\(tp/cgroup/mkdir\\): helper bpf_seq_printf is not allowed for this program type$`)]);
});

t.test('rule helper-not-allowed: also in a function the program calls, transitively', async (t) => {
  const source = IMPORTS + `function inner(seq: any): void { bpf_seq_printf(seq, 'x'); }\nconst outer = (seq: any): void => inner(seq);\n` +
    `export const q = SEC('tp/cgroup/rmdir', (ctx: any): number => { outer(ctx); outer(ctx); return 0; });\n` +
    `export const v = SEC('cgroup_view', (ctx: any): number => { outer(ctx.meta.seq); return 0; });\n`;
  t.match(rejected(t, source), [/obj\.ts:6:34: program 'q' \(tp\/cgroup\/rmdir\): helper bpf_seq_printf is not allowed for this program type \(in a function program 'q' calls\)/]);
});

t.test('rule not-a-helper: calling an imported constant, or a name vbpffs/bpf does not provide, is EACCES', async (t) => {
  const log = rejected(t, `import { SEC, BPF_ANY, bpf_probe_write_user } from 'vbpffs/bpf';\n` +
    `export const p = SEC('cgroup_view', (ctx: any): number => { (BPF_ANY as any)(); bpf_probe_write_user(ctx); return 0; });\n`);
  t.match(log, [/obj\.ts:2:61: calling BPF_ANY: a constant/, /obj\.ts:2:81: calling bpf_probe_write_user: not a helper 'vbpffs\/bpf' provides/]);
});

t.test('rule helper-as-value: a helper is only called directly', async (t) => {
  const log = rejected(t, view(`const f = bpf_seq_printf;\n  f(ctx.meta.seq, 'x');\n  return [bpf_ktime_get_ns][0]() === 0n ? 0 : 1;`));
  t.match(log, [/:7:11: helper bpf_seq_printf may only be called directly/, /:9:11: helper bpf_ktime_get_ns may only be called directly/]);
});

t.test('rule helper-at-load-time: a helper called at module scope is EACCES', async (t) => {
  t.match(rejected(t, IMPORTS + `const t0 = bpf_ktime_get_ns();\nexport const p = SEC('cgroup_view', (ctx: any): number => Number(t0) & 0);\n`),
    [/obj\.ts:6:12: helper bpf_ktime_get_ns called at load time/]);
});

// ---------------------------------------------------------------------------------------------------
// Rule: maps.

t.test('rule undeclared-map: a helper\'s map argument must be a map declared in this file', async (t) => {
  const log = rejected(t, view(`const other: any = {};\n  bpf_cgrp_storage_get(other, ctx.cgroup, null, 0);\n  bpf_map_lookup_elem(ctx.map, 1);\n  (bpf_cgrp_storage_delete as any)();\n  return 0;`));
  t.match(log, [
    /:8:24: bpf_cgrp_storage_get: the map argument is not a map declared in this object file/,
    /:9:23: bpf_map_lookup_elem: the map argument is not a map declared in this object file/,
    /:10:3: bpf_cgrp_storage_delete: the map argument is not a map declared in this object file/,
  ]);
});

t.test('rule undeclared-map: a local that shadows a map name is not the map', async (t) => {
  t.match(rejected(t, view(`{ const stats = {}; bpf_cgrp_storage_delete(stats as any, ctx.cgroup); }\n  return 0;`)),
    [/:7:45: bpf_cgrp_storage_delete: the map argument is not a map declared in this object file/]);
});

t.test('rule map-as-value: a map is only a helper\'s map argument', async (t) => {
  const log = rejected(t, view(`const m = stats;\n  (counts as any).x = 1;\n  bpf_seq_printf(ctx.meta.seq, '%d', stats);\n  return m ? 0 : 1;`));
  t.match(log, [/:7:11: map 'stats' may only be passed/, /:8:4: map 'counts' may only be passed/, /:9:38: map 'stats' may only be passed/]);
  accepted(t, view(`bpf_cgrp_storage_delete((stats), ctx.cgroup);\n  return 0;`));
});

// ---------------------------------------------------------------------------------------------------
// Rule: host reach.

t.test('rule host-globals: process, require, module, exports, global, globalThis, self, window ... are EACCES', async (t) => {
  const names = ['process', 'require', 'module', 'exports', 'global', 'globalThis', 'self', 'window', 'Buffer',
    'setTimeout', 'setInterval', 'setImmediate', 'queueMicrotask', 'console', 'fetch', '__dirname', 'arguments'];
  for (const name of names) {
    t.match(rejected(t, view(`void ${name};\n  return 0;`)), [new RegExp(`:7:6: '${name}' is not declared in this file and is not an allowed global`)], name);
  }
});

t.test('rule code-and-meta-globals: eval, Function, Reflect, Proxy, WebAssembly, Atomics, SharedArrayBuffer, Promise', async (t) => {
  const cases: [string, RegExp][] = [
    ['eval', /compiles code at run time/], ['Function', /compiles code at run time/], ['WebAssembly', /compiles code/],
    ['Reflect', /reaches prototypes/], ['Proxy', /intercepts objects/], ['Atomics', /can block the thread/],
    ['SharedArrayBuffer', /shares memory/], ['Promise', /queues work/],
  ];
  for (const [name, re] of cases) t.match(rejected(t, view(`void ${name};\n  return 0;`)), [re], name);
});

t.test('rule host-globals: ECMAScript data globals are allowed; a declared local of a host name is not the host', async (t) => {
  accepted(t, view(`const a = Math.max(1, 2) + Number('3') + JSON.stringify([]).length + new Uint8Array(2).length;
  const m = new Map<string, number>(); m.set('x', a);
  const process = { x: 1 };
  const o = { process };
  return o.process.x === 1 && !isNaN(a) && undefined === void 0 ? 0 : 1;`));
});

t.test('rule host-globals: a `declare`d global is still a global', async (t) => {
  t.match(rejected(t, view(`return process.pid & 0;`, `declare const process: { pid: number };\n`)), [/'process' is not declared in this file/]);
});

t.test('rule host-globals: a shorthand property naming a global is a reference', async (t) => {
  t.match(rejected(t, view(`const o = { require };\n  return o ? 0 : 1;`)), [/'require' is not declared/]);
});

t.test('rule imports: any import other than vbpffs/bpf, import(), import.meta, import = require, export =', async (t) => {
  const log = rejected(t, `import * as fs from 'fs';\nimport x = require('os');\nexport { readFile } from 'node:fs';\n` +
    `import { SEC } from 'vbpffs/bpf';\nexport const p = SEC('cgroup_view', (ctx: any): number => { void import('fs'); void import.meta; void fs; void x; return 0; });\n`);
  t.match(log, [
    /obj\.ts:1:21: import from 'fs': an object file imports only from 'vbpffs\/bpf'/,
    /obj\.ts:2:1: `import = require\(\)` reaches the host module loader/,
    /obj\.ts:3:26: import from 'node:fs'/,
    /obj\.ts:5:66: import\(\) reaches the host module loader/,
    /obj\.ts:5:85: import\.meta reaches the host module/,
  ]);
  t.match(rejected(t, `import { SEC } from 'vbpffs/bpf';\nexport = SEC;\n`), [/`export =` writes the host's module\.exports/]);
  accepted(t, `import 'vbpffs/bpf';\nimport { SEC } from 'vbpffs/bpf';\nexport { BPF_ANY } from 'vbpffs/bpf';\nexport const p = SEC('cgroup_view', (ctx: any): number => 0);\nexport default p;\n`);
});

t.test('rule imports: a default import of vbpffs/bpf is EINVAL (the module has none)', async (t) => {
  t.match(rejected(t, `import bpf, { SEC } from 'vbpffs/bpf';\nexport const p = SEC('cgroup_view', (ctx: any): number => bpf ? 0 : 1);\n`, 'EINVAL'),
    [/obj\.ts:1:8: 'vbpffs\/bpf' has no default export/]);
});

t.test('rule statements: with and debugger are EACCES', async (t) => {
  const log = rejected(t, IMPORTS + `export const p = SEC('cgroup_view', function (ctx: any): number {\n  debugger;\n  return 0;\n});\n`);
  t.match(log, [/:7:3: `debugger` stops the host/]);
  const js = `import { SEC } from 'vbpffs/bpf';\nexport const p = SEC('cgroup_view', function (ctx) {\n  with (ctx) { return 0; }\n});\n`;
  try {
    verify({ source: js, filename: 'obj.js' });
    t.fail('with accepted');
  } catch (e) {
    t.match((e as VerifierError).log, [/obj\.js:3:3: `with` makes names unresolvable/]);
  }
});

t.test('rule tagged-templates: a tagged template is EACCES', async (t) => {
  t.match(rejected(t, view(`const tag = (s: TemplateStringsArray): number => s.length;\n  return tag\`x\`;`)), [/:8:10: tagged templates call a function/]);
});

t.test('rule async: async functions and await are EACCES (a program runs to completion)', async (t) => {
  const log = rejected(t, IMPORTS + `const f = async (): Promise<number> => 1;\nexport const p = SEC('cgroup_view', (ctx: any): number => { void (async () => { await f(); })(); return 0; });\n`);
  t.match(log, [/:6:11: async functions/, /:7:67: async functions/, /:7:81: await: a program runs to completion/]);
});

t.test('rule this: `this` at module scope (CommonJS exports) is EACCES; inside functions and classes it is fine', async (t) => {
  t.match(rejected(t, view(`return (this as any).x;`)), [/:7:9: `this` at module scope is the host's exports object/]);
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
  t.match(log, [
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
  t.match(log, [
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
  t.match(rejected(t, view(`let u = 1; [u] = [2]; for (u in {}) {} return [0][u];`)), [/computed key 'u'/]);
  t.match(rejected(t, view(`let v = 1; ({ v } = { v: 2 } as any); v &&= ctx.x; return [0][v] + [0][!v as any] + [0][v && 1];`)),
    [/computed key 'v'/, /computed key '!v as any'/, /computed key 'v && 1'/]);
});

t.test('the escape fixture: each escape attempt is its own EACCES line', async (t) => {
  const err = await loadObjectFile(path.join(__dirname, 'fixtures', 'progs', 'escape.ts')).then(() => undefined, (e: unknown) => e as VerifierError);
  t.equal(err?.code, 'EACCES');
  t.match(err?.log, [
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

t.test('rule return-range: a literal return outside the type\'s range is EACCES', async (t) => {
  const log = rejected(t, IMPORTS + `export const p = SEC('cgroup/sock_create', (ctx: any): number => {\n  if (ctx.x) return 2;\n  if (ctx.y) return -1;\n  return +1;\n});\n` +
    `export const q = SEC('cgroup_skb/ingress', (ctx: any): number => 7);\n`);
  t.match(log, [
    /:7:21: program 'p': return value 2 is outside \[0, 1\] for its program type/,
    /:8:21: program 'p': return value -1 is outside \[0, 1\]/,
    /:11:66: program 'q': return value 7 is outside/,
  ]);
});

t.test('rule return-type: a non-number literal return is EACCES; a computed value is left to the runtime', async (t) => {
  const cases = [`'0'`, '`0`', '`${1}`', 'true', 'false', 'null', 'undefined', '0n', '{}', '[]', '() => 0', 'function () { return 0; }', 'class {}', '/x/', 'void 0'];
  for (const c of cases) {
    t.match(rejected(t, view(`return (${c}) as any;`)), [/returns .*, not a number/], c);
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
  for (const [body, re] of cases) t.match(rejected(t, view(body)), [re], body);
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
