import t, { type Test } from 'tap';
import * as path from 'node:path';
import ts from 'typescript';
import { BpfMapType } from '../uapi';
import { decodeMappings } from '../progs/prog/transpile';
import {
  BPF_CONSTANTS,
  BPF_MODULE,
  TRANSPILE_CACHE_MAX,
  VerifierError,
  clearTranspileCache,
  loadObjectFile,
  originalPosition,
  parseObjectFile,
  transpile,
  transpileCacheStats,
  verify,
  verifyParsed,
} from '../progs/prog';

const FIXTURES = path.join(__dirname, 'fixtures', 'progs');
const fixture = (name: string): string => path.join(FIXTURES, name);

const HEAD = `import { SEC, map, BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_CGRP_STORAGE, BPF_F_NO_PREALLOC, BPF_F_RDONLY_PROG } from 'vbpffs/bpf';\n`;
const PROG = `export const p = SEC('cgroup_view', (ctx: any): number => 0);\n`;

/** The log lines of a rejected load, with the errno checked. */
function rejected(t: Test, source: string, code: 'EINVAL' | 'EACCES', filename = 'obj.ts'): string[] {
  try {
    verify({ source, filename });
  } catch (e) {
    t.type(e, VerifierError);
    t.equal((e as VerifierError).code, code, 'errno');
    return [...(e as VerifierError).log];
  }
  t.fail('loaded, but should have been rejected');
  return [];
}

t.test('transpile: once per source, cached by content hash; the second transpile is a cache hit', async (t) => {
  clearTranspileCache();
  const source = `import { SEC } from 'vbpffs/bpf';\nexport const p = SEC('cgroup_view', (ctx: any): number => 0);\n// ${Date.now()}\n`;
  const t0 = process.hrtime.bigint();
  const first = transpile(source, 'a.ts');
  const t1 = process.hrtime.bigint();
  const second = transpile(source, 'b.ts');
  const t2 = process.hrtime.bigint();
  t.equal(second, first, 'the same result object, whatever the file is called');
  t.same(transpileCacheStats(), { hits: 1, misses: 1, size: 1 });
  t.comment(`transpile: first ${(Number(t1 - t0) / 1e6).toFixed(2)} ms, cached ${(Number(t2 - t1) / 1e6).toFixed(3)} ms`);
  t.match(first.js, /require\("vbpffs\/bpf"\)/, 'CommonJS');
  t.notMatch(first.js, /sourceMappingURL/);
  t.equal(first.hash.length, 64, 'sha256 hex');
  transpile('export const x = 1;\n', 'a.js');
  transpile('export const x = 1;\n', 'a.ts');
  t.equal(transpileCacheStats().misses, 3, 'a .js file of the same text is another dialect, another entry');
});

t.test('transpile: the cache is bounded and forgets the least recently used source', async (t) => {
  clearTranspileCache();
  const keep = transpile('export const keep = 1;\n', 'k.ts');
  for (let i = 0; i < TRANSPILE_CACHE_MAX; i++) {
    transpile(`export const x = ${i};\n`, 'x.ts');
    if (i === 10) transpile('export const keep = 1;\n', 'k.ts'); // touched: no longer the oldest
  }
  t.equal(transpileCacheStats().size, TRANSPILE_CACHE_MAX);
  t.equal(transpile('export const keep = 1;\n', 'k.ts'), keep, 'recently used entry survived');
  transpile('export const x = 0;\n', 'x.ts');
  t.equal(transpileCacheStats().misses, TRANSPILE_CACHE_MAX + 2, 'the oldest entry was evicted and is transpiled again');
});

t.test('transpile: a syntax error is EINVAL with file:line:col; other extensions are refused', async (t) => {
  t.throws(() => transpile('export const = 1;\n', 'bad.ts'), { code: 'EINVAL', message: /bad\.ts:1:14: / });
  t.throws(() => transpile('x', 'obj.py'), { code: 'EINVAL', message: /\.ts or \.js module/ });
  const log = rejected(t, 'export const x = ;\n', 'EINVAL', 'syn.ts');
  t.match(log, [/^syn\.ts:1:18: Expression expected/]);
});

t.test('transpile: .mts and .mjs are EINVAL (the compiler emits them as ES modules; an object file is CommonJS)', async (t) => {
  for (const f of ['obj.mts', 'obj.mjs', 'OBJ.MJS']) {
    t.throws(() => transpile(`import { SEC } from 'vbpffs/bpf';\nexport const p = SEC('cgroup_view', () => 0);\n`, f),
      { code: 'EINVAL', message: /not \.mts, \.mjs/ }, f);
    t.match(rejected(t, `export const x = 1;\n`, 'EINVAL', f), [/CommonJS, so not \.mts, \.mjs/]);
  }
  for (const f of ['obj.cts', 'obj.cjs']) {
    t.match(transpile(`import { SEC } from 'vbpffs/bpf';\nexport const p = SEC('cgroup_view', () => 0);\n`, f).js, /require\("vbpffs\/bpf"\)/, f);
  }
});

t.test('transpile: source maps lead from a generated position back to the original line', async (t) => {
  const source = 'import { SEC } from \'vbpffs/bpf\';\n\ninterface X { a: number }\n\nexport const p = SEC(\'cgroup_view\', (ctx: X): number => {\n  throw new Error("boom");\n});\n';
  const out = transpile(source, 'map.ts');
  const lines = out.js.split('\n');
  const genLine = lines.findIndex((l) => l.includes('throw new Error')) + 1;
  const genCol = lines[genLine - 1].indexOf('throw') + 1;
  t.same(originalPosition(out, genLine, genCol), { line: 6, column: 3 });
  t.same(decodeMappings('A,AAAA;;ECCA,CAAE'), [[{ genCol: 0, line: 0, col: 0 }], [], [{ genCol: 2, line: 1, col: 0 }, { genCol: 3, line: 1, col: 2 }]],
    'a 1-field segment maps nothing; fields are relative');
  t.same(originalPosition(out, genLine, 1), { line: 6, column: 3 }, 'a column before the first segment maps to it');
  t.equal(originalPosition(out, 10000, 1), undefined, 'no such line');
  t.equal(originalPosition(out, 1, 1), undefined, 'the "use strict" prologue maps nowhere');
});

t.test('parse: maps and programs of a good object file, as exported consts', async (t) => {
  const { spec, log } = await loadObjectFile(fixture('cpu.ts'));
  t.same(log, [`prog 'dump_cpu' (cgroup_view): verified`]);
  t.equal(spec.filename, fixture('cpu.ts'));
  t.match(spec.maps, [{
    name: 'cpu_stats',
    type: BpfMapType.CGRP_STORAGE,
    flags: 1,
    key: 'u32',
    value: { usage_usec: 'u64', last_ns: 'u64', hist: ['u32', 4] },
    keySize: 4,
    valueSize: 32,
    maxEntries: 0,
    pinning: 'by_name',
    pos: { line: 7, column: 14 },
  }]);
  t.equal(spec.programs.length, 1);
  const [p] = spec.programs;
  t.match(p, { name: 'dump_cpu', section: 'cgroup_view', pos: { line: 20, column: 14 } });
  t.match(spec.transpiled.js.slice(0), /exports\.dump_cpu = /);
  const src = await import('node:fs').then((fs) => fs.readFileSync(fixture('cpu.ts'), 'utf8'));
  t.match(src.slice(p.range.start, p.range.end), /^\(ctx: CgroupViewCtx\): number => \{[^]*return 0;\n\}$/);
});

t.test('parse: a namespace import, a function expression, a hash map with maxEntries', async (t) => {
  const { spec } = await loadObjectFile(fixture('tree-summary.ts'));
  t.match(spec.maps, [{ name: 'seen', type: BpfMapType.HASH, key: 'u64', value: 'u64', keySize: 8, valueSize: 8, maxEntries: 1024, pinning: 'none', flags: 0 }]);
  t.match(spec.programs, [{ name: 'tree_summary', section: 'iter/cgroup' }]);
});

t.test('parseObjectFile gives the syntax tree and the log without verifying', async (t) => {
  const p = parseObjectFile(`import { SEC } from 'vbpffs/bpf';\nexport const q = SEC('cgroup_view', () => 'x');\n`, 'o.ts');
  t.equal(p.programNodes.length, 1);
  t.equal(p.log.failed, false, 'the return rule is the verifier\'s');
  t.equal(BPF_MODULE, 'vbpffs/bpf');
  t.equal(typeof verifyParsed, 'function');
});

t.test('parse: a JavaScript object file', async (t) => {
  const source = `const { SEC, map, BPF_MAP_TYPE_HASH } = {};\nimport * as b from 'vbpffs/bpf';\nexport const m = b.map({ type: b.BPF_MAP_TYPE_ARRAY, key: 'u32', value: 'u32', maxEntries: 4 });\nexport const p = b.SEC('cgroup_view', function (ctx) { return 0; });\n`;
  const { spec } = verify({ source, filename: 'obj.js' });
  t.match(spec.maps, [{ name: 'm', type: BpfMapType.ARRAY }]);
  t.match(spec.programs, [{ name: 'p' }]);
});

t.test('loadObjectFile: a missing file is ENOENT; a directory is EINVAL; a non-string source is EINVAL', async (t) => {
  await t.rejects(loadObjectFile(fixture('nope.ts')), { code: 'ENOENT' });
  await t.rejects(loadObjectFile(FIXTURES + '/'), { code: 'EINVAL' });
  await t.rejects(loadObjectFile({ source: Buffer.from('x') as unknown as string, filename: 'x.ts' }), { code: 'EINVAL' });
});

t.test('map(): constants, `|` of flags, nested literals, `as const` and negative numbers fold statically', async (t) => {
  const source = HEAD + `export const m = map({ type: BPF_MAP_TYPE_HASH, flags: (BPF_F_NO_PREALLOC | BPF_F_RDONLY_PROG), key: { a: 'u32', b: ['u8', 4] } as const, value: { 'x': 's64' }, maxEntries: 0x10 });\n` + PROG;
  const { spec } = verify({ source, filename: 'obj.ts' });
  t.match(spec.maps, [{ flags: 1 | 128, key: { a: 'u32', b: ['u8', 4] }, value: { x: 's64' }, keySize: 8, valueSize: 8, maxEntries: 16 }]);
  t.equal(BPF_CONSTANTS.BPF_MAP_TYPE_CGRP_STORAGE, 32);
  const neg = rejected(t, HEAD + `export const m = map({ type: BPF_MAP_TYPE_HASH, key: 'u32', value: 'u32', maxEntries: -1 });\n` + PROG, 'EINVAL');
  t.match(neg, [/obj\.ts:2:18: map 'm': maxEntries must be a 32-bit unsigned integer/]);
});

t.test('map(): anything computed is EINVAL naming the line (rule: static map literals)', async (t) => {
  const cases: [string, RegExp][] = [
    [`map({ type: BPF_MAP_TYPE_HASH, key: 'u32', value: 'u64', maxEntries: size * 2 })`, /'size \* 2' is not static/],
    [`map({ type: BPF_MAP_TYPE_HASH, key: 'u32', value: 'u64', maxEntries: size })`, /'size' is not static/],
    [`map({ type: BPF_MAP_TYPE_HASH, key: 'u32', value: 'u64', maxEntries: \`\${size}\` })`, /is not static/],
    [`map({ type: BPF_MAP_TYPE_HASH, key: 'u32', value: 'u64', size })`, /no shorthand, spread or methods/],
    [`map({ ...base })`, /no shorthand, spread or methods/],
    [`map({ ['type']: BPF_MAP_TYPE_HASH, value: 'u64' })`, /computed member name/],
    [`map({ type: BPF_MAP_TYPE_HASH, value: ['u64', ...arr] })`, /array element is not static/],
    [`map({ type: BPF_MAP_TYPE_HASH, value: 'u64', flags: 1 | 'x' })`, /`\|` joins numbers only/],
    [`map({ type: BPF_MAP_TYPE_HASH, value: 'u64', max_entries: 1 })`, /unknown map\(\) member 'max_entries'/],
    [`map({ type: BPF_MAP_TYPE_HASH, value: 'u64', type: 1 })`, /member 'type' given twice/],
    [`map(base)`, /map\(\) takes one object literal/],
    [`map()`, /map\(\) takes one object literal/],
  ];
  for (const [expr, re] of cases) {
    const log = rejected(t, HEAD + `const size = 4; const base = {}; const arr: string[] = [];\nexport const m = ${expr};\n` + PROG, 'EINVAL');
    t.match(log, [re], expr);
    t.match(log[0], /^obj\.ts:3:\d+: /, 'names the line');
  }
});

t.test('map(): a member named __proto__ is EINVAL naming the line (it would set the prototype and vanish)', async (t) => {
  for (const lit of [`{ type: BPF_MAP_TYPE_HASH, key: 'u32', value: { '__proto__': 'u64', a: 'u32' }, maxEntries: 1 }`,
    `{ type: BPF_MAP_TYPE_HASH, key: 'u32', value: { a: 'u32', __proto__: 'u64' }, maxEntries: 1 }`, `{ __proto__: 1, type: BPF_MAP_TYPE_HASH, value: 'u64' }`]) {
    const log = rejected(t, HEAD + `export const m = map(${lit});\n` + PROG, 'EINVAL');
    // The host rules reject `__proto__` too (EACCES); the map() line is the EINVAL one.
    const mapLines = log.filter((l) => l.includes('map() member'));
    t.equal(mapLines.length, 1, lit);
    t.match(mapLines[0], /^obj\.ts:2:\d+: a map\(\) member cannot be named '__proto__'$/, lit);
  }
});

t.test('map(): members are checked: type, flags, maxEntries, pinning, the schemas', async (t) => {
  const cases: [string, RegExp][] = [
    [`{ type: 99, value: 'u64' }`, /type must be a BPF_MAP_TYPE_\* constant/],
    [`{ type: 'hash', value: 'u64' }`, /type must be a BPF_MAP_TYPE_\* constant/],
    [`{ type: 0, value: 'u64' }`, /type must be a BPF_MAP_TYPE_\* constant/],
    [`{ type: BPF_MAP_TYPE_HASH, value: 'u64', flags: 1.5 }`, /flags must be a 32-bit unsigned integer/],
    [`{ type: BPF_MAP_TYPE_HASH, value: 'u64', flags: false }`, /flags must be a 32-bit unsigned integer/],
    [`{ type: BPF_MAP_TYPE_HASH, value: 'u64', flags: true }`, /flags must be a 32-bit unsigned integer/],
    [`{ type: BPF_MAP_TYPE_HASH, value: 'u64', pinning: 'by_path' }`, /pinning must be 'none' or 'by_name'/],
    [`{ type: BPF_MAP_TYPE_HASH, key: 'u32' }`, /value type missing/],
    [`{ type: BPF_MAP_TYPE_HASH, key: 'u33', value: 'u64' }`, /unknown type 'u33'/],
    [`{ type: BPF_MAP_TYPE_HASH, key: 'u32', value: { a: true } }`, /not a type description/],
  ];
  for (const [lit, re] of cases) {
    t.match(rejected(t, HEAD + `export const m = map(${lit});\n` + PROG, 'EINVAL'), [re], lit);
  }
});

t.test('SEC(): a section string literal and a function; the section must be known (rule: unknown section)', async (t) => {
  const cases: [string, RegExp][] = [
    [`SEC('cgroup/nonsense', (ctx: any) => 0)`, /program 'q': unknown section 'cgroup\/nonsense'/],
    [`SEC(name, (ctx: any) => 0)`, /SEC\(\) takes a section name string literal and a function/],
    [`SEC('cgroup_view')`, /SEC\(\) takes a section name string literal and a function/],
    [`(SEC as any)()`, /SEC\(\) takes a section name string literal and a function/],
    [`SEC('cgroup_view', handler)`, /must be an arrow function or function expression/],
  ];
  for (const [expr, re] of cases) {
    const source = HEAD + `const name = 'cgroup_view'; function handler(): number { return 0; }\nexport const q = ${expr};\n`;
    t.match(rejected(t, source, 'EINVAL'), [re], expr);
  }
  t.match(verify({ source: HEAD + `export const q = SEC(\`tp/timer/tick\`, (ctx: any) => 0);\n`, filename: 'o.ts' }).spec.programs, [{ section: 'tp/timer/tick' }]);
});

t.test('map() and SEC() only initialise exported top-level consts', async (t) => {
  const cases = [
    `const m = map({ type: BPF_MAP_TYPE_HASH, value: 'u64' });`,
    `export let m = map({ type: BPF_MAP_TYPE_HASH, value: 'u64' });`,
    `export const [m] = [map({ type: BPF_MAP_TYPE_HASH, value: 'u64' })];`,
    `function f() { return SEC('cgroup_view', () => 0); }`,
    `export default SEC('cgroup_view', () => 0);`,
  ];
  for (const c of cases) {
    t.match(rejected(t, HEAD + c + '\n' + PROG, 'EINVAL'), [/(map|SEC)\(\) may only initialise an exported top-level const/], c);
  }
});

t.test('duplicate program or map names are EINVAL (rule: duplicate names)', async (t) => {
  const source = HEAD + `export const a = map({ type: BPF_MAP_TYPE_HASH, key: 'u32', value: 'u64', maxEntries: 1 });\n` +
    `export const a = SEC('cgroup_view', (ctx: any) => 0);\n` + PROG + PROG;
  const log = rejected(t, source, 'EINVAL');
  t.match(log, [/obj\.ts:3:14: duplicate name 'a'/, /obj\.ts:5:14: duplicate name 'p'/]);
});

t.test('the bad-map fixture is EINVAL naming the computed member', async (t) => {
  const err = await loadObjectFile(fixture('bad-map.ts')).then(() => undefined, (e: unknown) => e as VerifierError);
  t.equal(err?.code, 'EINVAL');
  t.match(err?.log, [/bad-map\.ts:6:92: 'size \* 2' is not static/]);
  t.match(err?.message, /malformed object file \(1 error\)\n.*bad-map\.ts:6:92/);
});

// ---------------------------------------------------------------------------------------------------
// bpf.d.ts: the fixtures type-check against the program-side typings.

const DTS = path.join(__dirname, '..', 'progs', 'prog', 'bpf.d.ts');

function typeErrors(file: string): string[] {
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.CommonJS,
    lib: ['lib.es2022.d.ts'],
    types: [],
    skipLibCheck: false,
  };
  const program = ts.createProgram([DTS, file], options);
  return ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
}

t.test('bpf.d.ts: the good fixtures type-check with 0 diagnostics', async (t) => {
  t.same(typeErrors(fixture('cpu.ts')), []);
  t.same(typeErrors(fixture('tree-summary.ts')), []);
});

t.test('bpf.d.ts: a helper called with the wrong argument type, a u64 read as number: diagnostics', async (t) => {
  const errs = typeErrors(fixture('bad-arg-type.ts'));
  t.ok(errs.length >= 2, errs.join('\n'));
  t.match(errs.join('\n'), /'bigint' is not assignable to type 'number'/);
  t.match(errs.join('\n'), /'number' is not assignable to parameter of type 'string'/);
  // It is still a valid object file: typing is the editor's job, not the loader's.
  t.equal((await loadObjectFile(fixture('bad-arg-type.ts'))).spec.programs.length, 1);
});
