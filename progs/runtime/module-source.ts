/**
 * Host modules whose code also runs inside isolates, transpiled to CommonJS bodies once per process:
 * progs/maps/schema.ts (value schemas: a field reads and writes the same bytes on both sides of the
 * isolate boundary) and progs/helpers/seq.ts with bprintf.ts (bpf_seq_printf and bpf_seq_write with
 * the kernel's rules: a run's output is made inside its isolate and crosses once, at its end, not
 * once per line). One implementation each, kept right in one place.
 *
 * What these modules import is supplied by the isolate's wrapper (isolate.ts): uapi's bpfError, and
 * the few platform objects an isolate lacks (TextEncoder, TextDecoder, crypto.getRandomValues),
 * which isolateShims() defines.
 */
import { readFileSync } from 'node:fs';
import ts from 'typescript';

const sources = new Map<string, string>();

/** The module at `file` (as require.resolve names it) as a CommonJS function body. */
function moduleSource(file: string): string {
  let source = sources.get(file);
  if (source === undefined) {
    // .ts when running from the sources (tests), .js when built: both transpile the same.
    const out = ts.transpileModule(readFileSync(file, 'utf8'), {
      fileName: file,
      compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, sourceMap: false, removeComments: true },
    });
    source = out.outputText.replace(/^\/\/# sourceMappingURL=.*$/m, '');
    sources.set(file, source);
  }
  return source;
}

export const schemaModuleSource = (): string => moduleSource(require.resolve('../maps/schema'));
export const bprintfModuleSource = (): string => moduleSource(require.resolve('../helpers/bprintf'));
export const seqModuleSource = (): string => moduleSource(require.resolve('../helpers/seq'));

/**
 * Source defining, in the isolate, what bprintf.ts needs of the platform: UTF-8 TextEncoder and
 * TextDecoder (WHATWG's rules: a lone surrogate encodes as U+FFFD, an invalid sequence decodes as
 * U+FFFD) and crypto.getRandomValues filled from a key the host draws, so %p hashes differ per
 * isolate as they do per process.
 */
export function isolateShims(key: readonly number[]): string {
  return `
    class TextEncoder {
      encode(s) {
        s = String(s);
        // Most text a view prints is ASCII: one byte per unit, no array of numbers to build.
        if (!/[^\x00-\x7f]/.test(s)) {
          const b = new Uint8Array(s.length);
          for (let i = 0; i < s.length; i++) b[i] = s.charCodeAt(i);
          return b;
        }
        const out = [];
        for (let i = 0; i < s.length; i++) {
          let c = s.charCodeAt(i);
          if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
            const d = s.charCodeAt(i + 1);
            if (d >= 0xdc00 && d <= 0xdfff) { c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00); i++; }
          }
          if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd;
          if (c < 0x80) out.push(c);
          else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
          else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
          else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
        }
        return new Uint8Array(out);
      }
    }
    class TextDecoder {
      decode(b) {
        let ascii = true;
        for (let i = 0; i < b.length; i++) if (b[i] > 0x7f) { ascii = false; break; }
        if (ascii) {
          let t = '';
          for (let i = 0; i < b.length; i += 4096) t += String.fromCharCode.apply(null, b.subarray(i, i + 4096));
          return t;
        }
        let s = '';
        for (let i = 0; i < b.length; ) {
          const c = b[i];
          const n = c < 0x80 ? 0 : c >= 0xf0 && c < 0xf5 ? 3 : c >= 0xe0 ? 2 : c >= 0xc2 && c < 0xe0 ? 1 : -1;
          let cp = n === 0 ? c : n === 1 ? c & 31 : n === 2 ? c & 15 : c & 7;
          let ok = n >= 0;
          for (let k = 1; ok && k <= n; k++) {
            const d = b[i + k];
            if (d === undefined || (d & 0xc0) !== 0x80) ok = false;
            else cp = (cp << 6) | (d & 63);
          }
          if (ok && ((n === 2 && cp < 0x800) || (n === 3 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))) ok = false;
          if (!ok) { s += '\\ufffd'; i++; continue; }
          s += String.fromCodePoint(cp);
          i += n + 1;
        }
        return s;
      }
    }
    const crypto = { getRandomValues(b) { const k = ${JSON.stringify(key)}; for (let i = 0; i < b.length; i++) b[i] = k[i % k.length]; return b; } };
  `;
}
