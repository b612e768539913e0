/**
 * The escape suite's hostile programs, shared by the runtime's own suite (test/escape.ts, loaded
 * without the verifier) and the privilege tests (test/privileges.ts, loaded through `vbpffs iter pin`,
 * where the verifier sees them first). Each is a cgroup_view body and what it prints when the
 * runtime, unverified, runs it.
 */
export const ESCAPE_HEADER = `import { SEC, map, bpf_seq_printf, bpf_map_lookup_elem, bpf_ktime_get_ns, BPF_MAP_TYPE_ARRAY } from 'vbpffs/bpf';\n`;

/** An object file whose program (`p` unless named) is a cgroup_view with this body. */
export const escapeObject = (body: string, name = 'p'): string => ESCAPE_HEADER + `export const ${name} = SEC('cgroup_view', (ctx: any): any => {\n${body}\n});\n`;

export interface EscapeCase {
  body: string;
  /** What the program prints when run unverified. */
  out: string;
}

export const CONSTRUCTOR_CHAINS: EscapeCase = {
  body: `const out: string[] = [];
  const tries: (() => unknown)[] = [
    () => ctx.constructor.constructor('return typeof process')(),
    () => ctx.meta.constructor.constructor('return typeof require')(),
    () => bpf_seq_printf.constructor('return typeof globalThis.__vbpffs_host')(),
    () => (function (this: any) { return this; }).constructor("return Object.keys(this).filter((k) => k !== 'gc').join()")(),
    () => ctx.cgroup.constructor.name,
    () => Object.getPrototypeOf(ctx.cgroup).constructor('x'),
  ];
  for (const f of tries) { try { out.push(String(f())); } catch (e) { out.push('threw ' + (e as Error).name); } }
  bpf_seq_printf(ctx.meta.seq, '%s', out.join('|'));
  return 0;`,
  // Every function's constructor refuses (no code from strings); a handle's prototype leads only
  // to Object, and Object('x') makes a String, no handle.
  out: 'threw EvalError|threw EvalError|threw EvalError|threw EvalError|Object|x',
};

export const PROTOTYPE_POLLUTION: EscapeCase = {
  body: `const out: string[] = [];
  const tries: (() => unknown)[] = [
    () => { (Array.prototype as any).every = () => true; },
    () => { Object.defineProperty(Array.prototype, 'every', { value: () => true }); },
    () => { (DataView.prototype as any).getBigUint64 = () => 0n; },
    () => { (globalThis as any).Uint8Array = function () {}; },
    () => { (Object.prototype as any).polluted = 1; },
    () => { (bpf_seq_printf as any).call = 1; },
    () => { ctx.cgroup = null; },
    () => { (ctx.meta as any).seq = {}; },
  ];
  for (const f of tries) { try { f(); out.push('changed'); } catch (e) { out.push((e as Error).name); } }
  // A forged seq_file (a plain object) is refused whatever the pollution attempts did.
  out.push(String(bpf_seq_printf({} as any, 'x')));
  bpf_seq_printf(ctx.meta.seq, '%s', out.join('|'));
  return 0;`,
  out: 'TypeError|TypeError|TypeError|TypeError|TypeError|TypeError|TypeError|TypeError|-22',
};

export const HOST_GLOBALS: EscapeCase = {
  body: `const g: any = globalThis;
  declare const gc: unknown;
  bpf_seq_printf(ctx.meta.seq, '%s %s %s %s', typeof g.WebAssembly, typeof g.Atomics, typeof gc, typeof g.eval);
  return 0;`,
  out: 'undefined undefined undefined undefined',
};
