/**
 * cpu: a cgroup's CPU time from cpu.stat, and its CPU usage rate since the previous read.
 *
 * A cgroup_view: pinned in a tagged bpffs directory, every cgroup's directory gets the file, and each
 * read runs this program once for that cgroup. It prints cpu.stat's cumulative usage_usec, user_usec
 * and system_usec, and keeps them, with the time of the read, in the cgroup's local storage
 * (BPF_MAP_TYPE_CGRP_STORAGE, created on the cgroup's first read and freed with the cgroup). The next
 * read prints the deltas and the rate: usage_usec gained over the time elapsed, as a percentage of
 * one CPU (200.00% is two CPUs' worth). The first read has nothing to compare with, so it prints the
 * totals and says that there is no rate yet.
 *
 * The clock. A rate needs the elapsed time on the clock cpu.stat is counted on. On a host that is
 * CLOCK_MONOTONIC: bpf_ktime_get_ns(). A simulated cgroupfs (tags/sim) counts on its workload's own
 * clock, which the host's monotonic time knows nothing about, so the reader may put the time of the
 * read in the ctx as `now_ns` (the tests and scripts/examples.ts pass the simulator's clock there),
 * and the program takes it when it is present, bpf_ktime_get_ns() otherwise. That is what makes the
 * rate on a simulated source exact.
 *
 * Output, a first read and a later one:
 *
 *   usage_usec     2400000
 *   user_usec      1800000
 *   system_usec     600000
 *   cpu            no rate yet: this is the first read
 *
 *   usage_usec     3600000 (+1200000)
 *   user_usec      2700000 (+900000)
 *   system_usec     900000 (+300000)
 *   cpu             120.00% of one CPU over the last 1000 ms
 */
import {
  SEC,
  map,
  BPF_MAP_TYPE_CGRP_STORAGE,
  BPF_F_NO_PREALLOC,
  BPF_LOCAL_STORAGE_GET_F_CREATE,
  bpf_cgrp_storage_get,
  bpf_ktime_get_ns,
  bpf_seq_printf,
  vbpffs_cgroup_read,
  type CgroupViewCtx,
} from 'vbpffs/bpf';

/** The cgroup_view ctx, with the time of the read (ns) when the reader provides it. */
interface CpuViewCtx extends CgroupViewCtx {
  readonly now_ns?: bigint | number;
}

/** What the previous read saw. */
export const cpu_last = map({
  type: BPF_MAP_TYPE_CGRP_STORAGE,
  flags: BPF_F_NO_PREALLOC,
  key: 'u32',
  value: { reads: 'u64', read_ns: 'u64', usage_usec: 'u64', user_usec: 'u64', system_usec: 'u64' },
});

/** A counter of a parsed interface file (they parse as bigint); 0 when it is missing. */
function counter(v: number | bigint | string | undefined): bigint {
  return typeof v === 'bigint' ? v : 0n;
}

/** a - b for counters that only grow: 0 if a went backwards. */
function delta(a: bigint, b: bigint): bigint {
  return a > b ? a - b : 0n;
}

export const cpu = SEC('cgroup_view', (ctx: CpuViewCtx) => {
  const seq = ctx.meta.seq;
  const stat = vbpffs_cgroup_read(ctx.cgroup, 'cpu.stat');
  if (stat === null) {
    bpf_seq_printf(seq, "cpu.stat: absent\n");
    return 0;
  }
  const now = ctx.now_ns !== undefined ? BigInt(ctx.now_ns) : bpf_ktime_get_ns();
  const usage = counter(stat.usage_usec);
  const user = counter(stat.user_usec);
  const system = counter(stat.system_usec);

  const last = bpf_cgrp_storage_get(cpu_last, ctx.cgroup, null, BPF_LOCAL_STORAGE_GET_F_CREATE);
  if (last === null || last.reads === 0n) {
    bpf_seq_printf(seq, "usage_usec  %10llu\nuser_usec   %10llu\nsystem_usec %10llu\n", usage, user, system);
    bpf_seq_printf(seq, "cpu            no rate yet: this is the first read\n");
  } else {
    const d_usage = delta(usage, last.usage_usec);
    bpf_seq_printf(seq, "usage_usec  %10llu (+%llu)\n", usage, d_usage);
    bpf_seq_printf(seq, "user_usec   %10llu (+%llu)\n", user, delta(user, last.user_usec));
    bpf_seq_printf(seq, "system_usec %10llu (+%llu)\n", system, delta(system, last.system_usec));
    const elapsed_ns = delta(now, last.read_ns);
    if (elapsed_ns === 0n) {
      bpf_seq_printf(seq, "cpu            no time has passed since the last read\n");
    } else {
      // Hundredths of a percent of one CPU: usec * 1000 / ns is the share, * 100 for %, * 100 for .01.
      const pct = (d_usage * 10000000n) / elapsed_ns;
      bpf_seq_printf(seq, "cpu            %4llu.%02llu%% of one CPU over the last %llu ms\n", pct / 100n, pct % 100n, elapsed_ns / 1000000n);
    }
  }
  if (last !== null) {
    last.reads += 1n;
    last.read_ns = now;
    last.usage_usec = usage;
    last.user_usec = user;
    last.system_usec = system;
  }
  return 0;
});
