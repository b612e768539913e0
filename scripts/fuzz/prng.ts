/**
 * mulberry32: a small, fast 32-bit PRNG; the same seed gives the same sequence on every platform.
 * Its own module, so seeded tests outside the fuzzers (the crash tests) use it without loading them.
 */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/**
 * `n` operations from a seed, each a kind drawn by its weight (kinds in the weights' key order) and
 * four random words its run picks its arguments from, so a sequence does not depend on the state.
 */
export function weightedOps<K extends string>(seed: number, n: number, weights: Readonly<Record<K, number>>): { kind: K; r: [number, number, number, number] }[] {
  const kinds = Object.keys(weights) as K[];
  const total = kinds.reduce((s, k) => s + weights[k], 0);
  const rnd = mulberry32(seed);
  const ops: { kind: K; r: [number, number, number, number] }[] = [];
  for (let i = 0; i < n; i++) {
    let w = rnd() % total;
    let kind = kinds[0]!;
    for (const k of kinds) {
      if (w < weights[k]) {
        kind = k;
        break;
      }
      w -= weights[k];
    }
    ops.push({ kind, r: [rnd(), rnd(), rnd(), rnd()] });
  }
  return ops;
}
