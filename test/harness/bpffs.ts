/**
 * A bpffs mount over a simulated cgroup tree, with the objects the bpffs tests pin: cgroup_view and
 * cgroup iterator links (the stand-in of harness/iter-link.ts), a hash map that dumps, a local
 * storage map that cannot, a program and a tracepoint link.
 */
import { BpfMapType } from '../../uapi';
import { Kernel, ValueSchema, bpfTracepointLinkAttach, createMap, type BpfLink, type BpfMap, type BpfProg } from '../../progs';
import { SimCgroupSource, type KernfsNode } from '../../tags';
import { Bpffs, type BpffsOptions, type IterOpenOptions } from '../../fs/bpffs';
import { FakeIterLink, iterProgs, renderCgroup, type IterProgs } from './iter-link';

export const UID = 1000;
export const GID = 1000;

export interface BpffsWorld {
  source: SimCgroupSource;
  kernel: Kernel;
  fs: Bpffs;
  progs: IterProgs;
  /** A new cgroup_view link (the caller owns its first reference). */
  view(render?: (o: IterOpenOptions) => string): FakeIterLink;
  /** A new cgroup iterator link. */
  walker(render?: (o: IterOpenOptions) => string): FakeIterLink;
  /** A u32 -> u64 hash map with BTF, which a pinned file dumps. */
  hash(): BpfMap;
  /** A CGRP_STORAGE map, which a pinned file cannot show. */
  storage(): BpfMap;
  /** A tracepoint link: a link that is not an iterator. */
  tracing(): BpfLink;
  /** The view program. */
  prog(): BpfProg;
  /** Makes cgroups (parents first), returning their nodes. */
  mkcg(...paths: string[]): Promise<KernfsNode[]>;
  rmcg(...paths: string[]): Promise<void>;
  /** Reads an open file to its end. */
  readAll(path: string, size?: number): Promise<string>;
  /** Unmounts and closes the programs' collection. */
  end(): void;
}

export async function bpffsWorld(opts: Partial<BpffsOptions> = {}): Promise<BpffsWorld> {
  const source = new SimCgroupSource();
  await source.start();
  const kernel = new Kernel({ cgroups: source.hierarchy });
  const fs = new Bpffs({ kernel, source, uid: UID, gid: GID, ...opts });
  const progs = iterProgs(kernel);
  const w: BpffsWorld = {
    source,
    kernel,
    fs,
    progs,
    view: (render = renderCgroup) => new FakeIterLink(kernel, progs.view, 'cgroup_view', render),
    walker: (render = renderCgroup) => new FakeIterLink(kernel, progs.walk, 'cgroup', render),
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
    tracing: () => bpfTracepointLinkAttach(kernel, progs.tick).object,
    prog: () => progs.view,
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
      progs.coll.close();
    },
  };
  return w;
}

