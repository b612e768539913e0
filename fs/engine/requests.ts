/**
 * What the CLI sends for the object commands, as plain JSON (the control socket's arguments), and
 * how the engine checks it. Everything here is validated with EINVAL before the engine journals or
 * makes anything: a request that does not decode changes nothing.
 */
import path from 'node:path';
import { BPF_ANY, BPF_EXIST, BPF_F_ALLOW_MULTI, BPF_F_ALLOW_OVERRIDE, BPF_NOEXIST, BpfMapType, MAP_TYPE_NAME, bpfError } from '../../uapi';
import { ValueSchema, type MapSpec, type TypeDesc } from '../../progs';

/** PROG, MAP or LINK: `id ID` or `pinned PATH` (a path inside the mount). */
export type ObjRef = { id: number } | { pinned: string };

/** A map key or value: bytes as hex (`"2a000000"`), JSON for a map with a schema, or (keys) a cgroup. */
export type DataArg = { hex: string } | { json: unknown } | { cgroup: string };

/** `map create`'s attributes; sizes may be left out when a type gives them. */
export interface MapCreateArgs {
  type: string;
  key?: number;
  value?: number;
  entries: number;
  name: string;
  flags?: number;
  keyType?: TypeDesc;
  valueType?: TypeDesc;
}

/** update's flags by their bpftool names. */
export const UPDATE_FLAGS: Readonly<Record<string, number>> = { any: BPF_ANY, noexist: BPF_NOEXIST, exist: BPF_EXIST };

/** `cgroup attach`'s modes by their bpftool names (none is the default). */
export const ATTACH_MODES: Readonly<Record<string, number>> = { multi: BPF_F_ALLOW_MULTI, override: BPF_F_ALLOW_OVERRIDE };

const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);

/** A UTF-16 surrogate without its other half. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * A path as a file name can hold it: EINVAL for a NUL (it ends the name the VFS sees, so the entry
 * made could be neither named nor removed) or a lone UTF-16 surrogate (JSON carries one, but it has
 * no UTF-8 bytes: the name listed would be U+FFFD's, not the one stored). '/' is the separator, so
 * these are the only characters no name may hold.
 */
export function pathText<T>(p: T, what = 'path'): T {
  if (typeof p !== 'string') return p;
  if (p.includes('\0')) throw bpfError('EINVAL', `${what} ${JSON.stringify(p)} holds a NUL byte, which no file name may`);
  if (LONE_SURROGATE.test(p)) throw bpfError('EINVAL', `${what} ${JSON.stringify(p)} holds a lone UTF-16 surrogate, which has no UTF-8 bytes`);
  return p;
}

/** A path inside the mount as the daemon names it: absolute, normalised, no `..` (EINVAL otherwise). */
export function mountPath(p: unknown, what = 'path'): string {
  if (typeof p !== 'string' || !p.startsWith('/')) throw bpfError('EINVAL', `${what} must be an absolute path inside the mount`);
  pathText(p, what);
  if (p.split('/').some((c) => c === '..' || c === '.') || (p !== '/' && (p.endsWith('/') || p.includes('//')))) {
    throw bpfError('EINVAL', `${what} '${p}' is not a plain path inside the mount (no '.', '..' or empty components)`);
  }
  return p;
}

export function objRef(x: unknown, kind: string): ObjRef {
  if (isObject(x) && Number.isSafeInteger(x.id) && (x.id as number) > 0) return { id: x.id as number };
  if (isObject(x) && typeof x.pinned === 'string') return { pinned: mountPath(x.pinned, `pinned ${kind}`) };
  throw bpfError('EINVAL', `a ${kind} is {id: N} or {pinned: PATH}`);
}

/** Hex text to bytes; EINVAL for anything but pairs of hex digits. */
export function hexBytes(hex: unknown): Uint8Array {
  if (typeof hex !== 'string' || !/^(?:[0-9a-fA-F]{2})*$/.test(hex)) throw bpfError('EINVAL', 'bytes are sent as pairs of hex digits');
  return Uint8Array.from(hex.match(/../g) ?? [], (b) => parseInt(b, 16));
}

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/**
 * Bytes of a key or value from hex or JSON: JSON needs the map's schema for it (BTF's role);
 * the size is the map's own check.
 */
export function dataBytes(arg: unknown, schema: ValueSchema | undefined, what: 'key' | 'value', mapId: number): Uint8Array {
  if (isObject(arg) && 'hex' in arg) return hexBytes(arg.hex);
  if (isObject(arg) && 'json' in arg) {
    if (schema === undefined) throw bpfError('EINVAL', `map ${mapId} has no ${what} type: give the ${what} as bytes`);
    return schema.fromJson(arg.json);
  }
  throw bpfError('EINVAL', `a ${what} is {hex: ...}${what === 'key' ? ', {json: ...} or {cgroup: PATH}' : ' or {json: ...}'}`);
}

/** The flags of an update: any, noexist or exist. */
export function updateFlags(x: unknown): number {
  if (x === undefined) return BPF_ANY;
  if (x === BPF_ANY || x === BPF_NOEXIST || x === BPF_EXIST) return x;
  throw bpfError('EINVAL', `update flags are any (0), noexist (1) or exist (2), not ${String(x)}`);
}

export function attachMode(x: unknown): number {
  if (x === undefined || x === 0) return 0;
  if (x === BPF_F_ALLOW_MULTI || x === BPF_F_ALLOW_OVERRIDE) return x;
  throw bpfError('EINVAL', `an attach mode is multi or override, not ${String(x)}`);
}

const MAP_TYPE_BY_NAME = new Map<string, BpfMapType>(Object.entries(MAP_TYPE_NAME).map(([n, name]) => [name, Number(n) as BpfMapType]));

const u32 = (v: unknown, what: string): number => {
  if (!Number.isSafeInteger(v) || (v as number) < 0 || (v as number) > 0xffffffff) throw bpfError('EINVAL', `${what} must be a u32, not ${String(v)}`);
  return v as number;
};

/** `map create`'s attributes as a MapSpec: createMap then applies the kernel's own rules. */
export function mapSpec(x: unknown): MapSpec {
  if (!isObject(x)) throw bpfError('EINVAL', 'map create takes {type, key, value, entries, name, flags?, keyType?, valueType?}');
  const type = typeof x.type === 'string' ? MAP_TYPE_BY_NAME.get(x.type) : undefined;
  if (type === undefined) throw bpfError('EINVAL', `unknown map type '${String(x.type)}' (${[...MAP_TYPE_BY_NAME.keys()].join(', ')})`);
  const keyType = x.keyType === undefined ? undefined : ValueSchema.define(x.keyType as TypeDesc);
  const valueType = x.valueType === undefined ? undefined : ValueSchema.define(x.valueType as TypeDesc);
  if (typeof x.name !== 'string') throw bpfError('EINVAL', 'a map needs a name');
  const spec: MapSpec = {
    type,
    name: x.name,
    keySize: u32(x.key ?? keyType?.size, 'key size'),
    valueSize: u32(x.value ?? valueType?.size, 'value size'),
    maxEntries: u32(x.entries, 'entries'),
    flags: u32(x.flags ?? 0, 'flags'),
  };
  if (keyType !== undefined || valueType !== undefined) spec.btf = { key: keyType, value: valueType };
  return spec;
}

/**
 * A cgroup of the mount's source: its path in the hierarchy (`/system.slice`) or, the same, the
 * path under the source's mount point (`/sys/fs/cgroup/system.slice`). EINVAL for a path that
 * leaves the hierarchy.
 */
export function cgroupPath(p: unknown, sourceMount: string): string {
  if (typeof p !== 'string' || !p.startsWith('/')) throw bpfError('EINVAL', 'a cgroup is an absolute path');
  pathText(p, 'cgroup');
  if (p.split('/').includes('..')) throw bpfError('EINVAL', `cgroup '${p}' leaves the cgroup hierarchy ('..')`);
  const norm = path.posix.normalize(p).replace(/(.)\/$/, '$1');
  if (norm === sourceMount) return '/';
  return norm.startsWith(`${sourceMount}/`) ? norm.slice(sourceMount.length) : norm;
}
