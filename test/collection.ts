import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Handle, loadCollection, type BpfMap, type MapPins } from '../progs';
import { iterCtx, load, world } from './harness/progs';

const OBJ = `import { SEC, map, bpf_map_lookup_elem, bpf_seq_printf, BPF_MAP_TYPE_ARRAY } from 'vbpffs/bpf';
export const shared_counter_map = map({ type: BPF_MAP_TYPE_ARRAY, key: 'u32', value: 'u64', maxEntries: 1, pinning: 'by_name' });
export const local = map({ type: BPF_MAP_TYPE_ARRAY, key: 'u32', value: 'u64', maxEntries: 1 });
export const p = SEC('cgroup_view', (ctx) => {
  const v = bpf_map_lookup_elem(shared_counter_map, 0);
  if (v === null) return 1;
  v.value += 1n;
  bpf_seq_printf(ctx.meta.seq, '%llu', v.value);
  return 0;
});`;

/** An in-memory pin directory (the fs layer's bpffs implements MapPins for real). */
function pinDir(): MapPins & { pins: Map<string, BpfMap> } {
  const pins = new Map<string, BpfMap>();
  return {
    pins,
    get: (name) => {
      const m = pins.get(name);
      return m === undefined ? undefined : Handle.of(m);
    },
    pin: (name, map) => void pins.set(name, map.get()),
  };
}

t.test('load: maps are created, programs hold every map of the object, names keep 15 characters', async (t) => {
  const w = world();
  const c = load(w.kernel, OBJ);
  t.same([...c.maps.keys()], ['shared_counter_map', 'local']);
  t.equal(c.map('shared_counter_map').name, 'shared_counter_', 'BPF_OBJ_NAME_LEN - 1');
  const p = c.program('p');
  t.same(p.maps.map((m) => m.name), ['shared_counter_', 'local']);
  t.equal(c.map('local').refs, 2, 'the collection\'s handle and the program\'s reference');
  t.throws(() => c.program('q'), { code: 'ENOENT' });
  t.throws(() => c.map('q'), { code: 'ENOENT' });
  t.same(c.log, [`prog 'p' (cgroup_view): verified`]);
  t.ok(c.heapBytes() > 0);
  c.close();
  c.close();
  t.equal(w.kernel.list('map').length, 0, 'closing drops every map and program nothing else holds');
  t.equal(c.heapBytes(), 0, 'the isolate goes with the last program');
});

t.test('load: pinning by_name pins a new map and reuses the pin next time (libbpf bpf_object__reuse_map)', async (t) => {
  const w = world();
  const pins = pinDir();
  const a = load(w.kernel, OBJ, { pins });
  t.ok(pins.pins.has('shared_counter_map'), 'pinned under its declared name');
  t.notOk(pins.pins.has('local'), 'a map without pinning is not pinned');
  const run = (c: typeof a): string => {
    const { ctx, sink } = iterCtx(w.root);
    c.program('p').run(ctx);
    return sink.text();
  };
  t.equal(run(a), '1');
  a.close();
  const b = load(w.kernel, OBJ, { pins });
  t.equal(b.map('shared_counter_map'), pins.pins.get('shared_counter_map'), 'the pinned map is reused');
  t.equal(run(b), '2', 'with its values');
  b.close();
});

t.test('load: rule reuse-compat: a pinned map of another shape is EINVAL, and nothing is left behind', async (t) => {
  const w = world();
  const pins = pinDir();
  load(w.kernel, OBJ, { pins }).close();
  const before = w.kernel.list('map').length;
  t.throws(() => load(w.kernel, OBJ.replace("value: 'u64', maxEntries: 1, pinning", "value: 'u32', maxEntries: 1, pinning"), { pins }), {
    code: 'EINVAL',
    message: /map 'shared_counter_map': the pinned map of that name is not compatible/,
  });
  t.equal(w.kernel.list('map').length, before);
  t.equal(w.kernel.list('prog').length, 0);
});

t.test('load: from a path; a missing file is ENOENT', async (t) => {
  const w = world();
  const dir = mkdtempSync(path.join(tmpdir(), 'vbpffs-obj-'));
  writeFileSync(path.join(dir, 'counter.ts'), OBJ);
  const c = await loadCollection(w.kernel, path.join(dir, 'counter.ts'));
  t.equal(c.filename, path.join(dir, 'counter.ts'));
  c.close();
  await t.rejects(loadCollection(w.kernel, path.join(dir, 'nope.ts')), { code: 'ENOENT' });
});

t.test('load: limits outside their range are EINVAL', async (t) => {
  const w = world();
  t.throws(() => load(w.kernel, OBJ, { limits: { memoryMiB: 4 } }), { code: 'EINVAL', message: /memoryMiB >= 8/ });
  t.throws(() => load(w.kernel, OBJ, { limits: { deadlineMs: 0 } }), { code: 'EINVAL' });
  t.equal(w.kernel.list('map').length, 0);
});
