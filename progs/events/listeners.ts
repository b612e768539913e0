/**
 * What every event source shares: a list of plain listener functions, each isolated (one that throws
 * is reported and the others still run, so a subscriber cannot break a source), and the clock events
 * are stamped with.
 */
import createDebug from 'debug';
import { SimCgroupSource, type CgroupSource } from '../../tags';
import { bpfError } from '../../uapi';

const debug = createDebug('vbpffs:events');

export type Listener<E> = (event: E) => void;

export class Listeners<E> {
  readonly #fns: Listener<E>[] = [];

  constructor(readonly name: string) {}

  /** Adds a listener; returns its remover (idempotent). */
  subscribe(fn: Listener<E>): () => void {
    this.#fns.push(fn);
    return () => {
      const i = this.#fns.indexOf(fn);
      if (i >= 0) this.#fns.splice(i, 1);
    };
  }

  get size(): number {
    return this.#fns.length;
  }

  /** Calls every listener subscribed now, in subscription order. */
  emit(event: E): void {
    for (const fn of [...this.#fns]) {
      try {
        fn(event);
      } catch (e) {
        debug('%s listener failed: %O', this.name, e);
      }
    }
  }
}

/** A clock in ns, as bpf_ktime_get_ns reads CLOCK_MONOTONIC. */
export type Clock = () => number;

/** The simulator's controlled clock for a simulated source; CLOCK_MONOTONIC (Node's hrtime) otherwise. */
export function sourceClock(source: CgroupSource): Clock {
  if (source instanceof SimCgroupSource) {
    const w = source.workload;
    return () => w.now;
  }
  return () => Number(process.hrtime.bigint());
}

/** An interval in ms: a positive finite number. */
export function checkInterval(ms: number, what: string): number {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms <= 0) {
    throw bpfError('EINVAL', `${what}: interval ${ms} ms is not a positive number`);
  }
  return ms;
}
