/**
 * The object commands' arguments in bpftool's grammar, parsed into the request the daemon gets.
 * Pure: no daemon, no file system. Paths in the mount stay MountPath markers until the CLI knows
 * which mount they are in (cli-objects.ts turns them into paths inside it).
 *
 *   PROG := id ID | pinned PATH      MAP := id ID | pinned PATH      LINK := id ID | pinned PATH
 *   DATA := [hex] BYTES | json JSON  (a key may also be `cgroup PATH`, for local storage maps)
 */
import path from 'node:path';
import { bpfError } from '../uapi';

/** bpftool's keyword matching: any unambiguous prefix. */
export function keyword(word: string | undefined, choices: string[]): string {
  if (word === undefined) throw bpfError('EINVAL', `expected one of: ${choices.join(', ')}`);
  const hits = choices.filter((c) => c.startsWith(word));
  if (hits.length === 1) return hits[0]!;
  if (hits.includes(word)) return word;
  throw bpfError('EINVAL', hits.length === 0 ? `unknown keyword '${word}'` : `ambiguous keyword '${word}': ${hits.join(', ')}`);
}

/** A UTF-16 surrogate without its other half. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * EINVAL for a path no file name can hold: a NUL (the name would end there) or a lone surrogate
 * (no UTF-8 bytes). execve cannot pass a NUL, but runCli is also called with strings (the fuzzer).
 */
export function pathArg(p: string, what: string): string {
  if (p.includes('\0')) throw bpfError('EINVAL', `${what} ${JSON.stringify(p)} holds a NUL byte, which no file name may`);
  if (LONE_SURROGATE.test(p)) throw bpfError('EINVAL', `${what} ${JSON.stringify(p)} holds a lone UTF-16 surrogate, which has no UTF-8 bytes`);
  return p;
}

/** A path in a vbpffs mount, as the user typed it. */
export class MountPath {
  constructor(readonly raw: string) {
    pathArg(raw, 'the path');
  }

  /** Absolute, with `..` left in, so a path that leaves its mount can be told apart. */
  get absolute(): string {
    return path.isAbsolute(this.raw) ? this.raw : `${process.cwd()}/${this.raw}`;
  }
}

export type Ref = { id: number } | { pinned: MountPath };

/** One parsed command: the control method, its arguments, and the `mount MOUNTPOINT` it named. */
export interface Request {
  method: string;
  args: unknown[];
}

/** A cursor over the words of a command, with bpftool's error messages. */
export class Words {
  #i = 0;
  constructor(
    private readonly words: string[],
    readonly usage: string,
  ) {}

  get more(): boolean {
    return this.#i < this.words.length;
  }

  peek(): string | undefined {
    return this.words[this.#i];
  }

  next(what: string): string {
    const w = this.words[this.#i++];
    if (w === undefined) throw bpfError('EINVAL', `${what} is missing (usage: ${this.usage})`);
    return w;
  }

  keyword(choices: string[]): string {
    if (!this.more) throw bpfError('EINVAL', `expected one of ${choices.join(', ')} (usage: ${this.usage})`);
    return keyword(this.words[this.#i++], choices);
  }

  /** Nothing may follow. */
  end(): void {
    if (this.more) throw bpfError('EINVAL', `unexpected argument '${this.peek()}' (usage: ${this.usage})`);
  }
}

/** `id ID | pinned PATH` */
export function parseRef(w: Words, kind: string): Ref {
  const how = w.keyword(['id', 'pinned']);
  const v = w.next(`${kind} ${how}`);
  if (how === 'pinned') return { pinned: new MountPath(v) };
  if (!/^[1-9]\d*$/.test(v) || !Number.isSafeInteger(Number(v))) throw bpfError('EINVAL', `'${v}' is not a ${kind} id`);
  return { id: Number(v) };
}

/** A byte as bpftool's parse_bytes reads it: strtoul with base 0 (0x.., 0.. octal, decimal), or 16 after `hex`. */
export function parseByte(word: string, hex: boolean): number | undefined {
  const ok = hex ? /^[0-9a-fA-F]{1,2}$/.test(word) : /^(?:0[xX][0-9a-fA-F]{1,2}|0[0-7]{0,3}|[1-9]\d{0,2})$/.test(word);
  if (!ok) return undefined;
  const n = hex ? parseInt(word, 16) : /^0[xX]/.test(word) ? parseInt(word.slice(2), 16) : word.startsWith('0') ? parseInt(word, 8) : Number(word);
  return n <= 255 ? n : undefined;
}

/** DATA after `key` or `value`: bytes (as many as parse), `json JSON`, or for a key `cgroup PATH`. */
export function parseData(w: Words, what: 'key' | 'value'): unknown {
  const first = w.peek();
  if (first === 'json') {
    w.next(what);
    const text = w.next(`${what} json`);
    try {
      return { json: JSON.parse(text) as unknown };
    } catch {
      throw bpfError('EINVAL', `${what} json: '${text}' is not JSON`);
    }
  }
  if (first === 'cgroup' && what === 'key') {
    w.next(what);
    return { cgroup: cgroupArg(w.next('key cgroup')) };
  }
  const hex = first === 'hex';
  if (hex) w.next(what);
  const bytes: number[] = [];
  for (let b: number | undefined; w.more && (b = parseByte(w.peek()!, hex)) !== undefined; w.next(what)) bytes.push(b);
  if (bytes.length === 0) throw bpfError('EINVAL', `${what}: can't parse '${w.peek() ?? ''}' as a byte (give BYTES, hex BYTES or json JSON)`);
  return { hex: Buffer.from(bytes).toString('hex') };
}

/** A cgroup path as the daemon takes it: absolute (a relative one is from here, as bpftool opens it). */
export function cgroupArg(p: string): string {
  pathArg(p, 'the cgroup');
  return p.startsWith('/') ? p : `${process.cwd()}/${p}`;
}

/** A u32 in C's notations (decimal, 0x hex, 0 octal). */
export function parseU32(word: string, what: string): number {
  const n = /^0[xX][0-9a-fA-F]+$/.test(word) ? parseInt(word, 16) : /^0[0-7]+$/.test(word) ? parseInt(word, 8) : /^\d+$/.test(word) ? Number(word) : NaN;
  if (!Number.isSafeInteger(n) || n > 0xffffffff) throw bpfError('EINVAL', `${what}: '${word}' is not a number`);
  return n;
}

/** A ValueSchema type description: JSON (`'{"a":"u64"}'`, `'"u32"'`) or a bare integer name (`u32`). */
export function parseTypeDesc(word: string, what: string): unknown {
  if (/^[us](8|16|32|64)$/.test(word)) return word;
  try {
    return JSON.parse(word) as unknown;
  } catch {
    throw bpfError('EINVAL', `${what}: '${word}' is neither an integer type (u32, s64, ...) nor JSON`);
  }
}

const MAP_CREATE_USAGE = 'map create FILE type TYPE key KEY_SIZE value VALUE_SIZE entries MAX_ENTRIES name NAME [flags FLAGS] [key_type TYPE_DESC] [value_type TYPE_DESC]';

/** `map create FILE type TYPE key N value N entries N name NAME [flags F] [key_type DESC] [value_type DESC]` */
export function parseMapCreate(args: string[]): Request {
  const w = new Words(args, MAP_CREATE_USAGE);
  const file = new MountPath(w.next('FILE'));
  const spec: Record<string, unknown> = {};
  const fields = ['type', 'key', 'value', 'entries', 'name', 'flags', 'key_type', 'value_type'];
  while (w.more) {
    const k = w.keyword(fields);
    if (k in spec || (k === 'key_type' && 'keyType' in spec) || (k === 'value_type' && 'valueType' in spec)) throw bpfError('EINVAL', `${k} is given twice`);
    const v = w.next(k);
    if (k === 'type' || k === 'name') spec[k] = v;
    else if (k === 'key_type') spec.keyType = parseTypeDesc(v, k);
    else if (k === 'value_type') spec.valueType = parseTypeDesc(v, k);
    else spec[k] = parseU32(v, k);
  }
  for (const need of ['type', 'entries', 'name']) if (!(need in spec)) throw bpfError('EINVAL', `map create needs ${need} (usage: ${MAP_CREATE_USAGE})`);
  if (!('key' in spec) && !('keyType' in spec)) throw bpfError('EINVAL', `map create needs key KEY_SIZE or key_type (usage: ${MAP_CREATE_USAGE})`);
  if (!('value' in spec) && !('valueType' in spec)) throw bpfError('EINVAL', `map create needs value VALUE_SIZE or value_type (usage: ${MAP_CREATE_USAGE})`);
  return { method: 'mapCreate', args: [file, spec] };
}

/** The map commands that name a map: lookup, update, delete, getnext, pin, dump, show. */
export function parseMapCommand(cmd: string, args: string[]): Request {
  const usage: Record<string, string> = {
    lookup: 'map lookup MAP key DATA',
    update: 'map update MAP key DATA value VALUE [any|noexist|exist]',
    delete: 'map delete MAP key DATA',
    getnext: 'map getnext MAP [key DATA]',
    pin: 'map pin MAP FILE',
    dump: 'map dump MAP',
    show: 'map show [MAP]',
  };
  const w = new Words(args, usage[cmd]!);
  if (cmd === 'show') {
    const ref = w.more ? parseRef(w, 'map') : undefined;
    w.end();
    return { method: 'mapShow', args: ref === undefined ? [] : [ref] };
  }
  const map = parseRef(w, 'map');
  let req: Request;
  if (cmd === 'dump') req = { method: 'mapDump', args: [map] };
  else if (cmd === 'pin') req = { method: 'objPin', args: ['map', map, new MountPath(w.next('FILE'))] };
  else if (cmd === 'getnext') {
    const key = w.more ? (w.keyword(['key']), parseData(w, 'key')) : undefined;
    req = { method: 'mapGetNext', args: key === undefined ? [map] : [map, key] };
  } else {
    w.keyword(['key']);
    const key = parseData(w, 'key');
    if (cmd === 'update') {
      w.keyword(['value']);
      const value = parseData(w, 'value');
      const flags = w.more ? ({ any: 0, noexist: 1, exist: 2 } as Record<string, number>)[w.keyword(['any', 'noexist', 'exist'])] : 0;
      req = { method: 'mapUpdate', args: [map, key, value, flags] };
    } else {
      req = { method: cmd === 'lookup' ? 'mapLookup' : 'mapDelete', args: [map, key] };
    }
  }
  w.end();
  return req;
}

/** prog and link commands that name objects: show, pin, load, update, detach. */
export function parseProgLinkCommand(object: 'prog' | 'link', cmd: string, args: string[]): Request {
  const usage: Record<string, string> = {
    show: `${object} show [${object.toUpperCase()}]`,
    pin: `${object} pin ${object.toUpperCase()} FILE`,
    load: 'prog load OBJ FILE',
    update: 'link update LINK PROG',
    detach: 'link detach LINK',
  };
  const w = new Words(args, usage[cmd]!);
  let req: Request;
  if (cmd === 'show') {
    const ref = w.more ? parseRef(w, object) : undefined;
    req = { method: `${object}Show`, args: ref === undefined ? [] : [ref] };
  } else if (cmd === 'load') {
    req = { method: 'progLoad', args: [objectFile(w.next('OBJ')), new MountPath(w.next('FILE'))] };
  } else if (cmd === 'pin') {
    req = { method: 'objPin', args: [object, parseRef(w, object), new MountPath(w.next('FILE'))] };
  } else if (cmd === 'update') {
    req = { method: 'linkUpdate', args: [parseRef(w, 'link'), parseRef(w, 'prog')] };
  } else {
    req = { method: 'linkDetach', args: [parseRef(w, 'link')] };
  }
  w.end();
  return req;
}

/** `iter pin OBJ PATH [order ORDER] [cgroup CGROUP]`, OBJ an object file or `pinned PATH` (a loaded program). */
export function parseIterPin(args: string[]): Request {
  const w = new Words(args, 'iter pin OBJ PATH [order ORDER] [cgroup CGROUP]');
  const obj = w.peek() === 'pinned' ? parseRef(w, 'prog') : objectFile(w.next('OBJ'));
  const pin = new MountPath(w.next('PATH'));
  const opts: { order?: string; cgroup?: string } = {};
  while (w.more) {
    const k = w.keyword(['order', 'cgroup']) as 'order' | 'cgroup';
    opts[k] = pathArg(w.next(k), k);
  }
  return { method: 'iterPin', args: [obj, pin, opts] };
}

/** The cgroup commands that talk to a daemon: show, attach, detach, run, reconcile. */
export function parseCgroupCommand(cmd: string, args: string[]): Request {
  if (cmd === 'reconcile') {
    new Words(args, 'cgroup reconcile [mount MOUNTPOINT]').end();
    return { method: 'cgroupReconcile', args: [] };
  }
  const usage: Record<string, string> = {
    show: 'cgroup show CGROUP [effective]',
    attach: 'cgroup attach CGROUP ATTACH_TYPE PROG [multi|override]',
    detach: 'cgroup detach CGROUP ATTACH_TYPE PROG',
    run: 'cgroup run CGROUP ATTACH_TYPE [ctx JSON]',
  };
  const w = new Words(args, usage[cmd]!);
  const cgroup = cgroupArg(w.next('CGROUP'));
  let req: Request;
  if (cmd === 'show') {
    const effective = w.more ? (w.keyword(['effective']), true) : false;
    req = { method: 'cgroupShow', args: [cgroup, effective] };
  } else {
    const type = w.next('ATTACH_TYPE');
    if (cmd === 'run') {
      let ctx: unknown;
      if (w.more) {
        w.keyword(['ctx']);
        const text = w.next('ctx');
        try {
          ctx = JSON.parse(text) as unknown;
        } catch {
          throw bpfError('EINVAL', `ctx: '${text}' is not JSON`);
        }
      }
      req = { method: 'cgroupRun', args: ctx === undefined ? [cgroup, type] : [cgroup, type, ctx] };
    } else {
      const prog = parseRef(w, 'prog');
      const mode = cmd === 'attach' && w.more ? ({ multi: 2, override: 1 } as Record<string, number>)[w.keyword(['multi', 'override'])] : 0;
      req = cmd === 'attach' ? { method: 'cgroupAttach', args: [cgroup, type, prog, mode] } : { method: 'cgroupDetach', args: [cgroup, type, prog] };
    }
  }
  w.end();
  return req;
}

/** An object file's path as the daemon reads it (absolute; the daemon's cwd is not ours). */
export function objectFile(p: string): string {
  pathArg(p, 'the object file');
  return path.resolve(p);
}

/** `[mount MOUNTPOINT]` anywhere among the arguments: taken out, and returned. */
export function takeMount(args: string[]): { args: string[]; mount?: string } {
  const i = args.lastIndexOf('mount');
  if (i < 0) return { args };
  const mp = args[i + 1];
  if (mp === undefined) throw bpfError('EINVAL', 'mount needs a MOUNTPOINT');
  return { args: [...args.slice(0, i), ...args.slice(i + 2)], mount: path.resolve(mp) };
}
