/**
 * Real programs for the cgroup attach tests, as the kernel selftests load them: each program adds
 * its own value to a counter in an array map and returns its verdict, so the counter after a fired
 * hook says exactly which programs ran. "ping" stands for the selftests' PING_CMD: one egress packet
 * from a process in the given cgroup, i.e. one fire of the egress hook for that cgroup.
 */
import { BpfAttachType } from '../../uapi';
import { cgroupBpfRunFilter, type BpfMap, type BpfProg, type Collection, type CgroupRunResult } from '../../progs';
import type { KernfsNode } from '../../tags';
import { load, world, type World } from './progs';

export interface CounterProg {
  /** The value it adds to counter[key]. */
  readonly val: bigint;
  readonly verdict: 0 | 1;
  /** Which counter slot it adds to. */
  readonly key?: number;
  /** Its section; cgroup_skb/egress by default. */
  readonly section?: string;
}

/**
 * An object file with one program per spec, named p0, p1, ..., each doing
 * `counter[key] += val; return verdict;` (prog_load_cnt of cgroup_attach_multi.c), sharing one
 * u64 array map `counter` of `slots` entries.
 */
export function counterObject(progs: readonly CounterProg[], slots = 1): string {
  const lines = [
    "import { SEC, map, BPF_MAP_TYPE_ARRAY, bpf_map_lookup_elem } from 'vbpffs/bpf';",
    `export const counter = map({ type: BPF_MAP_TYPE_ARRAY, key: 'u32', value: 'u64', maxEntries: ${slots} });`,
  ];
  progs.forEach((p, i) => {
    lines.push(
      `export const p${i} = SEC('${p.section ?? 'cgroup_skb/egress'}', (ctx) => {`,
      `  const v = bpf_map_lookup_elem(counter, ${p.key ?? 0});`,
      `  if (v !== null) v.value += ${p.val}n;`,
      `  return ${p.verdict};`,
      '});',
    );
  });
  return lines.join('\n');
}

export interface CounterWorld extends World {
  coll: Collection;
  progs: BpfProg[];
  counter: BpfMap;
  /** counter[key] */
  read(key?: number): bigint;
  /** counter[key] = 0 */
  reset(key?: number): void;
  /** One egress packet from a process in cgroup (PING_CMD). */
  ping(cgroup: KernfsNode): CgroupRunResult;
  /** Makes a path of cgroups below the root, returning them top down ("/cg1", "/cg1/cg2", ...). */
  mkdirs(...names: string[]): KernfsNode[];
}

export function counterWorld(progs: readonly CounterProg[], slots = 1): CounterWorld {
  const w = world();
  const coll = load(w.kernel, counterObject(progs, slots));
  const counter = coll.map('counter');
  const u64 = (v: bigint): Uint8Array => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, v, true);
    return b;
  };
  return {
    ...w,
    coll,
    progs: progs.map((_, i) => coll.program(`p${i}`)),
    counter,
    read: (key = 0) => {
      const b = counter.lookupElem(key);
      return new DataView(b.buffer, b.byteOffset).getBigUint64(0, true);
    },
    reset: (key = 0) => counter.updateElem(key, u64(0n)),
    ping: (cgroup) => cgroupBpfRunFilter(w.kernel, cgroup, BpfAttachType.CGROUP_INET_EGRESS, { len: 84, protocol: 8 }),
    mkdirs: (...names) => {
      const out: KernfsNode[] = [];
      let parent = w.root;
      for (const n of names) out.push((parent = w.mkdir(parent, n)));
      return out;
    },
  };
}

/**
 * Loads one program per entry, named by the key, of the given section, each `return 1` (0 where the
 * section's name ends in `!`, e.g. 'cgroup_skb/egress!'): for tests that attach, detach and query.
 */
export function loadProgs<K extends string>(kernel: World['kernel'], sections: Record<K, string>): Record<K, BpfProg> & { coll: Collection } {
  const lines = ["import { SEC } from 'vbpffs/bpf';"];
  for (const [name, sec] of Object.entries<string>(sections)) {
    const deny = sec.endsWith('!');
    lines.push(`export const ${name} = SEC('${deny ? sec.slice(0, -1) : sec}', (ctx) => ${deny ? 0 : 1});`);
  }
  const coll = load(kernel, lines.join('\n'));
  const out = { coll } as Record<K, BpfProg> & { coll: Collection };
  for (const name of Object.keys(sections) as K[]) (out as Record<K, BpfProg>)[name] = coll.program(name);
  return out;
}
