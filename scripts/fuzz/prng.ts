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
