import t from 'tap';
import { ValueSchema, copyMapValue, initMapValue, type ArrayView, type ElementsView, type StructType } from '../progs/maps/schema';

const offsets = (s: ValueSchema): Record<string, number> =>
  Object.fromEntries((s.type as StructType).members.map((m) => [m.name, m.offset]));

// Expected numbers are gcc's offsetof/sizeof on x86-64 for the equivalent C structs.
t.test('layout follows C: each member at its alignment, the struct padded to its largest alignment', (t) => {
  const a = ValueSchema.define({ a: 'u8', b: 'u32', c: 'u8' });
  t.same(offsets(a), { a: 0, b: 4, c: 8 });
  t.equal(a.size, 12);
  t.equal(a.align, 4);
  const b = ValueSchema.define({ a: 'u64', b: 'u8' });
  t.same(offsets(b), { a: 0, b: 8 });
  t.equal(b.size, 16);
  const c = ValueSchema.define({ a: 'u8', b: 'u16', c: ['u8', 3] });
  t.same(offsets(c), { a: 0, b: 2, c: 4 });
  t.equal(c.size, 8);
  t.end();
});

t.test('layout follows C for nested structs and arrays of structs', (t) => {
  const d = ValueSchema.define({ a: 'u8', n: { x: 'u8', y: 'u64' }, z: 'u16' });
  t.same(offsets(d), { a: 0, n: 8, z: 24 });
  t.equal(d.size, 32);
  const h = ValueSchema.define({ a: 'u8', g: [{ a: 'u32', b: 'u8' }, 3], t: 'u8' });
  t.same(offsets(h), { a: 0, g: 4, t: 28 });
  t.equal(h.size, 32);
  const e = ValueSchema.define({ wait_ns: 'u64', count: 'u32', hist: ['u64', 8], nested: { a: 'u16', b: 's8' }, lock: 'bpf_spin_lock' });
  t.same(offsets(e), { wait_ns: 0, count: 8, hist: 16, nested: 80, lock: 84 });
  t.equal(e.size, 88);
  t.equal(e.spinLockOffset, 84);
  t.end();
});

t.test('scalar schemas have the integer size; isInt32/isInt64 are btf_type_is_i32 and a 64-bit int', (t) => {
  for (const [name, size] of [['u8', 1], ['s16', 2], ['u32', 4], ['s32', 4], ['u64', 8], ['s64', 8]] as const) {
    t.equal(ValueSchema.define(name).size, size, name);
  }
  t.ok(ValueSchema.define('u32').isInt32());
  t.ok(ValueSchema.define('s32').isInt32());
  t.notOk(ValueSchema.define('u64').isInt32());
  t.notOk(ValueSchema.define({ a: 'u32' }).isInt32());
  t.ok(ValueSchema.define('s64').isInt64());
  t.notOk(ValueSchema.define('u32').isInt64());
  t.equal(ValueSchema.define('u32').spinLockOffset, -1);
  t.end();
});

t.test('bpf_spin_lock: 4 bytes, 4-aligned, its offset is spinLockOffset', (t) => {
  const s = ValueSchema.define({ a: 'u16', l: 'bpf_spin_lock' });
  t.equal(s.spinLockOffset, 4);
  t.equal(s.size, 8);
  t.end();
});

t.test('btf_get_field_type: a second bpf_spin_lock in a value is E2BIG', (t) => {
  t.throws(() => ValueSchema.define({ a: 'bpf_spin_lock', b: 'u32', c: 'bpf_spin_lock' }), { code: 'E2BIG' });
  t.end();
});

t.test('btf_repeat_fields: an array of bpf_spin_lock is EINVAL', (t) => {
  t.throws(() => ValueSchema.define({ a: ['bpf_spin_lock', 2] }), { code: 'EINVAL' });
  t.throws(() => ValueSchema.define(['bpf_spin_lock', 2]), { code: 'EINVAL' });
  t.throws(() => ValueSchema.define({ a: [{ l: 'bpf_spin_lock' }, 2] }), { code: 'EINVAL' });
  t.end();
});

t.test('a bpf_spin_lock inside a nested struct is EINVAL (only top-level locks are locks on every kernel)', (t) => {
  t.throws(() => ValueSchema.define({ a: 'u32', n: { l: 'bpf_spin_lock' } }), { code: 'EINVAL' });
  t.end();
});

t.test('a bare bpf_spin_lock value has no lock member and is EINVAL', (t) => {
  t.throws(() => ValueSchema.define('bpf_spin_lock'), { code: 'EINVAL' });
  t.end();
});

t.test('malformed descriptions are EINVAL', (t) => {
  t.throws(() => ValueSchema.define('u128' as never), { code: 'EINVAL' });
  t.throws(() => ValueSchema.define('toString' as never), { code: 'EINVAL' });
  t.throws(() => ValueSchema.define({}), { code: 'EINVAL' });
  t.throws(() => ValueSchema.define({ a: ['u8', 0] }), { code: 'EINVAL' });
  t.throws(() => ValueSchema.define({ a: ['u8', 1.5] }), { code: 'EINVAL' });
  t.throws(() => ValueSchema.define({ a: ['u8'] } as never), { code: 'EINVAL' });
  t.throws(() => ValueSchema.define({ 'bad-name': 'u8' }), { code: 'EINVAL' });
  t.throws(() => ValueSchema.define(JSON.parse('{"constructor":"u8"}')), { code: 'EINVAL' });
  t.throws(() => ValueSchema.define({ a: 7 } as never), { code: 'EINVAL' });
  t.throws(() => ValueSchema.define(null as never), { code: 'EINVAL' });
  t.end();
});

t.test('MAX_RESOLVE_DEPTH: types nested more than 32 deep are E2BIG; values over 4 MiB are E2BIG', (t) => {
  let desc: unknown = 'u8';
  for (let i = 0; i < 40; i++) desc = { x: desc };
  t.throws(() => ValueSchema.define(desc as never), { code: 'E2BIG' });
  t.throws(() => ValueSchema.define(['u64', 1 << 20]), { code: 'E2BIG' });
  t.throws(() => ValueSchema.define({ a: ['u8', 1 << 22], b: 'u8' }), { code: 'E2BIG' });
  t.end();
});

t.test('views read and write the value bytes in place, little-endian, u64 as bigint', (t) => {
  const s = ValueSchema.define({ wait_ns: 'u64', count: 'u32', d: 's16', hist: ['u64', 4], nested: { a: 'u16', b: 's8' } });
  const bytes = s.zero();
  const v = s.view<{ wait_ns: bigint; count: number; d: number; hist: ArrayView<bigint>; nested: { a: number; b: number } }>(bytes);
  v.wait_ns = 2n ** 60n + 1n;
  v.count = 0x01020304;
  v.d = -2;
  v.hist[2] = 7n;
  v.nested.b = -3;
  v.nested.a = 0xbeef;
  const dv = new DataView(bytes.buffer);
  t.equal(dv.getBigUint64(0, true), 2n ** 60n + 1n);
  t.same([...bytes.subarray(8, 12)], [4, 3, 2, 1]);
  t.equal(dv.getInt16(12, true), -2);
  t.equal(v.d, -2);
  t.equal(dv.getBigUint64(16 + 16, true), 7n);
  t.equal(v.hist.length, 4);
  t.same([...v.hist], [0n, 0n, 7n, 0n]);
  t.equal(v.nested.b, -3);
  t.equal(v.nested.a, 0xbeef);
  // A second view over the same bytes sees the writes: nothing is cached.
  t.equal(s.view<{ count: number }>(bytes).count, 0x01020304);
  v.wait_ns = 5 as unknown as bigint;
  t.equal(v.wait_ns, 5n, 'a number written to a u64 is converted');
  t.end();
});

t.test('byte arrays are live typed arrays; views work at an offset and refuse short buffers with EINVAL', (t) => {
  const s = ValueSchema.define({ comm: ['u8', 4], sb: ['s8', 2], id: 'u32' });
  const buf = new Uint8Array(4 + s.size);
  const v = s.view<{ comm: Uint8Array; sb: Int8Array; id: number }>(buf, 4);
  t.type(v.comm, Uint8Array);
  t.type(v.sb, Int8Array);
  v.comm[1] = 0x41;
  v.sb[0] = -1;
  v.id = 9;
  t.equal(buf[5], 0x41);
  t.equal(buf[8], 0xff);
  t.equal(new DataView(buf.buffer).getUint32(4 + 8, true), 9);
  t.throws(() => s.view(new Uint8Array(s.size - 1)), { code: 'EINVAL' });
  t.throws(() => s.view(buf, 5), { code: 'EINVAL' });
  t.end();
});

t.test('views of arrays of structs give nested views; aggregates can be assigned from JSON-like values', (t) => {
  const s = ValueSchema.define({ g: [{ a: 'u32', b: 'u8' }, 2], pair: { x: 'u16', y: 'u16' }, arr: ['u32', 2] });
  const bytes = s.zero();
  const v = s.view<{ g: ElementsView<{ a: number; b: number }>; pair: unknown; arr: unknown }>(bytes);
  v.g.get(1)!.a = 5;
  t.equal(s.view<{ g: ElementsView<{ a: number }> }>(bytes).g.get(1)!.a, 5);
  v.pair = { x: 1, y: 2 };
  v.arr = [3, 4];
  v.g.set(0, { a: 1, b: 2 });
  t.same(s.toJson(bytes), { g: [{ a: 1, b: 2 }, { a: 5, b: 0 }], pair: { x: 1, y: 2 }, arr: [3, 4] });
  t.end();
});

t.test('array views are made per access, not per element: a 1,000,000-element array is a typed array or a get(i) view', (t) => {
  const s = ValueSchema.define({ n: 'u32', a: ['u32', 1_000_000] });
  const g = ValueSchema.define({ g: [{ x: 'u16', y: 'u8' }, 1_000_000] });
  t.equal(s.size, 4 + 4_000_000);
  const bytes = s.zero();
  const v = s.view<{ a: Uint32Array }>(bytes);
  t.type(v.a, Uint32Array);
  t.equal(v.a.length, 1_000_000);
  v.a[999_999] = 0xdeadbeef;
  v.a[0] = 7;
  const dv = new DataView(bytes.buffer);
  t.equal(dv.getUint32(4 + 4 * 999_999, true), 0xdeadbeef, 'the last element is the last 4 bytes');
  t.equal(dv.getUint32(4, true), 7);
  t.equal(dv.getUint32(0, true), 0, 'n is untouched');
  const gb = g.zero();
  const gv = g.view<{ g: ElementsView<{ x: number; y: number }> }>(gb);
  t.equal(gv.g.length, 1_000_000);
  gv.g.get(999_999)!.y = 9;
  t.equal(gb[4 * 999_999 + 2], 9, 'struct element i is at i * sizeof(elem)');
  t.end();
});

t.test('aligned integer arrays are typed arrays of their element type over the same bytes', (t) => {
  const s = ValueSchema.define({ a: ['s16', 2], b: ['u32', 2], c: ['s32', 1], d: ['u64', 2], e: ['s64', 1], f: ['u16', 1] });
  const bytes = s.zero();
  const v = s.view<{ a: Int16Array; b: Uint32Array; c: Int32Array; d: BigUint64Array; e: BigInt64Array; f: Uint16Array }>(bytes);
  t.type(v.a, Int16Array);
  t.type(v.b, Uint32Array);
  t.type(v.c, Int32Array);
  t.type(v.d, BigUint64Array);
  t.type(v.e, BigInt64Array);
  t.type(v.f, Uint16Array);
  v.a[1] = -2;
  v.d[1] = 2n ** 64n - 1n;
  v.e[0] = -3n;
  const dv = new DataView(bytes.buffer);
  t.equal(dv.getInt16(2, true), -2);
  t.equal(dv.getBigUint64(24, true), 2n ** 64n - 1n);
  t.equal(dv.getBigInt64(32, true), -3n);
  t.throws(() => {
    v.d[0] = 1 as never;
  }, TypeError, 'a BigUint64Array takes bigints only');
  t.end();
});

t.test('an integer array at an unaligned address is an indexed view over the same bytes', (t) => {
  const s = ValueSchema.define({ a: ['u32', 3] });
  const buf = new Uint8Array(1 + s.size);
  const a = s.view<{ a: ArrayView<number> & ElementsView<number> }>(buf, 1).a;
  t.notOk(a instanceof Uint32Array);
  a[1] = 0x01020304;
  t.same([...buf.subarray(5, 9)], [4, 3, 2, 1]);
  t.equal(a[1], 0x01020304);
  t.equal(a.get(1), 0x01020304);
  a.set(2, 5);
  t.equal(a.length, 3);
  t.same([...a], [0, 0x01020304, 5]);
  t.equal(a[3], undefined, 'out of range reads undefined');
  t.equal(a.get(-1), undefined);
  t.equal(a.get(1.5), undefined);
  t.equal((a as unknown as Record<string, unknown>)['01'], undefined, 'only canonical indices index');
  a[3] = 9;
  a.set(-1, 9);
  t.same([...a], [0, 0x01020304, 5], 'out of range writes nothing');
  t.throws(() => {
    (a as unknown as Record<string, unknown>).foo = 1;
  }, TypeError, 'no other properties');
  const big = ValueSchema.define({ x: 'u32', h: ['u64', 2] }).view<{ h: ArrayView<bigint> }>(new Uint8Array(28), 4).h;
  big[1] = 5n;
  t.equal(big[1], 5n, 'a u64 array at a 4-aligned but not 8-aligned address');
  t.end();
});

t.test('a program writing NaN, Infinity, undefined or an object to a 64-bit field gets EINVAL', (t) => {
  const s = ValueSchema.define({ a: 'u64', b: 's64' });
  const v = s.view<{ a: unknown; b: unknown }>(s.zero());
  for (const bad of [Number.NaN, Infinity, undefined, null, {}, 'abc', Symbol('x')]) {
    t.throws(() => {
      v.a = bad;
    }, { code: 'EINVAL' }, String(bad));
  }
  t.throws(() => {
    v.b = -Infinity;
  }, { code: 'EINVAL' });
  v.a = '12';
  t.equal(v.a, 12n, 'a numeric string is a number');
  v.b = -1.9;
  t.equal(v.b, -1n, 'a number is truncated');
  v.a = true;
  t.equal(v.a, 1n);
  t.end();
});

t.test('a scalar schema views as .value', (t) => {
  const s = ValueSchema.define('s64');
  const bytes = s.zero();
  const v = s.view<{ value: bigint }>(bytes);
  v.value = -5n;
  t.equal(v.value, -5n);
  t.equal(new DataView(bytes.buffer).getBigInt64(0, true), -5n);
  t.end();
});

t.test('the lock member is a SpinLockView; plain writes never touch the lock word', (t) => {
  const s = ValueSchema.define({ n: 'u32', lock: 'bpf_spin_lock' });
  const bytes = s.zero();
  const v = s.view<{ n: number; lock: { val: number; target: { offset: number } } }>(bytes);
  v.lock.val = 1;
  t.equal(new DataView(bytes.buffer).getUint32(4, true), 1);
  t.equal(v.lock.target.offset, 4);
  (v as { lock: unknown }).lock = { val: 7 };
  t.equal(v.lock.val, 1, 'assigning the lock member is ignored');
  s.fromJson({ n: 3 }, bytes);
  t.equal(v.lock.val, 1, 'fromJson into existing bytes keeps the lock word');
  t.end();
});

t.test('JSON round trip: u64 as a number when safe, as a decimal string beyond 2^53', (t) => {
  const s = ValueSchema.define({ big: 'u64', small: 'u64', neg: 's64', i: 's32', h: ['u16', 2] });
  const json = { big: '18446744073709551615', small: 42, neg: '-9223372036854775808', i: -7, h: [1, 65535] };
  const bytes = s.fromJson(json);
  t.same(s.toJson(bytes), json);
  t.equal(new DataView(bytes.buffer).getBigUint64(0, true), 2n ** 64n - 1n);
  const safe = s.fromJson({ big: Number.MAX_SAFE_INTEGER });
  t.equal((s.toJson(safe) as { big: number }).big, Number.MAX_SAFE_INTEGER);
  const over = s.fromJson({ big: '9007199254740993' });
  t.equal((s.toJson(over) as { big: string }).big, '9007199254740993');
  t.end();
});

t.test('fromJson accepts numbers, decimal and 0x strings and bigints; missing members and trailing elements are zero', (t) => {
  const s = ValueSchema.define({ a: 'u64', b: 'u32', c: ['u8', 3], d: { x: 'u8' } });
  const bytes = s.fromJson({ a: 0x10n, b: '0x20', c: [1] });
  t.same(s.toJson(bytes), { a: 16, b: 32, c: [1, 0, 0], d: { x: 0 } });
  t.same(s.fromJson({ c: new Uint8Array([9, 8, 7]) }).subarray(12, 15), new Uint8Array([9, 8, 7]));
  t.equal(ValueSchema.define('u32').toJson(ValueSchema.define('u32').fromJson(7)), 7);
  t.end();
});

t.test('fromJson refuses what does not fit with EINVAL', (t) => {
  const s = ValueSchema.define({ a: 'u8', b: 's8', c: ['u8', 2], l: 'bpf_spin_lock' });
  t.throws(() => s.fromJson({ a: 256 }), { code: 'EINVAL' });
  t.throws(() => s.fromJson({ a: -1 }), { code: 'EINVAL' });
  t.throws(() => s.fromJson({ b: 128 }), { code: 'EINVAL' });
  t.throws(() => s.fromJson({ a: 1.5 }), { code: 'EINVAL' });
  t.throws(() => s.fromJson({ a: 'x' }), { code: 'EINVAL' });
  t.throws(() => s.fromJson({ a: 2 ** 60 }), { code: 'EINVAL' }, 'an inexact number');
  t.throws(() => s.fromJson({ zz: 1 }), { code: 'EINVAL' });
  t.throws(() => s.fromJson({ c: [1, 2, 3] }), { code: 'EINVAL' });
  t.throws(() => s.fromJson({ c: 5 }), { code: 'EINVAL' });
  t.throws(() => s.fromJson([1]), { code: 'EINVAL' });
  t.throws(() => s.fromJson({ l: 5 }), { code: 'EINVAL' });
  t.throws(() => s.fromJson({}, new Uint8Array(3)), { code: 'EINVAL' });
  t.throws(() => s.toJson(new Uint8Array(3)), { code: 'EINVAL' });
  t.throws(() => ValueSchema.define('u64').fromJson('1e3'), { code: 'EINVAL' });
  t.throws(() => ValueSchema.define('u32').fromJson(undefined), { code: 'EINVAL' });
  t.same(s.toJson(s.fromJson({ l: { val: 3 } })), { a: 0, b: 0, c: [0, 0], l: { val: 0 } }, 'the lock is never written');
  t.end();
});

t.test('copy_map_value skips the lock word; check_and_init_map_value zeroes it', (t) => {
  const s = ValueSchema.define({ a: 'u32', l: 'bpf_spin_lock', b: 'u32' });
  const src = new Uint8Array(12).fill(0xaa);
  const dst = new Uint8Array(12).fill(0x11);
  copyMapValue(dst, src, s);
  t.same([...dst], [0xaa, 0xaa, 0xaa, 0xaa, 0x11, 0x11, 0x11, 0x11, 0xaa, 0xaa, 0xaa, 0xaa]);
  initMapValue(dst, s);
  t.same([...dst.subarray(4, 8)], [0, 0, 0, 0]);
  const plain = new Uint8Array(4);
  copyMapValue(plain, new Uint8Array([1, 2, 3, 4]), undefined);
  t.same([...plain], [1, 2, 3, 4]);
  initMapValue(plain, undefined);
  t.same([...plain], [1, 2, 3, 4]);
  t.end();
});
