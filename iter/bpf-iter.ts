/**
 * The bpf_iter core (kernel/bpf/bpf_iter.c): iterator sessions and bpf_seq_read, the read rules
 * every target shares (spec 5.2).
 *
 * An IterSession is what opening an iterator gives (bpf_iter_new_fd, or open() of a pinned
 * iterator link): a seq_file, the target's private state, and bpf_iter_priv_data's meta (a
 * session_id from a per-Kernel counter, seq_num from 0, done_stop). It holds the link and the
 * program the link ran when it was opened, so a later BPF_LINK_UPDATE changes only later opens.
 *
 * A target supplies seq_operations over its objects (BpfIterSeqOps): start, next, stop, show, and
 * prepare, vbpffs's addition. A run never does I/O (progs/runtime/cgroup-files.ts), so the
 * interface files a program names are read before its run: bpfSeqRead awaits prepare(v) right
 * before show(v), after the read has decided to show v. That is the only await in a read; the rest
 * is the kernel's loop as written.
 *
 * Programs can fault here (kernel programs cannot): a fault is show() failing with EIO, so the
 * kernel's rules for a failing show apply to it unchanged. A fault in the end-of-iteration call
 * is handled like that call overflowing: its output is dropped and the call is made again on the
 * next read, whose error is then EIO.
 */
import createDebug from 'debug';
import { BpfError, ERRNO, bpfError, errnoName, fromSystemError } from '../uapi';
import { readCgroupFiles, type BpfObject, type BpfProg, type CgroupFiles, type Kernel } from '../progs';
import type { CgroupSource, KernfsNode } from '../tags';
import { SeqFile, checkReadSize } from './seq-file';

const debug = createDebug('vbpffs:iter');

/** Objects one read may visit before it gives up with what it has (bpf_iter.c). */
export const MAX_ITER_OBJECTS = 1_000_000;

/** The error pointer start() returned, as stop() is told of it (ERR_PTR, not NULL). */
export const SEQ_ERR_PTR: unique symbol = Symbol('ERR_PTR');
export type SeqErrPtr = typeof SEQ_ERR_PTR;

/**
 * seq_operations for a target's objects of type T, with its private state P (seq->private).
 *
 * - start: the object at it.seq.index, or null at the end; throws a BpfError for ERR_PTR. Advances
 *   the index when it starts the walk.
 * - next: the object after v, or null; always advances the index.
 * - stop: the walk pauses (v is the object it stopped at), ends (v null: the end-of-iteration call,
 *   in_stop) or failed (SEQ_ERR_PTR). It may throw the in-stop program's fault.
 * - show: runs the program for v: 0 shown, > 0 skipped (seq_num reused), < 0 a -errno; throws a
 *   BpfError when the program faults.
 * stop and show may return promises: a program runs off the reading thread (BpfProg.runAsync), so
 * a run that V8 cannot interrupt fails its own read at its deadline and holds no other reader.
 * - prepare: the I/O show(v) will need (interface files), done first; undefined when there is none.
 */
export interface BpfIterSeqOps<T, P> {
  start(it: IterSession<P>): T | null;
  next(it: IterSession<P>, v: T): T | null;
  stop(it: IterSession<P>, v: T | null | SeqErrPtr): void | Promise<void>;
  show(it: IterSession<P>, v: T): number | Promise<number>;
  prepare?(it: IterSession<P>, v: T): Promise<void> | undefined;
}

/** What opening an iterator may say. */
export interface IterOpenOpts {
  /** cgroup_view: the cgroup of the directory the file is read in (its tag's kernfs node). */
  cgroup?: KernfsNode;
  /** Where the interface files programs name are read from. Without one, programs read none. */
  source?: CgroupSource;
  /** Extra ctx fields every run gets (numbers, bigints, strings, booleans), e.g. the reader's clock. */
  ctx?: Readonly<Record<string, number | bigint | string | boolean>>;
}

/** struct bpf_iter_seq_info: a target's seq_operations and how to make and free its private state. */
export interface BpfIterSeqInfo<A, P, T = unknown> {
  seqOps: BpfIterSeqOps<T, P>;
  /** init_seq_private, from the link's parameters (its aux info) at open. */
  initSeqPrivate(aux: A, opts: IterOpenOpts): P;
  /** fini_seq_private, at the session's release. */
  finiSeqPrivate?(priv: P): void;
}

/**
 * struct bpf_iter_reg: a target as it registers. attachTarget validates the link's parameters and
 * takes what the link holds (its aux info; EINVAL, EBADF, ENOENT as the target says); detachTarget
 * drops it at the link's release; showFdinfo and fillLinkInfo add the target's lines and fields.
 */
export interface BpfIterReg<A, P = unknown, T = unknown> {
  readonly target: string;
  attachTarget(kernel: Kernel, params: unknown): A;
  detachTarget?(aux: A): void;
  showFdinfo?(aux: A): string;
  fillLinkInfo?(aux: A): Record<string, unknown>;
  readonly seqInfo: BpfIterSeqInfo<A, P, T>;
}

const sessionIds = new WeakMap<Kernel, bigint>();

/** atomic64_inc_return(&session_id): the first session of a Kernel is 1. */
function nextSessionId(kernel: Kernel): bigint {
  const id = (sessionIds.get(kernel) ?? 0n) + 1n;
  sessionIds.set(kernel, id);
  return id;
}

/** A -errno from show() or the read loop as a BpfError. */
function errnoError(negative: number, what: string): BpfError {
  return bpfError(errnoName(negative) ?? 'EIO', what);
}

/**
 * An open iterator (a bpf_iter file): read() until an empty array (EOF), then close(). Reads are
 * served one at a time in call order.
 */
export class IterSession<P = unknown> {
  readonly seq = new SeqFile();
  /** The target's private state (seq->private). */
  readonly priv: P;
  readonly sessionId: bigint;
  /** The program this session runs: the link's when it was opened. */
  readonly prog: BpfProg;
  /** Where interface files are read from, and the extra ctx fields of every run. */
  readonly source: CgroupSource | undefined;
  readonly extraCtx: Readonly<Record<string, unknown>>;
  seqNum = 0n;
  doneStop = false;
  readonly #ops: BpfIterSeqOps<unknown, P>;
  readonly #info: BpfIterSeqInfo<unknown, P, unknown>;
  readonly #holder: BpfObject | null;
  readonly #maxObjects: number;
  #files: { cgroup: KernfsNode; files: CgroupFiles } | null = null;
  #closed = false;
  #reading = 0;

  /**
   * prepare_seq_file: makes the target's private state (init_seq_private), then takes a reference
   * on prog and on holder (the link, when given). If the state cannot be made, nothing is held.
   */
  constructor(
    kernel: Kernel,
    info: BpfIterSeqInfo<unknown, P, unknown>,
    aux: unknown,
    prog: BpfProg,
    opts: IterOpenOpts = {},
    holder: BpfObject | null = null,
    maxObjects = MAX_ITER_OBJECTS,
  ) {
    this.#info = info;
    this.#ops = this.#info.seqOps;
    this.priv = this.#info.initSeqPrivate(aux, opts);
    this.prog = prog.get();
    this.#holder = holder?.get() ?? null;
    this.sessionId = nextSessionId(kernel);
    this.source = opts.source;
    this.extraCtx = opts.ctx ?? {};
    this.#maxObjects = maxObjects;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * read(2) of the iterator file: up to size bytes, an empty array at EOF. Errors are BpfErrors
   * with the kernel's errno (E2BIG: one object's output does not fit the buffer; EAGAIN: the
   * program asked for a retry on the first object; EIO: the program faulted); EBADF once closed.
   */
  read(size: number): Promise<Uint8Array> {
    if (this.#closed) return Promise.reject(bpfError('EBADF', `iterator session ${this.sessionId} is closed`));
    try {
      checkReadSize(size);
    } catch (e) {
      return Promise.reject(e);
    }
    this.#reading++;
    return this.seq
      .locked(() => bpfSeqRead(this, size))
      .finally(() => {
        if (--this.#reading === 0 && this.#closed) this.#release();
      });
  }

  /** Reads to EOF with reads of chunk bytes, and returns everything read. */
  async readAll(chunk = 1 << 17): Promise<Uint8Array> {
    const parts: Uint8Array[] = [];
    for (let b = await this.read(chunk); b.length > 0; b = await this.read(chunk)) parts.push(b);
    return Buffer.concat(parts);
  }

  /**
   * close(2): the session's references go now, or when the read in progress ends (a file is not
   * released while a read holds it). A second close is EBADF.
   */
  close(): void {
    if (this.#closed) throw bpfError('EBADF', `iterator session ${this.sessionId} is already closed`);
    this.#closed = true;
    if (this.#reading === 0) this.#release();
  }

  /** iter_release: fini_seq_private, then the program and the link. */
  #release(): void {
    try {
      this.#info.finiSeqPrivate?.(this.priv);
    } finally {
      this.prog.put();
      this.#holder?.put();
    }
  }

  /**
   * Reads, for the run that shows cgroup next, the interface files the program names
   * (BpfProg.cgroupFiles). Nothing to do without a source or without files: undefined, no await.
   */
  prepareCgroupFiles(cgroup: KernfsNode): Promise<void> | undefined {
    this.#files = null;
    const names = this.prog.cgroupFiles;
    if (this.source === undefined || names.length === 0) return undefined;
    return readCgroupFiles(this.source, cgroup, names).then((files) => {
      this.#files = { cgroup, files };
    });
  }

  /**
   * bpf_iter_get_info + bpf_iter_run_prog: runs the session's program with meta (this seq_file, the
   * session id, the current seq_num), the object's fields, the interface files read for it and the
   * extra ctx. null when this is the end-of-iteration call (inStop) and it was already made
   * (done_stop). Returns the program's return value; throws EIO when it faults.
   */
  async runProg(fields: { cgroup: KernfsNode | null }, inStop = false): Promise<number | null> {
    if (inStop && this.doneStop) return null;
    const files = fields.cgroup !== null && this.#files?.cgroup === fields.cgroup ? this.#files.files : undefined;
    this.#files = null;
    const ctx = { ...this.extraCtx, meta: { seq: this.seq, sessionId: this.sessionId, seqNum: this.seqNum }, ...fields, files };
    return this.prog.runAsync(ctx);
  }

  /**
   * The show of a target whose program's return value means what bpf_iter_run_prog says: "0 : okay,
   * 1 : retry the same object" (-EAGAIN).
   */
  async showRetry(fields: { cgroup: KernfsNode | null }): Promise<number> {
    return (await this.runProg(fields)) === 0 ? 0 : -ERRNO.EAGAIN;
  }

  /** @internal bpfSeqRead's view of the target's operations. */
  get ops(): BpfIterSeqOps<unknown, P> {
    return this.#ops;
  }

  /** @internal */
  get maxObjects(): number {
    return this.#maxObjects;
  }
}

/** show(v) after its prepare: the return value, or the error it failed with (a -errno or a fault). */
async function show<P>(it: IterSession<P>, v: unknown): Promise<number | BpfError> {
  const pending = it.ops.prepare?.(it, v);
  if (pending !== undefined) await pending;
  try {
    const r = await it.ops.show(it, v);
    return r < 0 ? errnoError(r, `iterator session ${it.sessionId}: show failed`) : r;
  } catch (e) {
    return fromSystemError(e, `iterator session ${it.sessionId}: show`);
  }
}

/** The read fails: one object's output overflows the seq buffer. Logged, since no program faulted. */
function e2big(it: IterSession<unknown>): BpfError {
  const e = bpfError('E2BIG', `iterator session ${it.sessionId}: prog ${it.prog.name} (id ${it.prog.id}) printed more for one object than the ${it.seq.size}-byte seq buffer holds`);
  debug('%s', e.message);
  return e;
}

/**
 * bpf_seq_read: one read() of an iterator file (spec 5.2).
 *
 * 1. Bytes left from the previous read are served first; nothing runs.
 * 2. Otherwise start() and show the first object. Its show failing (a -errno or a fault) or
 *    overflowing the buffer fails the read (E2BIG for an overflow); a skip (> 0) gives its seq_num
 *    to the next object.
 * 3. Then next() and show, each valid next object taking the next seq_num, until the end, until
 *    size bytes are buffered (the read is satisfied; the object just fetched is shown by the next
 *    read), or until MAX_ITER_OBJECTS (EAGAIN if nothing is buffered). An object that fails or
 *    overflows after others is rolled back and the read returns what came before it; the next read
 *    starts at it again, with the same seq_num.
 * 4. stop(): at the end it makes the end-of-iteration call (a NULL object). If that call overflows
 *    or faults, its output is dropped and it is made again on the next read; with nothing else
 *    buffered the read fails (E2BIG, or the fault's EIO). Once it succeeds it is not made again, and
 *    reads return 0.
 */
export async function bpfSeqRead<P>(it: IterSession<P>, size: number): Promise<Uint8Array> {
  const seq = it.seq;
  const ops = it.ops;
  seq.alloc();
  if (seq.count > 0) return seq.take(Math.min(seq.count, size));

  seq.from = 0;
  let p: unknown;
  try {
    p = ops.start(it);
  } catch (e) {
    await ops.stop(it, SEQ_ERR_PTR);
    seq.count = 0;
    throw e;
  }

  if (p !== null) {
    const r = await show(it, p);
    if (typeof r === 'number' && r > 0) {
      // "object is skipped, decrease seq_num, so next valid object can reuse the same seq_num"
      it.seqNum--;
      seq.count = 0;
    } else if (r instanceof BpfError || seq.overflowed) {
      await ops.stop(it, p);
      seq.count = 0;
      throw r instanceof BpfError ? r : e2big(it);
    }

    for (let numObjs = 1; ; numObjs++) {
      const offs = seq.count;
      p = ops.next(it, p);
      if (p === null) break;
      // got a valid next object, increase seq_num
      it.seqNum++;
      if (seq.count >= size) break;
      if (numObjs >= it.maxObjects) {
        if (offs === 0) {
          await ops.stop(it, p);
          throw bpfError('EAGAIN', `iterator session ${it.sessionId}: ${numObjs} objects visited and nothing to show yet`);
        }
        break;
      }
      const r = await show(it, p);
      if (typeof r === 'number' && r > 0) {
        it.seqNum--;
        seq.count = offs;
      } else if (r instanceof BpfError || seq.overflowed) {
        seq.count = offs;
        if (offs === 0) {
          await ops.stop(it, p);
          throw r instanceof BpfError ? r : e2big(it);
        }
        break;
      }
    }
  }

  // stop: the bpf program is called if !p
  const offs = seq.count;
  let fault: BpfError | null = null;
  try {
    await ops.stop(it, p);
  } catch (e) {
    fault = fromSystemError(e, `iterator session ${it.sessionId}: stop`);
  }
  if (p === null) {
    if (!seq.overflowed && fault === null) {
      it.doneStop = true;
    } else {
      seq.count = offs;
      if (offs === 0) throw fault ?? e2big(it);
      if (fault !== null) debug('session %s: the end-of-iteration call faulted, retried next read: %s', it.sessionId, fault.message);
    }
  }

  return seq.take(Math.min(seq.count, size));
}
