/**
 * The daemon's journal: every operation that changes what the mount holds, one JSON line each,
 * written and flushed to disk (fdatasync) before the operation is made, so a daemon that is killed
 * and restarted on the same state directory replays to a state that includes everything it
 * acknowledged. An operation that then fails is replayed and fails the same way (replay reports and
 * skips failures); one that cannot be recorded (ENOSPC) is not made, and leaves nothing in the file.
 * The kernel's pins last until reboot; the default state directory is under /run for the same
 * lifetime.
 *
 * What is recorded is what the user did (mkdir, pin an iterator from an object file's source, unlink,
 * rename, the CLI's map create/update/delete, pins, link update/detach, cgroup attach/detach), not
 * the objects: replaying loads the same sources again and redoes the same calls. Records that create
 * objects carry the id tables' cursors, so replayed objects get the ids they had and records that
 * name an object by id find it again. Mirrored directories are not recorded (they come from the
 * host), nor are map values that programs write (docs/DIFFERENCES.md). An atomic operation that
 * fails after it was recorded (the kernel's rules refused it, changing nothing) is followed by a
 * `failed` record, and replay skips both.
 *
 * Damage is reported, never fatal (load() says how each kind is handled): the daemon starts with
 * what the journal's whole records before the damage restore, and goes on journalling.
 */
import { constants } from 'node:fs';
import { open, rename, rm, truncate, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { bpfError, fromSystemError } from '../../uapi';

/** Where each id table's next allocation starts (IdTable.cursor), when a record was made. */
export interface IdCursors {
  prog: number;
  map: number;
  link: number;
}

/** A reference to an object as the user gave it: its id, or where it is pinned in the mount. */
type Ref = { id: number } | { pinned: string };

/** A key as recorded: bytes (hex), or for local storage the cgroup's path in the hierarchy. */
type KeyRec = { hex: string } | { cgroup: string };

export type JournalRecord = (
  | { op: 'mkdir'; path: string; mode: number }
  | { op: 'rmdir'; path: string }
  | { op: 'unlink'; path: string }
  | { op: 'rename'; from: string; to: string; flags: number }
  | { op: 'link'; existing: string; path: string }
  | { op: 'symlink'; target: string; path: string }
  | { op: 'chmod'; path: string; mode: number }
  | { op: 'chown'; path: string; uid: number; gid: number }
  /** Times in ms since the epoch. */
  | { op: 'utimens'; path: string; atime: number; mtime: number }
  | { op: 'iterPin'; filename: string; source: string; pinPath: string; opts: { order?: string; cgroup?: string } }
  | { op: 'progLoadAll'; filename: string; source: string; dir: string }
  | { op: 'iterPinProg'; prog: Ref; pinPath: string; opts: { order?: string; cgroup?: string } }
  | { op: 'progLoad'; filename: string; source: string; path: string }
  | { op: 'mapCreate'; path: string; spec: Record<string, unknown> }
  | { op: 'objPin'; kind: 'prog' | 'map' | 'link'; ref: Ref; path: string }
  | { op: 'mapUpdate'; map: Ref; key: KeyRec; value: string; flags: number }
  | { op: 'mapDelete'; map: Ref; key: KeyRec }
  | { op: 'linkUpdate'; link: Ref; prog: Ref }
  | { op: 'linkDetach'; link: Ref }
  | { op: 'cgroupAttach'; cgroup: string; attachType: string; prog: Ref; flags: number }
  | { op: 'cgroupDetach'; cgroup: string; attachType: string; prog: Ref }
  /** The record at `index` failed when it was made, changing nothing: replay skips it. */
  | { op: 'failed'; index: number }
) & {
  /** Set on records that create objects, so replay gives them the ids they had. */
  ids?: IdCursors;
};

export interface JournalLoad {
  records: JournalRecord[];
  /**
   * What was wrong with the file, if anything: a torn last record (cut), a damaged line (the
   * replay stops before it; the file is kept aside), or a journal that cannot be read at all.
   */
  damaged?: string;
}

const REF = (x: unknown): boolean => isObject(x) && (Number.isSafeInteger(x.id) || typeof x.pinned === 'string') && Object.keys(x).length === 1;
const KEY = (x: unknown): boolean => isObject(x) && (typeof x.hex === 'string' || typeof x.cgroup === 'string') && Object.keys(x).length === 1;
const STR = (x: unknown): boolean => typeof x === 'string';
const INT = (x: unknown): boolean => Number.isSafeInteger(x);
const OBJ = (x: unknown): boolean => isObject(x);
const KIND = (x: unknown): boolean => x === 'prog' || x === 'map' || x === 'link';

/** Each operation's fields and how each is checked: a record is exactly these (and `ids`). */
const FIELDS: Readonly<Record<JournalRecord['op'], Readonly<Record<string, (x: unknown) => boolean>>>> = {
  mkdir: { path: STR, mode: INT },
  rmdir: { path: STR },
  unlink: { path: STR },
  rename: { from: STR, to: STR, flags: INT },
  link: { existing: STR, path: STR },
  symlink: { target: STR, path: STR },
  chmod: { path: STR, mode: INT },
  chown: { path: STR, uid: INT, gid: INT },
  utimens: { path: STR, atime: INT, mtime: INT },
  iterPin: { filename: STR, source: STR, pinPath: STR, opts: OBJ },
  progLoadAll: { filename: STR, source: STR, dir: STR },
  iterPinProg: { prog: REF, pinPath: STR, opts: OBJ },
  progLoad: { filename: STR, source: STR, path: STR },
  mapCreate: { path: STR, spec: OBJ },
  objPin: { kind: KIND, ref: REF, path: STR },
  mapUpdate: { map: REF, key: KEY, value: STR, flags: INT },
  mapDelete: { map: REF, key: KEY },
  linkUpdate: { link: REF, prog: REF },
  linkDetach: { link: REF },
  cgroupAttach: { cgroup: STR, attachType: STR, prog: REF, flags: INT },
  cgroupDetach: { cgroup: STR, attachType: STR, prog: REF },
  failed: { index: INT },
};

/**
 * The strings of a record that name files or cgroups (paths in the mount, symlink targets, object
 * files, cgroup paths), which replay refuses when no file name could hold them.
 */
export function recordPaths(rec: JournalRecord): string[] {
  const ref = (r: Ref): string[] => ('pinned' in r ? [r.pinned] : []);
  const opts = (o: { order?: string; cgroup?: string }): string[] => Object.values(o).filter((v): v is string => typeof v === 'string');
  switch (rec.op) {
    case 'rename':
      return [rec.from, rec.to];
    case 'link':
      return [rec.existing, rec.path];
    case 'symlink':
      return [rec.target, rec.path];
    case 'iterPin':
      return [rec.filename, rec.pinPath, ...opts(rec.opts)];
    case 'progLoadAll':
      return [rec.filename, rec.dir];
    case 'iterPinProg':
      return [...ref(rec.prog), rec.pinPath, ...opts(rec.opts)];
    case 'progLoad':
      return [rec.filename, rec.path];
    case 'objPin':
      return [...ref(rec.ref), rec.path];
    case 'mapUpdate':
    case 'mapDelete':
      return [...ref(rec.map), ...('cgroup' in rec.key ? [rec.key.cgroup] : [])];
    case 'linkUpdate':
      return [...ref(rec.link), ...ref(rec.prog)];
    case 'linkDetach':
      return ref(rec.link);
    case 'cgroupAttach':
    case 'cgroupDetach':
      return [rec.cgroup, ...ref(rec.prog)];
    case 'failed':
      return [];
    default:
      return [rec.path];
  }
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/**
 * Why a parsed line is not a record this journal writes (record `index` of the file), or undefined.
 * A record that is well-formed but names what does not exist is not damage: replay reports it.
 */
export function recordProblem(rec: unknown, index: number): string | undefined {
  if (!isObject(rec)) return 'not a JSON object';
  const op = rec.op;
  if (typeof op !== 'string' || !Object.hasOwn(FIELDS, op)) return `unknown operation ${JSON.stringify(op)}`;
  const fields = FIELDS[op as JournalRecord['op']];
  for (const [name, ok] of Object.entries(fields)) {
    if (!ok(rec[name])) return `${op}: ${name} is missing or not what it should be (${JSON.stringify(rec[name]) ?? 'missing'})`;
  }
  const extra = Object.keys(rec).find((k) => k !== 'op' && k !== 'ids' && !Object.hasOwn(fields, k));
  if (extra !== undefined) return `${op}: unexpected field ${extra}`;
  if (rec.ids !== undefined && !(isObject(rec.ids) && INT(rec.ids.prog) && INT(rec.ids.map) && INT(rec.ids.link))) return `${op}: ids is not {prog, map, link}`;
  if (op === 'failed' && !((rec.index as number) >= 0 && (rec.index as number) < index)) return `failed: index ${String(rec.index)} names no earlier record`;
  return undefined;
}

/** How many bytes load() reads at a time: a journal is streamed, never read as one string. */
const CHUNK = 1 << 20;

export class Journal {
  readonly file: string;
  #fd: FileHandle | null = null;
  /** The last append (or compaction) queued: the next one starts when it has ended. */
  #tail: Promise<unknown> = Promise.resolve();
  /** Records in the file: the index the next one gets. */
  #count = 0;
  /** Bytes of whole records in the file: where the next one is written, and what a failed write is cut back to. */
  #size = 0;
  /** Records and bytes the last compaction wrote (0 until one has): what the tail is measured against. */
  snapshot = { records: 0, bytes: 0 };
  /** Records and bytes since the last compaction (all of them until one has). */
  tail = { records: 0, bytes: 0 };

  constructor(stateDir: string) {
    this.file = path.join(stateDir, 'journal.jsonl');
  }

  /**
   * The records written so far, read a chunk at a time and parsed a line at a time (a journal may be
   * larger than the longest string V8 makes). A torn last record (a write the daemon was killed in)
   * is cut off. A damaged line elsewhere (one that does not parse or is not a record this journal
   * writes) ends the replay before it, as a database's log replay does: what is restored is what
   * the state was at that point, never a state with a hole in it. The whole file is first kept
   * aside, so nothing is lost that someone could still read. A journal that cannot be read at all
   * is moved aside, and the daemon starts with nothing restored and journals into a new one.
   */
  async load(): Promise<JournalLoad> {
    // A compaction killed before its rename leaves its temporary file: the journal is the old one.
    await rm(`${this.file}.tmp`, { force: true }).catch(() => undefined);
    let fd: FileHandle;
    try {
      // Not through a symlink (ELOOP): the state directory's journal is its own file. A directory
      // opens, and fails its first read below.
      fd = await open(this.file, constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { records: [] };
      return { records: [], damaged: await this.#setAside(`cannot read ${this.file} (${(e as NodeJS.ErrnoException).code}): nothing was restored`) };
    }
    const records: JournalRecord[] = [];
    /** Where the whole records end: what the file is cut back to when a torn one follows. */
    let good = 0;
    let lineNo = 0;
    let problem: { line: number; why: string; torn: boolean } | undefined;
    let lostNewline = false;
    try {
      const buf = Buffer.alloc(CHUNK);
      let pending: Buffer[] = [];
      let pendingLen = 0;
      let offset = 0;
      const take = (line: Buffer, torn: boolean): void => {
        lineNo++;
        if (problem !== undefined) return;
        if (line.length === 0) {
          if (!torn) good += 1;
          return;
        }
        let rec: unknown;
        let why: string | undefined;
        try {
          rec = JSON.parse(line.toString('utf8'));
          why = recordProblem(rec, records.length);
        } catch {
          why = 'not JSON';
        }
        if (why !== undefined) {
          problem = { line: lineNo, why, torn };
          return;
        }
        records.push(rec as JournalRecord);
        good += line.length + (torn ? 0 : 1);
        lostNewline = torn;
      };
      for (;;) {
        let n: number;
        try {
          ({ bytesRead: n } = await fd.read(buf, 0, CHUNK, offset));
        } catch (e) {
          await fd.close().catch(() => undefined);
          return { records: [], damaged: await this.#setAside(`cannot read ${this.file} (${(e as NodeJS.ErrnoException).code}): nothing was restored`) };
        }
        if (n === 0) break;
        offset += n;
        let from = 0;
        for (let nl = buf.indexOf(10, 0); nl !== -1 && nl < n; nl = buf.indexOf(10, from)) {
          const piece = Buffer.from(buf.subarray(from, nl));
          take(pendingLen === 0 ? piece : Buffer.concat([...pending, piece]), false);
          pending = [];
          pendingLen = 0;
          from = nl + 1;
        }
        if (from < n) {
          pending.push(Buffer.from(buf.subarray(from, n)));
          pendingLen += n - from;
        }
      }
      // What follows the last newline: a record whose newline was not written, or a torn one.
      if (pendingLen > 0) take(Buffer.concat(pending), true);
    } finally {
      await fd.close().catch(() => undefined);
    }
    this.#count = records.length;
    this.tail = { records: records.length, bytes: good };
    if (problem?.torn === true) {
      await this.#cut(good);
      return { records, damaged: `${this.file}:${problem.line}: a torn last record (a write the daemon was stopped in) was cut` };
    }
    if (problem !== undefined) {
      const dropped = await countLines(this.file, problem.line);
      const why = `${this.file}:${problem.line}: ${problem.why}; the replay stopped there: ${records.length} record(s) restored, ${dropped} line(s) from there on not replayed`;
      const damaged = await this.#setAside(why);
      await this.#rewrite(records);
      return { records, damaged };
    }
    // A last record whose newline was not written is whole: end it, or the next one would join it.
    if (lostNewline) {
      await this.#cut(good);
      await this.#write(Buffer.from('\n'));
    }
    return { records };
  }

  /**
   * Appends one record and flushes it; only then may the operation be acknowledged. Resolves with
   * the record's index (what a `failed` record names). A record that cannot be written whole and
   * flushed (a full disk, an I/O error) is cut back off the file, so the operation leaves no trace,
   * and the next record starts where it would have.
   */
  append(rec: JournalRecord): Promise<number> {
    // One at a time: each write goes at the size the previous one left, and a record's index is its
    // line, so two appends in flight at once (a FUSE mkdir beside a CLI map update) would write over
    // each other.
    return this.#queue(async () => {
      const buf = Buffer.from(JSON.stringify(rec) + '\n');
      await this.#write(buf);
      this.tail.records++;
      this.tail.bytes += buf.length;
      return this.#count++;
    });
  }

  /**
   * Replaces the journal with these records, the state as it is, written whole to a temporary
   * file, flushed, renamed over the journal and the directory flushed: a kill at any point leaves
   * either the old journal or the new one, each whole. `records` is asked for when the compaction's
   * turn comes, after every append queued before it, so nothing acknowledged is left out; it returns
   * null to leave the journal as it is (an operation between its record and its outcome). The
   * indices of later records start over after the snapshot's.
   */
  compact(records: () => JournalRecord[] | null): Promise<boolean> {
    return this.#queue(async () => {
      const recs = records();
      if (recs === null) return false;
      try {
        await this.#rewrite(recs);
      } catch (e) {
        throw fromSystemError(e, `compacting the journal ${this.file}`);
      }
      return true;
    });
  }

  #queue<R>(fn: () => Promise<R>): Promise<R> {
    const done = this.#tail.then(fn);
    this.#tail = done.catch(() => undefined);
    return done;
  }

  /** Writes bytes at the end of the whole records and flushes them, or cuts them back off and throws. */
  async #write(buf: Buffer): Promise<void> {
    try {
      if (this.#fd === null) {
        // Not O_APPEND: Linux ignores the position of a write to an O_APPEND file.
        this.#fd = await open(this.file, constants.O_WRONLY | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
        this.#size = (await this.#fd.stat()).size;
      }
      const fd = this.#fd;
      try {
        // A short write (the disk filled up during it) is followed by one that says why.
        for (let done = 0; done < buf.length; ) done += (await fd.write(buf, done, buf.length - done, this.#size + done)).bytesWritten;
        await fd.datasync();
      } catch (e) {
        await fd.truncate(this.#size).catch(() => undefined);
        throw e;
      }
      this.#size += buf.length;
    } catch (e) {
      const err = fromSystemError(e, `writing the journal ${this.file}`);
      throw err.code === 'ENOSPC' ? bpfError('ENOSPC', `the state directory is full: ${this.file} cannot record this change, so it was not made`) : err;
    }
  }

  /** Cuts the file back to its whole records (a torn one after them goes). */
  async #cut(size: number): Promise<void> {
    await this.close();
    await truncate(this.file, size);
    this.#size = size;
  }

  async close(): Promise<void> {
    await this.#fd?.close();
    this.#fd = null;
  }

  /**
   * Writes exactly these records in place of the file: a temporary file written a record at a time
   * (never one string), flushed, renamed over the journal, then the directory flushed so the rename
   * itself survives a power cut. Appends go on after them.
   */
  async #rewrite(records: JournalRecord[]): Promise<void> {
    const tmp = `${this.file}.tmp`;
    const out = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, 0o600);
    let size = 0;
    try {
      let batch: string[] = [];
      let batchLen = 0;
      const flush = async (): Promise<void> => {
        const buf = Buffer.from(batch.join(''));
        for (let done = 0; done < buf.length; ) done += (await out.write(buf, done, buf.length - done, size + done)).bytesWritten;
        size += buf.length;
        batch = [];
        batchLen = 0;
      };
      for (const r of records) {
        const text = JSON.stringify(r) + '\n';
        batch.push(text);
        batchLen += text.length;
        if (batchLen >= CHUNK) await flush();
      }
      await flush();
      await out.datasync();
    } catch (e) {
      await out.close().catch(() => undefined);
      await rm(tmp, { force: true }).catch(() => undefined);
      throw e;
    }
    await out.close();
    await this.close();
    await rename(tmp, this.file);
    await fsyncDir(path.dirname(this.file));
    this.#count = records.length;
    this.#size = size;
    this.snapshot = { records: records.length, bytes: size };
    this.tail = { records: 0, bytes: 0 };
  }

  /** Moves the journal aside (kept for whoever wants to look at it); `why`, and where it went. */
  async #setAside(why: string): Promise<string> {
    const aside = `${this.file}.damaged-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    try {
      await rename(this.file, aside);
      return `${why}; the journal as it was is kept as ${aside}`;
    } catch (e) {
      return `${why}; it cannot be moved aside either (${(e as NodeJS.ErrnoException).code}): changes cannot be journalled until it is`;
    }
  }
}

/** Flushes a directory, so a rename in it is on disk. */
async function fsyncDir(dir: string): Promise<void> {
  const fd = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await fd.sync();
  } finally {
    await fd.close();
  }
}

/** The non-blank lines of a file from line `from` (1-based) on, streamed: how much a damaged replay leaves out. */
async function countLines(file: string, from: number): Promise<number> {
  const fd = await open(file, constants.O_RDONLY);
  const buf = Buffer.alloc(CHUNK);
  let line = 1;
  let count = 0;
  let blank = true;
  try {
    for (let offset = 0; ; ) {
      const { bytesRead: n } = await fd.read(buf, 0, CHUNK, offset);
      if (n === 0) break;
      offset += n;
      for (let i = 0; i < n; i++) {
        if (buf[i] === 10) {
          if (line >= from && !blank) count++;
          line++;
          blank = true;
        } else blank = false;
      }
    }
    if (line >= from && !blank) count++;
  } finally {
    await fd.close();
  }
  return count;
}
