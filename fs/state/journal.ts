/**
 * The daemon's journal: every operation that changes what the mount holds, one JSON line each,
 * written and flushed to disk (fdatasync) before the operation is made, so a daemon that is killed
 * and restarted on the same state directory replays to a state that includes everything it
 * acknowledged. An operation that then fails is replayed and fails the same way (replay reports and
 * skips failures); one that cannot be recorded (ENOSPC) is not made. The kernel's pins last until reboot; the default state directory is under /run for
 * the same lifetime.
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
 * A line that does not parse (a torn last write, a corrupted file) ends the replay there: what came
 * before is restored, the rest is reported, and the journal is rewritten without it.
 */
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
  /** Why the replay stopped early (a line that does not parse), if it did. */
  damaged?: string;
}

export class Journal {
  readonly file: string;
  #fd: FileHandle | null = null;
  /** Records in the file: the index the next one gets. */
  #count = 0;

  constructor(stateDir: string) {
    this.file = path.join(stateDir, 'journal.jsonl');
  }

  /** The records written so far; a damaged tail is cut off (and the file rewritten without it). */
  async load(): Promise<JournalLoad> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { records: [] };
      throw fromSystemError(e, `reading ${this.file}`);
    }
    const records: JournalRecord[] = [];
    const lines = text.split('\n');
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!;
      if (line === '') continue;
      let rec: JournalRecord;
      try {
        rec = JSON.parse(line) as JournalRecord;
        if (typeof rec !== 'object' || rec === null || typeof rec.op !== 'string') throw new Error('not a record');
      } catch {
        const damaged = `${this.file}:${i + 1}: not a journal record; ${lines.length - i - (lines.at(-1) === '' ? 1 : 0)} line(s) from there are dropped`;
        await this.#rewrite(records);
        this.#count = records.length;
        return { records, damaged };
      }
      records.push(rec);
    }
    this.#count = records.length;
    return { records };
  }

  /**
   * Appends one record and flushes it; only then may the operation be acknowledged. Resolves with
   * the record's index (what a `failed` record names).
   */
  async append(rec: JournalRecord): Promise<number> {
    try {
      this.#fd ??= await open(this.file, 'a', 0o600);
      await this.#fd.write(JSON.stringify(rec) + '\n');
      await this.#fd.datasync();
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

  async #rewrite(records: JournalRecord[]): Promise<void> {
    const tmp = `${this.file}.tmp`;
    await writeFile(tmp, records.map((r) => JSON.stringify(r) + '\n').join(''), { mode: 0o600 });
    await rename(tmp, this.file);
  }
}
