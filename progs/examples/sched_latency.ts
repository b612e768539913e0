/**
 * sched_latency: how long a cgroup's tasks wait on a run queue, split into waiting behind tasks of
 * the same cgroup (queue_self) and behind tasks of other cgroups (queue_other).
 *
 * This is the program of the cgroup_view RFC's selftest (bpf_iter_cgroup_view.c, "Extend cgroup
 * interface with bpf" v2, patch 5/5), rebuilt on the figures vbpffs can observe. Its output is the
 * selftest's, three lines that userspace parses with "cgroup_id: %8lu", "queue_self: %8lu" and
 * "queue_other: %8lu", with zeros for a cgroup nothing was recorded for ("for universal parsing
 * logic in userspace").
 *
 * What the selftest measured. In the kernel, tp_btf/sched_wakeup and sched_switch programs timed
 * each wait of each task, from enqueue to getting the CPU, and read the task's cfs_rq->exec_clock
 * at both ends: what ran on that run queue meanwhile was the task's own group (queue_self), the rest
 * of the wait went to tasks of other groups (queue_other). It kept the maximum of each per cgroup.
 *
 * What vbpffs has. The tp/sched/sample hook gives, per task and sampling interval, the deltas of
 * /proc/<pid>/schedstat: run_ns (time on a CPU), wait_ns (time runnable on a run queue) and slices
 * (times it got a CPU, each after one wait). It does not say on which CPU, nor who ran while the
 * task waited. So:
 *
 * - Latency of one wait: wait_ns / slices, the mean over the waits (the figures cannot give single
 *   waits, so there is no maximum to keep; a task that waited and never got a CPU counts one wait).
 *   queue_self + queue_other is that mean, in ns.
 * - Self or other: without CPU identity the estimate is that a waiting task was queued behind every
 *   other task in proportion to its CPU time. A task of cgroup G waited behind G's other tasks for
 *   the share (run time of G's other tasks) / (run time of all other tasks). With n tasks in G, of
 *   which the waiting one is taken to be an average one (run_G / n), that share is
 *       (run_G - run_G / n) / (run_all - run_G / n) = run_G * (n - 1) / (n * run_all - run_G).
 *   run_G and run_all are sums since the program was loaded, so the share is G's long-run one; n is
 *   the number of lines of the cgroup's cgroup.threads at the time of the read. A cgroup with one
 *   task waits behind others only; run_all counts only the tasks the hook samples, so CPU time of
 *   anything it does not see (other subtrees, kernel threads) is not in the estimate.
 *
 * Maps: cgroup storage (BPF_MAP_TYPE_CGRP_STORAGE) with the cgroup's sums, created by its first
 * sample and freed with the cgroup, where the selftest used a hash keyed by cgroup id; a one-slot
 * array with the run time of every sampled task.
 *
 * Output:
 *
 *   cgroup_id:       14
 *   queue_self:  5000000
 *   queue_other:  2500000
 */
import {
  SEC,
  map,
  BPF_MAP_TYPE_ARRAY,
  BPF_MAP_TYPE_CGRP_STORAGE,
  BPF_F_NO_PREALLOC,
  BPF_LOCAL_STORAGE_GET_F_CREATE,
  bpf_cgrp_storage_get,
  bpf_map_lookup_elem,
  bpf_seq_printf,
  vbpffs_cgroup_id,
  vbpffs_cgroup_read,
} from 'vbpffs/bpf';

/** Per cgroup: what its tasks ran, waited and how many times they got a CPU, summed over samples. */
export const cgroup_lat = map({
  type: BPF_MAP_TYPE_CGRP_STORAGE,
  flags: BPF_F_NO_PREALLOC,
  key: 'u32',
  value: { run_ns: 'u64', wait_ns: 'u64', slices: 'u64' },
});

/** Slot 0: the run time of every sampled task. */
export const run_total = map({
  type: BPF_MAP_TYPE_ARRAY,
  key: 'u32',
  value: { run_ns: 'u64' },
  maxEntries: 1,
});

export const sched_sample = SEC('tp/sched/sample', (ctx) => {
  const lat = bpf_cgrp_storage_get(cgroup_lat, ctx.cgroup, null, BPF_LOCAL_STORAGE_GET_F_CREATE);
  const total = bpf_map_lookup_elem(run_total, 0);
  if (lat === null || total === null) return 0;
  lat.run_ns += ctx.run_ns;
  lat.wait_ns += ctx.wait_ns;
  lat.slices += ctx.slices;
  total.run_ns += ctx.run_ns;
  return 0;
});

export const dump_cgroup_lat = SEC('cgroup_view', (ctx) => {
  const seq = ctx.meta.seq;
  bpf_seq_printf(seq, "cgroup_id: %8lu\n", vbpffs_cgroup_id(ctx.cgroup));

  const lat = bpf_cgrp_storage_get(cgroup_lat, ctx.cgroup, null, 0);
  const total = bpf_map_lookup_elem(run_total, 0);
  if (lat === null || total === null || lat.wait_ns === 0n) {
    // print 0 for universal parsing logic in userspace, as the selftest does
    bpf_seq_printf(seq, "queue_self: %8d\n", 0);
    bpf_seq_printf(seq, "queue_other: %8d\n", 0);
    return 0;
  }

  const waits = lat.slices > 0n ? lat.slices : 1n;
  const latency = lat.wait_ns / waits;
  const threads = vbpffs_cgroup_read(ctx.cgroup, 'cgroup.threads');
  const n = threads !== null && typeof threads.lines === 'number' && threads.lines > 0 ? BigInt(threads.lines) : 1n;
  const others = n * total.run_ns - lat.run_ns;
  const self = others > 0n ? (latency * lat.run_ns * (n - 1n)) / others : 0n;

  bpf_seq_printf(seq, "queue_self: %8lu\n", self);
  bpf_seq_printf(seq, "queue_other: %8lu\n", latency - self);
  return 0;
});
