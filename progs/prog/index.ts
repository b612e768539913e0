/**
 * progs/prog: program object files and loaded programs. loadObjectFile parses, transpiles and
 * verifies one; loadCollection loads it (maps, isolate, programs); BpfProg is a loaded program.
 */
export {
  BPF_MODULE,
  parseObjectFile,
  type MapDecl,
  type MapPinning,
  type ObjectFileSpec,
  type ParsedObject,
  type ProgramDecl,
  type SourcePos,
} from './object-file';
export { verifyParsed } from './verifier';
export { BPF_CONSTANTS } from './verifier/constants';
export { VerifierError } from './verifier/log';
export {
  TRANSPILE_CACHE_MAX,
  clearTranspileCache,
  originalPosition,
  transpile,
  transpileCacheStats,
  type Transpiled,
} from './transpile';
export { loadObjectFile, verify, type LoadedObject, type ObjectSource } from './load';
export { BpfProg, type ProgCtx, type ProgRunner, type ProgStats } from './prog';
export { Collection, loadCollection, newCollection, type CollectionOptions, type MapPins } from './collection';
