/**
 * What test/crash-consistency.ts expects a mount to hold: a model of its tree (directories, pins of
 * iterators, of a program and of a map) and of the one map's elements, the operations that change
 * it (each a real command: coreutils on the mount, or `vbpffs`), a seeded generator of operations
 * that are valid on the model (so every one must succeed while the daemon lives), and the state a
 * mount shows, read with real processes, in the same form.
 */
import path from 'node:path';

export type Node = { kind: 'dir' } | { kind: 'iter'; text: string } | { kind: 'prog' } | { kind: 'map' };

export interface State {
  /** Path in the mount (no leading '/') to what is there. */
  nodes: Map<string, Node>;
  /** The map's elements, key to value. */
  map: Map<number, number>;
}

export type Op =
  | { kind: 'mkdir'; path: string }
  | { kind: 'rmdir'; path: string }
  | { kind: 'unlink'; path: string }
  | { kind: 'rename'; from: string; to: string }
  | { kind: 'mapCreate'; path: string }
  | { kind: 'progLoad'; path: string }
  | { kind: 'iterPin'; path: string }
  | { kind: 'iterPinProg'; path: string }
  | { kind: 'progPin'; path: string }
  | { kind: 'mapPin'; via: string; path: string }
  | { kind: 'update'; via: string; key: number; value: number }
  | { kind: 'delete'; via: string; key: number };

/** The map and the program every other operation names; never removed or moved. */
export const MAP = 'maps/m';
export const PROG = 'progs/p';

/** iter/cgroup programs printing one line for the cgroup they start at (order self_only). */
export const objectSource = (word: string): string => `import { SEC, bpf_seq_printf } from 'vbpffs/bpf';
export const ${word} = SEC('iter/cgroup', (ctx) => {
  if (ctx.cgroup !== null) bpf_seq_printf(ctx.meta.seq, '${word}\\n');
  return 0;
});
`;

export const emptyState = (): State => ({ nodes: new Map(), map: new Map() });

export function clone(s: State): State {
  return { nodes: new Map(s.nodes), map: new Map(s.map) };
}

/** The state after op (a new one; op is valid on s). */
export function apply(s0: State, op: Op): State {
  const s = clone(s0);
  switch (op.kind) {
    case 'mkdir':
      s.nodes.set(op.path, { kind: 'dir' });
      break;
    case 'rmdir':
    case 'unlink':
      s.nodes.delete(op.path);
      break;
    case 'rename':
      for (const [p, n] of s0.nodes) {
        if (p === op.from || p.startsWith(`${op.from}/`)) {
          s.nodes.delete(p);
          s.nodes.set(op.to + p.slice(op.from.length), n);
        }
      }
      break;
    case 'mapCreate':
    case 'mapPin':
      s.nodes.set(op.path, { kind: 'map' });
      break;
    case 'progLoad':
    case 'progPin':
      s.nodes.set(op.path, { kind: 'prog' });
      break;
    case 'iterPin':
      s.nodes.set(op.path, { kind: 'iter', text: 'alpha\n' });
      break;
    case 'iterPinProg':
      s.nodes.set(op.path, { kind: 'iter', text: 'beta\n' });
      break;
    case 'update':
      s.map.set(op.key, op.value);
      break;
    case 'delete':
      s.map.delete(op.key);
      break;
  }
  return s;
}

/** The command that makes op: argv, with 'vbpffs' for the CLI; paths are under mnt. */
export function command(op: Op, mnt: string, objects: { alpha: string; beta: string }): string[] {
  const p = (x: string): string => path.join(mnt, x);
  switch (op.kind) {
    case 'mkdir':
      return ['mkdir', p(op.path)];
    case 'rmdir':
      return ['rmdir', p(op.path)];
    case 'unlink':
      return ['unlink', p(op.path)];
    case 'rename':
      return ['mv', '-T', p(op.from), p(op.to)];
    case 'mapCreate':
      return ['vbpffs', 'map', 'create', p(op.path), 'type', 'hash', 'key', '4', 'value', '4', 'entries', '64', 'name', 'm', 'key_type', 'u32', 'value_type', 'u32'];
    case 'progLoad':
      return ['vbpffs', 'prog', 'load', objects.beta, p(op.path)];
    case 'iterPin':
      return ['vbpffs', 'iter', 'pin', objects.alpha, p(op.path), 'order', 'self_only'];
    case 'iterPinProg':
      return ['vbpffs', 'iter', 'pin', 'pinned', p(PROG), p(op.path), 'order', 'self_only'];
    case 'progPin':
      return ['vbpffs', 'prog', 'pin', 'pinned', p(PROG), p(op.path)];
    case 'mapPin':
      return ['vbpffs', 'map', 'pin', 'pinned', p(op.via), p(op.path)];
    case 'update':
      return ['vbpffs', 'map', 'update', 'pinned', p(op.via), 'key', 'json', String(op.key), 'value', 'json', String(op.value)];
    case 'delete':
      return ['vbpffs', 'map', 'delete', 'pinned', p(op.via), 'key', 'json', String(op.key)];
  }
}

export const SETUP: Op[] = [
  { kind: 'mkdir', path: 'maps' },
  { kind: 'mkdir', path: 'progs' },
  { kind: 'mapCreate', path: MAP },
  { kind: 'progLoad', path: PROG },
];

/** An operation valid on s, drawn with rnd (uniform in [0, 1)); `fresh` names new entries. */
export function randomOp(s: State, rnd: () => number, fresh: () => string): Op {
  const pick = <T>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const entries = [...s.nodes];
  const fixed = (p: string): boolean => p === 'maps' || p === 'progs' || p === MAP || p === PROG;
  const dirs = ['', ...entries.filter(([, n]) => n.kind === 'dir').map(([p]) => p)];
  const under = (): string => path.posix.join(pick(dirs), fresh());
  const maps = entries.filter(([, n]) => n.kind === 'map').map(([p]) => p);
  const pins = entries.filter(([p, n]) => n.kind !== 'dir' && !fixed(p)).map(([p]) => p);
  const empty = dirs.filter((d) => d !== '' && !fixed(d) && !entries.some(([p]) => p.startsWith(`${d}/`)));
  const movable = entries.filter(([p]) => !fixed(p)).map(([p]) => p);
  const keys = [...s.map.keys()];
  for (;;) {
    const r = rnd();
    if (r < 0.3) return { kind: 'update', via: pick(maps), key: Math.floor(rnd() * 12), value: Math.floor(rnd() * 1000) };
    if (r < 0.4 && keys.length > 0) return { kind: 'delete', via: pick(maps), key: pick(keys) };
    if (r < 0.5) return { kind: 'mkdir', path: under() };
    if (r < 0.55 && empty.length > 0) return { kind: 'rmdir', path: pick(empty) };
    if (r < 0.6) return { kind: 'iterPin', path: under() };
    if (r < 0.68) return { kind: 'iterPinProg', path: under() };
    if (r < 0.73) return { kind: 'progPin', path: under() };
    if (r < 0.8) return { kind: 'mapPin', via: pick(maps), path: under() };
    if (r < 0.9 && pins.length > 0) return { kind: 'unlink', path: pick(pins) };
    if (movable.length > 0) {
      const from = pick(movable);
      const to = path.posix.join(pick(dirs.filter((d) => d !== from && !d.startsWith(`${from}/`))), fresh());
      return { kind: 'rename', from, to };
    }
  }
}

/** One line per entry (`d path`, `f path`) and what each readable pin reads as, sorted: what is compared. */
export function describe(s: State): string {
  const out: string[] = [];
  for (const [p, n] of [...s.nodes].sort(([a], [b]) => a.localeCompare(b))) {
    if (n.kind === 'dir') out.push(`d ${p}`);
    else if (n.kind === 'iter') out.push(`f ${p} iter ${JSON.stringify(n.text)}`);
    else if (n.kind === 'map') out.push(`f ${p} map ${mapText(s.map)}`);
    else out.push(`f ${p} prog`);
  }
  out.push(`map dump ${mapText(s.map)}`);
  return out.join('\n');
}

export function mapText(m: Map<number, number>): string {
  return [...m].sort(([a], [b]) => a - b).map(([k, v]) => `${k}:${v}`).join(' ') || '(empty)';
}
