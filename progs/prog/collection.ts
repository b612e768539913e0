/**
 * Loading an object file: what libbpf's bpf_object__load does with an ELF, and cilium/ebpf's
 * NewCollection. Maps are created first (or, for `pinning: 'by_name'`, reused from the pin of that
 * name when compatible, as libbpf's bpf_object__reuse_map does, and pinned when new), then the
 * object's isolate evaluates the module, then each program becomes a BpfProg holding every map of
 * the object.
 *
 * A Collection holds one handle per map and program. close() drops them; the objects live on while
 * something else holds them (a pin, a link, an attachment), as closing libbpf's object leaves pinned
 * and attached objects alive. The isolate goes when the last program is released.
 */
import { bpfError } from '../../uapi';
import { Handle } from '../object';
import type { Kernel } from '../kernel';
import { createMap } from '../maps/create';
import type { BpfMap } from '../maps/map';
import { ValueSchema } from '../maps/schema';
import { DEFAULT_LIMITS, ObjectIsolate, type RuntimeLimits } from '../runtime/isolate';
import { BpfProg } from './prog';
import { loadObjectFile, type LoadedObject, type ObjectSource } from './load';
import type { MapDecl } from './object-file';

/** libbpf's pin_root_path for maps declared `pinning: 'by_name'`: the fs layer implements it over bpffs. */
export interface MapPins {
  /** A new handle on the map pinned under `name`, or undefined when there is none. */
  get(name: string): Handle<BpfMap> | undefined;
  /** Pins `map` under `name` (the pin takes its own reference). */
  pin(name: string, map: BpfMap): void;
}

export interface CollectionOptions {
  limits?: Partial<RuntimeLimits>;
  pins?: MapPins;
}

export class Collection {
  readonly filename: string;
  readonly programs: ReadonlyMap<string, Handle<BpfProg>>;
  readonly maps: ReadonlyMap<string, Handle<BpfMap>>;
  /** The verifier's log. */
  readonly log: readonly string[];
  readonly #isolate: ObjectIsolate;

  constructor(filename: string, programs: Map<string, Handle<BpfProg>>, maps: Map<string, Handle<BpfMap>>, log: readonly string[], isolate: ObjectIsolate) {
    this.filename = filename;
    this.programs = programs;
    this.maps = maps;
    this.log = log;
    this.#isolate = isolate;
  }

  /** The program named `name`; ENOENT when the object has none. */
  program(name: string): BpfProg {
    const h = this.programs.get(name);
    if (h === undefined) throw bpfError('ENOENT', `${this.filename} has no program '${name}'`);
    return h.object;
  }

  /** The map named `name`; ENOENT when the object has none. */
  map<T extends BpfMap = BpfMap>(name: string): T {
    const h = this.maps.get(name);
    if (h === undefined) throw bpfError('ENOENT', `${this.filename} has no map '${name}'`);
    return h.object as T;
  }

  /** Heap the object's isolate uses, bytes. */
  heapBytes(): number {
    return this.#isolate.heapBytes();
  }

  /** Drops the collection's handles; idempotent. */
  close(): void {
    for (const h of [...this.programs.values(), ...this.maps.values()]) if (!h.closed) h.close();
  }
}

/** Reads (a path), verifies and loads an object file. */
export async function loadCollection(kernel: Kernel, file: string | ObjectSource | LoadedObject, opts: CollectionOptions = {}): Promise<Collection> {
  const loaded = typeof file === 'object' && 'spec' in file ? file : await loadObjectFile(file);
  return newCollection(kernel, loaded, opts);
}

/** Loads a verified object file: its maps, its isolate, its programs. */
export function newCollection(kernel: Kernel, loaded: LoadedObject, opts: CollectionOptions = {}): Collection {
  const { spec } = loaded;
  const limits = { ...DEFAULT_LIMITS, ...opts.limits };
  const maps = new Map<string, Handle<BpfMap>>();
  const programs = new Map<string, Handle<BpfProg>>();
  try {
    for (const decl of spec.maps) maps.set(decl.name, openMap(kernel, decl, opts.pins));
    const objects = spec.maps.map((d) => maps.get(d.name)!.object);
    const isolate = new ObjectIsolate(spec, objects, limits);
    for (const decl of spec.programs) {
      programs.set(decl.name, new Handle(new BpfProg(kernel, decl, spec.hash, spec.filename, spec.cgroupFiles, objects, isolate)));
    }
    return new Collection(spec.filename, programs, maps, loaded.log, isolate);
  } catch (e) {
    for (const h of [...programs.values(), ...maps.values()]) h.close();
    throw e;
  }
}

/** Creates the map, or reuses (and checks) its pin; a new by_name map is pinned. */
function openMap(kernel: Kernel, decl: MapDecl, pins: MapPins | undefined): Handle<BpfMap> {
  const mapSpec = {
    type: decl.type,
    // libbpf keeps BPF_OBJ_NAME_LEN - 1 characters of a map's name.
    name: decl.name.slice(0, 15),
    keySize: decl.keySize,
    valueSize: decl.valueSize,
    maxEntries: decl.maxEntries,
    flags: decl.flags,
    btf: { key: decl.key === undefined ? undefined : ValueSchema.define(decl.key), value: ValueSchema.define(decl.value) },
  };
  if (decl.pinning === 'by_name' && pins !== undefined) {
    const pinned = pins.get(decl.name);
    if (pinned !== undefined) {
      const m = pinned.object;
      // libbpf's map_is_reuse_compat: the pinned map must be the one the object declares.
      if (m.type !== mapSpec.type || m.keySize !== mapSpec.keySize || m.valueSize !== mapSpec.valueSize || m.maxEntries !== mapSpec.maxEntries || m.flags !== mapSpec.flags) {
        pinned.close();
        throw bpfError('EINVAL', `map '${decl.name}': the pinned map of that name is not compatible (type, key/value size, max_entries or flags differ)`);
      }
      return pinned;
    }
  }
  const h = createMap(kernel, mapSpec);
  if (decl.pinning === 'by_name' && pins !== undefined) pins.pin(decl.name, h.object);
  return h;
}
