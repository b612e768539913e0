/**
 * bpf_seq_printf() and bpf_seq_write() (kernel/trace/bpf_trace.c) and the sink they write to: the
 * seq_file of an iterator session. iter/'s seq_file implements SeqSink; BufferSeqSink is a small,
 * real one with the kernel's rules, for tests and for the runtime.
 *
 * The sink takes bytes, not strings: %c and plain text carry raw bytes, and the kernel's overflow
 * rule counts bytes.
 */
import { bpfError } from '../../uapi';
import { bpfBprintfPrepare, MAX_BPRINTF_VARARGS, type BprintfArg } from './bprintf';

const EINVAL = -22;
const EOVERFLOW = -75;

/** bpf_iter's seq buffer: PAGE_SIZE << 3 (kernel/bpf/bpf_iter.c, bpf_seq_read). */
export const SEQ_BUF_SIZE = 4096 << 3;

/** Where bpf_seq_printf/bpf_seq_write put their output: a seq_file. */
export interface SeqSink {
  /**
   * Appends all of `bytes` or nothing. false means it did not fit: the sink is then overflowed
   * (seq_set_overflow) and every later write fails too, until the reader rolls it back.
   */
  write(bytes: Uint8Array): boolean;
  /**
   * How many bytes may still be offered (seq_file's size - count): a write longer than this always
   * fails. bpf_seq_printf formats at most room() + 1 bytes, as seq_bprintf gives bstr_printf only the
   * space left, so a huge width costs nothing past the buffer.
   */
  room(): number;
}

/**
 * An in-memory seq_file buffer. A write fits only while count + len < capacity (seq_write's and
 * seq_bprintf's test), so a 32768-byte buffer holds at most 32767 bytes. A write that does not fit
 * keeps nothing and marks the buffer overflowed; count then reads as the capacity, as after the
 * kernel's seq_set_overflow().
 */
export class BufferSeqSink implements SeqSink {
  readonly capacity: number;
  private readonly buf: Uint8Array;
  private used = 0;
  private overflow = false;

  constructor(capacity: number = SEQ_BUF_SIZE) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) {
      throw bpfError('EINVAL', `seq buffer capacity must be a positive integer, got ${capacity}`);
    }
    this.capacity = capacity;
    this.buf = new Uint8Array(capacity);
  }

  write(bytes: Uint8Array): boolean {
    if (!this.overflow && this.used + bytes.length < this.capacity) {
      this.buf.set(bytes, this.used);
      this.used += bytes.length;
      return true;
    }
    this.overflow = true;
    return false;
  }

  room(): number {
    return this.capacity - this.count;
  }

  /** seq_file's count: the bytes kept, or the capacity once overflowed (seq_has_overflowed). */
  get count(): number {
    return this.overflow ? this.capacity : this.used;
  }

  get overflowed(): boolean {
    return this.overflow;
  }

  /** The bytes kept (those written before an overflow). */
  contents(): Uint8Array {
    return this.buf.slice(0, this.used);
  }

  /** The bytes kept, decoded as UTF-8. */
  text(): string {
    return new TextDecoder().decode(this.buf.subarray(0, this.used));
  }

  /**
   * Rolls back to `count` bytes and clears the overflow, as bpf_seq_read does (seq->count =
   * prev_count) when an object's output overflowed or its program asked for a retry.
   */
  rollback(count: number): void {
    if (!Number.isSafeInteger(count) || count < 0 || count > this.used) {
      throw bpfError('EINVAL', `cannot roll back to ${count}: ${this.used} bytes are kept`);
    }
    this.used = count;
    this.overflow = false;
  }

  /** Empties the buffer (a new read). */
  clear(): void {
    this.rollback(0);
  }
}

const isSink = (seq: unknown): seq is SeqSink =>
  typeof seq === 'object' && seq !== null && typeof (seq as SeqSink).write === 'function' && typeof (seq as SeqSink).room === 'function';

/**
 * long bpf_seq_printf(struct seq_file *m, const char *fmt, u32 fmt_size, const void *data, u32 data_len)
 *
 * 0; -EINVAL for a bad format or more than 12 arguments (bpf_bprintf_prepare); -EBUSY when the
 * per-CPU format buffers are taken (nested use; "can try again by returning 1"); -ENOSPC when the
 * packed arguments do not fit their 512-byte buffer; -EOVERFLOW when the seq buffer overflowed ("the
 * same object will be tried again"). Never throws.
 */
export function bpf_seq_printf(seq: SeqSink, fmt: string, ...args: BprintfArg[]): number {
  if (!isSink(seq) || typeof fmt !== 'string' || args.length > MAX_BPRINTF_VARARGS) return EINVAL;
  const room = seq.room();
  // A room() that is no number bounds nothing: the whole output is offered and write() decides.
  const r = bpfBprintfPrepare(fmt, args, { limit: Number.isFinite(room) ? Math.max(0, room) + 1 : Infinity });
  if (!r.ok) return r.errno;
  // Output cut at room() + 1 bytes cannot fit; the write still goes to the sink so it overflows.
  const fits = seq.write(r.bytes);
  return fits && r.bytes.length === r.length ? 0 : EOVERFLOW;
}

/**
 * long bpf_seq_write(struct seq_file *m, const void *data, u32 len): 0, or -EOVERFLOW when the data
 * does not fit (nothing of it is kept). `data` is any byte view (a Uint8Array, a DataView over a map
 * value, ...); `len` defaults to its length and may not exceed it (-EINVAL, which the kernel's
 * verifier would have caught as an out-of-bounds read). Never throws.
 */
export function bpf_seq_write(seq: SeqSink, data: ArrayBufferView, len?: number): number {
  if (!isSink(seq) || !ArrayBuffer.isView(data)) return EINVAL;
  const n = len ?? data.byteLength;
  if (!Number.isSafeInteger(n) || n < 0 || n > data.byteLength) return EINVAL;
  const bytes = new Uint8Array(data.buffer, data.byteOffset, n);
  return seq.write(bytes) ? 0 : EOVERFLOW;
}
