/**
 * memory: a cgroup's memory use, where the memory controller is on cgroup2.
 *
 * A cgroup_view: each read runs this program once for the directory's cgroup. With the memory
 * controller enabled for the cgroup on cgroup2 it prints memory.current (bytes in use by the cgroup
 * and its descendants), memory.max (the hard limit, "max" for none) and the main memory.stat
 * counters in bytes: anon, file, kernel, shmem, sock and slab (a counter the running kernel does not
 * have is left out: `kernel` came in v5.18). memory.current and memory.max exist on non-root cgroups
 * only, so the root shows memory.stat alone (and, on kernels whose root has no memory.stat either,
 * the line below).
 *
 * Where the controller is not on cgroup2 for the cgroup (it is bound to a cgroup v1 hierarchy, as on
 * hybrid hosts, or not enabled in the parent's cgroup.subtree_control) none of these files exist,
 * and the program prints one line saying so instead of failing: a view file should read on every
 * host. The simulated cgroupfs (tags/sim) has no memory controller files either.
 *
 * Output, with the controller and without:
 *
 *   memory.current    104857600
 *   memory.max     max
 *   anon               73400320
 *   file               25165824
 *   ...
 *
 *   memory: no memory.current or memory.stat here (the memory controller is not on cgroup2 for this cgroup)
 */
import { SEC, bpf_seq_printf, vbpffs_cgroup_read, type SeqFile } from 'vbpffs/bpf';

type Field = number | bigint | string | undefined;

/** A counter line, left out when the kernel does not have the counter. */
function line(seq: SeqFile, name: string, v: Field): void {
  if (typeof v === 'bigint') bpf_seq_printf(seq, "%-14s %12llu\n", name, v);
}

export const memory = SEC('cgroup_view', (ctx) => {
  const seq = ctx.meta.seq;
  const current = vbpffs_cgroup_read(ctx.cgroup, 'memory.current');
  const max = vbpffs_cgroup_read(ctx.cgroup, 'memory.max');
  const stat = vbpffs_cgroup_read(ctx.cgroup, 'memory.stat');
  if (current === null && stat === null) {
    bpf_seq_printf(seq, "memory: no memory.current or memory.stat here (the memory controller is not on cgroup2 for this cgroup)\n");
    return 0;
  }
  if (current !== null) line(seq, 'memory.current', current.value);
  // memory.max is one value: a byte count, or "max" for no limit.
  if (max !== null && typeof max.value === 'string') bpf_seq_printf(seq, "%-14s %s\n", 'memory.max', max.value);
  else if (max !== null) line(seq, 'memory.max', max.value);
  if (stat !== null) {
    line(seq, 'anon', stat.anon);
    line(seq, 'file', stat.file);
    line(seq, 'kernel', stat.kernel);
    line(seq, 'shmem', stat.shmem);
    line(seq, 'sock', stat.sock);
    line(seq, 'slab', stat.slab);
  }
  return 0;
});
