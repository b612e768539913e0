/**
 * The interface files of a simulated cgroup2 directory and their text, in the formats of a v6.18
 * kernel (checked against a live cgroup2 mount and kernel/cgroup/{cgroup,rstat}.c, sched/core.c,
 * sched/psi.c).
 *
 * Every level has every controller enabled (the root's cgroup.subtree_control lists them all and so
 * does each child's), so cpu.stat carries the cpu controller's bandwidth lines everywhere. Only the
 * files below exist: controller knobs (cpu.max, memory.current, pids.current, ...) are not simulated.
 */

/** Controllers bound to the simulated hierarchy, in subsystem id order (as cgroup.stat lists them). */
export const CONTROLLERS = ['cpu', 'io', 'memory', 'pids'] as const;

/** Files every cgroup directory has, the root included. */
const BASE_FILES = [
  'cgroup.controllers',
  'cgroup.max.depth',
  'cgroup.max.descendants',
  'cgroup.procs',
  'cgroup.stat',
  'cgroup.subtree_control',
  'cgroup.threads',
  'cpu.pressure',
  'cpu.stat',
  'io.pressure',
  'memory.pressure',
] as const;

/** Files flagged CFTYPE_NOT_ON_ROOT: only non-root cgroups have them. */
const NON_ROOT_FILES = ['cgroup.events', 'cgroup.freeze', 'cgroup.type'] as const;

export type SimFile = (typeof BASE_FILES)[number] | (typeof NON_ROOT_FILES)[number];

/** The files a directory has, in name order (as ls shows them). */
export function filesOf(isRoot: boolean): SimFile[] {
  const files: SimFile[] = isRoot ? [...BASE_FILES] : [...BASE_FILES, ...NON_ROOT_FILES];
  return files.sort();
}

/** Files whose text never changes after mkdir. */
export const STATIC_FILES: ReadonlySet<SimFile> = new Set<SimFile>([
  'cgroup.controllers',
  'cgroup.max.depth',
  'cgroup.max.descendants',
  'cgroup.subtree_control',
  'cgroup.freeze',
  'cgroup.type',
]);

/** What the text of a cgroup's files is made from. */
export interface CgroupFigures {
  isRoot: boolean;
  pids: number[];
  populated: boolean;
  nrDescendants: number;
  nrDyingDescendants: number;
  cputime: { usageNs: number; userNs: number; systemNs: number; niceNs: number };
  pressure(resource: 'cpu' | 'io' | 'memory'): string;
}

const ZERO_PRESSURE =
  'some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n';

/** The figures of a cgroup that has just been made: nothing has run in it. */
export function freshFigures(isRoot: boolean): CgroupFigures {
  return {
    isRoot,
    pids: [],
    populated: false,
    nrDescendants: 0,
    nrDyingDescendants: 0,
    cputime: { usageNs: 0, userNs: 0, systemNs: 0, niceNs: 0 },
    pressure: () => ZERO_PRESSURE,
  };
}

const usec = (ns: number): number => Math.floor(ns / 1000);

/** cgroup_base_stat_cputime_show then cpu_extra_stat_show (no bandwidth control: zeros). */
function cpuStat(f: CgroupFigures): string {
  const c = f.cputime;
  return (
    `usage_usec ${usec(c.usageNs)}\nuser_usec ${usec(c.userNs)}\nsystem_usec ${usec(c.systemNs)}\n` +
    `nice_usec ${usec(c.niceNs)}\n` +
    'nr_periods 0\nnr_throttled 0\nthrottled_usec 0\nnr_bursts 0\nburst_usec 0\n'
  );
}

/** cgroup_stat_show of v6.11+: per-subsystem live css counts (self included) and dying ones. */
function cgroupStat(f: CgroupFigures): string {
  let out = `nr_descendants ${f.nrDescendants}\n`;
  for (const ss of CONTROLLERS) out += `nr_subsys_${ss} ${f.nrDescendants + 1}\n`;
  out += `nr_dying_descendants ${f.nrDyingDescendants}\n`;
  for (const ss of CONTROLLERS) out += `nr_dying_subsys_${ss} ${f.nrDyingDescendants}\n`;
  return out;
}

export function render(file: SimFile, f: CgroupFigures): string {
  switch (file) {
    case 'cgroup.controllers':
    case 'cgroup.subtree_control':
      return `${CONTROLLERS.join(' ')}\n`;
    case 'cgroup.max.depth':
    case 'cgroup.max.descendants':
      return 'max\n';
    case 'cgroup.procs':
    case 'cgroup.threads':
      // One thread per simulated process, so both list the same ids.
      return f.pids.map((p) => `${p}\n`).join('');
    case 'cgroup.stat':
      return cgroupStat(f);
    case 'cgroup.events':
      return `populated ${f.populated ? 1 : 0}\nfrozen 0\n`;
    case 'cgroup.freeze':
      return '0\n';
    case 'cgroup.type':
      return 'domain\n';
    case 'cpu.stat':
      return cpuStat(f);
    case 'cpu.pressure':
      return f.pressure('cpu');
    case 'io.pressure':
      return f.pressure('io');
    case 'memory.pressure':
      return f.pressure('memory');
  }
}

/** /proc/<pid>/schedstat: sum_exec_runtime, run_delay, pcount. */
export function schedstatText(s: { runNs: number; waitNs: number; slices: number }): string {
  return `${s.runNs} ${s.waitNs} ${s.slices}\n`;
}
