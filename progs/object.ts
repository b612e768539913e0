/**
 * The lifetime rules shared by programs, maps and links: a kernel-like id and a reference count.
 *
 * Holders (handles, pins, links holding their program, cgroup attachments, iterator sessions, inherit
 * lists) each own one reference. The object is released when the last one goes: it leaves the id
 * table (so id lookups fail from then on, as bpf_*_get_fd_by_id does once the refcount is zero) and
 * runs its kind's cleanup exactly once.
 */
import createDebug from 'debug';
import { bpfError } from '../uapi';
import type { IdTable } from './idr';

const debug = createDebug('vbpffs:progs');

export type ObjectKind = 'prog' | 'map' | 'link';

export abstract class BpfObject {
  abstract readonly kind: ObjectKind;
  readonly id: number;
  private refcnt = 1;
  private readonly idr: IdTable<BpfObject>;

  /** Takes the creator's reference: the caller owns one ref and must put() it (usually via a Handle). */
  protected constructor(idr: IdTable<BpfObject>) {
    this.idr = idr;
    this.id = idr.alloc(this);
  }

  get refs(): number {
    return this.refcnt;
  }

  get released(): boolean {
    return this.refcnt === 0;
  }

  /** bpf_*_inc: the caller must already hold a reference, so this never resurrects an object. */
  get(): this {
    if (this.refcnt === 0) throw bpfError('ENOENT', `${this.kind} ${this.id} is already released`);
    this.refcnt++;
    return this;
  }

  /** bpf_*_inc_not_zero: takes a reference only while the object is alive. */
  tryGet(): boolean {
    if (this.refcnt === 0) return false;
    this.refcnt++;
    return true;
  }

  /** bpf_*_put: drops one reference; the last one releases the object. */
  put(): void {
    if (this.refcnt === 0) throw bpfError('EINVAL', `${this.kind} ${this.id}: reference put twice`);
    if (--this.refcnt > 0) return;
    this.idr.remove(this.id);
    debug('release %s %d', this.kind, this.id);
    this.release();
  }

  /** The kind's cleanup, run once when the last reference goes. */
  protected abstract release(): void;
}

/**
 * A handle stands in for a file descriptor: it owns one reference and close() drops it. Closing twice
 * is EBADF, as close() on a closed fd is.
 */
export class Handle<T extends BpfObject> {
  #obj: T | null;

  constructor(obj: T) {
    this.#obj = obj;
  }

  /** Takes a new reference on obj for this handle (bpf_*_get_fd_by_id, BPF_OBJ_GET). */
  static of<T extends BpfObject>(obj: T): Handle<T> {
    return new Handle(obj.get());
  }

  get closed(): boolean {
    return this.#obj === null;
  }

  /** The object; EBADF once closed, like an operation on a closed fd. */
  get object(): T {
    if (this.#obj === null) throw bpfError('EBADF', 'handle is closed');
    return this.#obj;
  }

  /** A second handle on the same object (dup()). */
  dup(): Handle<T> {
    return Handle.of(this.object);
  }

  close(): void {
    const obj = this.object;
    this.#obj = null;
    obj.put();
  }
}
