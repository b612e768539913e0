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
import { open, readFile, rename, writeFile, type FileHandle } from 'node:fs/promises';
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

export class Journal {
  readonly file: string;
  #fd: FileHandle | null = null;
  /** The last append queued: the next one starts when it has ended. */
  #tail: Promise<unknown> = Promise.resolve();
  /** Records in the file: the index the next one gets. */
  #count = 0;
  /** Bytes of whole records in the file: where the next one is written, and what a failed write is cut back to. */
  #size = 0;

  constructor(stateDir: string) {
    this.file = path.join(stateDir, 'journal.jsonl');
  }

  /**
   * The records written so far. A torn last record (a write the daemon was killed in) is cut off.
   * A damaged line elsewhere (one that does not parse or is not a record this journal writes) ends
   * the replay before it, as a database's log replay does: what is restored is what the state was
   * at that point, never a state with a hole in it. The whole file is first kept aside, so nothing
   * is lost that someone could still read. A journal that cannot be read at all is moved aside, and
   * the daemon starts with nothing restored and journals into a new one.
   */
  async load(): Promise<JournalLoad> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { records: [] };
      return { records: [], damaged: await this.#setAside(`cannot read ${this.file} (${(e as NodeJS.ErrnoException).code}): nothing was restored`) };
    }
    const records: JournalRecord[] = [];
    const lines = text.split('\n');
    const last = lines.length - 1; // lines[last] is what follows the last newline: '' unless torn
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!;
      if (line === '') continue;
      let rec: unknown;
      let problem: string | undefined;
      try {
        rec = JSON.parse(line);
        problem = recordProblem(rec, records.length);
      } catch {
        problem = 'not JSON';
      }
      if (problem === undefined) {
        records.push(rec as JournalRecord);
        continue;
      }
      if (i === last) {
        await this.#rewrite(records);
        return { records, damaged: `${this.file}:${i + 1}: a torn last record (a write the daemon was stopped in) was cut` };
      }
      const dropped = lines.slice(i).filter((l) => l !== '').length;
      const why = `${this.file}:${i + 1}: ${problem}; the replay stopped there: ${records.length} record(s) restored, ${dropped} line(s) from there on not replayed`;
      const damaged = await this.#setAside(why);
      await this.#rewrite(records);
      return { records, damaged };
    }
    // A last record whose newline was not written is whole: end it, or the next one would join it.
    if (lines[last] !== '') await this.#rewrite(records);
    this.#count = records.length;
    this.#size = Buffer.byteLength(lines[last] === '' ? text : text + '\n');
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
    const done = this.#tail.then(() => this.#append(rec));
    this.#tail = done.catch(() => undefined);
    return done;
  }

  async #append(rec: JournalRecord): Promise<number> {
    const buf = Buffer.from(JSON.stringify(rec) + '\n');
    try {
      if (this.#fd === null) {
        // Not O_APPEND: Linux ignores the position of a write to an O_APPEND file.
        this.#fd = await open(this.file, constants.O_WRONLY | constants.O_CREAT, 0o600);
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
      return this.#count++;
    } catch (e) {
      const err = fromSystemError(e, `writing the journal ${this.file}`);
      throw err.code === 'ENOSPC' ? bpfError('ENOSPC', `the state directory is full: ${this.file} cannot record this change, so it was not made`) : err;
    }
  }

  async close(): Promise<void> {
    await this.#fd?.close();
    this.#fd = null;
  }

  /** Writes exactly these records (replacing the file at once), and appends after them. */
  async #rewrite(records: JournalRecord[]): Promise<void> {
    const text = records.map((r) => JSON.stringify(r) + '\n').join('');
    const tmp = `${this.file}.tmp`;
    await writeFile(tmp, text, { mode: 0o600 });
    await rename(tmp, this.file);
    this.#count = records.length;
    this.#size = Buffer.byteLength(text);
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
