import t from 'tap';
import { BPF_F_NO_PREALLOC, BPF_LOCAL_STORAGE_GET_F_CREATE, BpfMapType, ERRNO } from '../uapi';
import { Kernel } from '../progs/kernel';
import { createMap } from '../progs/maps/create';
import type { MapSpec } from '../progs/maps/map';
import type { InodeOwner, OwnerStorage } from '../progs/maps/owners';
import { ValueSchema } from '../progs/maps/schema';
import {
  InodeStorageMap,
  bpf_inode_storage_delete,
  bpf_inode_storage_free,
  bpf_inode_storage_get,
} from '../progs/maps/local-storage';
import { CgroupHierarchy } from '../tags/hierarchy';

const F_CREATE = BPF_LOCAL_STORAGE_GET_F_CREATE;

/** An inode: evict() marks it dying and destroys its storage (security_inode_free). */
class Inode implements InodeOwner {
  bpfStorage: OwnerStorage | null = null;
  dying = false;
  constructor(readonly ino: number) {}
  evict(): void {
    this.dying = true;
    this.bpfStorage?.destroy();
  }
}

function inodeMap(k: Kernel): InodeStorageMap {
  const v = ValueSchema.define({ reads: 'u64', writes: 'u64' });
  const spec: MapSpec = {
    type: BpfMapType.INODE_STORAGE,
    keySize: 4,
    valueSize: v.size,
    maxEntries: 0,
    flags: BPF_F_NO_PREALLOC,
    btf: { key: ValueSchema.define('s32'), value: v },
  };
  return createMap<InodeStorageMap>(k, spec).object;
}

t.test('the key is an open file\'s inode (fget_raw): anything else, or an evicted inode, is EBADF', async (t) => {
  const m = inodeMap(new Kernel());
  const ino = new Inode(12);
  m.updateElem(ino, new Uint8Array(16).fill(1));
  t.same([...m.lookupElem(ino)], Array(16).fill(1));
  t.throws(() => m.lookupElem(12), { code: 'EBADF' });
  t.throws(() => m.lookupElem(new CgroupHierarchy(1).root), { code: 'EBADF' }, 'a cgroup is not an InodeOwner here');
  t.throws(() => m.lookupElem('/etc/passwd'), { code: 'EBADF' });
  m.deleteElem(ino);
  t.throws(() => m.lookupElem(ino), { code: 'ENOENT' });
  t.throws(() => m.deleteElem(ino), { code: 'ENOENT' });
  const gone = new Inode(13);
  gone.evict();
  t.throws(() => m.updateElem(gone, new Uint8Array(16)), { code: 'EBADF' });
  t.throws(() => m.getNextKey(null), { code: 'ENOTSUPP' });
});

t.test('bpf_inode_storage_get: bad flags or NULL inode give NULL; existing value returned; F_CREATE creates', async (t) => {
  const m = inodeMap(new Kernel());
  const ino = new Inode(1);
  t.equal(bpf_inode_storage_get(m, ino, null, 2), null);
  t.equal(bpf_inode_storage_get(m, null, null, F_CREATE), null);
  t.equal(bpf_inode_storage_get(m, ino), null, 'absent without F_CREATE');
  const v = bpf_inode_storage_get(m, ino, null, F_CREATE)!;
  t.same([...v], Array(16).fill(0));
  const view = m.valueSchema!.view<{ reads: bigint }>(v);
  view.reads += 1n;
  t.equal(bpf_inode_storage_get(m, ino), v);
  t.same(m.valueSchema!.toJson(m.lookupElem(ino)), { reads: 1, writes: 0 });
  t.equal(bpf_inode_storage_get(m, { ino: 2 } as never, null, F_CREATE), null, 'not an inode: nothing created');
  const other = new Inode(3);
  t.equal(bpf_inode_storage_get(m, other, new Uint8Array(8), F_CREATE), null, 'a value of the wrong size: NULL');
  t.equal(other.bpfStorage, null);
});

t.test('bpf_inode_storage_get does not create for an inode being evicted, but reads an existing value', async (t) => {
  const m = inodeMap(new Kernel());
  const other = inodeMap(new Kernel());
  const ino = new Inode(1);
  bpf_inode_storage_get(other, ino, null, F_CREATE);
  ino.dying = true;
  t.equal(bpf_inode_storage_get(m, ino, null, F_CREATE), null);
  t.not(bpf_inode_storage_get(other, ino), null);
});

t.test('bpf_inode_storage_delete: NULL inode -EINVAL, absent -ENOENT, present 0', async (t) => {
  const m = inodeMap(new Kernel());
  const ino = new Inode(1);
  t.equal(bpf_inode_storage_delete(m, null), -ERRNO.EINVAL);
  t.equal(bpf_inode_storage_delete(m, ino), -ERRNO.ENOENT);
  bpf_inode_storage_get(m, ino, null, F_CREATE);
  t.equal(bpf_inode_storage_delete(m, ino), 0);
  t.equal(ino.bpfStorage, null);
});

t.test('values are freed when the inode is evicted (bpf_inode_storage_free)', async (t) => {
  const k = new Kernel();
  const a = inodeMap(k);
  const b = inodeMap(k);
  const ino = new Inode(1);
  const keep = new Inode(2);
  bpf_inode_storage_get(a, ino, null, F_CREATE);
  bpf_inode_storage_get(b, ino, null, F_CREATE);
  bpf_inode_storage_get(a, keep, null, F_CREATE);
  ino.evict();
  t.equal(ino.bpfStorage, null);
  t.equal(a.nrElems, 1);
  t.equal(b.nrElems, 0);
  bpf_inode_storage_free(ino);
  t.equal(ino.bpfStorage, null, 'freeing an inode without storage does nothing');
});
