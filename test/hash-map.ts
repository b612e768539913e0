import t from 'tap';
import {
  BPF_ANY,
  BPF_EXIST,
  BPF_F_LOCK,
  BPF_F_NO_COMMON_LRU,
  BPF_F_NO_PREALLOC,
  BPF_F_NUMA_NODE,
  BPF_F_RDONLY_PROG,
  BPF_F_WRONLY_PROG,
  BPF_F_ZERO_SEED,
  BPF_F_MMAPABLE,
  BPF_NOEXIST,
  BpfMapType,
  ERRNO,
  KMALLOC_MAX_SIZE,
} from '../uapi';
import { Kernel } from '../progs/kernel';
import { createMap } from '../progs/maps/create';
import { HashMap } from '../progs/maps/hash';
import { hasProgMapAccess, type MapSpec } from '../progs/maps/map';
import { CgroupStorageMap } from '../progs/maps/cgroup-storage';
import { ValueSchema } from '../progs/maps/schema';

const spec = (over: Partial<MapSpec> = {}): MapSpec => ({ type: BpfMapType.HASH, keySize: 4, valueSize: 8, maxEntries: 4, ...over });
const u64 = (n: number | bigint): Uint8Array => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n), true);
  return b;
};
const hash = (over: Partial<MapSpec> = {}): HashMap => createMap<HashMap>(new Kernel(), spec(over)).object;

t.test('htab_map_alloc_check: map_flags outside HTAB_CREATE_FLAG_MASK are EINVAL', (t) => {
  t.throws(() => hash({ flags: BPF_F_MMAPABLE }), { code: 'EINVAL' });
  t.throws(() => hash({ flags: 1 << 20 }), { code: 'EINVAL' });
  t.ok(hash({ flags: BPF_F_NO_PREALLOC | BPF_F_NUMA_NODE | BPF_F_ZERO_SEED | BPF_F_RDONLY_PROG }));
  t.end();
});

t.test('bpf_map_flags_access_ok: BPF_F_RDONLY_PROG with BPF_F_WRONLY_PROG is EINVAL', (t) => {
  t.throws(() => hash({ flags: BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG }), { code: 'EINVAL' });
  t.end();
});

t.test('htab_map_alloc_check: BPF_F_NO_COMMON_LRU on a non-LRU hash is EINVAL', (t) => {
  t.throws(() => hash({ flags: BPF_F_NO_COMMON_LRU }), { code: 'EINVAL' });
  t.end();
});

t.test('htab_map_alloc_check: max_entries, key_size or value_size of 0 is EINVAL', (t) => {
  t.throws(() => hash({ maxEntries: 0 }), { code: 'EINVAL' });
  t.throws(() => hash({ keySize: 0 }), { code: 'EINVAL' });
  t.throws(() => hash({ valueSize: 0 }), { code: 'EINVAL' });
  t.end();
});

t.test('htab_map_alloc_check: key_size + value_size >= KMALLOC_MAX_SIZE - sizeof(htab_elem) is E2BIG', (t) => {
  t.throws(() => hash({ keySize: 8, valueSize: KMALLOC_MAX_SIZE - 48 - 8 }), { code: 'E2BIG' });
  t.ok(hash({ keySize: 8, valueSize: KMALLOC_MAX_SIZE - 48 - 9 }));
  t.end();
});

t.test('htab_map_alloc: max_entries above 2^31 is E2BIG', (t) => {
  t.throws(() => hash({ maxEntries: 2 ** 31 + 1 }), { code: 'E2BIG' });
  t.end();
});

t.test('htab_map_alloc: n_buckets = roundup_pow_of_two(max_entries) > U32_MAX / sizeof(struct bucket) is E2BIG', (t) => {
  // U32_MAX / 16 = 2^28 - 1: 2^27 entries take 2^27 buckets and pass, 2^27 + 1 round up to 2^28.
  t.ok(hash({ maxEntries: 2 ** 27, flags: BPF_F_NO_PREALLOC }));
  t.throws(() => hash({ maxEntries: 2 ** 27 + 1 }), { code: 'E2BIG' });
  t.throws(() => hash({ maxEntries: 2 ** 28 }), { code: 'E2BIG' });
  t.throws(() => hash({ maxEntries: 2 ** 28 + 1 }), { code: 'E2BIG' });
  t.throws(() => hash({ maxEntries: 2 ** 31 }), { code: 'E2BIG' });
  t.end();
});

t.test('update flags: BPF_NOEXIST on an existing key is EEXIST, BPF_EXIST on a missing one ENOENT, BPF_ANY either', (t) => {
  const m = hash();
  t.throws(() => m.updateElem(1, u64(1), BPF_EXIST), { code: 'ENOENT' });
  m.updateElem(1, u64(1), BPF_NOEXIST);
  t.throws(() => m.updateElem(1, u64(2), BPF_NOEXIST), { code: 'EEXIST' });
  m.updateElem(1, u64(3), BPF_EXIST);
  m.updateElem(1, u64(4), BPF_ANY);
  m.updateElem(2, u64(5));
  t.same(m.lookupElem(1), u64(4));
  t.same(m.lookupElem(2), u64(5));
  t.end();
});

t.test('update flags above BPF_EXIST (besides BPF_F_LOCK) are EINVAL', (t) => {
  const m = hash();
  t.throws(() => m.updateElem(1, u64(1), BPF_NOEXIST | BPF_EXIST), { code: 'EINVAL' });
  t.throws(() => m.updateElem(1, u64(1), 8), { code: 'EINVAL' });
  t.end();
});

t.test('a full map refuses a new key with E2BIG but still updates existing keys', (t) => {
  const m = hash({ maxEntries: 2 });
  m.updateElem(1, u64(1));
  m.updateElem(2, u64(2));
  t.throws(() => m.updateElem(3, u64(3)), { code: 'E2BIG' });
  m.updateElem(2, u64(22));
  t.same(m.lookupElem(2), u64(22));
  m.deleteElem(1);
  m.updateElem(3, u64(3));
  t.equal(m.count, 2);
  t.end();
});

t.test('lookup and delete of a missing key are ENOENT', (t) => {
  const m = hash();
  t.throws(() => m.lookupElem(9), { code: 'ENOENT' });
  t.throws(() => m.deleteElem(9), { code: 'ENOENT' });
  m.updateElem(9, u64(9));
  m.deleteElem(9);
  t.throws(() => m.lookupElem(9), { code: 'ENOENT' });
  t.end();
});

t.test('lookup flags other than BPF_F_LOCK are EINVAL', (t) => {
  const m = hash();
  m.updateElem(1, u64(1));
  t.throws(() => m.lookupElem(1, BPF_EXIST), { code: 'EINVAL' });
  t.end();
});

t.test('keys and values must have key_size and value_size bytes (EINVAL); integer keys are little-endian', (t) => {
  const m = hash();
  t.throws(() => m.updateElem(new Uint8Array(3), u64(1)), { code: 'EINVAL' });
  t.throws(() => m.updateElem(1, new Uint8Array(7)), { code: 'EINVAL' });
  t.throws(() => m.updateElem(1, [1, 2] as never), { code: 'EINVAL' });
  t.throws(() => m.lookupElem('1'), { code: 'EINVAL' });
  t.throws(() => m.lookupElem(2 ** 32), { code: 'EINVAL' });
  m.updateElem(0x01020304, u64(1));
  t.same(m.getNextKey(null), new Uint8Array([4, 3, 2, 1]));
  t.same(m.lookupElem(new Uint8Array([4, 3, 2, 1])), u64(1));
  m.updateElem(-1, u64(2));
  t.same(m.lookupElem(new Uint8Array([255, 255, 255, 255])), u64(2));
  m.updateElem(5n, u64(3));
  t.same(m.lookupElem(5), u64(3));
  t.end();
});

t.test('htab_map_get_next_key: null gives the first key, a missing key restarts from the first, the last is ENOENT', (t) => {
  const m = hash();
  t.throws(() => m.getNextKey(null), { code: 'ENOENT' }, 'an empty map');
  for (const k of [10, 20, 30]) m.updateElem(k, u64(k));
  const walk: number[] = [];
  let key: Uint8Array | null = null;
  for (;;) {
    try {
      key = m.getNextKey(key);
    } catch (e) {
      t.match(e, { code: 'ENOENT' });
      break;
    }
    walk.push(new DataView(key.buffer).getUint32(0, true));
  }
  t.same(walk, [10, 20, 30]);
  t.same(m.getNextKey(99), m.getNextKey(null));
  m.deleteElem(20);
  t.same(m.getNextKey(10), new Uint8Array([30, 0, 0, 0]));
  m.deleteElem(10);
  m.deleteElem(30);
  t.throws(() => m.getNextKey(null), { code: 'ENOENT' });
  t.end();
});

t.test('BPF_F_LOCK on a value without bpf_spin_lock is EINVAL (lookup and update)', (t) => {
  const m = hash();
  m.updateElem(1, u64(1));
  t.throws(() => m.lookupElem(1, BPF_F_LOCK), { code: 'EINVAL' });
  t.throws(() => m.updateElem(1, u64(1), BPF_F_LOCK), { code: 'EINVAL' });
  t.equal(m.bpfMapUpdateElem(1, u64(1), BPF_F_LOCK), -ERRNO.EINVAL);
  t.end();
});

t.test('with a bpf_spin_lock: updates never overwrite the lock word, lookups return it zeroed, BPF_F_LOCK keeps check_flags', (t) => {
  const value = ValueSchema.define({ n: 'u32', lock: 'bpf_spin_lock' });
  const m = hash({ btf: { key: ValueSchema.define('u32'), value } });
  const src = new Uint8Array(8).fill(0xff);
  m.updateElem(1, src, BPF_F_LOCK);
  const live = m.bpfMapLookupElem(1)!;
  t.same([...live], [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0], 'a new element starts with an unlocked lock');
  live[4] = 1; // a program holds the lock
  m.updateElem(1, new Uint8Array(8).fill(0x22), BPF_F_LOCK | BPF_EXIST);
  t.equal(live[4], 1);
  t.equal(live[0], 0x22);
  m.updateElem(1, new Uint8Array(8).fill(0x33));
  t.equal(live[4], 1, 'a plain update keeps the lock word too');
  t.same([...m.lookupElem(1, BPF_F_LOCK)], [0x33, 0x33, 0x33, 0x33, 0, 0, 0, 0]);
  t.throws(() => m.updateElem(1, src, BPF_F_LOCK | BPF_NOEXIST), { code: 'EEXIST' });
  t.throws(() => m.updateElem(2, src, BPF_F_LOCK | BPF_EXIST), { code: 'ENOENT' });
  t.end();
});

t.test('bpf_map_lookup_elem gives the live value: a program writes in place and userspace sees it', (t) => {
  const m = hash();
  t.equal(m.bpfMapLookupElem(1), null);
  m.updateElem(1, u64(1));
  const live = m.bpfMapLookupElem(1)!;
  new DataView(live.buffer, live.byteOffset).setBigUint64(0, 42n, true);
  t.same(m.lookupElem(1), u64(42));
  const copy = m.lookupElem(1);
  copy[0] = 0;
  t.same(m.lookupElem(1), u64(42), 'a userspace lookup is a copy');
  t.end();
});

t.test('bpf_map_update_elem / bpf_map_delete_elem return 0 or a negative errno and never throw', (t) => {
  const m = hash({ maxEntries: 1 });
  t.equal(m.bpfMapUpdateElem(1, u64(1), BPF_ANY), 0);
  t.equal(m.bpfMapUpdateElem(1, u64(1), BPF_NOEXIST), -ERRNO.EEXIST);
  t.equal(m.bpfMapUpdateElem(2, u64(1), BPF_EXIST), -ERRNO.ENOENT);
  t.equal(m.bpfMapUpdateElem(2, u64(1), BPF_ANY), -ERRNO.E2BIG);
  t.equal(m.bpfMapUpdateElem(1, u64(1), 3), -ERRNO.EINVAL);
  t.equal(m.bpfMapUpdateElem('bad', u64(1), 0), -ERRNO.EINVAL);
  t.equal(m.bpfMapUpdateElem(1, new Uint8Array(2), 0), -ERRNO.EINVAL);
  t.equal(m.bpfMapLookupElem({}), null);
  t.equal(m.bpfMapDeleteElem('bad'), -ERRNO.EINVAL);
  t.equal(m.bpfMapDeleteElem(2), -ERRNO.ENOENT);
  t.equal(m.bpfMapDeleteElem(1), 0);
  t.equal(m.count, 0);
  t.end();
});

t.test('BPF_F_RDONLY_PROG: program updates and deletes are EACCES (the verifier refuses them)', (t) => {
  const m = hash({ flags: BPF_F_RDONLY_PROG });
  m.updateElem(1, u64(1));
  t.equal(m.bpfMapUpdateElem(1, u64(2), BPF_ANY), -ERRNO.EACCES);
  t.equal(m.bpfMapDeleteElem(1), -ERRNO.EACCES);
  t.ok(m.bpfMapLookupElem(1));
  t.end();
});

t.test('htab_map_mem_usage: preallocated maps count max_entries, BPF_F_NO_PREALLOC maps count their elements', (t) => {
  const pre = hash();
  const before = pre.memUsage();
  pre.updateElem(1, u64(1));
  t.equal(pre.memUsage(), before);
  const dyn = hash({ flags: BPF_F_NO_PREALLOC });
  const empty = dyn.memUsage();
  dyn.updateElem(1, u64(1));
  t.equal(dyn.memUsage() - empty, 48 + 8 + 8 + 8);
  t.ok(before > empty);
  t.end();
});

t.test('closing the last handle frees the map and its elements (the id is gone)', (t) => {
  const kernel = new Kernel();
  const h = createMap<HashMap>(kernel, spec());
  const m = h.object;
  m.updateElem(1, u64(1));
  h.close();
  t.throws(() => kernel.getById('map', m.id), { code: 'ENOENT' });
  t.equal(m.count, 0);
  t.throws(() => m.getNextKey(null), { code: 'ENOENT' });
  t.end();
});

t.test('hash maps offer the bpf_map_*_elem helpers; old cgroup storage does not (the verifier allows only bpf_get_local_storage)', (t) => {
  t.ok(hasProgMapAccess(hash()));
  const storage = createMap<CgroupStorageMap>(new Kernel(), { type: BpfMapType.CGROUP_STORAGE, keySize: 8, valueSize: 4, maxEntries: 0 }).object;
  t.notOk(hasProgMapAccess(storage));
  t.end();
});
