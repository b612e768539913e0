import t from 'tap';
import {
  BPF_ANY,
  BPF_EXIST,
  BPF_F_INNER_MAP,
  BPF_F_LOCK,
  BPF_F_MMAPABLE,
  BPF_F_NO_PREALLOC,
  BPF_F_PRESERVE_ELEMS,
  BPF_F_RDONLY_PROG,
  BPF_F_WRONLY_PROG,
  BPF_NOEXIST,
  BpfMapType,
  ERRNO,
} from '../uapi';
import { Kernel } from '../progs/kernel';
import { ArrayMap } from '../progs/maps/array';
import { createMap } from '../progs/maps/create';
import type { MapSpec } from '../progs/maps/map';
import { ValueSchema } from '../progs/maps/schema';

const spec = (over: Partial<MapSpec> = {}): MapSpec => ({ type: BpfMapType.ARRAY, keySize: 4, valueSize: 4, maxEntries: 4, ...over });
const array = (over: Partial<MapSpec> = {}): ArrayMap => createMap<ArrayMap>(new Kernel(), spec(over)).object;
const u32 = (n: number): Uint8Array => new Uint8Array(new Uint32Array([n]).buffer);

t.test('array_map_alloc_check: max_entries 0, key_size other than 4 or value_size 0 is EINVAL', (t) => {
  t.throws(() => array({ maxEntries: 0 }), { code: 'EINVAL' });
  t.throws(() => array({ keySize: 8 }), { code: 'EINVAL' });
  t.throws(() => array({ valueSize: 0 }), { code: 'EINVAL' });
  t.end();
});

t.test('array_map_alloc_check: flags outside ARRAY_CREATE_FLAG_MASK or both PROG access flags are EINVAL', (t) => {
  t.throws(() => array({ flags: BPF_F_NO_PREALLOC }), { code: 'EINVAL' });
  t.throws(() => array({ flags: BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG }), { code: 'EINVAL' });
  t.ok(array({ flags: BPF_F_MMAPABLE | BPF_F_INNER_MAP | BPF_F_RDONLY_PROG }));
  t.end();
});

t.test('array_map_alloc_check: BPF_F_PRESERVE_ELEMS is only for perf event arrays (EINVAL)', (t) => {
  t.throws(() => array({ flags: BPF_F_PRESERVE_ELEMS }), { code: 'EINVAL' });
  t.end();
});

t.test('array_map_alloc_check: value_size above INT_MAX is E2BIG', (t) => {
  t.throws(() => array({ valueSize: 2 ** 31 }), { code: 'E2BIG' });
  t.end();
});

t.test('an array over vbpffs\' 1 GiB per map is ENOMEM, as a failed vmalloc is', (t) => {
  t.throws(() => array({ valueSize: 1 << 20, maxEntries: 1025 }), { code: 'ENOMEM' });
  t.end();
});

t.test('array_map_check_btf: the key type must be a 32-bit int; a value type needs a key type', (t) => {
  const value = ValueSchema.define('u32');
  t.throws(() => array({ btf: { value } }), { code: 'EINVAL' });
  t.throws(() => array({ btf: { key: ValueSchema.define({ a: 'u16', b: 'u16' }), value } }), { code: 'EINVAL' });
  t.ok(array({ btf: { key: ValueSchema.define('s32'), value } }));
  t.end();
});

t.test('elements exist from creation, zeroed; an index past max_entries is ENOENT on lookup', (t) => {
  const m = array();
  t.same(m.lookupElem(3), new Uint8Array(4));
  t.throws(() => m.lookupElem(4), { code: 'ENOENT' });
  t.end();
});

t.test('array_map_update_elem: flags > BPF_EXIST EINVAL, then index >= max_entries E2BIG, then BPF_NOEXIST EEXIST', (t) => {
  const m = array();
  t.throws(() => m.updateElem(9, u32(1), BPF_NOEXIST | BPF_EXIST), { code: 'EINVAL' });
  t.throws(() => m.updateElem(4, u32(1), BPF_NOEXIST), { code: 'E2BIG' });
  t.throws(() => m.updateElem(0, u32(1), BPF_NOEXIST), { code: 'EEXIST' });
  m.updateElem(0, u32(7), BPF_EXIST);
  m.updateElem(1, u32(8), BPF_ANY);
  t.same(m.lookupElem(0), u32(7));
  t.same(m.lookupElem(1), u32(8));
  t.end();
});

t.test('array_map_delete_elem: deleting from an array is EINVAL', (t) => {
  const m = array();
  t.throws(() => m.deleteElem(0), { code: 'EINVAL' });
  t.throws(() => m.deleteElem(100), { code: 'EINVAL' });
  t.equal(m.bpfMapDeleteElem(0), -ERRNO.EINVAL);
  t.end();
});

t.test('array_map_get_next_key: 0 first and after an out-of-range index, i+1 next, ENOENT after the last', (t) => {
  const m = array({ maxEntries: 3 });
  t.same(m.getNextKey(null), u32(0));
  t.same(m.getNextKey(0), u32(1));
  t.same(m.getNextKey(1), u32(2));
  t.throws(() => m.getNextKey(2), { code: 'ENOENT' });
  t.same(m.getNextKey(77), u32(0));
  t.end();
});

t.test('BPF_F_LOCK needs a bpf_spin_lock (EINVAL); with one, the lock word is kept and masked on lookup', (t) => {
  const plain = array();
  t.throws(() => plain.updateElem(0, u32(1), BPF_F_LOCK), { code: 'EINVAL' });
  t.throws(() => plain.lookupElem(0, BPF_F_LOCK), { code: 'EINVAL' });
  t.throws(() => plain.lookupElem(0, BPF_EXIST), { code: 'EINVAL' });
  t.equal(plain.bpfMapUpdateElem(0, u32(1), BPF_F_LOCK), -ERRNO.EINVAL);
  const value = ValueSchema.define({ l: 'bpf_spin_lock', n: 'u32' });
  const m = array({ valueSize: 8, btf: { key: ValueSchema.define('u32'), value } });
  const live = m.bpfMapLookupElem(0)!;
  live[0] = 1;
  m.updateElem(0, new Uint8Array(8).fill(9), BPF_F_LOCK);
  t.same([...live], [1, 0, 0, 0, 9, 9, 9, 9]);
  t.same([...m.lookupElem(0, BPF_F_LOCK)], [0, 0, 0, 0, 9, 9, 9, 9]);
  t.end();
});

t.test('keys must be 4 bytes or an integer (EINVAL); values must be value_size bytes (EINVAL)', (t) => {
  const m = array();
  t.throws(() => m.lookupElem(new Uint8Array(2)), { code: 'EINVAL' });
  t.throws(() => m.updateElem(0, new Uint8Array(5)), { code: 'EINVAL' });
  t.same(m.lookupElem(new Uint8Array([2, 0, 0, 0])), new Uint8Array(4));
  t.end();
});

t.test('bpf_map_lookup_elem gives the live slot (null past the end); helper updates return errnos', (t) => {
  const m = array({ valueSize: 3 });
  const live = m.bpfMapLookupElem(2)!;
  t.equal(live.length, 3);
  live[1] = 5;
  t.same([...m.lookupElem(2)], [0, 5, 0]);
  t.equal(m.bpfMapLookupElem(4), null);
  t.equal(m.bpfMapLookupElem('x'), null);
  t.equal(m.bpfMapUpdateElem(4, new Uint8Array(3), BPF_ANY), -ERRNO.E2BIG);
  t.equal(m.bpfMapUpdateElem(0, new Uint8Array(3), BPF_NOEXIST), -ERRNO.EEXIST);
  t.equal(m.bpfMapUpdateElem(0, new Uint8Array(1), BPF_ANY), -ERRNO.EINVAL);
  t.equal(m.bpfMapUpdateElem(0, new Uint8Array([1, 2, 3]), BPF_ANY), 0);
  t.same([...m.lookupElem(0)], [1, 2, 3]);
  t.equal(m.elemSize, 8);
  t.end();
});

t.test('BPF_F_RDONLY_PROG: program updates are EACCES', (t) => {
  const m = array({ flags: BPF_F_RDONLY_PROG });
  t.equal(m.bpfMapUpdateElem(0, u32(1), BPF_ANY), -ERRNO.EACCES);
  m.updateElem(0, u32(1));
  t.same(m.lookupElem(0), u32(1));
  t.end();
});

t.test('array_map_mem_usage: the whole array, page-aligned when BPF_F_MMAPABLE', (t) => {
  const m = array({ valueSize: 12, maxEntries: 10 });
  t.equal(m.memUsage() - array({ valueSize: 12, maxEntries: 0 + 1 }).memUsage(), 9 * 16);
  const mm = array({ flags: BPF_F_MMAPABLE, valueSize: 12, maxEntries: 10 });
  t.equal(mm.memUsage() % 4096, 0);
  t.end();
});

t.test('closing the last handle frees the array map (its id is gone)', (t) => {
  const kernel = new Kernel();
  const h = createMap<ArrayMap>(kernel, spec());
  const id = h.object.id;
  h.close();
  t.throws(() => kernel.getById('map', id), { code: 'ENOENT' });
  t.end();
});
