/**
 * struct seq_file as bpf_iter uses it (fs/seq_file.c, kernel/bpf/bpf_iter.c): the buffer an
 * iterator's programs print into and a read() copies out of, with the kernel's bookkeeping.
 *
 *   buf, size  allocated on the first read: PAGE_SIZE << 3 bytes (bpf_seq_read), never grown;
 *   count      bytes in the buffer not yet copied to the reader; equal to size once overflowed
 *              (seq_set_overflow), which is how seq_has_overflowed tells;
 *   from       where in the buffer those bytes start;
 *   index      the iterator's position (loff_t *pos), which start() and next() advance.
 *
 * A write keeps all of its bytes or none: it fits only while count + len < size (seq_write,
 * seq_commit), so a 32 KiB buffer holds at most 32767 bytes and a full buffer marks itself
 * overflowed. The read loop (bpfSeqRead, bpf-iter.ts) rolls an object's partial output back by
 * setting count to what it was before the object, which also clears the overflow.
 *
 * Reads of one file are serialised (seq->lock): a read that awaits interface files between two
 * objects never interleaves with another read of the same file.
 */
import { bpfError } from '../uapi';
import { SEQ_BUF_SIZE, type SeqSink } from '../progs';

export class SeqFile implements SeqSink {
  /** The buffer's size: 0 until the first read allocates it. */
  size = 0;
  /** Bytes buffered and not yet read (size once overflowed). */
  count = 0;
  /** Where the unread bytes start. */
  from = 0;
  /** The iterator's position (seq->index). */
  index = 0;
  #buf: Uint8Array | null = null;
  #lock: Promise<unknown> = Promise.resolve();

  /** Allocates the buffer on first use, as bpf_seq_read does (kvmalloc(PAGE_SIZE << 3)). */
  alloc(): void {
    if (this.#buf !== null) return;
    this.size = SEQ_BUF_SIZE;
    this.#buf = new Uint8Array(this.size);
  }

  /**
   * seq_write: appends all of bytes, or marks the buffer overflowed and keeps nothing. A write
   * before the buffer exists (outside a read) overflows too: there is nowhere to put it.
   */
  write(bytes: Uint8Array): boolean {
    if (this.count + bytes.length < this.size) {
      this.#buf!.set(bytes, this.count);
      this.count += bytes.length;
      return true;
    }
    this.setOverflow();
    return false;
  }

  /** What bpf_seq_printf may still offer (size - count). */
  room(): number {
    return this.size - this.count;
  }

  /** seq_set_overflow */
  setOverflow(): void {
    this.count = this.size;
  }

  /** seq_has_overflowed */
  get overflowed(): boolean {
    return this.count === this.size;
  }

  /** Copies n buffered bytes out, from `from` on, and consumes them (copy_to_user, then count/from). */
  take(n: number): Uint8Array {
    const out = this.#buf!.slice(this.from, this.from + n);
    this.count -= n;
    this.from += n;
    return out;
  }

  /** Runs fn with the file's lock held (seq->lock): calls queue and run one at a time, in order. */
  locked<R>(fn: () => Promise<R>): Promise<R> {
    const run = this.#lock.then(fn, fn);
    this.#lock = run.catch(() => undefined);
    return run;
  }
}

/** The sizes a read() may ask for: a byte count, as size_t is. */
export function checkReadSize(size: number): void {
  if (!Number.isSafeInteger(size) || size < 0) throw bpfError('EINVAL', `read size must be a non-negative integer, got ${size}`);
}
