/**
 * The object files the fuzzer loads: small, real programs of the three kinds it attaches.
 *
 * - view: two cgroup_view programs that count their reads of a cgroup in a CGRP_STORAGE map (so a
 *   read leaves storage on the cgroup) and print "<cgroup id> <count>";
 * - iter: a cgroup iterator printing each cgroup's id and "end";
 * - skb: cgroup_skb programs for egress and ingress that count their runs in a hash map, with an old
 *   CGROUP_STORAGE map, which every attach allocates a storage of for (cgroup, attach type).
 */
import { verify, type LoadedObject } from '../../progs';

export type ObjectKind = 'view' | 'iter' | 'skb';
export const OBJECT_KINDS: readonly ObjectKind[] = ['view', 'iter', 'skb'];

const VIEW = `import { SEC, map, BPF_MAP_TYPE_CGRP_STORAGE, BPF_MAP_TYPE_HASH, BPF_F_NO_PREALLOC, BPF_LOCAL_STORAGE_GET_F_CREATE,
  bpf_cgrp_storage_get, bpf_seq_printf, vbpffs_cgroup_id } from 'vbpffs/bpf';
export const seen = map({ type: BPF_MAP_TYPE_CGRP_STORAGE, flags: BPF_F_NO_PREALLOC, key: 'u32', value: { n: 'u64' } });
export const notes = map({ type: BPF_MAP_TYPE_HASH, key: 'u32', value: 'u64', maxEntries: 16 });
export const view = SEC('cgroup_view', (ctx) => {
  const s = bpf_cgrp_storage_get(seen, ctx.cgroup, null, BPF_LOCAL_STORAGE_GET_F_CREATE);
  if (s === null) return 0;
  s.n += 1n;
  bpf_seq_printf(ctx.meta.seq, "%llu %llu\\n", vbpffs_cgroup_id(ctx.cgroup), s.n);
  return 0;
});
export const view2 = SEC('cgroup_view', (ctx) => {
  const s = bpf_cgrp_storage_get(seen, ctx.cgroup, null, BPF_LOCAL_STORAGE_GET_F_CREATE);
  if (s === null) return 0;
  s.n += 2n;
  bpf_seq_printf(ctx.meta.seq, "%llu %llu\\n", vbpffs_cgroup_id(ctx.cgroup), s.n);
  return 0;
});
`;

const ITER = `import { SEC, bpf_seq_printf, vbpffs_cgroup_id } from 'vbpffs/bpf';
export const walk = SEC('iter/cgroup', (ctx) => {
  if (ctx.cgroup === null) {
    bpf_seq_printf(ctx.meta.seq, "end\\n");
    return 0;
  }
  bpf_seq_printf(ctx.meta.seq, "%llu\\n", vbpffs_cgroup_id(ctx.cgroup));
  return 0;
});
`;

const SKB = `import { SEC, map, BPF_MAP_TYPE_CGROUP_STORAGE, BPF_MAP_TYPE_HASH, bpf_map_lookup_elem, bpf_map_update_elem } from 'vbpffs/bpf';
export const st = map({ type: BPF_MAP_TYPE_CGROUP_STORAGE, key: { cgroup_inode_id: 'u64', attach_type: 'u32' } as const, value: 'u64', maxEntries: 0 });
export const runs = map({ type: BPF_MAP_TYPE_HASH, key: 'u32', value: 'u64', maxEntries: 4 });
function count(k: number): void {
  const v = bpf_map_lookup_elem(runs, k);
  if (v !== null) v.value += 1n;
  else bpf_map_update_elem(runs, k, 1n, 0);
}
export const egress = SEC('cgroup_skb/egress', (ctx) => {
  count(0);
  return 1;
});
export const ingress = SEC('cgroup_skb/ingress', (ctx) => {
  count(1);
  return 1;
});
export const skb = SEC('cgroup/skb', (ctx) => {
  count(2);
  return 1;
});
`;

const SOURCES: Record<ObjectKind, string> = { view: VIEW, iter: ITER, skb: SKB };

let verified: Record<ObjectKind, LoadedObject> | null = null;

/** The three objects, verified once per process (loading one is then only its maps, isolate and programs). */
export function fuzzObjects(): Record<ObjectKind, LoadedObject> {
  verified ??= {
    view: verify({ source: VIEW, filename: 'fuzz-view.ts' }),
    iter: verify({ source: ITER, filename: 'fuzz-iter.ts' }),
    skb: verify({ source: SKB, filename: 'fuzz-skb.ts' }),
  };
  return verified;
}

export { SOURCES as FUZZ_SOURCES };
