/**
 * pressure: a cgroup's pressure stall information (PSI) for CPU, I/O and memory.
 *
 * A cgroup_view: each read runs this program once for the directory's cgroup. It reads cpu.pressure,
 * io.pressure and memory.pressure and prints one row per resource and line: "some" is the share of
 * time at least one task of the cgroup was stalled on the resource, "full" the share of time all of
 * its non-idle tasks were stalled at once; avg10, avg60 and avg300 are those shares in percent,
 * averaged over the last 10, 60 and 300 seconds, and total is the cumulative stall time in
 * microseconds (Documentation/accounting/psi.rst). The root cgroup's cpu "full" line is all zeros:
 * the kernel leaves it undefined system-wide.
 *
 * vbpffs_cgroup_read parses `some avg10=0.22 avg60=0.17 avg300=1.11 total=58761459` into some_avg10,
 * some_avg60, some_avg300 and some_total; the averages come as numbers with two decimals and
 * bpf_seq_printf has no %f, so they are printed as integer and hundredths. A file that is absent
 * (PSI disabled, psi=0 on the kernel's command line) gives a row saying so. Nothing is stored.
 *
 * Output:
 *
 *   resource state  avg10  avg60 avg300   total_usec
 *   cpu      some   51.73  16.04   3.71     12500000
 *   cpu      full   25.87   8.02   1.85      6250000
 *   io       some   16.69   5.17   1.19      4000000
 *   ...
 */
import { SEC, bpf_seq_printf, vbpffs_cgroup_read, type SeqFile } from 'vbpffs/bpf';

type Field = number | bigint | string | undefined;

/** A PSI average ("1.23", parsed as 1.23) in hundredths of a percent. */
function hundredths(v: Field): number {
  if (typeof v === 'number') return Math.round(v * 100);
  return typeof v === 'bigint' ? Number(v) * 100 : 0;
}

function row(seq: SeqFile, resource: string, state: string, avg10: Field, avg60: Field, avg300: Field, total: Field): void {
  const a10 = hundredths(avg10);
  const a60 = hundredths(avg60);
  const a300 = hundredths(avg300);
  bpf_seq_printf(seq, "%-8s %-5s %3u.%02u %3u.%02u %3u.%02u %12llu\n", resource, state,
    Math.floor(a10 / 100), a10 % 100, Math.floor(a60 / 100), a60 % 100, Math.floor(a300 / 100), a300 % 100,
    typeof total === 'bigint' ? total : 0n);
}

type Pressure = Record<string, number | bigint | string> | null;

function resource(seq: SeqFile, name: string, p: Pressure): void {
  if (p === null) {
    bpf_seq_printf(seq, "%-8s no %s.pressure file (PSI disabled?)\n", name, name);
    return;
  }
  row(seq, name, 'some', p.some_avg10, p.some_avg60, p.some_avg300, p.some_total);
  row(seq, name, 'full', p.full_avg10, p.full_avg60, p.full_avg300, p.full_total);
}

export const pressure = SEC('cgroup_view', (ctx) => {
  const seq = ctx.meta.seq;
  bpf_seq_printf(seq, "resource state  avg10  avg60 avg300   total_usec\n");
  resource(seq, 'cpu', vbpffs_cgroup_read(ctx.cgroup, 'cpu.pressure'));
  resource(seq, 'io', vbpffs_cgroup_read(ctx.cgroup, 'io.pressure'));
  resource(seq, 'memory', vbpffs_cgroup_read(ctx.cgroup, 'memory.pressure'));
  return 0;
});
