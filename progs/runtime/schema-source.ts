/**
 * The value schemas' code for isolates: progs/maps/schema.ts, transpiled to a CommonJS body once per
 * process. Programs get their views from the same code the host uses, so a field reads and writes
 * the same bytes on both sides of the isolate boundary, and there is one implementation to keep
 * right. schema.ts imports only uapi's bpfError, which the isolate's wrapper supplies.
 */
import { readFileSync } from 'node:fs';
import ts from 'typescript';

let source: string | undefined;

export function schemaModuleSource(): string {
  if (source === undefined) {
    // schema.ts when running from the sources (tests), schema.js when built: both transpile the same.
    const file = require.resolve('../maps/schema');
    const out = ts.transpileModule(readFileSync(file, 'utf8'), {
      fileName: file,
      compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, sourceMap: false, removeComments: true },
    });
    source = out.outputText.replace(/^\/\/# sourceMappingURL=.*$/m, '');
  }
  return source;
}
