import t from 'tap';
import { LOC_SPLIT, ValueSlab } from '../progs';

t.test('slab: slots are value_size rounded up to 8, in buffers that double up to 1 MiB', async (t) => {
  const s = new ValueSlab(12);
  t.equal(s.stride, 16);
  const locs = Array.from({ length: 17 }, () => s.alloc());
  t.same(locs.slice(0, 3), [0, 16, 32]);
  t.equal(locs[16], LOC_SPLIT, 'the 17th slot opens a second buffer');
  t.same(s.buffers.map((b) => b.byteLength), [256, 512]);
  t.ok(s.buffers.every((b) => b instanceof SharedArrayBuffer), 'buffers are shared, so isolates see the same bytes');
  const big = new ValueSlab(1 << 21);
  big.alloc();
  t.equal(big.buffers[0]!.byteLength, 1 << 21, 'a value over 1 MiB gets a buffer of its own size');
});

t.test('slab: a freed slot is reused and zeroed (bpf_map_kzalloc)', async (t) => {
  const s = new ValueSlab(8);
  const a = s.alloc();
  const view = new Uint8Array(s.bufferOf(a), a % LOC_SPLIT, 8);
  view.fill(7);
  t.equal(s.locate(view), a);
  s.free(view);
  const b = s.alloc();
  t.equal(b, a, 'the same slot');
  t.same([...new Uint8Array(s.bufferOf(b), b % LOC_SPLIT, 8)], [0, 0, 0, 0, 0, 0, 0, 0], 'zeroed');
  t.equal(s.locate(new Uint8Array(8)), -1, 'bytes of no slab buffer have no location');
  t.throws(() => s.free(new Uint8Array(8)), { code: 'EINVAL' });
  t.throws(() => new ValueSlab(0), { code: 'EINVAL' });
});

t.test('slab: single() is one buffer its owner carves (an array map), its bytes counted', async (t) => {
  const s = ValueSlab.single(40);
  t.equal(s.buffers.length, 1);
  t.equal(s.bytes, 40);
  t.equal(s.locate(new Uint8Array(s.buffers[0]!, 16, 8)), 16);
});
