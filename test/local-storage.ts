import t from 'tap';
import {
  BPF_ANY,
  BPF_EXIST,
  BPF_F_CLONE,
  BPF_F_LOCK,
  BPF_F_NO_PREALLOC,
  BPF_F_RDONLY,
  BPF_LOCAL_STORAGE_GET_F_CREATE,
  BPF_LOCAL_STORAGE_MAX_VALUE_SIZE,
  BPF_NOEXIST,
  BpfMapType,
} from '../uapi';
import { Kernel } from '../progs/kernel';
import { Handle } from '../progs/object';
import { createMap, MAP_OPS } from '../progs/maps/create';
import type { BpfMap, MapSpec } from '../progs/maps/map';
import type { OwnerStorage, TaskOwner } from '../progs/maps/owners';
import { ValueSchema, type TypeDesc } from '../progs/maps/schema';
import {
  BPF_LOCAL_STORAGE_ELEM_DATA_OFFSET,
  BPF_LOCAL_STORAGE_SIZE,
  CgrpStorageMap,
  LocalStorage,
  LocalStorageElem,
  LocalStorageMap,
  StorageBusy,
  TaskStorageMap,
  bpfLocalStorageDestroy,
  smapOf,
  bpf_cgrp_storage_get,
  localStorageMapAllocCheck,
  localStorageMapCheckBtf,
  bpf_task_storage_get,
  cgrpStorageMapOps,
  inodeStorageMapOps,
  skStorageMapOps,
  taskStorageMapOps,
} from '../progs/maps/local-storage';
import { CgroupHierarchy } from '../tags/hierarchy';
import type { KernfsNode } from '../tags/kernfs-node';

const F_CREATE = BPF_LOCAL_STORAGE_GET_F_CREATE;

function storageSpec(type: BpfMapType, value: TypeDesc = 'u64', extra: Partial<MapSpec> = {}): MapSpec {
  const v = ValueSchema.define(value);
  return {
    type,
    keySize: 4,
    valueSize: v.size,
    maxEntries: 0,
    flags: BPF_F_NO_PREALLOC,
    btf: { key: ValueSchema.define('s32'), value: v },
    ...extra,
  };
}

const create = <M extends BpfMap>(k: Kernel, spec: MapSpec): M => createMap<M>(k, spec).object;

const cgrpMap = (k: Kernel, value: TypeDesc = 'u64'): CgrpStorageMap =>
  create(k, storageSpec(BpfMapType.CGRP_STORAGE, value));

function world(): { k: Kernel; h: CgroupHierarchy; cg: (name: string) => KernfsNode } {
  const h = new CgroupHierarchy(1);
  const k = new Kernel({ cgroups: h });
  let id = 100;
  return { k, h, cg: (name) => h.add(h.root, name, ++id) };
}

const u64 = (n: number): Uint8Array => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n), true);
  return b;
};
const readU64 = (b: Uint8Array): number => Number(new DataView(b.buffer, b.byteOffset).getBigUint64(0, true));
const storageOf = (owner: { bpfStorage: OwnerStorage | null }): LocalStorage => owner.bpfStorage as LocalStorage;

/** A task whose free (free_task) destroys its storage: the one call an owner makes into BPF. */
class Task implements TaskOwner {
  bpfStorage: OwnerStorage | null = null;
  dying = false;
  constructor(readonly pid: number) {}
  free(): void {
    this.dying = true;
    this.bpfStorage?.destroy();
  }
}

// --- bpf_local_storage_map_alloc_check / map_check_btf, through BPF_MAP_CREATE ---------------------

const TYPES: [string, BpfMapType][] = [
  ['cgrp_storage', BpfMapType.CGRP_STORAGE],
  ['task_storage', BpfMapType.TASK_STORAGE],
  ['sk_storage', BpfMapType.SK_STORAGE],
  ['inode_storage', BpfMapType.INODE_STORAGE],
];

t.test('the four local storage types are in the map ops table and share the core checks', async (t) => {
  t.equal(MAP_OPS[BpfMapType.CGRP_STORAGE], cgrpStorageMapOps);
  t.equal(MAP_OPS[BpfMapType.TASK_STORAGE], taskStorageMapOps);
  t.equal(MAP_OPS[BpfMapType.SK_STORAGE], skStorageMapOps);
  t.equal(MAP_OPS[BpfMapType.INODE_STORAGE], inodeStorageMapOps);
  for (const ops of [cgrpStorageMapOps, taskStorageMapOps, skStorageMapOps, inodeStorageMapOps]) {
    t.equal(ops.allocCheck, localStorageMapAllocCheck);
    t.equal(ops.checkBtf, localStorageMapCheckBtf);
  }
});

for (const [name, type] of TYPES) {
  const tryCreate = (extra: Partial<MapSpec>, value: TypeDesc = 'u64'): void => {
    createMap(new Kernel(), storageSpec(type, value, extra)).close();
  };

  t.test(`alloc_check (${name}): map_flags must hold BPF_F_NO_PREALLOC and nothing but it and BPF_F_CLONE, else EINVAL`, async (t) => {
    t.throws(() => tryCreate({ flags: 0 }), { code: 'EINVAL' });
    t.throws(() => tryCreate({ flags: undefined }), { code: 'EINVAL' });
    t.throws(() => tryCreate({ flags: BPF_F_CLONE }), { code: 'EINVAL' });
    t.throws(() => tryCreate({ flags: BPF_F_NO_PREALLOC | BPF_F_RDONLY }), { code: 'EINVAL' });
    t.doesNotThrow(() => tryCreate({ flags: BPF_F_NO_PREALLOC | BPF_F_CLONE }));
  });

  t.test(`alloc_check (${name}): max_entries != 0, key_size != 4 and value_size == 0 are EINVAL`, async (t) => {
    t.throws(() => tryCreate({ maxEntries: 1 }), { code: 'EINVAL' });
    t.throws(() => tryCreate({ keySize: 8 }), { code: 'EINVAL' });
    t.throws(() => tryCreate({ valueSize: 0 }), { code: 'EINVAL' });
    t.throws(() => localStorageMapAllocCheck(storageSpec(type, 'u64', { valueSize: -8 })), { code: 'EINVAL' });
  });

  t.test(`alloc_check (${name}): BTF is enforced, key and value both, else EINVAL`, async (t) => {
    const v = ValueSchema.define('u64');
    t.throws(() => tryCreate({ btf: undefined }), { code: 'EINVAL' });
    t.throws(() => tryCreate({ btf: { value: v } }), { code: 'EINVAL' });
    t.throws(() => tryCreate({ btf: { key: ValueSchema.define('u32') } }), { code: 'EINVAL' });
  });

  t.test(`map_check_btf (${name}): the key type must be a 32-bit int and the BTF sizes must match, else EINVAL`, async (t) => {
    const v = ValueSchema.define('u64');
    t.throws(() => tryCreate({ btf: { key: ValueSchema.define({ fd: 'u32' }), value: v } }), { code: 'EINVAL' });
    t.throws(() => tryCreate({ btf: { key: ValueSchema.define(['u8', 4]), value: v } }), { code: 'EINVAL' });
    t.throws(() => tryCreate({ btf: { key: ValueSchema.define('u64'), value: v } }), { code: 'EINVAL' });
    t.throws(() => tryCreate({ valueSize: 16 }), { code: 'EINVAL' }, 'value type is 8 bytes, value_size 16');
    t.doesNotThrow(() => tryCreate({ btf: { key: ValueSchema.define('u32'), value: v } }));
  });

  t.test(`alloc_check (${name}): value_size > BPF_LOCAL_STORAGE_MAX_VALUE_SIZE is E2BIG, checked before the BTF key type`, async (t) => {
    const big = ValueSchema.define(['u8', BPF_LOCAL_STORAGE_MAX_VALUE_SIZE + 1]);
    t.throws(() => tryCreate({}, ['u8', BPF_LOCAL_STORAGE_MAX_VALUE_SIZE + 1]), { code: 'E2BIG' });
    t.throws(() => tryCreate({ btf: { key: ValueSchema.define({ fd: 'u32' }), value: big } }, ['u8', BPF_LOCAL_STORAGE_MAX_VALUE_SIZE + 1]), { code: 'E2BIG' });
    t.doesNotThrow(() => tryCreate({}, ['u8', BPF_LOCAL_STORAGE_MAX_VALUE_SIZE]));
  });
}

// --- the cache index ---------------------------------------------------------------------------

t.test('cache_idx_get: a new map takes the least used index, ties going to the lowest', async (t) => {
  const { k } = world();
  const maps = Array.from({ length: 16 }, () => cgrpMap(k));
  t.same(maps.map((m) => m.cacheIdx), [...Array(16).keys()], 'the first 16 maps take 0..15');
  const m16 = cgrpMap(k);
  t.equal(m16.cacheIdx, 0, 'all used once: the lowest index');
  const m17 = cgrpMap(k);
  t.equal(m17.cacheIdx, 1);
  t.same(k.storageCaches.cgroup.idxUsageCounts, [2, 2, ...Array(14).fill(1)]);
});

t.test('cache_idx_free: map free gives the index back, and the next map takes it', async (t) => {
  const { k } = world();
  const maps = Array.from({ length: 6 }, () => new Handle(cgrpMap(k)));
  maps[3]!.close();
  t.equal(k.storageCaches.cgroup.idxUsageCounts[3], 0);
  t.equal(cgrpMap(k).cacheIdx, 3);
  const more = cgrpMap(k);
  t.equal(more.cacheIdx, 6);
});

t.test('cache indexes are per owner type: a task map does not share the cgroup cache', async (t) => {
  const { k } = world();
  cgrpMap(k);
  cgrpMap(k);
  const task = create<TaskStorageMap>(k, storageSpec(BpfMapType.TASK_STORAGE));
  t.equal(task.cacheIdx, 0);
  t.equal(k.storageCaches.task.idxUsageCounts[0], 1);
});

// --- lookup and the 16-slot cache ----------------------------------------------------------------

t.test('lookup: a hit with cacheit fills the map\'s slot; without it (update, delete) the slot is left alone', async (t) => {
  const { k, cg } = world();
  const a = cgrpMap(k);
  const b = cgrpMap(k);
  const c = cg('c');
  a.updateElem(c, u64(1));
  b.updateElem(c, u64(2));
  const storage = storageOf(c);
  t.same([storage.cached(0), storage.cached(1)], [null, null], 'update does not cache');
  t.equal(readU64(a.lookupElem(c)), 1);
  t.equal(smapOf(storage.cached(a.cacheIdx)!), a, 'userspace lookup caches (cacheit_lockit)');
  t.equal(storage.cached(b.cacheIdx), null);
  const v = bpf_cgrp_storage_get(b, c, null, 0);
  t.equal(storage.cached(b.cacheIdx), v, 'helper get caches too: the slot holds the value itself');
  t.equal(a.lookup(storage, false), storage.cached(a.cacheIdx), 'a cached hit is the fast path');
});

t.test('lookup: maps sharing a cache index evict each other from the slot, and both still find their value', async (t) => {
  const { k, cg } = world();
  const maps = Array.from({ length: 17 }, () => cgrpMap(k));
  const first = maps[0]!;
  const shared = maps[16]!;
  t.equal(shared.cacheIdx, first.cacheIdx);
  const c = cg('c');
  first.updateElem(c, u64(10));
  shared.updateElem(c, u64(16));
  const slot = (): unknown => smapOf(storageOf(c).cached(0)!);
  t.equal(readU64(bpf_cgrp_storage_get(first, c)!), 10);
  t.equal(slot(), first);
  t.equal(readU64(bpf_cgrp_storage_get(shared, c)!), 16, 'a miss walks the list');
  t.equal(slot(), shared, 'and takes over the slot');
  t.equal(readU64(bpf_cgrp_storage_get(first, c)!), 10);
  t.equal(slot(), first);
});

t.test('unlink clears the cached slot when it held the unlinked elem, and only then', async (t) => {
  const { k, cg } = world();
  const maps = Array.from({ length: 17 }, () => cgrpMap(k));
  const [a, b, shared] = [maps[0]!, maps[1]!, maps[16]!];
  const c = cg('c');
  a.updateElem(c, u64(1));
  b.updateElem(c, u64(2));
  shared.updateElem(c, u64(3));
  bpf_cgrp_storage_get(a, c);
  bpf_cgrp_storage_get(b, c);
  const storage = storageOf(c);
  shared.deleteElem(c);
  t.equal(smapOf(storage.cached(0)!), a, 'deleting the other map on a shared index leaves the slot');
  a.deleteElem(c);
  t.equal(storage.cached(0), null, 'deleting the cached elem clears its slot');
  t.equal(smapOf(storage.cached(1)!), b);
  t.throws(() => a.lookupElem(c), { code: 'ENOENT' });
});

// --- update: check_flags and the replace / in-place rules --------------------------------------------

t.test('check_flags: BPF_NOEXIST on an existing value is EEXIST; BPF_EXIST on a missing one is ENOENT', async (t) => {
  const { k, cg } = world();
  const a = cgrpMap(k);
  const b = cgrpMap(k);
  const c = cg('c');
  t.throws(() => a.updateElem(c, u64(1), BPF_EXIST), { code: 'ENOENT' }, 'no storage at all yet');
  t.equal(c.bpfStorage, null, 'a failed first update leaves no storage behind');
  b.updateElem(c, u64(2));
  t.throws(() => a.updateElem(c, u64(1), BPF_EXIST), { code: 'ENOENT' }, 'storage present, no value of this map');
  a.updateElem(c, u64(1), BPF_NOEXIST);
  t.throws(() => a.updateElem(c, u64(5), BPF_NOEXIST), { code: 'EEXIST' });
  a.updateElem(c, u64(6), BPF_EXIST);
  t.equal(readU64(a.lookupElem(c)), 6);
  a.updateElem(c, u64(7), BPF_ANY);
  t.equal(readU64(a.lookupElem(c)), 7);
  t.equal(a.nrElems, 1, 'replacing keeps one value per owner');
});

t.test('check_flags: (flags & ~BPF_F_LOCK) > BPF_EXIST is EINVAL, as are flags that are not a u64', async (t) => {
  const { k, cg } = world();
  const a = cgrpMap(k);
  const c = cg('c');
  t.throws(() => a.updateElem(c, u64(1), BPF_NOEXIST | BPF_EXIST), { code: 'EINVAL' });
  t.throws(() => a.updateElem(c, u64(1), 8), { code: 'EINVAL' });
  t.throws(() => a.update(c, u64(1), -1), { code: 'EINVAL' });
  t.throws(() => a.update(c, u64(1), 0.5), { code: 'EINVAL' });
  t.throws(() => a.updateElem(c, u64(1), 2 ** 33), { code: 'EINVAL' }, 'a u64 bit above the low 32');
  t.equal(c.bpfStorage, null);
});

t.test('BPF_F_LOCK without a bpf_spin_lock in the value is EINVAL, for update and lookup', async (t) => {
  const { k, cg } = world();
  const a = cgrpMap(k);
  const c = cg('c');
  t.throws(() => a.updateElem(c, u64(1), BPF_F_LOCK), { code: 'EINVAL' });
  t.throws(() => a.update(c, u64(1), BPF_F_LOCK), { code: 'EINVAL' });
  a.updateElem(c, u64(1));
  t.throws(() => a.lookupElem(c, BPF_F_LOCK), { code: 'EINVAL' });
  t.throws(() => a.lookupElem(c, BPF_EXIST), { code: 'EINVAL' }, 'lookup takes no flag but BPF_F_LOCK');
});

t.test('the value must be value_size bytes (EINVAL)', async (t) => {
  const { k, cg } = world();
  const a = cgrpMap(k);
  t.throws(() => a.updateElem(cg('c'), new Uint8Array(4)), { code: 'EINVAL' });
});

const LOCKED: TypeDesc = { lock: 'bpf_spin_lock', pad: 'u32', n: 'u64' };

t.test('BPF_F_LOCK on an existing value copies in place: a program holding the value sees it', async (t) => {
  const { k, cg } = world();
  const m = cgrpMap(k, LOCKED);
  const schema = m.valueSchema!;
  const c = cg('c');
  const held = bpf_cgrp_storage_get(m, c, null, F_CREATE)!;
  held[0] = 1; // a program holds the bpf_spin_lock
  const next = schema.fromJson({ pad: 5, n: 99 });
  next[0] = 7; // the caller's lock bytes are never copied
  m.updateElem(c, next, BPF_F_LOCK);
  t.equal(bpf_cgrp_storage_get(m, c), held, 'still the same value object');
  t.same(schema.toJson(held), { lock: { val: 1 }, pad: 5, n: 99 }, 'updated around the lock word');
  m.updateElem(c, schema.fromJson({ n: 100 }), BPF_F_LOCK | BPF_EXIST);
  t.equal(bpf_cgrp_storage_get(m, c), held);
  t.same(schema.toJson(m.lookupElem(c, BPF_F_LOCK)), { lock: { val: 0 }, pad: 0, n: 100 }, 'the lookup copy\'s lock reads 0');
  t.throws(() => m.updateElem(c, next, BPF_F_LOCK | BPF_NOEXIST), { code: 'EEXIST' });
});

t.test('BPF_F_LOCK on a missing value: BPF_EXIST is ENOENT, BPF_ANY creates', async (t) => {
  const { k, cg } = world();
  const m = cgrpMap(k, LOCKED);
  const other = cgrpMap(k, LOCKED);
  const c = cg('c');
  other.updateElem(c, m.valueSchema!.zero());
  t.throws(() => m.updateElem(c, m.valueSchema!.fromJson({ n: 1 }), BPF_F_LOCK | BPF_EXIST), { code: 'ENOENT' });
  m.updateElem(c, m.valueSchema!.fromJson({ n: 2 }), BPF_F_LOCK);
  t.same(m.valueSchema!.toJson(m.lookupElem(c)), { lock: { val: 0 }, pad: 0, n: 2 });
});

t.test('update without BPF_F_LOCK replaces: a new elem is linked, the old data is no longer the live value', async (t) => {
  const { k, cg } = world();
  const m = cgrpMap(k, LOCKED);
  const schema = m.valueSchema!;
  const c = cg('c');
  const old = bpf_cgrp_storage_get(m, c, schema.fromJson({ n: 1 }), F_CREATE)!;
  old[0] = 1;
  m.updateElem(c, schema.fromJson({ n: 2 }));
  const now = bpf_cgrp_storage_get(m, c)!;
  t.not(now, old, 'a different value object');
  t.same(schema.toJson(old), { lock: { val: 1 }, pad: 0, n: 1 }, 'the old one is untouched');
  t.same(schema.toJson(now), { lock: { val: 0 }, pad: 0, n: 2 }, 'the new one starts with a zeroed lock');
  t.equal(m.nrElems, 1);
  t.equal([...storageOf(c).elems()].length, 1);
});

t.test('a new value is zero-filled, then the given value copied in (a copy, not the caller\'s bytes)', async (t) => {
  const { k, cg } = world();
  const m = cgrpMap(k, ['u8', 16]);
  const a = cg('a');
  t.same([...bpf_cgrp_storage_get(m, a, null, F_CREATE)!], Array(16).fill(0));
  const init = new Uint8Array(16).fill(9);
  const b = cg('b');
  const v = bpf_cgrp_storage_get(m, b, init, F_CREATE)!;
  t.same([...v], Array(16).fill(9));
  init[0] = 1;
  t.equal(v[0], 9);
  const bytes = new Uint8Array(16).fill(3);
  m.updateElem(a, bytes);
  bytes[0] = 0;
  t.equal(m.lookupElem(a)[0], 3);
});

t.test('SELEM()/SDATA(): the elem is its sdata and its value bytes; the storage\'s elements are its cache', async (t) => {
  const { k, cg } = world();
  const m = cgrpMap(k);
  const c = cg('c');
  m.updateElem(c, u64(7));
  const storage = storageOf(c);
  t.type(storage, LocalStorage);
  t.type(m, LocalStorageMap);
  const elem = storage.list!;
  t.type(elem, LocalStorageElem);
  t.type(elem, Uint8Array);
  t.equal(readU64(elem), 7, 'the elem holds the value');
  t.equal(m.lookup(storage, true), elem);
  t.equal(bpf_cgrp_storage_get(m, c), elem, 'and is what a program gets');
  t.equal(storage.owner, c);
  t.same(Object.keys(elem).filter((key) => !/^\d+$/.test(key)), [], 'no link or map reachable from the value');
  t.equal(elem.slice(0, 2).constructor, Uint8Array, 'derived arrays are plain Uint8Arrays');
  t.equal(storage.map((x) => x).constructor, Array, 'and derived arrays of the storage plain Arrays');
});

t.test('cache slots: a storage starts with the slots its owner type uses, and a newer map\'s hit grows it', async (t) => {
  const { k, cg } = world();
  const a = cgrpMap(k);
  const b = cgrpMap(k);
  const c = cg('c');
  a.updateElem(c, u64(1));
  const storage = storageOf(c);
  t.equal(storage.length, 2 * 2, 'two maps of this owner type: two (map, elem) slots');
  t.equal(b.lookup(storage, true), null, 'an empty slot is a miss');
  const later = Array.from({ length: 5 }, () => cgrpMap(k)).at(-1)!;
  t.equal(later.cacheIdx, 6);
  later.updateElem(c, u64(6));
  t.equal(later.lookup(storage, false), storage.list, 'past the end is a miss, then the walk finds it');
  t.equal(storage.cached(later.cacheIdx), null);
  t.equal(readU64(later.lookupElem(c)), 6);
  t.equal(storage.cached(later.cacheIdx), storage.list, 'cacheit grows the storage to hold the slot');
  t.ok(storage.length >= 2 * 7);
  t.equal(readU64(bpf_cgrp_storage_get(a, c)!), 1, 'the other slots are unchanged');
  t.equal(smapOf(storage.cached(a.cacheIdx)!), a);
});

t.test('an owner\'s elems are newest first (hlist_add_head) and each map lists its elems', async (t) => {
  const { k, cg } = world();
  const a = cgrpMap(k);
  const b = cgrpMap(k);
  const c = cg('c');
  const d = cg('d');
  a.updateElem(c, u64(1));
  b.updateElem(c, u64(2));
  a.updateElem(d, u64(3));
  t.same([...storageOf(c).elems()].map((e) => smapOf(e)), [b, a]);
  t.same([...a.elems()].map(readU64), [3, 1], 'the map\'s own list, newest first');
  t.equal(a.nrElems, 2);
  t.equal(b.nrElems, 1);
});

// --- delete, owner destroy, map free --------------------------------------------------------------

t.test('delete: the last value of an owner frees its storage and clears owner.bpfStorage', async (t) => {
  const { k, cg } = world();
  const a = cgrpMap(k);
  const b = cgrpMap(k);
  const c = cg('c');
  a.updateElem(c, u64(1));
  b.updateElem(c, u64(2));
  const storage = storageOf(c);
  a.deleteElem(c);
  t.equal(c.bpfStorage, storage, 'one value left: the storage stays');
  t.throws(() => a.deleteElem(c), { code: 'ENOENT' });
  b.deleteElem(c);
  t.equal(c.bpfStorage, null);
  t.equal(storage.owner, null);
  t.equal(a.nrElems + b.nrElems, 0);
  t.throws(() => b.deleteElem(c), { code: 'ENOENT' });
});

t.test('the owner frees all its values with one bpfStorage.destroy() call, which is a no-op once done', async (t) => {
  const k = new Kernel();
  const a = create<TaskStorageMap>(k, storageSpec(BpfMapType.TASK_STORAGE));
  const b = create<TaskStorageMap>(k, storageSpec(BpfMapType.TASK_STORAGE));
  const task = new Task(7);
  const other = new Task(8);
  bpf_task_storage_get(a, task, null, F_CREATE);
  bpf_task_storage_get(b, task, null, F_CREATE);
  bpf_task_storage_get(a, other, null, F_CREATE);
  const storage = storageOf(task);
  task.free();
  t.equal(task.bpfStorage, null);
  t.equal(a.nrElems, 1, 'the other task keeps its value');
  t.equal(b.nrElems, 0);
  storage.destroy();
  t.equal(a.nrElems, 1, 'a second destroy of the same storage changes nothing');
});

t.test('a cgroup\'s release destroys its storage after its release hooks (css_free after cgroup_bpf_release)', async (t) => {
  const { k, cg } = world();
  const m = cgrpMap(k);
  const c = cg('c');
  m.updateElem(c, u64(1));
  let seenByHook = -1;
  c.onRelease(() => {
    seenByHook = m.nrElems;
  });
  c.kill();
  t.equal(seenByHook, 1, 'the value is still there while the release hooks run');
  t.equal(m.nrElems, 0);
  t.equal(c.bpfStorage, null);
});

t.test('owner destroy: every value of the owner in every map goes, and its mem_charge is returned', async (t) => {
  const { k, cg } = world();
  const a = cgrpMap(k, ['u8', 16]);
  const b = cgrpMap(k, 'u32');
  const c = cg('c');
  const other = cg('other');
  a.updateElem(c, new Uint8Array(16));
  b.updateElem(c, new Uint8Array(4));
  a.updateElem(other, new Uint8Array(16));
  const storage = storageOf(c);
  bpf_cgrp_storage_get(a, c);
  const charge = bpfLocalStorageDestroy(storage);
  t.equal(charge, BPF_LOCAL_STORAGE_SIZE + (BPF_LOCAL_STORAGE_ELEM_DATA_OFFSET + 16) + (BPF_LOCAL_STORAGE_ELEM_DATA_OFFSET + 4));
  t.equal(c.bpfStorage, null);
  t.same([...storage], Array(storage.length).fill(null), 'the cache is cleared');
  t.equal(a.nrElems, 1, 'the other cgroup keeps its value');
  t.equal(b.nrElems, 0);
  t.throws(() => a.lookupElem(c), { code: 'ENOENT' });
  t.equal(a.lookupElem(other).length, 16);
});

t.test('map free: every value of the map leaves every owner; other maps\' values stay; the cache index returns', async (t) => {
  const { k, cg } = world();
  const a = new Handle(cgrpMap(k));
  const b = cgrpMap(k);
  const [c1, c2, c3] = [cg('c1'), cg('c2'), cg('c3')];
  for (const c of [c1, c2, c3]) a.object.updateElem(c, u64(c.id));
  b.updateElem(c2, u64(2));
  bpf_cgrp_storage_get(a.object, c2);
  const s2 = storageOf(c2);
  const mapA = a.object;
  a.close();
  t.ok(mapA.released);
  t.equal(mapA.nrElems, 0);
  t.equal(mapA.list, null);
  t.equal(c1.bpfStorage, null, 'storage with only this map\'s value is freed');
  t.equal(c3.bpfStorage, null);
  t.equal(c2.bpfStorage, s2, 'storage holding another map\'s value stays');
  t.equal(s2.cached(mapA.cacheIdx), null, 'the freed map\'s cached slot is cleared');
  t.equal(readU64(b.lookupElem(c2)), 2);
  t.equal(k.storageCaches.cgroup.idxUsageCounts[mapA.cacheIdx], 0);
  t.equal(s2.memCharge, BPF_LOCAL_STORAGE_SIZE + b.elemSize);
});

// --- memory ---------------------------------------------------------------------------------------

t.test('mem_charge: sizeof(struct bpf_local_storage) plus elem_size (header + value_size) per value', async (t) => {
  const { k, cg } = world();
  const a = cgrpMap(k, ['u8', 16]);
  const b = cgrpMap(k, ['u8', 100]);
  t.equal(a.elemSize, 72 + 16);
  t.equal(b.elemSize, 72 + 100);
  const c = cg('c');
  a.updateElem(c, new Uint8Array(16));
  const storage = storageOf(c);
  t.equal(storage.memCharge, 184 + 88);
  b.updateElem(c, new Uint8Array(100));
  t.equal(storage.memCharge, 184 + 88 + 172);
  a.updateElem(c, new Uint8Array(16));
  t.equal(storage.memCharge, 184 + 88 + 172, 'a replace charges the new elem and returns the old one\'s');
  a.deleteElem(c);
  t.equal(storage.memCharge, 184 + 172);
});

t.test('memUsage: the map and its buckets only, as bpf_local_storage_map_mem_usage (values are charged to owners)', async (t) => {
  const { k, cg } = world();
  const m = cgrpMap(k);
  const before = m.memUsage();
  t.equal(before, 352);
  m.updateElem(cg('c'), u64(1));
  t.equal(m.memUsage(), before);
});

t.test('get_next_key is ENOTSUPP (524): a local storage map cannot be enumerated', async (t) => {
  const { k } = world();
  t.throws(() => cgrpMap(k).getNextKey(null), { code: 'ENOTSUPP', errno: 524 });
});

t.test('the recursion guard: lock nests unconditionally, trylock succeeds only when the counter is zero', async (t) => {
  const busy = new StorageBusy();
  t.ok(busy.trylock());
  t.notOk(busy.trylock(), 're-entry fails');
  t.equal(busy.count, 1, 'a failed trylock leaves the count as it was');
  busy.lock();
  t.equal(busy.count, 2);
  busy.unlock();
  busy.unlock();
  t.equal(busy.count, 0);
  t.ok(busy.trylock());
  busy.unlock();
});
