import t from 'tap';
import {
  BPF_ANY,
  BPF_EXIST,
  BPF_F_CLONE,
  BPF_F_NO_PREALLOC,
  BPF_NOEXIST,
  BPF_SK_STORAGE_GET_F_CREATE,
  BpfMapType,
  ERRNO,
} from '../uapi';
import { Kernel } from '../progs/kernel';
import { Handle } from '../progs/object';
import { createMap } from '../progs/maps/create';
import type { MapSpec } from '../progs/maps/map';
import type { OwnerStorage, SockOwner } from '../progs/maps/owners';
import { ValueSchema, type TypeDesc } from '../progs/maps/schema';
import {
  BPF_LOCAL_STORAGE_SIZE,
  LocalStorage,
  SkStorageMap,
  bpf_sk_storage_clone,
  bpf_sk_storage_delete,
  bpf_sk_storage_free,
  bpf_sk_storage_get,
} from '../progs/maps/local-storage';
import { CgroupHierarchy } from '../tags/hierarchy';

const F_CREATE = BPF_SK_STORAGE_GET_F_CREATE;
/** net.core.optmem_max's default (20480 on older kernels; what matters is that it bounds the charge). */
const OPTMEM_MAX = 20480;

/** A socket: close() drops the last reference and runs __sk_destruct, which destroys its storage. */
class Sock implements SockOwner {
  static nextCookie = 1;
  readonly cookie = Sock.nextCookie++;
  fullsock = true;
  refcnt = 1;
  omemAlloc = 0;
  /** Runs when the storage core clears this socket's storage pointer (it frees the storage). */
  onStorageCleared: (() => void) | null = null;
  #storage: OwnerStorage | null = null;
  constructor(readonly optmemMax = OPTMEM_MAX) {}
  get bpfStorage(): OwnerStorage | null {
    return this.#storage;
  }
  set bpfStorage(s: OwnerStorage | null) {
    const cleared = this.#storage !== null && s === null;
    this.#storage = s;
    if (cleared) this.onStorageCleared?.();
  }
  close(): void {
    this.refcnt = 0;
    this.bpfStorage?.destroy();
  }
}

function skMap(k: Kernel, value: TypeDesc = 'u64', flags = BPF_F_NO_PREALLOC): SkStorageMap {
  const v = ValueSchema.define(value);
  const spec: MapSpec = {
    type: BpfMapType.SK_STORAGE,
    keySize: 4,
    valueSize: v.size,
    maxEntries: 0,
    flags,
    btf: { key: ValueSchema.define('s32'), value: v },
  };
  return createMap<SkStorageMap>(k, spec).object;
}

const u64 = (n: number): Uint8Array => new Uint8Array(new BigUint64Array([BigInt(n)]).buffer);
const readU64 = (b: Uint8Array): number => Number(new DataView(b.buffer, b.byteOffset).getBigUint64(0, true));

t.test('the key is a socket (sockfd_lookup): another object is ENOTSOCK, anything else or a closed socket EBADF', async (t) => {
  const k = new Kernel();
  const m = skMap(k);
  const sk = new Sock();
  m.updateElem(sk, u64(1));
  t.equal(readU64(m.lookupElem(sk)), 1);
  t.throws(() => m.lookupElem(new CgroupHierarchy(1).root), { code: 'ENOTSOCK' });
  t.throws(() => m.lookupElem({}), { code: 'ENOTSOCK' });
  t.throws(() => m.lookupElem(3), { code: 'EBADF' });
  t.throws(() => m.lookupElem(null), { code: 'EBADF' });
  const closed = new Sock();
  closed.close();
  t.throws(() => m.updateElem(closed, u64(1)), { code: 'EBADF' });
  m.deleteElem(sk);
  t.throws(() => m.lookupElem(sk), { code: 'ENOENT' });
  t.throws(() => m.deleteElem(sk), { code: 'ENOENT' });
  t.throws(() => m.getNextKey(null), { code: 'ENOTSUPP' });
});

t.test('optmem: the storage and each elem are charged to sk_omem_alloc and returned on delete', async (t) => {
  const k = new Kernel();
  const a = skMap(k);
  const b = skMap(k, ['u8', 32]);
  const sk = new Sock();
  a.updateElem(sk, u64(1));
  t.equal(sk.omemAlloc, BPF_LOCAL_STORAGE_SIZE + a.elemSize);
  b.updateElem(sk, new Uint8Array(32));
  t.equal(sk.omemAlloc, BPF_LOCAL_STORAGE_SIZE + a.elemSize + b.elemSize);
  a.updateElem(sk, u64(2));
  t.equal(sk.omemAlloc, BPF_LOCAL_STORAGE_SIZE + a.elemSize + b.elemSize, 'a replace charges the new and returns the old');
  t.equal(sk.omemAlloc, (sk.bpfStorage as LocalStorage).memCharge);
  a.deleteElem(sk);
  t.equal(sk.omemAlloc, BPF_LOCAL_STORAGE_SIZE + b.elemSize);
  b.deleteElem(sk);
  t.equal(sk.omemAlloc, 0, 'the last delete returns the storage\'s charge too');
});

t.test('optmem: a charge reaching sysctl_optmem_max fails creation with ENOMEM (helper: NULL), charging nothing', async (t) => {
  const k = new Kernel();
  const m = skMap(k);
  const cost = BPF_LOCAL_STORAGE_SIZE + m.elemSize;
  const tight = new Sock(cost); // "omem_alloc + size < optmem_max": exactly the cost does not fit
  t.throws(() => m.updateElem(tight, u64(1)), { code: 'ENOMEM' });
  t.equal(tight.omemAlloc, 0);
  t.equal(tight.bpfStorage, null);
  t.equal(bpf_sk_storage_get(m, tight, null, F_CREATE), null);
  const tiny = new Sock(m.elemSize); // the elem alone is refused ("size <= optmem_max" passes, the sum does not)
  t.throws(() => m.updateElem(tiny, u64(1)), { code: 'ENOMEM' });
  t.equal(tiny.omemAlloc, 0);
  const fits = new Sock(cost + 1);
  m.updateElem(fits, u64(1));
  t.equal(fits.omemAlloc, cost);
  const small = new Sock(m.elemSize - 1);
  t.throws(() => m.updateElem(small, u64(1)), { code: 'ENOMEM' }, 'size > optmem_max');
});

t.test('optmem: a full socket answers ENOMEM before EEXIST/ENOENT (the new elem is allocated before check_flags)', async (t) => {
  const k = new Kernel();
  const a = skMap(k);
  const b = skMap(k);
  const sk = new Sock(BPF_LOCAL_STORAGE_SIZE + a.elemSize + 1);
  a.updateElem(sk, u64(1));
  t.throws(() => a.updateElem(sk, u64(2), BPF_NOEXIST), { code: 'ENOMEM' });
  t.throws(() => b.updateElem(sk, u64(2), BPF_EXIST), { code: 'ENOMEM' });
  t.throws(() => a.updateElem(sk, u64(2), BPF_ANY), { code: 'ENOMEM' }, 'even a replace needs room for the new elem');
  t.equal(readU64(a.lookupElem(sk)), 1);
  const roomy = new Sock();
  a.updateElem(roomy, u64(1));
  const before = roomy.omemAlloc;
  t.throws(() => a.updateElem(roomy, u64(2), BPF_NOEXIST), { code: 'EEXIST' });
  t.equal(roomy.omemAlloc, before, 'the refused elem\'s charge is returned');
});

t.test('bpf_sk_storage_get: NULL sk, a non-full socket or flags > F_CREATE give NULL', async (t) => {
  const k = new Kernel();
  const m = skMap(k);
  const sk = new Sock();
  m.updateElem(sk, u64(5));
  t.equal(bpf_sk_storage_get(m, null, null, F_CREATE), null);
  t.equal(bpf_sk_storage_get(m, sk, null, 2), null);
  const req = new Sock();
  req.fullsock = false;
  t.equal(bpf_sk_storage_get(m, req, null, F_CREATE), null);
  t.equal(req.bpfStorage, null);
  t.equal(readU64(bpf_sk_storage_get(m, sk)!), 5);
});

t.test('bpf_sk_storage_get: F_CREATE only while sk_refcnt is not zero ("Cannot add new elem to a going away sk")', async (t) => {
  const k = new Kernel();
  const m = skMap(k);
  const sk = new Sock();
  t.equal(bpf_sk_storage_get(m, sk), null, 'absent without F_CREATE');
  t.equal(readU64(bpf_sk_storage_get(m, sk, u64(3), F_CREATE)!), 3);
  const going = new Sock();
  going.refcnt = 0;
  t.equal(bpf_sk_storage_get(m, going, null, F_CREATE), null);
  t.equal(going.bpfStorage, null);
  t.equal(bpf_sk_storage_get(m, { cookie: 1 } as never, null, F_CREATE), null, 'not a socket: nothing created');
});

t.test('bpf_sk_storage_delete: non-full socket -EINVAL, going away or absent -ENOENT, present 0', async (t) => {
  const k = new Kernel();
  const m = skMap(k);
  const sk = new Sock();
  t.equal(bpf_sk_storage_delete(m, null), -ERRNO.EINVAL);
  const req = new Sock();
  req.fullsock = false;
  t.equal(bpf_sk_storage_delete(m, req), -ERRNO.EINVAL);
  t.equal(bpf_sk_storage_delete(m, sk), -ERRNO.ENOENT);
  bpf_sk_storage_get(m, sk, null, F_CREATE);
  sk.refcnt = 0;
  t.equal(bpf_sk_storage_delete(m, sk), -ERRNO.ENOENT, 'refcount_inc_not_zero fails');
  sk.refcnt = 1;
  t.equal(bpf_sk_storage_delete(m, sk), 0);
  t.equal(sk.omemAlloc, 0);
});

t.test('bpf_sk_storage_free (__sk_destruct): all values go and the whole charge is returned to the socket', async (t) => {
  const k = new Kernel();
  const a = skMap(k);
  const b = skMap(k);
  const sk = new Sock();
  bpf_sk_storage_get(a, sk, null, F_CREATE);
  bpf_sk_storage_get(b, sk, null, F_CREATE);
  sk.close();
  t.equal(sk.bpfStorage, null);
  t.equal(sk.omemAlloc, 0);
  t.equal(a.nrElems + b.nrElems, 0);
  bpf_sk_storage_free(sk);
  t.equal(sk.omemAlloc, 0, 'freeing a socket without storage does nothing');
});

t.test('map free returns each value\'s charge to its socket', async (t) => {
  const k = new Kernel();
  const a = new Handle(skMap(k));
  const b = skMap(k);
  const sk = new Sock();
  const only = new Sock();
  a.object.updateElem(sk, u64(1));
  b.updateElem(sk, u64(2));
  a.object.updateElem(only, u64(3));
  a.close();
  t.equal(sk.omemAlloc, BPF_LOCAL_STORAGE_SIZE + b.elemSize);
  t.equal(only.omemAlloc, 0);
  t.equal(only.bpfStorage, null, 'its storage went with its last value');
});

// --- bpf_sk_storage_clone --------------------------------------------------------------------------

t.test('clone on accept copies only values of BPF_F_CLONE maps, as independent copies charged to the new socket', async (t) => {
  const k = new Kernel();
  const cloned = skMap(k, 'u64', BPF_F_NO_PREALLOC | BPF_F_CLONE);
  const cloned2 = skMap(k, ['u8', 16], BPF_F_NO_PREALLOC | BPF_F_CLONE);
  const plain = skMap(k);
  const listener = new Sock();
  cloned.updateElem(listener, u64(11));
  cloned2.updateElem(listener, new Uint8Array(16).fill(2));
  plain.updateElem(listener, u64(22));
  const newsk = new Sock();
  newsk.bpfStorage = listener.bpfStorage; // sk_clone_lock copies the listener's struct: the pointer is reset first
  t.equal(bpf_sk_storage_clone(listener, newsk), 0);
  t.equal(readU64(cloned.lookupElem(newsk)), 11);
  t.same([...cloned2.lookupElem(newsk)], Array(16).fill(2));
  t.throws(() => plain.lookupElem(newsk), { code: 'ENOENT' });
  t.not(bpf_sk_storage_get(cloned, newsk), bpf_sk_storage_get(cloned, listener), 'a copy, not a shared value');
  bpf_sk_storage_get(cloned, newsk)![0] = 99;
  t.equal(readU64(cloned.lookupElem(listener)), 11);
  t.equal(newsk.omemAlloc, BPF_LOCAL_STORAGE_SIZE + cloned.elemSize + cloned2.elemSize);
  t.not(newsk.bpfStorage, listener.bpfStorage, 'the new socket has storage of its own');
  t.equal(cloned.nrElems, 2);
  t.equal(cloned.refs, 1, 'the reference taken for the copy is put back');
});

t.test('clone: a listener without storage, or with no BPF_F_CLONE values, gives the new socket no storage', async (t) => {
  const k = new Kernel();
  const plain = skMap(k);
  const newsk = new Sock();
  newsk.bpfStorage = { destroy: () => undefined }; // the listener's pointer, copied by sk_clone_lock
  t.equal(bpf_sk_storage_clone(new Sock(), newsk), 0);
  t.equal(newsk.bpfStorage, null);
  const listener = new Sock();
  plain.updateElem(listener, u64(1));
  t.equal(bpf_sk_storage_clone(listener, newsk), 0);
  t.equal(newsk.bpfStorage, null);
  t.equal(newsk.omemAlloc, 0);
});

t.test('clone copies the value around its bpf_spin_lock: the copy\'s lock starts released', async (t) => {
  const k = new Kernel();
  const m = skMap(k, { lock: 'bpf_spin_lock', n: 'u32' }, BPF_F_NO_PREALLOC | BPF_F_CLONE);
  const listener = new Sock();
  const v = bpf_sk_storage_get(m, listener, m.valueSchema!.fromJson({ n: 5 }), F_CREATE)!;
  v[0] = 1; // held by a program on the listener
  const newsk = new Sock();
  t.equal(bpf_sk_storage_clone(listener, newsk), 0);
  t.same(m.valueSchema!.toJson(bpf_sk_storage_get(m, newsk)!), { lock: { val: 0 }, n: 5 });
});

t.test('clone: -ENOMEM when the new socket cannot be charged; the copies made stay for the caller to free', async (t) => {
  const k = new Kernel();
  const a = skMap(k, 'u64', BPF_F_NO_PREALLOC | BPF_F_CLONE);
  const b = skMap(k, 'u64', BPF_F_NO_PREALLOC | BPF_F_CLONE);
  const listener = new Sock();
  a.updateElem(listener, u64(1));
  b.updateElem(listener, u64(2));
  // Room for the storage and one elem only: the second copy fails.
  const newsk = new Sock(BPF_LOCAL_STORAGE_SIZE + 2 * a.elemSize);
  t.equal(bpf_sk_storage_clone(listener, newsk), -ERRNO.ENOMEM);
  t.equal(newsk.omemAlloc, BPF_LOCAL_STORAGE_SIZE + a.elemSize, 'one copy made and charged');
  bpf_sk_storage_free(newsk);
  t.equal(newsk.omemAlloc, 0);
  t.equal(newsk.bpfStorage, null);
  t.equal(a.nrElems + b.nrElems, 2, 'the listener keeps its values');
  t.equal(a.refs + b.refs, 2, 'no map reference leaked');

  const noRoom = new Sock(a.elemSize + 1); // the elem fits, the storage does not
  t.equal(bpf_sk_storage_clone(listener, noRoom), -ERRNO.ENOMEM);
  t.equal(noRoom.omemAlloc, 0, 'the copy\'s charge is returned when its storage cannot be');
  t.equal(noRoom.bpfStorage, null);
});

t.test('clone skips a map whose last reference is gone (bpf_map_inc_not_zero fails) while map free unlinks its values', async (t) => {
  const k = new Kernel();
  const m = new Handle(skMap(k, 'u64', BPF_F_NO_PREALLOC | BPF_F_CLONE));
  const map = m.object;
  const listener = new Sock();
  m.object.updateElem(listener, u64(1));
  // Map free walks the map's values newest first. Freeing `trigger`'s storage clears its storage
  // pointer, and that is where this socket runs an accept() on the listener: map free is then under
  // way, the map's refcount is zero, and the listener's value is still linked.
  const newsk = new Sock();
  let ret = Number.NaN;
  let refsSeen = -1;
  const trigger = new Sock();
  trigger.onStorageCleared = (): void => {
    refsSeen = map.refs;
    ret = bpf_sk_storage_clone(listener, newsk);
  };
  m.object.updateElem(trigger, u64(2));
  m.close();
  t.equal(refsSeen, 0);
  t.equal(ret, 0);
  t.equal(newsk.bpfStorage, null, 'nothing copied from a map going away');
  t.equal(newsk.omemAlloc, 0);
  t.equal(map.nrElems, 0);
  t.equal(listener.bpfStorage, null);
});
