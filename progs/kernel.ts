/**
 * The state the kernel keeps globally: the id tables of programs, maps and links, the local-storage
 * cache index allocators (one per owner type), and how cgroups, tasks and the like are found by id or
 * path. A process may hold several Kernels (tests do); objects never cross between them.
 */
import { bpfError } from '../uapi';
import { IdTable } from './idr';
import { Handle, type BpfObject, type ObjectKind } from './object';
import { LocalStorageCache } from './maps/cache-idx';
import type { CgroupResolver, OwnerType, TaskOwner } from './maps/owners';

export interface TaskResolver {
  taskByPid(pid: number): TaskOwner | undefined;
}

export interface KernelOptions {
  cgroups?: CgroupResolver;
  tasks?: TaskResolver;
  /** The memory maps may hold, bytes (the memory cgroup's limit the kernel charges them to). */
  mapMemLimit?: number;
}

export class Kernel {
  readonly progIdr = new IdTable<BpfObject>('prog');
  readonly mapIdr = new IdTable<BpfObject>('map');
  readonly linkIdr = new IdTable<BpfObject>('link');
  readonly storageCaches: Readonly<Record<OwnerType, LocalStorageCache>> = {
    cgroup: new LocalStorageCache(),
    task: new LocalStorageCache(),
    sk: new LocalStorageCache(),
    inode: new LocalStorageCache(),
  };
  cgroups: CgroupResolver | undefined;
  tasks: TaskResolver | undefined;
  readonly mapMemLimit: number;

  constructor(opts: KernelOptions = {}) {
    this.cgroups = opts.cgroups;
    this.tasks = opts.tasks;
    this.mapMemLimit = opts.mapMemLimit ?? Infinity;
  }

  /** What the live maps hold, by their memUsage (bpftool's memlock). */
  mapMemory(): number {
    let sum = 0;
    for (const m of this.mapIdr.list()) sum += (m as BpfObject & { memUsage(): number }).memUsage();
    return sum;
  }

  private table(kind: ObjectKind): IdTable<BpfObject> {
    return kind === 'prog' ? this.progIdr : kind === 'map' ? this.mapIdr : this.linkIdr;
  }

  /** bpf_{prog,map,link}_get_fd_by_id: a new handle on a live object; ENOENT otherwise. */
  getById<T extends BpfObject = BpfObject>(kind: ObjectKind, id: number): Handle<T> {
    const obj = this.table(kind).get(id);
    if (obj === undefined || !obj.tryGet()) throw bpfError('ENOENT', `no ${kind} with id ${id}`);
    return new Handle(obj as T);
  }

  /** Live objects of one kind in id order (`bpftool prog|map|link show`). */
  list<T extends BpfObject = BpfObject>(kind: ObjectKind): T[] {
    return this.table(kind).list() as T[];
  }

  /** BPF_{PROG,MAP,LINK}_GET_NEXT_ID */
  nextId(kind: ObjectKind, id: number): number {
    return this.table(kind).nextId(id);
  }
}
