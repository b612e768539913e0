/**
 * vbpffs_cgroup_read's side: a cgroup interface file parsed as key/value, and the snapshot a run
 * reads from.
 *
 * Programs run synchronously, and reading a file of the host's cgroupfs is I/O, so a run never reads
 * one itself: whoever runs a program (an iterator read, a tick) first reads, asynchronously, the
 * files the program names (BpfProg.cgroupFiles, the string literals the object file passes to
 * vbpffs_cgroup_read) into a snapshot, and the run parses from that. A file the snapshot lacks reads
 * as null, as an absent file does.
 */
import type { CgroupSource, InterfaceFile, KernfsNode } from '../../tags';

/** A cgroup's interface files as read before a run: file name -> text, null when absent. */
export type CgroupFiles = ReadonlyMap<string, string | null>;

export type InterfaceRecord = Record<string, number | bigint | string>;

const INT = /^-?\d+$/;
const DECIMAL = /^-?\d+\.\d+$/;

const valueOf = (s: string): number | bigint | string =>
  INT.test(s) ? BigInt(s) : DECIMAL.test(s) ? Number(s) : s;

/**
 * Parses an interface file the way its formats go (Documentation/admin-guide/cgroup-v2.rst, "Format"):
 * - flat keyed, `key value` per line (cpu.stat, memory.stat, cgroup.events): rec[key];
 * - nested keyed, `prefix k=v k=v` (cpu.pressure's `some avg10=0.00 ... total=123`): rec[prefix_k];
 * - single value or newline separated values (memory.current, cgroup.procs): rec.value is the first.
 * Integers come as bigint (kernel counters are u64), decimals as number, anything else ('max') as
 * a string. rec.lines is the number of non-empty lines (a cgroup.procs count).
 */
export function parseInterfaceFile(text: string): InterfaceRecord {
  const rec: InterfaceRecord = Object.create(null) as InterfaceRecord;
  let lines = 0;
  for (const line of text.split('\n')) {
    const words = line.trim().split(/\s+/);
    if (words[0] === '') continue;
    lines++;
    if (words.length === 1) {
      if (!('value' in rec)) rec.value = valueOf(words[0]!);
    } else if (words.length === 2 && !words[1]!.includes('=')) {
      rec[words[0]!] = valueOf(words[1]!);
    } else {
      const prefix = words[0]!.includes('=') ? '' : `${words.shift()}_`;
      for (const w of words) {
        const eq = w.indexOf('=');
        if (eq > 0) rec[prefix + w.slice(0, eq)] = valueOf(w.slice(eq + 1));
      }
    }
  }
  rec.lines = lines;
  return rec;
}

/**
 * Reads the files a program names for one cgroup, concurrently, into a run's snapshot. A file the
 * cgroup does not have (no memory controller on this host, a cgroup removed meanwhile) is null.
 */
export async function readCgroupFiles(source: CgroupSource, cgroup: KernfsNode, files: readonly string[]): Promise<CgroupFiles> {
  const out = new Map<string, string | null>();
  await Promise.all(
    files.map(async (f) => {
      try {
        out.set(f, await source.readFile(cgroup, f as InterfaceFile));
      } catch {
        out.set(f, null);
      }
    }),
  );
  return out;
}
