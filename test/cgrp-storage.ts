import t from 'tap';
import { BPF_ANY, BPF_F_NO_PREALLOC, BPF_LOCAL_STORAGE_GET_F_CREATE, BpfMapType, ERRNO } from '../uapi';
import { Kernel } from '../progs/kernel';
import { Handle } from '../progs/object';
import { createMap } from '../progs/maps/create';
import type { MapSpec } from '../progs/maps/map';
import type { OwnerStorage, TaskOwner } from '../progs/maps/owners';
import { ValueSchema, type TypeDesc } from '../progs/maps/schema';
import {
  CgrpStorageMap,
  bpf_cgrp_storage_delete,
  bpf_cgrp_storage_free,
  bpf_cgrp_storage_get,
  cgrpStorageBusy,
} from '../progs/maps/local-storage';
import { CgroupHierarchy } from '../tags/hierarchy';
import type { KernfsNode } from '../tags/kernfs-node';

const F_CREATE = BPF_LOCAL_STORAGE_GET_F_CREATE;

function cgrpMap(k: Kernel, value: TypeDesc = 's64'): CgrpStorageMap {
  const v = ValueSchema.define(value);
  const spec: MapSpec = {
    type: BpfMapType.CGRP_STORAGE,
    keySize: 4,
    valueSize: v.size,
    maxEntries: 0,
    flags: BPF_F_NO_PREALLOC,
    btf: { key: ValueSchema.define('s32'), value: v },
  };
  return createMap<CgrpStorageMap>(k, spec).object;
}

function world(): { k: Kernel; h: CgroupHierarchy; cg: (name: string, parent?: KernfsNode) => KernfsNode } {
  const h = new CgroupHierarchy(1);
  let id = 1000;
  return { k: new Kernel({ cgroups: h }), h, cg: (name, parent = h.root) => h.add(parent, name, ++id) };
}

const long = (n: number): Uint8Array => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigInt64(0, BigInt(n), true);
  return b;
};
const readLong = (b: Uint8Array): number => Number(new DataView(b.buffer, b.byteOffset).getBigInt64(0, true));
const writeLong = (b: Uint8Array, n: number): void => new DataView(b.buffer, b.byteOffset).setBigInt64(0, BigInt(n), true);

class Task implements TaskOwner {
  bpfStorage: OwnerStorage | null = null;
  dying = false;
  constructor(readonly pid: number) {}
}

// --- userspace keys (cgroup_v1v2_get_from_fd) --------------------------------------------------------

t.test('a cgroup key may be the cgroup object, its id or its path: all name the same value', async (t) => {
  const { k, cg } = world();
  const m = cgrpMap(k);
  const a = cg('a');
  const b = cg('b', a);
  m.updateElem(b, long(1));
  t.equal(readLong(m.lookupElem(b.id)), 1);
  t.equal(readLong(m.lookupElem('/a/b')), 1);
  m.updateElem(b.id, long(2));
  t.equal(readLong(m.lookupElem(b)), 2);
  m.deleteElem('/a/b');
  t.throws(() => m.lookupElem(b), { code: 'ENOENT' }, 'no value: ENOENT');
});

t.test('a key that is not a cgroup is EBADF: NaN, a fraction, a task, a plain object, null', async (t) => {
  const { k, cg } = world();
  const m = cgrpMap(k);
  cg('a');
  t.throws(() => m.deleteElem(Number.NaN), { code: 'EBADF' });
  t.throws(() => m.deleteElem(1.5), { code: 'EBADF' });
  t.throws(() => m.lookupElem(new Task(1)), { code: 'EBADF' });
  t.throws(() => m.lookupElem({ id: 3 }), { code: 'EBADF' });
  t.throws(() => m.lookupElem(Object.create(null)), { code: 'EBADF' });
  t.throws(() => m.lookupElem(null), { code: 'EBADF' });
  t.throws(() => m.lookupElem(undefined), { code: 'EBADF' });
});

t.test('an id or path that names no cgroup is ENOENT (cgroup_get_from_id, or the open() of a missing path)', async (t) => {
  const { k, cg } = world();
  const m = cgrpMap(k);
  cg('a');
  t.throws(() => m.lookupElem(424242), { code: 'ENOENT' });
  t.throws(() => m.updateElem('/nope', long(1)), { code: 'ENOENT' });
  const bare = cgrpMap(new Kernel());
  t.throws(() => bare.lookupElem(1), { code: 'ENOENT' }, 'no cgroup resolver: an id names nothing');
  t.throws(() => bare.lookupElem('/a'), { code: 'ENOENT' });
});

t.test('a removed cgroup is ENOENT from rmdir on (css_tryget_online fails), by object or by id', async (t) => {
  const { k, h, cg } = world();
  const m = cgrpMap(k);
  const a = cg('a');
  m.updateElem(a, long(5));
  a.get(); // an open fd keeps the dying cgroup around
  h.remove(a);
  t.ok(a.dying);
  t.notOk(a.released);
  t.throws(() => m.lookupElem(a), { code: 'ENOENT' });
  t.throws(() => m.lookupElem(a.id), { code: 'ENOENT' }, 'the id still resolves to the dying cgroup');
  t.throws(() => m.updateElem(a, long(1)), { code: 'ENOENT' });
  t.throws(() => m.deleteElem(a), { code: 'ENOENT' });
  t.throws(() => m.lookupElem('/a'), { code: 'ENOENT' }, 'its path names nothing any more');
  a.put();
  t.ok(a.released);
  t.throws(() => m.lookupElem(a), { code: 'ENOENT' }, 'released: still ENOENT for the object');
  t.throws(() => m.lookupElem(a.id), { code: 'ENOENT' }, 'a released id names nothing');
});

t.test('BPF_MAP_GET_NEXT_KEY is ENOTSUPP (524): notsupp_get_next_key', async (t) => {
  const { k } = world();
  t.throws(() => cgrpMap(k).getNextKey(null), { code: 'ENOTSUPP' });
});

// --- helpers ------------------------------------------------------------------------------------

t.test('bpf_cgrp_storage_get: flags other than F_CREATE or a NULL cgroup give NULL', async (t) => {
  const { k, cg } = world();
  const m = cgrpMap(k);
  const a = cg('a');
  t.equal(bpf_cgrp_storage_get(m, a, null, 2), null);
  t.equal(bpf_cgrp_storage_get(m, a, null, F_CREATE | 2), null);
  t.equal(bpf_cgrp_storage_get(m, null, null, F_CREATE), null);
  t.equal(a.bpfStorage, null, 'nothing was created');
});

t.test('bpf_cgrp_storage_get: an existing value is returned (and cached); absent without F_CREATE is NULL', async (t) => {
  const { k, cg } = world();
  const m = cgrpMap(k);
  const a = cg('a');
  t.equal(bpf_cgrp_storage_get(m, a), null);
  t.equal(a.bpfStorage, null);
  m.updateElem(a, long(42));
  const v = bpf_cgrp_storage_get(m, a)!;
  t.equal(readLong(v), 42);
  writeLong(v, 43);
  t.equal(readLong(m.lookupElem(a)), 43, 'the program writes the live value');
});

t.test('bpf_cgrp_storage_get with F_CREATE: zero-filled without a value, initialised from one, NULL on a bad value', async (t) => {
  const { k, cg } = world();
  const m = cgrpMap(k);
  t.equal(readLong(bpf_cgrp_storage_get(m, cg('a'), null, F_CREATE)!), 0);
  t.equal(readLong(bpf_cgrp_storage_get(m, cg('b'), long(-7), F_CREATE)!), -7);
  const c = cg('c');
  t.equal(bpf_cgrp_storage_get(m, c, new Uint8Array(3), F_CREATE), null, 'not a value of this map');
  t.equal(c.bpfStorage, null);
});

t.test('bpf_cgrp_storage_get never creates on a dying cgroup ("only allocate new storage, when the cgroup is refcounted")', async (t) => {
  const { k, h, cg } = world();
  const m = cgrpMap(k);
  const other = cgrpMap(k);
  const a = cg('a');
  other.updateElem(a, long(1));
  a.get();
  h.remove(a);
  t.equal(bpf_cgrp_storage_get(m, a, null, F_CREATE), null);
  t.equal(readLong(bpf_cgrp_storage_get(other, a, null, F_CREATE)!), 1, 'an existing value is still readable');
  t.equal(bpf_cgrp_storage_delete(other, a), 0, 'and deletable');
  t.equal(a.bpfStorage, null);
  a.put();
});

t.test('bpf_cgrp_storage_get on something that is not a cgroup gives NULL and creates nothing', async (t) => {
  const { k } = world();
  const m = cgrpMap(k);
  const task = new Task(3);
  t.equal(bpf_cgrp_storage_get(m, task as never, null, F_CREATE), null);
  t.equal(task.bpfStorage, null);
  t.equal(bpf_cgrp_storage_get(m, 7 as never, null, F_CREATE), null);
  t.equal(bpf_cgrp_storage_delete(m, 7 as never), -ERRNO.ENOENT);
});

t.test('bpf_cgrp_storage_delete: NULL cgroup -EINVAL, absent -ENOENT, present 0', async (t) => {
  const { k, cg } = world();
  const m = cgrpMap(k);
  const a = cg('a');
  t.equal(bpf_cgrp_storage_delete(m, null), -ERRNO.EINVAL);
  t.equal(bpf_cgrp_storage_delete(m, a), -ERRNO.ENOENT);
  bpf_cgrp_storage_get(m, a, null, F_CREATE);
  t.equal(bpf_cgrp_storage_delete(m, a), 0);
  t.equal(bpf_cgrp_storage_delete(m, a), -ERRNO.ENOENT);
  t.throws(() => m.lookupElem(a), { code: 'ENOENT' });
});

t.test('recursion guard: a program re-entering while a cgroup storage op holds it gets NULL and -EBUSY, then all is released', async (t) => {
  const { k, cg } = world();
  const m = cgrpMap(k);
  const a = cg('a');
  m.updateElem(a, long(1));
  // What a tracing program attached inside bpf_local_storage_update sees: the syscall path holds
  // bpf_cgrp_storage_busy (bpf_cgrp_storage_lock) while it runs.
  cgrpStorageBusy.lock();
  try {
    t.equal(bpf_cgrp_storage_get(m, a), null, 'even an existing value');
    t.equal(bpf_cgrp_storage_get(m, cg('b'), null, F_CREATE), null);
    t.equal(bpf_cgrp_storage_delete(m, a), -ERRNO.EBUSY);
    m.updateElem(a, long(2)); // syscall paths lock unconditionally: no deadlock, no refusal
    t.equal(readLong(m.lookupElem(a)), 2);
  } finally {
    cgrpStorageBusy.unlock();
  }
  t.equal(cgrpStorageBusy.count, 0);
  t.equal(readLong(bpf_cgrp_storage_get(m, a)!), 2, 'the guard is free again');
  t.equal(bpf_cgrp_storage_delete(m, a), 0);
});

t.test('the recursion guard is released when a syscall path fails', async (t) => {
  const { k, cg } = world();
  const m = cgrpMap(k);
  const a = cg('a');
  t.throws(() => m.updateElem(a, long(1), 2), { code: 'ENOENT' });
  t.throws(() => m.deleteElem(a), { code: 'ENOENT' });
  t.throws(() => m.lookupElem(a), { code: 'ENOENT' });
  t.equal(cgrpStorageBusy.count, 0);
});

// --- lifetime -----------------------------------------------------------------------------------

t.test('values are freed when the cgroup is released (css_free), not at rmdir', async (t) => {
  const { k, h, cg } = world();
  const m1 = cgrpMap(k);
  const m2 = cgrpMap(k);
  const a = cg('a');
  const b = cg('b');
  m1.updateElem(a, long(1));
  m2.updateElem(a, long(2));
  m1.updateElem(b, long(3));
  a.get(); // a program (or an open fd) holds the cgroup
  h.remove(a);
  t.equal(m1.nrElems, 2, 'rmdir alone frees nothing');
  t.equal(readLong(bpf_cgrp_storage_get(m2, a)!), 2, 'a program holding the cgroup still reads it');
  a.put();
  t.ok(a.released);
  t.equal(a.bpfStorage, null);
  t.equal(m1.nrElems, 1, 'the released cgroup\'s values are gone from every map');
  t.equal(m2.nrElems, 0);
  t.equal(readLong(m1.lookupElem(b)), 3, 'other cgroups keep theirs');
  t.equal(cgrpStorageBusy.count, 0);
});

t.test('rmdir of a cgroup nobody holds releases it at once, freeing its values', async (t) => {
  const { k, h, cg } = world();
  const m = cgrpMap(k);
  const a = cg('a');
  bpf_cgrp_storage_get(m, a, null, F_CREATE);
  h.remove(a);
  t.ok(a.released);
  t.equal(m.nrElems, 0);
});

t.test('bpf_cgrp_storage_free on a cgroup without storage does nothing', async (t) => {
  const { cg } = world();
  const a = cg('a');
  bpf_cgrp_storage_free(a);
  t.equal(a.bpfStorage, null);
  t.equal(cgrpStorageBusy.count, 0);
});

t.test('map free leaves the cgroup alone: its release later finds no storage', async (t) => {
  const { k, h, cg } = world();
  const m = new Handle(cgrpMap(k));
  const a = cg('a');
  m.object.updateElem(a, long(1));
  m.close();
  t.equal(a.bpfStorage, null);
  h.remove(a);
  t.ok(a.released);
});

// --- the kernel selftest prog_tests/cgrp_local_storage.c, userspace and helper halves ----------------

const MAGIC_VALUE = 0xabcd1234;

t.test('selftest cgrp_local_storage/tp_btf: update BPF_ANY -> 0, lookup -> 1, delete -> 0; enter/exit counters 3/3, mismatch 0', async (t) => {
  const { k, cg } = world();
  const mapA = cgrpMap(k, 's64');
  const mapB = cgrpMap(k, 's64');
  const cgrp = cg('cgrp_local_storage');

  t.doesNotThrow(() => mapB.updateElem(cgrp.id, long(1), BPF_ANY), 'map_update_elem');
  t.equal(readLong(mapB.lookupElem(cgrp.id)), 1, 'map_lookup_elem');
  t.doesNotThrow(() => mapB.deleteElem(cgrp.id), 'map_delete_elem');

  const bss = { enter_cnt: 0, exit_cnt: 0, mismatch_cnt: 0 };
  const onEnter = (c: KernfsNode): void => {
    let ptr = bpf_cgrp_storage_get(mapA, c, null, F_CREATE); // populate value 0
    if (!ptr) return;
    if (bpf_cgrp_storage_delete(mapA, c)) return; // delete value 0
    ptr = bpf_cgrp_storage_get(mapA, c, null, 0); // value is not available
    if (ptr) return;
    ptr = bpf_cgrp_storage_get(mapA, c, null, F_CREATE); // re-populate the value
    if (!ptr) return;
    bss.enter_cnt++;
    writeLong(ptr, MAGIC_VALUE + bss.enter_cnt);
  };
  const onExit = (c: KernfsNode): void => {
    const ptr = bpf_cgrp_storage_get(mapA, c, null, F_CREATE);
    if (!ptr) return;
    bss.exit_cnt++;
    if (readLong(ptr) !== MAGIC_VALUE + bss.exit_cnt) bss.mismatch_cnt++;
  };
  // 3x syscalls: 1x attach and 2x gettid, each firing sys_enter then sys_exit in the target's cgroup.
  for (let i = 0; i < 3; i++) {
    onEnter(cgrp);
    onExit(cgrp);
  }
  t.equal(bss.enter_cnt, 3, 'enter_cnt');
  t.equal(bss.exit_cnt, 3, 'exit_cnt');
  t.equal(bss.mismatch_cnt, 0, 'mismatch_cnt');
});

t.test('selftest cgrp_local_storage/cgroup_iter_sleepable: get(F_CREATE) in a SELF_ONLY iter records the cgroup id', async (t) => {
  const { k, cg } = world();
  const map = cgrpMap(k, 'u64');
  const cgrp = cg('cgrp_local_storage');
  const bss = { cgroup_id: 0 };
  // The iter.s/cgroup program, run once for the one cgroup a SELF_ONLY walk visits.
  const cgroupIter = (c: KernfsNode | null): number => {
    if (!c) return 0;
    const ptr = bpf_cgrp_storage_get(map, c, null, F_CREATE);
    if (ptr) bss.cgroup_id = c.id;
    return 0;
  };
  cgroupIter(cgrp);
  t.equal(bss.cgroup_id, cgrp.id, 'cgroup_id');
  t.equal(map.nrElems, 1);
});
