/**
 * tree_summary: one line per cgroup of a subtree, with a header and a total.
 *
 * An iter/cgroup program (the kernel's cgroup_iter, v6.1+), for a link made with order
 * BPF_CGROUP_ITER_DESCENDANTS_PRE: the iterator calls it once per live cgroup of the subtree,
 * parents before children, then once more with a NULL cgroup when the walk is over. As the kernel's
 * cgroup_iter selftest does, it prints a header when meta.seq_num is 0 (the first element: the
 * prologue) and the total on the NULL call (the epilogue).
 *
 * Each line gives the cgroup's id (its kernfs node id), its level, how many processes it holds
 * itself (the lines of cgroup.procs), its CPU time (cpu.stat usage_usec, which includes its
 * descendants', as cgroup2's counters do) and its name, indented by level ("/" for the root). The
 * total counts cgroups and processes (the processes of each cgroup are its own, so they add up; CPU
 * time does not, so it has no total).
 *
 * The running totals live in a hash map keyed by the iterator session's id (meta.session_id), so two
 * reads walking at the same time do not mix their counts; the epilogue deletes the session's entry.
 *
 * Output:
 *
 *         id level   procs   usage_usec  cgroup
 *          1     0       0      3900000  /
 *         14     1       2      1900000    web
 *         29     2       1       400000      cache
 *         44     1       1      2000000    batch
 *   4 cgroups, 4 processes
 */
import {
  SEC,
  map,
  BPF_MAP_TYPE_HASH,
  BPF_ANY,
  BPF_NOEXIST,
  bpf_map_delete_elem,
  bpf_map_lookup_elem,
  bpf_map_update_elem,
  bpf_seq_printf,
  vbpffs_cgroup_id,
  vbpffs_cgroup_level,
  vbpffs_cgroup_name,
  vbpffs_cgroup_read,
} from 'vbpffs/bpf';

/** Per iterator session: cgroups and processes seen so far. */
export const totals = map({
  type: BPF_MAP_TYPE_HASH,
  key: 'u64',
  value: { cgroups: 'u32', procs: 'u64' },
  maxEntries: 64,
});

export const tree_summary = SEC('iter/cgroup', (ctx) => {
  const seq = ctx.meta.seq;
  const session = ctx.meta.session_id;
  const cg = ctx.cgroup;

  if (cg === null) {
    const t = bpf_map_lookup_elem(totals, session);
    if (t !== null) bpf_seq_printf(seq, "%u cgroups, %llu processes\n", t.cgroups, t.procs);
    bpf_map_delete_elem(totals, session);
    return 0;
  }

  if (ctx.meta.seq_num === 0n) {
    bpf_seq_printf(seq, "%8s %5s %7s %12s  %s\n", 'id', 'level', 'procs', 'usage_usec', 'cgroup');
    bpf_map_update_elem(totals, session, { cgroups: 0, procs: 0 }, BPF_ANY);
  }
  // A walk whose first element was skipped (a dead cgroup) had no prologue: start the count here.
  bpf_map_update_elem(totals, session, { cgroups: 0, procs: 0 }, BPF_NOEXIST);

  const level = Math.max(vbpffs_cgroup_level(cg), 0);
  const name = level === 0 ? '/' : vbpffs_cgroup_name(cg);
  const procs = vbpffs_cgroup_read(cg, 'cgroup.procs');
  const nprocs = procs !== null && typeof procs.lines === 'number' ? procs.lines : 0;
  const stat = vbpffs_cgroup_read(cg, 'cpu.stat');
  const usage = stat !== null && typeof stat.usage_usec === 'bigint' ? stat.usage_usec : 0n;
  bpf_seq_printf(seq, "%8llu %5d %7u %12llu  %s%s\n", vbpffs_cgroup_id(cg), level, nprocs, usage, '  '.repeat(level), name);

  const t = bpf_map_lookup_elem(totals, session);
  if (t !== null) {
    t.cgroups += 1;
    t.procs += BigInt(nprocs);
  }
  return 0;
});
