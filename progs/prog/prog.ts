/**
 * struct bpf_prog: a loaded program. It belongs to a Collection (the loaded object file, whose
 * isolate runs it) and holds a reference on every map of that object, as the kernel's prog holds its
 * used_maps. run() is bpf_prog_run(): synchronous, on the thread that owns the Kernel, with the
 * runtime's deadline and memory limit (runAsync the same, on another thread, for callers that serve
 * others meanwhile); it returns the program's return value or throws EIO when the
 * program faults (it threw, ran past its deadline, exhausted its memory, or returned what its type
 * forbids), with the reason in the error and in `stats.lastFault`.
 */
import { createHash } from 'node:crypto';
import { BpfAttachType, BpfProgType, bpfError } from '../../uapi';
import { BpfObject } from '../object';
import type { Kernel } from '../kernel';
import type { BpfMap } from '../maps/map';
import type { ProgTypeName, SectionInfo } from '../helpers/func-proto';
import type { ProgramDecl } from './object-file';

/** What a run needs from the runtime; the isolate of the program's collection implements it. */
export interface ProgRunner {
  run(prog: BpfProg, ctx: ProgCtx): number;
  /** The same run off the calling thread, ended from outside if it outlives its deadline. */
  runAsync(prog: BpfProg, ctx: ProgCtx): Promise<number>;
  /** The program is released (its runner may let go of what it shared with it). */
  release(prog: BpfProg): void;
}

/**
 * A run's context, as the host describes it: owners (`cgroup`, `task`, `sk`, `inode`) as the host's
 * objects, `meta` for iterators, everything else numbers, bigints or strings copied to the program.
 * The runtime turns owners into handles the program can only pass back to helpers.
 */
export type ProgCtx = Readonly<Record<string, unknown>>;

/** kernel.bpf_stats_enabled's counters, always on. */
export interface ProgStats {
  /** Runs, faults included. */
  runCnt: number;
  /** CPU time spent in the program (the isolate's thread CPU time), ns. */
  runTimeNs: number;
  /** Runs that faulted; the last reason. */
  faults: number;
  lastFault: string | undefined;
}

export class BpfProg extends BpfObject {
  readonly kind = 'prog' as const;
  readonly name: string;
  /** The section it was declared with, as written. */
  readonly section: string;
  readonly sec: SectionInfo;
  readonly type: ProgTypeName;
  readonly progType: BpfProgType;
  readonly expectedAttachType: BpfAttachType | undefined;
  /** bpf_prog_info.tag: 8 bytes of sha256 over the object's source hash and the program's place in it, hex. */
  readonly tag: string;
  readonly loadTime: Date;
  /** The object file it came from. */
  readonly filename: string;
  /** The interface files its object names to vbpffs_cgroup_read: what a run's snapshot should hold. */
  readonly cgroupFiles: readonly string[];
  /** The maps of its object file (used_maps), one reference each. */
  readonly maps: readonly BpfMap[];
  readonly stats: ProgStats = { runCnt: 0, runTimeNs: 0, faults: 0, lastFault: undefined };
  readonly #runner: ProgRunner;

  /** Takes a reference on each map; the collection loader calls it. */
  constructor(
    kernel: Kernel,
    decl: ProgramDecl,
    objectHash: string,
    filename: string,
    cgroupFiles: readonly string[],
    maps: readonly BpfMap[],
    runner: ProgRunner,
  ) {
    super(kernel.progIdr);
    this.name = decl.name;
    this.section = decl.section;
    this.sec = decl.sec;
    this.type = decl.sec.type;
    this.progType = decl.sec.progType;
    this.expectedAttachType = decl.sec.attachType;
    this.tag = createHash('sha256').update(`${objectHash}:${decl.name}:${decl.range.start}-${decl.range.end}`).digest('hex').slice(0, 16);
    this.loadTime = new Date();
    this.filename = filename;
    this.cgroupFiles = cgroupFiles;
    for (const m of maps) m.get();
    this.maps = maps;
    this.#runner = runner;
  }

  /** bpf_prog_run: the program's return value; EIO when it faults. EBADF once released. */
  run(ctx: ProgCtx): number {
    if (this.released) throw bpfError('EBADF', `prog ${this.id} (${this.name}) is released`);
    return this.#runner.run(this, ctx);
  }

  /**
   * bpf_prog_run where the caller must not be held by the program: what the daemon's readers and
   * events use. The program runs on another thread, and a run that V8 cannot interrupt (a huge
   * BigInt, a typed array's sort) fails at its deadline plus a margin while its thread is let go.
   */
  runAsync(ctx: ProgCtx): Promise<number> {
    if (this.released) return Promise.reject(bpfError('EBADF', `prog ${this.id} (${this.name}) is released`));
    return this.#runner.runAsync(this, ctx);
  }

  protected release(): void {
    this.#runner.release(this);
    for (const m of this.maps) m.put();
  }
}
