/**
 * Model-based fuzzing (scripts/fuzz/) inside the normal test run: a fixed set of seeds, every
 * invariant checked after every step, and for each invariant a state broken behind the model's back
 * that it must catch (a check that cannot fail is not a check).
 */
import t, { type Test } from 'tap';
import { BpfMapType } from '../uapi';
import { CgrpStorageMap, ValueSchema, cgroupBpfTable, createMap, EMPTY_PROG_ARRAY, type BpfObject } from '../progs';
import { formatFailure, fuzzSeed, generate, minimise, runOps } from '../scripts/fuzz/run';
import { mulberry32 } from '../scripts/fuzz/prng';
import type { Model } from '../scripts/fuzz/model';
import './harness/ivm-exit';

/** Seeds and length run on every `npm test`: about 45 s under coverage on two cores. */
const SEEDS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
const OPS = 2000;

t.test('mulberry32 and the generator are reproducible', async (t) => {
  const a = mulberry32(7);
  const b = mulberry32(7);
  t.same([a(), a(), a()], [b(), b(), b()]);
  t.same(generate(42, 50), generate(42, 50), 'the same seed gives the same sequence');
  t.notSame(generate(42, 50), generate(43, 50));
});

for (const seed of SEEDS) {
  t.test(`seed ${seed}: ${OPS} operations keep every invariant`, async (t) => {
    const rep = await fuzzSeed(seed, OPS, { minimiseMs: 30_000 });
    t.equal(rep.failure, null, rep.failure === null ? 'no failure' : formatFailure(rep));
    t.ok(rep.executed > OPS / 2, `${rep.executed} operations ran`);
  });
}

/**
 * Runs seed `seed` and breaks the state with `broken` the first time it applies (it returns true);
 * the run must then fail at that very step, with the named invariant.
 */
async function caught(t: Test, seed: number, invariant: string, broken: (m: Model) => boolean): Promise<void> {
  let at = -1;
  const r = await runOps(generate(seed, 1500), {
    tamper: (m, i) => {
      if (at < 0 && broken(m)) at = i;
    },
  });
  t.ok(at >= 0, 'the state could be broken');
  t.equal(r.failure?.index, at, 'caught at the step that broke it');
  t.equal(r.failure?.signature, invariant, r.failure?.message.split('\n')[0] ?? 'no failure');
}

const live = (m: Model): BpfObject[] => [...m.objects].filter((o) => !o.released);

t.test('refs: an extra reference taken behind the model is caught', async (t) => {
  await caught(t, 1, 'refs', (m) => {
    const o = live(m)[0];
    if (o === undefined) return false;
    o.get();
    return true;
  });
});

t.test('released: an object nothing holds but that lives is caught', async (t) => {
  await caught(t, 2, 'released', (m) => {
    createMap(m.kernel, { type: BpfMapType.HASH, keySize: 4, valueSize: 8, maxEntries: 1, btf: { key: ValueSchema.define('u32'), value: ValueSchema.define('u64') } });
    return true;
  });
  await caught(t, 3, 'released', (m) => {
    // A handle forgotten without being closed: its object keeps a reference no holder accounts for.
    const i = m.handles.findIndex((h) => h.handle.object.refs === 1);
    if (i < 0) return false;
    m.handles.splice(i, 1);
    return true;
  });
});

t.test('storage: an element the model did not make is caught', async (t) => {
  await caught(t, 4, 'storage', (m) => {
    const map = live(m).find((o): o is CgrpStorageMap => o instanceof CgrpStorageMap);
    const c = m.cgroups.find((x) => !x.dying && !m.cgrpKeys.get(map!)?.has(x));
    if (map === undefined || c === undefined) return false;
    map.updateElem(c, new Uint8Array(8));
    return true;
  });
});

t.test('tags: an inherit list reference no tagged directory accounts for is caught', async (t) => {
  await caught(t, 5, 'tags', (m) => {
    const d = m.dirs().find((x) => x.dir.tag !== null);
    if (d === undefined) return false;
    d.dir.tag!.inherit.get();
    return true;
  });
});

t.test('cgroup-refs: an extra reference on a cgroup is caught', async (t) => {
  await caught(t, 6, 'cgroup-refs', (m) => {
    const c = m.cgroups.find((x) => !x.dying && x.parent !== null);
    if (c === undefined) return false;
    c.get();
    return true;
  });
});

t.test('effective: an effective array that differs from the recomputation is caught', async (t) => {
  await caught(t, 7, 'effective', (m) => {
    for (const c of m.cgroups) {
      if (c.dying) continue;
      const st = cgroupBpfTable(m.kernel).peek(c);
      const i = st?.effective.findIndex((a) => a.length > 0) ?? -1;
      if (i < 0) continue;
      st!.effective[i] = EMPTY_PROG_ARRAY;
      return true;
    }
    return false;
  });
});

t.test('a failure is minimised to a sequence that still fails the same way', async (t) => {
  const ops = generate(1, 300);
  // A fault planted once a CGRP_STORAGE map exists, in every run: the minimiser keeps the load that makes one.
  const tampered = new WeakSet<Model>();
  const opts = {
    tamper: (m: Model) => {
      const map = live(m).find((o) => o instanceof CgrpStorageMap);
      if (tampered.has(m) || map === undefined) return;
      map.get();
      tampered.add(m);
    },
  };
  const r = await runOps(ops, opts);
  t.equal(r.failure?.signature, 'refs');
  const min = await minimise(ops, r.failure!, 20_000, opts);
  t.ok(min.length < r.failure!.index + 1, `${r.failure!.index + 1} operations minimised to ${min.length}`);
  t.same(
    min.map((o) => o.kind),
    ['load'],
    'one load of the view object is all it takes',
  );
  const rep = formatFailure({ seed: 1, ops: 300, executed: r.executed, ms: 0, failure: r.failure, counts: r.counts, minimised: { ops: min, log: ['0: load'], failure: r.failure } });
  t.match(rep, /FAIL seed 1: .*invariant refs\n  reproduce: npm run fuzz -- --ops 300 --seed 1/);
  t.match(rep, /minimised to 1 operations/);
});
