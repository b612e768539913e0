/**
 * Pressure stall information for one simulated cgroup, with the kernel's arithmetic
 * (kernel/sched/psi.c: update_averages, calc_avgs; include/linux/sched/loadavg.h: calc_load).
 *
 * Stall totals are exact nanosecond counters. The running averages are 11-bit fixed-point
 * exponential moving averages sampled once per PSI period, exactly as psi_avgs_work folds them:
 * pct = stall * 100 / period, avg = avg * e + pct * (1 - e) with e = 1/exp(2s/10s|60s|300s), and the
 * same rounding (calc_load rounds up when the sample is above the average).
 *
 * Approximation: the kernel stops its averaging clock for an idle group and later folds the missed
 * periods in one calc_load_n step; the simulator samples every period on a fixed grid from time 0,
 * so an idle group decays one calc_load at a time. The two differ only in the last bit of rounding.
 */

/** psi_period = jiffies_to_nsecs(PSI_FREQ), PSI_FREQ = 2*HZ+1; the simulator's HZ is 1000. */
export const PSI_PERIOD_NS = 2_001_000_000;

const FSHIFT = 11;
const FIXED_1 = 1 << FSHIFT;
/** 1/exp(2s/10s), 1/exp(2s/60s), 1/exp(2s/300s) as fixed-point. */
const EXP = [1677, 1981, 2034] as const;

/** The stall states psi tracks per group, in the kernel's enum psi_states order. */
export const PSI_STATES = ['io_some', 'io_full', 'mem_some', 'mem_full', 'cpu_some', 'cpu_full'] as const;
export type PsiState = (typeof PSI_STATES)[number];
export type PsiResource = 'io' | 'memory' | 'cpu';

/** calc_load(): one step of the fixed-point moving average. */
export function calcLoad(load: number, exp: number, active: number): number {
  let next = load * exp + active * (FIXED_1 - exp);
  if (active >= load) next += FIXED_1 - 1;
  return Math.floor(next / FIXED_1);
}

function loadInt(x: number): number {
  return Math.floor(x / FIXED_1);
}

function loadFrac(x: number): number {
  return loadInt((x % FIXED_1) * 100);
}

/** "%lu.%02lu" of a fixed-point average, as psi_show prints it. */
export function formatAvg(x: number): string {
  return `${loadInt(x)}.${String(loadFrac(x)).padStart(2, '0')}`;
}

/** One psi_group: cumulative stall time per state and the three running averages per state. */
export class PsiGroup {
  /** Stall time per state in ns (group->total[PSI_AVGS]). */
  readonly total: number[] = PSI_STATES.map(() => 0);
  /** Part of total already folded into the averages (group->avg_total). */
  readonly #avgTotal: number[] = PSI_STATES.map(() => 0);
  /** Fixed-point averages per state: [avg10, avg60, avg300] (group->avg). */
  readonly avg: number[][] = PSI_STATES.map(() => [0, 0, 0]);
  #avgLastUpdate: number;

  constructor(now: number) {
    this.#avgLastUpdate = now;
  }

  /** Adds stall time to a state. */
  stall(state: PsiState, ns: number): void {
    this.total[PSI_STATES.indexOf(state)] += ns;
  }

  /** Has anything to fold: a stall not yet averaged or an average not yet decayed to zero. */
  get active(): boolean {
    return this.total.some((t, s) => t !== this.#avgTotal[s]) || this.avg.some((a) => a.some((v) => v !== 0));
  }

  /** update_averages() at a period boundary `now`: one sample per state, capped at the period. */
  update(now: number): void {
    const period = now - this.#avgLastUpdate;
    this.#avgLastUpdate = now;
    if (period <= 0) return;
    for (let s = 0; s < PSI_STATES.length; s++) {
      // A sample above the period (stall slipping across a boundary) is punted to the next one.
      const sample = Math.min(this.total[s] - this.#avgTotal[s], period);
      this.#avgTotal[s] += sample;
      const pct = Math.floor((sample * 100) / period) * FIXED_1;
      const avg = this.avg[s];
      for (let w = 0; w < 3; w++) avg[w] = calcLoad(avg[w], EXP[w], pct);
    }
  }

  /** The some/full lines of <resource>.pressure, as psi_show prints them (total in usec). */
  show(resource: PsiResource): string {
    const base = resource === 'io' ? 0 : resource === 'memory' ? 2 : 4;
    let out = '';
    for (const full of [0, 1]) {
      const s = base + full;
      const [a10, a60, a300] = this.avg[s];
      out +=
        `${full ? 'full' : 'some'} avg10=${formatAvg(a10)} avg60=${formatAvg(a60)} avg300=${formatAvg(a300)} ` +
        `total=${Math.floor(this.total[s] / 1000)}\n`;
    }
    return out;
  }
}
