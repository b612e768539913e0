/**
 * Id allocation as the kernel's prog_idr/map_idr/link_idr do it: idr_alloc_cyclic(1, INT_MAX), so ids
 * increase, wrap after INT_MAX, and are never reused while their object is alive.
 */
import { bpfError } from '../uapi';

/** INT_MAX: the end of the kernel's id range. */
export const ID_MAX = 0x7fffffff;

export class IdTable<T> {
  private next = 1;
  private readonly live = new Map<number, T>();

  /** `end` is exclusive, as idr_alloc_cyclic's is; tests shrink it to reach the wrap. */
  constructor(
    readonly kind: string,
    private readonly end = ID_MAX,
  ) {}

  alloc(obj: T): number {
    if (this.live.size >= this.end - 1) throw bpfError('ENOSPC', `no free ${this.kind} id`);
    while (this.live.has(this.next)) this.next = this.next >= this.end - 1 ? 1 : this.next + 1;
    const id = this.next;
    this.next = id >= this.end - 1 ? 1 : id + 1;
    this.live.set(id, obj);
    return id;
  }

  /**
   * Where the next allocation starts looking. A restarted daemon replaying its journal sets it
   * back to what it was when each record was made, so replayed objects get the ids they had.
   */
  get cursor(): number {
    return this.next;
  }

  set cursor(id: number) {
    if (Number.isSafeInteger(id) && id >= 1 && id < this.end) this.next = id;
  }

  remove(id: number): void {
    this.live.delete(id);
  }

  get(id: number): T | undefined {
    return this.live.get(id);
  }

  /** Live objects in id order (what BPF_*_GET_NEXT_ID walks and `bpftool * show` lists). */
  list(): T[] {
    return [...this.live.entries()].sort((a, b) => a[0] - b[0]).map(([, o]) => o);
  }

  /** BPF_*_GET_NEXT_ID: the smallest live id above `id`; ENOENT past the last one. */
  nextId(id: number): number {
    let best = Infinity;
    for (const k of this.live.keys()) if (k > id && k < best) best = k;
    if (best === Infinity) throw bpfError('ENOENT', `no ${this.kind} id after ${id}`);
    return best;
  }

  get size(): number {
    return this.live.size;
  }
}
