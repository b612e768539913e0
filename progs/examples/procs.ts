/**
 * procs: how many processes and threads a cgroup holds.
 *
 * A cgroup_view: each read runs this program once for the directory's cgroup. cgroup.procs lists the
 * processes (thread group ids) with a thread in the cgroup itself, one per line, and cgroup.threads
 * the threads (task ids); neither counts the cgroup's descendants. vbpffs_cgroup_read parses a file
 * of one value per line with `value` (the first) and `lines` (how many non-empty lines), so the
 * counts are the two files' `lines`. A file the reader could not read prints as "-". Nothing is
 * stored.
 *
 * Output:
 *
 *   procs     2
 *   threads   2
 */
import { SEC, bpf_seq_printf, vbpffs_cgroup_read, type SeqFile } from 'vbpffs/bpf';

function count(seq: SeqFile, label: string, rec: Record<string, number | bigint | string> | null): void {
  if (rec === null || typeof rec.lines !== 'number') bpf_seq_printf(seq, "%-9s -\n", label);
  else bpf_seq_printf(seq, "%-9s %u\n", label, rec.lines);
}

export const procs = SEC('cgroup_view', (ctx) => {
  count(ctx.meta.seq, 'procs', vbpffs_cgroup_read(ctx.cgroup, 'cgroup.procs'));
  count(ctx.meta.seq, 'threads', vbpffs_cgroup_read(ctx.cgroup, 'cgroup.threads'));
  return 0;
});
