/**
 * How maps are shown to people: bpftool's dumps (hex lines, and `-j` JSON with a "formatted" object
 * when the map has BTF) and the text a pinned map file gives in bpffs (bpffs_map_fops: two WARNING
 * lines, then map_seq_show_elem for each key, in map_get_next_key order).
 *
 * The pinned-map text follows btf_type_seq_show (BTF_SHOW_COMPACT | NONAME | ZERO): integers in
 * decimal, structs in {}, arrays in [], and inside an aggregate every value is followed by ','
 * (so a struct of two u32 reads "{1,2,}"); byte arrays print printable bytes as 'c' and stop at the
 * first NUL, as __btf_array_show does for 1-byte elements.
 */
import { BpfMapType, bpfError, isBpfError } from '../../uapi';
import type { BpfMap } from './map';
import type { JsonValue, SchemaType, ValueSchema } from './schema';

/** The first line pair of every pinned map file (map_seq_show on SEQ_START_TOKEN). */
export const BPFFS_MAP_HEADER = '# WARNING!! The output is for debug purpose only\n# WARNING!! The output format will change\n';

/**
 * Every key and a copy of its value, in get_next_key order (what `bpftool map dump` walks). `admit`
 * sees each key before its value is copied, so a caller bounding what it builds can stop first.
 */
export function* mapEntries(map: BpfMap, admit?: (key: Uint8Array) => void): Generator<[Uint8Array, Uint8Array]> {
  let key: unknown = null;
  for (;;) {
    let next: Uint8Array;
    try {
      next = map.getNextKey(key) as Uint8Array;
    } catch (e) {
      if (isBpfError(e, 'ENOENT')) return;
      throw e;
    }
    admit?.(next);
    // An element deleted between get_next_key and lookup is skipped, as bpftool does.
    try {
      yield [next, map.lookupElem(next)];
    } catch (e) {
      if (!isBpfError(e, 'ENOENT')) throw e;
    }
    key = next;
  }
}

/** bpftool's fprint_hex: two hex digits per byte, a double space every 8 bytes, a newline every 16. */
export function fprintHex(bytes: Uint8Array, sep = ' '): string {
  let out = '';
  for (let i = 0; i < bytes.length; i++) {
    if (i > 0) out += i % 16 === 0 ? '\n' : i % 8 === 0 ? '  ' : sep;
    out += bytes[i]!.toString(16).padStart(2, '0');
  }
  return out;
}

/** bpftool's print_entry_plain for a map without BTF: `key: 01 00 00 00  value: 2a 00 ...`. */
export function formatEntryPlain(key: Uint8Array, value: Uint8Array): string {
  const breakNames = key.length > 16 || value.length > 16;
  const singleLine = key.length + value.length <= 24 && !breakNames;
  let out = '';
  if (key.length > 0) out += `key:${breakNames ? '\n' : ' '}${fprintHex(key)}${singleLine ? '  ' : '\n'}`;
  if (value.length > 0) out += `value:${breakNames ? '\n' : ' '}${fprintHex(value)}`;
  return `${out}\n`;
}

/** `bpftool map dump` without BTF: one entry per key, then the count line. */
export function mapDumpPlain(map: BpfMap): string {
  let out = '';
  let n = 0;
  for (const [key, value] of mapEntries(map)) {
    out += formatEntryPlain(key, value);
    n++;
  }
  return `${out}Found ${n} element${n === 1 ? '' : 's'}\n`;
}

export interface JsonMapEntry {
  key: string[];
  value: string[];
  /** With BTF: the key and value decoded by the schema (u64 beyond 2^53 as a decimal string). */
  formatted?: { key?: JsonValue; value: JsonValue };
}

/** "0x00" to "0xff", made once: a dump's arrays share them rather than hold a new string per byte. */
const HEX = Array.from({ length: 256 }, (_, b) => `0x${b.toString(16).padStart(2, '0')}`);
export const hexJson = (bytes: Uint8Array): string[] => Array.from(bytes, (b) => HEX[b]!);

/** The JSON size of hexJson of n bytes: 6 characters each, n - 1 commas and the brackets. */
export const hexJsonSize = (n: number): number => (n === 0 ? 2 : 7 * n + 1);

/** `{"key":,"value":}` and the comma after an entry: what a JSON entry costs besides its arrays. */
const ENTRY_JSON_SIZE = 20;

/**
 * A bound on the JSON size of a reply, charged piece by piece before each piece is built: a dump
 * past it fails with E2BIG having built at most the bound, instead of building the map's size many
 * times over (each byte is a 4-character string in an array) until the heap runs out.
 */
export class ReplyBudget {
  readonly limit: number;
  readonly #what: string;
  #left: number;

  constructor(limit: number, what: string) {
    this.limit = limit;
    this.#what = what;
    this.#left = limit;
  }

  charge(bytes: number): void {
    this.#left -= bytes;
    if (this.#left < 0) throw bpfError('E2BIG', `${this.#what} is over the ${this.limit} bytes a reply may hold`);
  }
}

/** The size of a map entry's JSON with its hex arrays, before anything is built. */
export const jsonEntrySize = (keySize: number, valueSize: number): number => ENTRY_JSON_SIZE + hexJsonSize(keySize) + hexJsonSize(valueSize);

/** One entry of `bpftool map dump -j`; with a budget, the formatted part is charged once made. */
export function mapEntryJson(map: BpfMap, key: Uint8Array, value: Uint8Array, budget?: ReplyBudget): JsonMapEntry {
  const entry: JsonMapEntry = { key: hexJson(key), value: hexJson(value) };
  if (map.valueSchema !== undefined) {
    entry.formatted = { value: map.valueSchema.toJson(value) };
    if (map.keySchema !== undefined) entry.formatted = { key: map.keySchema.toJson(key), ...entry.formatted };
    // Its size is not known before it is made, but it is a few characters per byte at most.
    budget?.charge(JSON.stringify(entry.formatted).length + 14);
  }
  return entry;
}

/**
 * `bpftool map dump -j`: raw bytes as "0x.." strings, plus "formatted" when the map has BTF. With a
 * budget, each entry is charged before its value is even copied (E2BIG past it).
 */
export function mapDumpJson(map: BpfMap, budget?: ReplyBudget): JsonMapEntry[] {
  const out: JsonMapEntry[] = [];
  const admit = budget === undefined ? undefined : (key: Uint8Array): void => budget.charge(jsonEntrySize(key.length, map.valueSize));
  for (const [key, value] of mapEntries(map, admit)) out.push(mapEntryJson(map, key, value, budget));
  return out;
}

// ---------------------------------------------------------------------------------------------------
// The bpffs pinned-map file.

/** The map types whose kernel ops have map_seq_show_elem (bpf_map_support_seq_show). */
const SEQ_SHOW_TYPES = new Set<BpfMapType>([BpfMapType.HASH, BpfMapType.ARRAY, BpfMapType.CGROUP_STORAGE]);

/** bpf_map_support_seq_show: a value type and a map_seq_show_elem. */
export function mapSupportsSeqShow(map: BpfMap): boolean {
  return map.valueSchema !== undefined && SEQ_SHOW_TYPES.has(map.type);
}

/**
 * The text of a pinned map file in the pieces map_seq_show makes: the header, then one line per
 * element, each made when a read comes to it (the map's current state then, as seq_file walks), so
 * a file holds one element's text at a time: at most 4 characters a byte of a value, which its
 * value type bounds to 4 MiB. Made whole, the text of an array of 1,000 values of 1 MiB outgrew
 * the engine's heap. EIO
 * where the kernel's open gives EIO: a map without a value type, or a type without
 * map_seq_show_elem (local storage, which cannot even enumerate its keys).
 */
export function bpffsMapShowLines(map: BpfMap): Iterable<string> {
  if (!mapSupportsSeqShow(map)) throw bpfError('EIO', `${map.typeName} map ${map.id} cannot be shown as text`);
  return (function* (): Generator<string> {
    yield BPFFS_MAP_HEADER;
    for (const [key, value] of mapEntries(map)) yield mapSeqShowElem(map, key, value);
  })();
}

/** The whole text of a pinned map file (bpffsMapShowLines joined). */
export function bpffsMapShow(map: BpfMap): string {
  return [...bpffsMapShowLines(map)].join('');
}

/** map_seq_show_elem of hash, array and cgroup storage: `key: value\n`. */
export function mapSeqShowElem(map: BpfMap, key: Uint8Array, value: Uint8Array): string {
  const valueText = btfTypeSeqShow(map.valueSchema!, value);
  // array_map_seq_show_elem prints the index itself, with %u.
  if (map.type === BpfMapType.ARRAY) return `${new DataView(key.buffer, key.byteOffset, 4).getUint32(0, true)}: ${valueText}\n`;
  return `${btfTypeSeqShow(map.keySchema!, key)}: ${valueText}\n`;
}

/** btf_type_seq_show: one value in the compact form bpffs prints. */
export function btfTypeSeqShow(schema: ValueSchema, bytes: Uint8Array): string {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, schema.size);
  return show(schema.type, dv, 0, 0);
}

function show(t: SchemaType, dv: DataView, off: number, depth: number): string {
  const delim = depth > 0 ? ',' : '';
  switch (t.kind) {
    case 'int':
      return `${readInt(t.name, dv, off)}${delim}`;
    case 'lock':
      // struct bpf_spin_lock { __u32 val; }
      return `{${dv.getUint32(off, true)},}${delim}`;
    case 'struct':
      return `{${t.members.map((m) => show(m.type, dv, off + m.offset, depth + 1)).join('')}}${delim}`;
    case 'array':
      return `[${showElems(t.elem, t.length, dv, off, depth + 1)}]${delim}`;
  }
}

function showElems(elem: SchemaType, length: number, dv: DataView, off: number, depth: number): string {
  let out = '';
  for (let i = 0; i < length; i++) {
    const at = off + i * elem.size;
    if (elem.kind === 'int' && elem.size === 1) {
      // "BTF_INT_CHAR encoding never seems to be set for char arrays, so if size is 1 and element is
      // printable as a char, we'll do that": the first NUL ends the array.
      const b = dv.getUint8(at);
      if (b === 0) break;
      if (b >= 0x20 && b < 0x7f) {
        out += `'${String.fromCharCode(b)}',`;
        continue;
      }
    }
    out += show(elem, dv, at, depth);
  }
  return out;
}

function readInt(name: string, dv: DataView, off: number): string {
  switch (name) {
    case 'u8': return String(dv.getUint8(off));
    case 's8': return String(dv.getInt8(off));
    case 'u16': return String(dv.getUint16(off, true));
    case 's16': return String(dv.getInt16(off, true));
    case 'u32': return String(dv.getUint32(off, true));
    case 's32': return String(dv.getInt32(off, true));
    case 'u64': return dv.getBigUint64(off, true).toString();
    default: return dv.getBigInt64(off, true).toString();
  }
}
