/**
 * Where a map's values live: slots in SharedArrayBuffers, one allocator per map.
 *
 * Programs run in isolates (progs/runtime), and a helper that returns a map value must hand the
 * program the live bytes, as the kernel's helpers return a pointer: a write through the view is the
 * value, seen by the next lookup, the next run and userspace. isolated-vm shares a
 * SharedArrayBuffer's memory with an isolate (no copy), so values are carved out of a few shared
 * buffers that an isolate receives once each; a helper then returns only a location (buffer index and
 * offset) and the program's view is built over the isolate's handle on the same memory.
 *
 * One allocator per map, so an isolate only ever holds buffers of the maps its object file declares:
 * a program that keeps a view past its run, or reads its typed array's `.buffer`, sees values of its
 * own maps and nothing else (the kernel's verifier would have refused both; docs/DIFFERENCES.md).
 *
 * A freed slot is reused, zeroed, by the next alloc(), as the kernel's allocator reuses freed
 * elements (bpf_map_kzalloc zeroes them).
 */
import { bpfError } from '../../uapi';

/** A location is buffer index * LOC_SPLIT + byte offset: one number, exact up to 2^21 buffers. */
export const LOC_SPLIT = 2 ** 32;

/** The largest buffer the allocator grows to; a bigger value gets a buffer of its own. */
const MAX_BUFFER = 1 << 20;
/** The first buffer holds this many slots; each next one twice as many, up to MAX_BUFFER. */
const FIRST_SLOTS = 16;

export class ValueSlab {
  /** Bytes per value (value_size). */
  readonly size: number;
  /** Bytes between slots: round_up(value_size, 8), as the kernel aligns values. */
  readonly stride: number;
  readonly buffers: SharedArrayBuffer[] = [];
  readonly #index = new Map<ArrayBufferLike, number>();
  readonly #free: number[] = [];
  /** Offset of the next never-used slot in the last buffer. */
  #next = 0;

  constructor(size: number) {
    if (!Number.isSafeInteger(size) || size < 1) throw bpfError('EINVAL', `slab value size ${size}`);
    this.size = size;
    this.stride = Math.ceil(size / 8) * 8;
  }

  /** An allocator over one buffer of `bytes`, carved by the owner itself (an array map's values). */
  static single(bytes: number): ValueSlab {
    const slab = new ValueSlab(Math.max(1, bytes));
    slab.#addBuffer(Math.max(1, bytes));
    slab.#next = slab.buffers[0]!.byteLength;
    return slab;
  }

  /** A zeroed slot's location. */
  alloc(): number {
    const reused = this.#free.pop();
    if (reused !== undefined) {
      new Uint8Array(this.buffers[Math.floor(reused / LOC_SPLIT)]!, reused % LOC_SPLIT, this.size).fill(0);
      return reused;
    }
    let last = this.buffers.length - 1;
    if (last < 0 || this.#next + this.stride > this.buffers[last]!.byteLength) {
      const slots = last < 0 ? FIRST_SLOTS : (this.buffers[last]!.byteLength / this.stride) * 2;
      this.#addBuffer(Math.max(this.stride, Math.min(slots * this.stride, Math.floor(MAX_BUFFER / this.stride) * this.stride)));
      last++;
      this.#next = 0;
    }
    const loc = last * LOC_SPLIT + this.#next;
    this.#next += this.stride;
    return loc;
  }

  /** The buffer a location is in. */
  bufferOf(loc: number): SharedArrayBuffer {
    return this.buffers[Math.floor(loc / LOC_SPLIT)]!;
  }

  /** Returns a slot (given by any view that starts at it) for reuse. */
  free(view: Uint8Array): void {
    const loc = this.locate(view);
    if (loc < 0) throw bpfError('EINVAL', 'freeing bytes that are not this slab\'s');
    this.#free.push(loc);
  }

  /** The location of a view into this slab's buffers, or -1 for bytes that are not the slab's. */
  locate(view: Uint8Array): number {
    const i = this.#index.get(view.buffer);
    return i === undefined ? -1 : i * LOC_SPLIT + view.byteOffset;
  }

  /** Bytes of every buffer, used or not. */
  get bytes(): number {
    let n = 0;
    for (const b of this.buffers) n += b.byteLength;
    return n;
  }

  #addBuffer(bytes: number): void {
    const buf = new SharedArrayBuffer(bytes);
    this.#index.set(buf, this.buffers.length);
    this.buffers.push(buf);
  }
}
