/**
 * A bpffs mount over a simulated cgroup tree, with the objects the bpffs tests pin: real cgroup_view
 * and cgroup iterator links (iter/'s BpfIterLink over the programs of OBJ, loaded as any object file
 * is), a hash map that dumps, a local storage map that cannot, a program and a tracepoint link.
 */
import { BpfCgroupIterOrder, BpfMapType } from '../../uapi';
import { Kernel, ValueSchema, bpfTracepointLinkAttach, createMap, type BpfLink, type BpfMap, type BpfProg, type Collection } from '../../progs';
import { SimCgroupSource, type KernfsNode } from '../../tags';
import { bpfIterLinkCreate, type BpfIterLink } from '../../iter';
import { Bpffs, type BpffsOptions } from '../../fs/bpffs';
import { load } from './progs';

export const UID = 1000;
export const GID = 1000;

/**
 * The test programs. Every line names the cgroup by id and name (the root's name printed as "/"):
 *
 * - view (cgroup_view): "cgroup_id: <id> name: <name>".
 * - view_stat (cgroup_view): "cgroup_id: <id> cpu.stat: read|absent", whether the session was given
 *   a source to read the cgroup's cpu.stat from.
 * - walk (iter/cgroup): "session <session_id> cgroup_id: <id>" per cgroup, nothing at the end; it
 *   faults while the `fail` map has key 0, so a test can make one read fail.
 * - walk_stat (iter/cgroup): "cpu.stat: read|absent" per cgroup.
 * - tick (tp/timer/tick): a program whose link is not an iterator.
 */
export const OBJ = `import { SEC, map, BPF_MAP_TYPE_HASH, bpf_map_lookup_elem, bpf_seq_printf, vbpffs_cgroup_id, vbpffs_cgroup_level, vbpffs_cgroup_name, vbpffs_cgroup_read } from 'vbpffs/bpf';
export const fail = map({ type: BPF_MAP_TYPE_HASH, key: 'u32', value: 'u32', maxEntries: 1 });
export const view = SEC('cgroup_view', (ctx) => {
  const name = vbpffs_cgroup_level(ctx.cgroup) === 0 ? '/' : vbpffs_cgroup_name(ctx.cgroup);
  bpf_seq_printf(ctx.meta.seq, 'cgroup_id: %llu name: %s\\n', vbpffs_cgroup_id(ctx.cgroup), name);
  return 0;
});
export const view_stat = SEC('cgroup_view', (ctx) => {
  const st = vbpffs_cgroup_read(ctx.cgroup, 'cpu.stat');
  bpf_seq_printf(ctx.meta.seq, 'cgroup_id: %llu cpu.stat: %s\\n', vbpffs_cgroup_id(ctx.cgroup), st === null ? 'absent' : 'read');
  return 0;
});
export const walk = SEC('iter/cgroup', (ctx) => {
  if (ctx.cgroup === null) return 0;
  if (bpf_map_lookup_elem(fail, 0) !== null) throw new Error('told to fail');
  bpf_seq_printf(ctx.meta.seq, 'session %llu cgroup_id: %llu\\n', ctx.meta.session_id, vbpffs_cgroup_id(ctx.cgroup));
  return 0;
});
export const walk_stat = SEC('iter/cgroup', (ctx) => {
  if (ctx.cgroup === null) return 0;
  bpf_seq_printf(ctx.meta.seq, 'cpu.stat: %s\\n', vbpffs_cgroup_read(ctx.cgroup, 'cpu.stat') === null ? 'absent' : 'read');
  return 0;
});
export const tick = SEC('tp/timer/tick', (ctx) => 0);
`;

export type ViewProg = 'view' | 'view_stat';
export type WalkProg = 'walk' | 'walk_stat';

export interface BpffsWorld {
  source: SimCgroupSource;
  kernel: Kernel;
  fs: Bpffs;
  /** The loaded OBJ. */
  coll: Collection;
  /** A new cgroup_view link of a program of OBJ (the caller owns its first reference). */
  view(prog?: ViewProg): BpfIterLink;
  /** A new cgroup iterator link walking the tree from the root in pre-order. */
  walker(prog?: WalkProg): BpfIterLink;
  /** A u32 -> u64 hash map with BTF, which a pinned file dumps. */
  hash(): BpfMap;
  /** A CGRP_STORAGE map, which a pinned file cannot show. */
  storage(): BpfMap;
  /** A tracepoint link: a link that is not an iterator. */
  tracing(): BpfLink;
  /** The view program. */
  prog(): BpfProg;
  /** Makes the walk program fault (true) or not (false). */
  failWalks(on: boolean): void;
  /** Makes cgroups (parents first), returning their nodes. */
  mkcg(...paths: string[]): Promise<KernfsNode[]>;
  rmcg(...paths: string[]): Promise<void>;
  /** Reads an open file to its end. */
  readAll(path: string, size?: number): Promise<string>;
  /** Unmounts and closes the programs' collection. */
  end(): void;
}

const u32 = (n: number): Uint8Array => new Uint8Array(new Uint32Array([n]).buffer);

export async function bpffsWorld(opts: Partial<BpffsOptions> = {}): Promise<BpffsWorld> {
  const source = new SimCgroupSource();
  await source.start();
  const kernel = new Kernel({ cgroups: source.hierarchy });
  const fs = new Bpffs({ kernel, source, uid: UID, gid: GID, ...opts });
  const coll = load(kernel, OBJ);
  const w: BpffsWorld = {
    source,
    kernel,
    fs,
    coll,
    view: (prog = 'view') => bpfIterLinkCreate(kernel, coll.program(prog)).object,
    walker: (prog = 'walk') => bpfIterLinkCreate(kernel, coll.program(prog), { cgroup: { order: BpfCgroupIterOrder.DESCENDANTS_PRE } }).object,
    hash: () =>
      createMap(kernel, {
        type: BpfMapType.HASH,
        keySize: 4,
        valueSize: 8,
        maxEntries: 16,
        btf: { key: ValueSchema.define('u32'), value: ValueSchema.define('u64') },
      }).object,
    storage: () =>
      createMap(kernel, {
        type: BpfMapType.CGRP_STORAGE,
        keySize: 4,
        valueSize: 8,
        maxEntries: 0,
        flags: 1,
        btf: { key: ValueSchema.define('u32'), value: ValueSchema.define('u64') },
      }).object,
    tracing: () => bpfTracepointLinkAttach(kernel, coll.program('tick')).object,
    prog: () => coll.program('view'),
    failWalks: (on) => {
      const m = coll.maps.get('fail')!.object;
      if (on) m.updateElem(u32(0), u32(1));
      else m.deleteElem(u32(0));
    },
    mkcg: async (...paths) => {
      const out: KernfsNode[] = [];
      for (const p of paths) out.push(await source.mkdir(p));
      return out;
    },
    rmcg: async (...paths) => {
      for (const p of paths) await source.rmdir(p);
    },
    readAll: async (path, size = 4096) => {
      const f = fs.open(path, 0);
      const chunks: Uint8Array[] = [];
      try {
        for (let c = await f.read(size); c.length > 0; c = await f.read(size)) chunks.push(c);
      } finally {
        f.release();
      }
      return Buffer.concat(chunks).toString();
    },
    end: () => {
      fs.dispose();
      coll.close();
    },
  };
  return w;
}
