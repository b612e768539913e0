/**
 * Cgroup churn for the soak: a soak-owned parent cgroup on the host's cgroup2 mount, a pool of
 * children kept at a steady size, and then, RATE times a second, a new child made and the oldest
 * removed. A steady count is what lets the daemon's memory be compared over time: its size follows
 * the number of cgroups it mirrors, a leak follows the number it has seen come and go.
 */
import { mkdir, readdir, rmdir } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface ChurnCounts {
  created: number;
  removed: number;
  errors: Record<string, number>;
}

export class CgroupChurn {
  readonly counts: ChurnCounts = { created: 0, removed: 0, errors: {} };
  readonly #live: string[] = [];
  #next = 0;
  #running: Promise<void> | null = null;
  #stopped = false;

  /** `parent` is the soak-owned cgroup's directory on the host. */
  constructor(readonly parent: string) {}

  /** Makes the parent and a pool of `size` children. */
  async start(size: number): Promise<void> {
    await mkdir(this.parent);
    for (let i = 0; i < size; i++) await this.#create();
  }

  /** Makes and removes `rate` children a second until stop(), on a fixed schedule (late ticks catch up). */
  run(rate: number): void {
    const period = 1000 / rate;
    const t0 = Date.now();
    this.#running = (async () => {
      for (let k = 1; !this.#stopped; k++) {
        await this.#create();
        await this.#remove(this.#live.shift());
        const wait = t0 + k * period - Date.now();
        if (wait > 0) await sleep(wait);
      }
    })();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#running;
  }

  /** Removes every child and the parent, retrying EBUSY while the kernel lets go of them. */
  async remove(): Promise<void> {
    let names: string[];
    try {
      names = (await readdir(this.parent, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name);
    } catch {
      return; // never made
    }
    for (const dir of [...names.map((n) => path.join(this.parent, n)), this.parent]) {
      for (let tries = 0; ; tries++) {
        try {
          await rmdir(dir);
          break;
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          if (code === 'ENOENT') break;
          if (code !== 'EBUSY' || tries > 100) throw e;
          /* c8 ignore next -- the kernel still letting go of a cgroup just emptied */
          await sleep(20);
        }
      }
    }
  }

  async #create(): Promise<void> {
    const dir = path.join(this.parent, `c${this.#next++}`);
    try {
      await mkdir(dir);
      this.#live.push(dir);
      this.counts.created++;
    } catch (e) {
      this.#count(e);
    }
  }

  async #remove(dir: string | undefined): Promise<void> {
    if (dir === undefined) return;
    try {
      await rmdir(dir);
      this.counts.removed++;
    } catch (e) {
      this.#count(e);
    }
  }

  #count(e: unknown): void {
    const code = String((e as NodeJS.ErrnoException).code);
    this.counts.errors[code] = (this.counts.errors[code] ?? 0) + 1;
  }
}
