import t from 'tap';
import { BPF_F_RDONLY, BPF_F_RDONLY_PROG, BPF_F_WRONLY, BPF_F_WRONLY_PROG, BpfMapType, KMALLOC_MAX_SIZE } from '../uapi';
import { Kernel } from '../progs/kernel';
import { MAP_OPS, bpfObjNameCpy, createMap } from '../progs/maps/create';
import { HashMap, hashMapOps } from '../progs/maps/hash';
import type { MapSpec } from '../progs/maps/map';
import { ValueSchema } from '../progs/maps/schema';

const hashSpec = (over: Partial<MapSpec> = {}): MapSpec => ({ type: BpfMapType.HASH, keySize: 4, valueSize: 8, maxEntries: 8, ...over });
const u32 = ValueSchema.define('u32');
const u64 = ValueSchema.define('u64');

t.test('map_create: an unknown or unsupported map type is EINVAL', (t) => {
  const kernel = new Kernel();
  t.throws(() => createMap(kernel, hashSpec({ type: 99 as BpfMapType })), { code: 'EINVAL' });
  t.throws(() => createMap(kernel, hashSpec({ type: BpfMapType.PERCPU_CGROUP_STORAGE })), { code: 'EINVAL' });
  t.throws(() => createMap(kernel, hashSpec({ type: BpfMapType.UNSPEC })), { code: 'EINVAL' });
  t.end();
});

t.test('map_create: attributes are u32 (EINVAL otherwise)', (t) => {
  const kernel = new Kernel();
  t.throws(() => createMap(kernel, hashSpec({ keySize: -1 })), { code: 'EINVAL' });
  t.throws(() => createMap(kernel, hashSpec({ valueSize: 1.5 })), { code: 'EINVAL' });
  t.throws(() => createMap(kernel, hashSpec({ maxEntries: 2 ** 32 })), { code: 'EINVAL' });
  t.throws(() => createMap(kernel, hashSpec({ flags: -1 })), { code: 'EINVAL' });
  t.end();
});

t.test('map_create: a map is created with an id, and its handle owns the first reference', (t) => {
  const kernel = new Kernel();
  const h = createMap<HashMap>(kernel, hashSpec({ name: 'counts' }));
  const map = h.object;
  t.type(map, HashMap);
  t.equal(map.name, 'counts');
  t.equal(map.typeName, 'hash');
  t.equal(map.refs, 1);
  const again = kernel.getById('map', map.id);
  t.equal(again.object, map);
  again.close();
  h.close();
  t.equal(map.released, true);
  t.end();
});

t.test('bpf_obj_name_cpy: at most 15 characters of [A-Za-z0-9_.], else EINVAL', (t) => {
  const kernel = new Kernel();
  t.equal(createMap(kernel, hashSpec({ name: 'a'.repeat(15) })).object.name, 'a'.repeat(15));
  t.throws(() => createMap(kernel, hashSpec({ name: 'a'.repeat(16) })), { code: 'EINVAL' });
  t.throws(() => createMap(kernel, hashSpec({ name: 'my-map' })), { code: 'EINVAL' });
  t.throws(() => createMap(kernel, hashSpec({ name: 'é' })), { code: 'EINVAL' });
  t.equal(createMap(kernel, hashSpec({ name: 'x_1.y' })).object.name, 'x_1.y');
  t.equal(createMap(kernel, hashSpec()).object.name, '');
  t.equal(bpfObjNameCpy('ok.name_9'), 'ok.name_9');
  t.end();
});

t.test('a refused map never takes an id', (t) => {
  const kernel = new Kernel();
  t.throws(() => createMap(kernel, hashSpec({ name: 'bad name' })), { code: 'EINVAL' });
  t.equal(kernel.mapIdr.size, 0);
  t.equal(createMap(kernel, hashSpec()).object.id, 1);
  t.end();
});

t.test('map_create runs the type\'s alloc_check before the name check (E2BIG wins over a bad name)', (t) => {
  const kernel = new Kernel();
  t.throws(() => createMap(kernel, hashSpec({ name: 'bad name', valueSize: KMALLOC_MAX_SIZE })), { code: 'E2BIG' });
  t.end();
});

t.test('map_create: a key type without a value type is EINVAL', (t) => {
  t.throws(() => createMap(new Kernel(), hashSpec({ btf: { key: u32 } })), { code: 'EINVAL' });
  t.end();
});

t.test('bpf_get_file_flag: BPF_F_RDONLY with BPF_F_WRONLY is EINVAL', (t) => {
  t.throws(() => createMap(new Kernel(), hashSpec({ flags: BPF_F_RDONLY | BPF_F_WRONLY })), { code: 'EINVAL' });
  t.ok(createMap(new Kernel(), hashSpec({ flags: BPF_F_RDONLY })));
  t.end();
});

t.test('map_check_btf: the value type\'s size must equal value_size, the key type\'s key_size (EINVAL)', (t) => {
  const kernel = new Kernel();
  t.throws(() => createMap(kernel, hashSpec({ btf: { key: u32, value: u32 } })), { code: 'EINVAL' });
  t.throws(() => createMap(kernel, hashSpec({ btf: { key: u64, value: u64 } })), { code: 'EINVAL' });
  const map = createMap(kernel, hashSpec({ btf: { key: u32, value: u64 } })).object;
  t.equal(map.keySchema, u32);
  t.equal(map.valueSchema, u64);
  t.end();
});

t.test('map_check_btf: a hash (no map_check_btf of its own) needs a key type with its value type (EINVAL)', (t) => {
  t.throws(() => createMap(new Kernel(), hashSpec({ btf: { value: u64 } })), { code: 'EINVAL' });
  t.end();
});

t.test('map_check_btf: a bpf_spin_lock value cannot be BPF_F_RDONLY_PROG or BPF_F_WRONLY_PROG (EACCES)', (t) => {
  const value = ValueSchema.define({ l: 'bpf_spin_lock', n: 'u32' });
  t.throws(() => createMap(new Kernel(), hashSpec({ flags: BPF_F_RDONLY_PROG, btf: { key: u32, value } })), { code: 'EACCES' });
  t.throws(() => createMap(new Kernel(), hashSpec({ flags: BPF_F_WRONLY_PROG, btf: { key: u32, value } })), { code: 'EACCES' });
  t.ok(createMap(new Kernel(), hashSpec({ btf: { key: u32, value } })).object.hasSpinLock);
  t.end();
});

t.test('map_check_btf: a bpf_spin_lock in a map type that cannot hold one is EOPNOTSUPP', (t) => {
  // A stand-in for a type outside the kernel's spin-lock list, registered for this test only.
  MAP_OPS[BpfMapType.PERCPU_CGROUP_STORAGE] = hashMapOps;
  t.teardown(() => {
    delete MAP_OPS[BpfMapType.PERCPU_CGROUP_STORAGE];
  });
  const value = ValueSchema.define({ l: 'bpf_spin_lock', n: 'u32' });
  t.throws(() => createMap(new Kernel(), hashSpec({ type: BpfMapType.PERCPU_CGROUP_STORAGE, btf: { key: u32, value } })), {
    code: 'EOPNOTSUPP',
  });
  t.end();
});
