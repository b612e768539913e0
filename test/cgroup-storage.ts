import t from 'tap';
import {
  BPF_ANY,
  BPF_EXIST,
  BPF_F_LOCK,
  BPF_F_NO_PREALLOC,
  BPF_F_NUMA_NODE,
  BPF_F_RDONLY,
  BPF_F_RDONLY_PROG,
  BPF_F_WRONLY_PROG,
  BPF_LOCAL_STORAGE_MAX_VALUE_SIZE,
  BPF_NOEXIST,
  BpfMapType,
} from '../uapi';
import { Kernel } from '../progs/kernel';
import {
  CgroupStorageMap,
  bpfGetLocalStorage,
  cgroupStorageFree,
  cgroupStorages,
  cgroupStoragesAlloc,
} from '../progs/maps/cgroup-storage';
import { createMap } from '../progs/maps/create';
import type { MapSpec } from '../progs/maps/map';
import { ValueSchema } from '../progs/maps/schema';
import { KernfsNode } from '../tags/kernfs-node';

// Attach types (enum bpf_attach_type): BPF_CGROUP_INET_INGRESS 0, BPF_CGROUP_INET_EGRESS 1.
const INGRESS = 0;
const EGRESS = 1;

const spec = (over: Partial<MapSpec> = {}): MapSpec => ({ type: BpfMapType.CGROUP_STORAGE, keySize: 16, valueSize: 8, maxEntries: 0, ...over });
const storageMap = (over: Partial<MapSpec> = {}, kernel = new Kernel()): CgroupStorageMap => createMap<CgroupStorageMap>(kernel, spec(over)).object;
const isolatedKey = (id: number, type: number): Uint8Array => {
  const k = new Uint8Array(16);
  const dv = new DataView(k.buffer);
  dv.setBigUint64(0, BigInt(id), true);
  dv.setUint32(8, type, true);
  return k;
};
const tree = () => {
  const root = new KernfsNode(1, '', null);
  const a = new KernfsNode(10, 'a', root);
  const b = new KernfsNode(11, 'b', root);
  return { root, a, b };
};

t.test('cgroup_storage_map_alloc: key_size must be 16 (bpf_cgroup_storage_key) or 8 (cgroup id), else EINVAL', (t) => {
  t.ok(storageMap({ keySize: 16 }).attachTypeIsolated);
  t.notOk(storageMap({ keySize: 8 }).attachTypeIsolated);
  t.throws(() => storageMap({ keySize: 4 }), { code: 'EINVAL' });
  t.throws(() => storageMap({ keySize: 12 }), { code: 'EINVAL' });
  t.end();
});

t.test('cgroup_storage_map_alloc: value_size 0 is EINVAL, above BPF_LOCAL_STORAGE_MAX_VALUE_SIZE E2BIG', (t) => {
  t.throws(() => storageMap({ valueSize: 0 }), { code: 'EINVAL' });
  t.throws(() => storageMap({ valueSize: BPF_LOCAL_STORAGE_MAX_VALUE_SIZE + 1 }), { code: 'E2BIG' });
  t.ok(storageMap({ valueSize: BPF_LOCAL_STORAGE_MAX_VALUE_SIZE }));
  t.end();
});

t.test('cgroup_storage_map_alloc: flags outside BPF_F_NUMA_NODE | BPF_F_ACCESS_MASK are EINVAL', (t) => {
  t.throws(() => storageMap({ flags: BPF_F_NO_PREALLOC }), { code: 'EINVAL' });
  t.throws(() => storageMap({ flags: BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG }), { code: 'EINVAL' });
  t.ok(storageMap({ flags: BPF_F_NUMA_NODE | BPF_F_RDONLY }));
  t.end();
});

t.test('cgroup_storage_map_alloc: "max_entries is not used and enforced to be 0" (EINVAL otherwise)', (t) => {
  t.throws(() => storageMap({ maxEntries: 1 }), { code: 'EINVAL' });
  t.end();
});

t.test('cgroup_storage_check_btf: isolated key is struct {u64 at 0, u32 at 8}, shared key a 64-bit int, else EINVAL', (t) => {
  const value = ValueSchema.define('u64');
  t.ok(storageMap({ btf: { key: ValueSchema.define({ cgroup_inode_id: 'u64', attach_type: 'u32' }), value } }));
  t.throws(() => storageMap({ btf: { key: ValueSchema.define({ a: 'u32', b: 'u64' }), value } }), { code: 'EINVAL' });
  t.throws(() => storageMap({ btf: { key: ValueSchema.define({ a: 'u64', b: 'u16', c: 'u16' }), value } }), { code: 'EINVAL' });
  t.throws(() => storageMap({ btf: { key: ValueSchema.define({ a: 'u64', b: ['u8', 4] }), value } }), { code: 'EINVAL' });
  t.throws(() => storageMap({ btf: { value } }), { code: 'EINVAL' }, 'no key type');
  t.ok(storageMap({ keySize: 8, btf: { key: ValueSchema.define('u64'), value } }));
  t.throws(() => storageMap({ keySize: 8, btf: { key: ValueSchema.define({ a: 'u32', b: 'u32' }), value } }), { code: 'EINVAL' });
  t.throws(() => storageMap({ keySize: 8, btf: { value } }), { code: 'EINVAL' });
  t.end();
});

t.test('bpf_cgroup_storages_alloc: attaching allocates a zeroed storage once per (cgroup, attach type)', (t) => {
  const { a } = tree();
  const m = storageMap();
  const first = cgroupStoragesAlloc(m, a, INGRESS);
  t.equal(first.created, true);
  t.same(first.storage.value, new Uint8Array(8));
  const again = cgroupStoragesAlloc(m, a, INGRESS);
  t.equal(again.created, false);
  t.equal(again.storage, first.storage);
  const egress = cgroupStoragesAlloc(m, a, EGRESS);
  t.equal(egress.created, true, 'an isolated map keeps one storage per attach type');
  t.equal(m.count, 2);
  t.same(cgroupStorages(a), [first.storage, egress.storage]);
  t.end();
});

t.test('a shared (8-byte key) map keeps one storage per cgroup across attach types', (t) => {
  const { a } = tree();
  const m = storageMap({ keySize: 8 });
  const ingress = cgroupStoragesAlloc(m, a, INGRESS);
  const egress = cgroupStoragesAlloc(m, a, EGRESS);
  t.equal(egress.created, false);
  t.equal(egress.storage, ingress.storage);
  t.equal(bpfGetLocalStorage(m, a, EGRESS, 0), ingress.storage.value);
  t.same(m.getNextKey(null), new Uint8Array([10, 0, 0, 0, 0, 0, 0, 0]));
  t.same(m.lookupElem(10), new Uint8Array(8));
  t.same(m.lookupElem({ cgroup_inode_id: 10 }), new Uint8Array(8), 'a struct-like key without attach_type');
  t.end();
});

t.test('bpf_get_local_storage: flags must be 0 (EINVAL); it returns the live storage bound at attach', (t) => {
  const { a, b } = tree();
  const m = storageMap();
  const { storage } = cgroupStoragesAlloc(m, a, INGRESS);
  t.throws(() => bpfGetLocalStorage(m, a, INGRESS, 1), { code: 'EINVAL' });
  const live = bpfGetLocalStorage(m, a, INGRESS, 0)!;
  t.equal(live, storage.value);
  live[0] = 42;
  t.equal(m.lookupElem(isolatedKey(10, INGRESS))[0], 42);
  t.equal(bpfGetLocalStorage(m, b, INGRESS, 0), null, 'nothing was attached to b');
  t.equal(bpfGetLocalStorage(m, a, EGRESS, 0), null);
  t.end();
});

t.test('userspace cannot create storage: update of a missing key is ENOENT', (t) => {
  const m = storageMap();
  t.throws(() => m.updateElem(isolatedKey(10, INGRESS), new Uint8Array(8)), { code: 'ENOENT' });
  t.throws(() => m.updateElem(isolatedKey(10, INGRESS), new Uint8Array(8), BPF_EXIST), { code: 'ENOENT' });
  t.throws(() => m.lookupElem(isolatedKey(10, INGRESS)), { code: 'ENOENT' });
  t.end();
});

t.test('cgroup_storage_update_elem: flags outside BPF_F_LOCK | BPF_EXIST (so BPF_NOEXIST too) are EINVAL', (t) => {
  const { a } = tree();
  const m = storageMap();
  cgroupStoragesAlloc(m, a, INGRESS);
  const key = isolatedKey(10, INGRESS);
  t.throws(() => m.updateElem(key, new Uint8Array(8), BPF_NOEXIST), { code: 'EINVAL' });
  t.throws(() => m.updateElem(key, new Uint8Array(8), 8), { code: 'EINVAL' });
  t.throws(() => m.updateElem(key, new Uint8Array(8), BPF_F_LOCK), { code: 'EINVAL' }, 'no bpf_spin_lock in the value');
  m.updateElem(key, new Uint8Array(8).fill(3), BPF_EXIST);
  m.updateElem({ cgroup_inode_id: 10, attach_type: INGRESS }, new Uint8Array(8).fill(4), BPF_ANY);
  t.same(m.lookupElem(key), new Uint8Array(8).fill(4));
  t.throws(() => m.updateElem(key, new Uint8Array(3)), { code: 'EINVAL' });
  t.end();
});

t.test('with a bpf_spin_lock: BPF_F_LOCK keeps the lock word, a plain update installs it zeroed', (t) => {
  const { a } = tree();
  const value = ValueSchema.define({ l: 'bpf_spin_lock', n: 'u32' });
  const m = storageMap({ btf: { key: ValueSchema.define({ id: 'u64', type: 'u32' }), value } });
  const { storage } = cgroupStoragesAlloc(m, a, INGRESS);
  storage.value[0] = 1;
  const key = isolatedKey(10, INGRESS);
  m.updateElem(key, new Uint8Array(8).fill(5), BPF_F_LOCK);
  t.same([...storage.value], [1, 0, 0, 0, 5, 5, 5, 5]);
  t.same([...m.lookupElem(key, BPF_F_LOCK)], [0, 0, 0, 0, 5, 5, 5, 5], 'lookups mask the lock word');
  m.updateElem(key, new Uint8Array(8).fill(6));
  t.same([...storage.value], [0, 0, 0, 0, 6, 6, 6, 6]);
  t.throws(() => m.lookupElem(key, BPF_EXIST), { code: 'EINVAL' });
  t.end();
});

t.test('cgroup_storage_delete_elem: delete is always EINVAL', (t) => {
  const { a } = tree();
  const m = storageMap();
  cgroupStoragesAlloc(m, a, INGRESS);
  t.throws(() => m.deleteElem(isolatedKey(10, INGRESS)), { code: 'EINVAL' });
  t.throws(() => m.deleteElem(isolatedKey(99, INGRESS)), { code: 'EINVAL' });
  t.equal(m.count, 1);
  t.end();
});

t.test('cgroup_storage_get_next_key: newest first (list_add), a key not in the map is ENOENT, ENOENT after the last', (t) => {
  const { a, b } = tree();
  const m = storageMap();
  t.throws(() => m.getNextKey(null), { code: 'ENOENT' });
  cgroupStoragesAlloc(m, a, INGRESS);
  cgroupStoragesAlloc(m, b, EGRESS);
  t.same(m.getNextKey(null), isolatedKey(11, EGRESS));
  t.same(m.getNextKey(isolatedKey(11, EGRESS)), isolatedKey(10, INGRESS));
  t.throws(() => m.getNextKey(isolatedKey(10, INGRESS)), { code: 'ENOENT' });
  t.throws(() => m.getNextKey(isolatedKey(12, INGRESS)), { code: 'ENOENT' });
  t.end();
});

t.test('storage outlives detach and is freed with the cgroup (cgroup_bpf_release)', (t) => {
  const { a, b } = tree();
  const m = storageMap();
  const { storage } = cgroupStoragesAlloc(m, a, INGRESS);
  cgroupStoragesAlloc(m, b, INGRESS);
  a.kill(); // rmdir; the last reference goes and the cgroup is released
  t.equal(a.released, true);
  t.equal(storage.linked, false);
  t.throws(() => m.lookupElem(isolatedKey(10, INGRESS)), { code: 'ENOENT' });
  t.equal(m.count, 1);
  t.same(cgroupStorages(a), []);
  t.throws(() => cgroupStoragesAlloc(m, a, INGRESS), { code: 'ENOENT' }, 'a released cgroup gets no storage');
  t.end();
});

t.test('storage is freed with the map (cgroup_storage_map_free) and leaves its cgroup', (t) => {
  const { a } = tree();
  const kernel = new Kernel();
  const h = createMap<CgroupStorageMap>(kernel, spec());
  const m = h.object;
  const other = storageMap({}, kernel);
  const { storage } = cgroupStoragesAlloc(m, a, INGRESS);
  const kept = cgroupStoragesAlloc(other, a, INGRESS).storage;
  h.close();
  t.equal(storage.linked, false);
  t.same(cgroupStorages(a), [kept]);
  t.throws(() => cgroupStoragesAlloc(m, a, INGRESS), { code: 'ENOENT' }, 'a released map gets no storage');
  a.kill();
  t.equal(kept.linked, false);
  t.end();
});

t.test('cgroupStorageFree undoes a storage of a failed attach (bpf_cgroup_storages_free), idempotently', (t) => {
  const { a } = tree();
  const m = storageMap();
  const { storage } = cgroupStoragesAlloc(m, a, INGRESS);
  cgroupStorageFree(storage);
  cgroupStorageFree(storage);
  t.equal(m.count, 0);
  t.same(cgroupStorages(a), []);
  t.equal(cgroupStoragesAlloc(m, a, INGRESS).created, true);
  t.end();
});

t.test('memUsage grows with the storages the map holds', (t) => {
  const { a, b } = tree();
  const m = storageMap();
  const empty = m.memUsage();
  cgroupStoragesAlloc(m, a, INGRESS);
  cgroupStoragesAlloc(m, b, INGRESS);
  t.equal(m.memUsage() - empty, 2 * (96 + 8));
  t.same(m.storages().map((s) => s.cgroup.id), [11, 10]);
  t.end();
});

const encode = (id: bigint): Uint8Array => {
  const k = new Uint8Array(8);
  new DataView(k.buffer).setBigUint64(0, id, true);
  return k;
};

t.test('map->list is intrusive: unlinking at the head, middle and tail keeps the get_next_key order', (t) => {
  const root = new KernfsNode(1, '', null);
  const cgs = [10, 11, 12, 13, 14].map((id) => new KernfsNode(id, `c${id}`, root));
  const m = storageMap({ keySize: 8 });
  const st = cgs.map((c) => cgroupStoragesAlloc(m, c, INGRESS).storage);
  const order = (): number[] => {
    const out: number[] = [];
    for (let k: Uint8Array | null = null; ; ) {
      try {
        k = m.getNextKey(k);
      } catch {
        return out;
      }
      out.push(Number(new DataView(k.buffer).getBigUint64(0, true)));
    }
  };
  t.same(order(), [14, 13, 12, 11, 10]);
  cgroupStorageFree(st[2]!);
  t.same(order(), [14, 13, 11, 10], 'middle');
  cgroupStorageFree(st[4]!);
  t.same(order(), [13, 11, 10], 'head');
  cgroupStorageFree(st[0]!);
  t.same(order(), [13, 11], 'tail');
  t.same(m.storages().map((s) => s.cgroup.id), [13, 11]);
  t.equal(m.count, 2);
  t.same(m.getNextKey(13n), encode(11n));
  t.throws(() => m.getNextKey(12n), { code: 'ENOENT' }, 'a freed key is not in the map');
  cgroupStoragesAlloc(m, cgs[2]!, INGRESS);
  t.same(order(), [12, 13, 11], 'a new storage goes to the head');
  t.end();
});

t.test('a 20,000-storage map dumps every key once and frees every storage, by cgroup_bpf_release and by map free', (t) => {
  const N = 20_000;
  const root = new KernfsNode(1, '', null);
  const kernel = new Kernel();
  const h = createMap<CgroupStorageMap>(kernel, spec());
  const m = h.object;
  const cgs: KernfsNode[] = [];
  for (let i = 0; i < N; i++) {
    const c = new KernfsNode(100 + i, `c${i}`, root);
    cgs.push(c);
    cgroupStoragesAlloc(m, c, INGRESS);
  }
  let n = 0;
  for (let k: Uint8Array | null = null; ; n++) {
    try {
      k = m.getNextKey(k);
    } catch {
      break;
    }
  }
  t.equal(n, N);
  // Half the cgroups go first (cgroup_bpf_release), then the map (cgroup_storage_map_free).
  for (let i = 0; i < N; i += 2) cgs[i]!.kill();
  t.equal(m.count, N / 2);
  h.close();
  t.equal(m.count, 0);
  t.end();
});

t.test('a struct key whose cgroup_inode_id is not a __u64 integer, or whose attach_type is not a __u32, is EINVAL', (t) => {
  const { a } = tree();
  const m = storageMap();
  cgroupStoragesAlloc(m, a, EGRESS);
  for (const bad of [1.5, 'abc', undefined, null, Number.NaN, {}, 2n ** 64n, -(2n ** 63n) - 1n]) {
    t.throws(() => m.lookupElem({ cgroup_inode_id: bad as never }), { code: 'EINVAL' }, `cgroup_inode_id ${String(bad)}`);
  }
  for (const bad of [-1, 1.5, 2 ** 32, '1', null]) {
    t.throws(() => m.lookupElem({ cgroup_inode_id: 10, attach_type: bad as never }), { code: 'EINVAL' }, `attach_type ${String(bad)}`);
  }
  t.same(m.lookupElem({ cgroup_inode_id: 10n, attach_type: EGRESS }), new Uint8Array(8));
  t.throws(() => m.getNextKey({ cgroup_inode_id: 10, attach_type: EGRESS }), { code: 'ENOENT' }, 'the only key has no next');
  t.throws(() => m.lookupElem({ cgroup_inode_id: 10 }), { code: 'ENOENT' }, 'attach_type left out is 0');
  t.throws(() => m.lookupElem({ cgroup_inode_id: -(2n ** 63n) }), { code: 'ENOENT' }, 'a negative id wraps, like its bytes');
  t.end();
});

t.test('cgroup_bpf_release runs at rmdir: a removed cgroup frees its old storages at once, while still referenced', (t) => {
  const { a, b } = tree();
  const m = storageMap();
  const other = storageMap({ keySize: 8 });
  const s1 = cgroupStoragesAlloc(m, a, INGRESS).storage;
  const s2 = cgroupStoragesAlloc(m, a, EGRESS).storage;
  const s3 = cgroupStoragesAlloc(other, a, INGRESS).storage;
  const kept = cgroupStoragesAlloc(m, b, INGRESS).storage;
  a.get(); // an open fd, an iterator session, a css_get somewhere: the cgroup outlives its rmdir
  a.kill();
  t.equal(a.dying, true);
  t.equal(a.released, false, 'the cgroup is still referenced');
  t.same([s1.linked, s2.linked, s3.linked], [false, false, false], 'its storages are freed already');
  t.same(cgroupStorages(a), []);
  t.equal(m.count, 1);
  t.equal(other.count, 0);
  t.throws(() => m.lookupElem(isolatedKey(10, INGRESS)), { code: 'ENOENT' });
  t.throws(() => cgroupStoragesAlloc(m, a, INGRESS), { code: 'ENOENT' }, 'a removed cgroup gets no new storage');
  t.equal(m.count, 1, 'and the refused attach linked nothing');
  a.put();
  t.equal(a.released, true);
  t.equal(kept.linked, true);
  t.end();
});
