/**
 * Compaction of the journal: which of the records made so far are still needed to rebuild the state
 * as it is. The engine keeps each record it made with its footprint, taken when it was made: the
 * inodes and objects it created, those it acted on, and the directories its paths walked through.
 * The snapshot is the records that replay to the same state, in their order:
 *
 * - a record that created or acted on something still alive is kept;
 * - so is one that acted on something no record created (the root, a directory the mirror made,
 *   which a replay makes again unless the record that removed it is there);
 * - a kept record needs the records that created what it walked through or acted on, and a kept
 *   record that created something since gone needs every record that acted on it (its rmdir, its
 *   renames), or the replay would leave it there;
 * - a map element's update or delete is needed only if it is the element's last, and a last delete
 *   is not (the element is absent either way); the last update is kept as BPF_ANY, since the
 *   records whose presence its NOEXIST or EXIST flag checked are gone;
 * - a record whose paths went through a symlink, whose target the footprint cannot follow, is kept
 *   with every record before it.
 *
 * The rest are whole histories of things that no longer exist (a directory made and removed, an
 * iterator pinned with its program's source and unpinned), and go. Records that create objects carry
 * their id cursors, and an id table allocates upward from its cursor with nothing above it in use,
 * so a kept record's objects get the ids they had even when records before it are gone.
 */
import type { JournalRecord } from './journal';

/**
 * What a record touched when it was made, as keys: `i<ino>` for an inode of the mount, `o<kind><id>`
 * for an object (`oprog4`).
 */
export interface Footprint {
  creates: string[];
  touches: string[];
  walks: string[];
  /** A path went through a symlink: this record needs everything before it. */
  barrier?: boolean;
  /** A map element (`<map id>:<key>`) this record set or deleted. */
  element?: string;
}

export interface Entry {
  rec: JournalRecord;
  fp: Footprint;
}

/** The entries a replay needs to rebuild the state in which `alive` holds; see the file's comment. */
export function prune(entries: readonly Entry[], alive: (key: string) => boolean): Entry[] {
  const n = entries.length;
  const dropped = new Array<boolean>(n).fill(false);
  const lastOf = new Map<string, number>();
  entries.forEach((e, i) => e.fp.element !== undefined && lastOf.set(e.fp.element, i));
  for (const [i, e] of entries.entries()) {
    if (e.fp.element !== undefined && (lastOf.get(e.fp.element) !== i || e.rec.op === 'mapDelete')) dropped[i] = true;
  }
  /** Every entry that created a key, in order. */
  const creators = new Map<string, number[]>();
  /** Every entry that acted on a key. */
  const actors = new Map<string, number[]>();
  const add = (m: Map<string, number[]>, k: string, i: number): void => void (m.get(k) ?? m.set(k, []).get(k)!).push(i);
  for (const [i, e] of entries.entries()) {
    if (dropped[i]) continue;
    for (const k of e.fp.creates) add(creators, k, i);
    for (const k of e.fp.touches) add(actors, k, i);
  }
  /** The entry before `i` that created `k` last (ids and inode numbers may come again later). */
  const creatorBefore = (k: string, i: number): number | undefined => {
    const list = creators.get(k);
    let found: number | undefined;
    for (const c of list ?? []) if (c < i) found = c;
    return found;
  };
  const kept = new Array<boolean>(n).fill(false);
  const work: number[] = [];
  const keep = (i: number): void => {
    if (kept[i] || dropped[i]) return;
    kept[i] = true;
    work.push(i);
  };
  let barrier = -1;
  for (const [i, e] of entries.entries()) {
    if (dropped[i]) continue;
    if (e.fp.barrier === true) barrier = i;
    if (e.fp.creates.some(alive) || e.fp.touches.some(alive)) keep(i);
    else if (e.fp.touches.some((k) => creatorBefore(k, i) === undefined)) keep(i);
  }
  for (let i = 0; i <= barrier; i++) keep(i);
  while (work.length > 0) {
    const i = work.pop()!;
    const fp = entries[i]!.fp;
    for (const k of [...fp.walks, ...fp.touches]) {
      const c = creatorBefore(k, i);
      if (c !== undefined) keep(c);
    }
    for (const k of fp.creates) {
      if (alive(k)) continue;
      for (const a of actors.get(k) ?? []) if (a > i && creatorBefore(k, a) === i) keep(a);
    }
  }
  return entries.flatMap((e, i) => {
    if (!kept[i]) return [];
    return e.rec.op === 'mapUpdate' && e.rec.flags !== 0 ? [{ rec: { ...e.rec, flags: 0 }, fp: e.fp }] : [e];
  });
}
