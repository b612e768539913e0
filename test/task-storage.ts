import t from 'tap';
import { BPF_F_NO_PREALLOC, BPF_LOCAL_STORAGE_GET_F_CREATE, BPF_NOEXIST, BpfMapType, ERRNO } from '../uapi';
import { Kernel, type TaskResolver } from '../progs/kernel';
import { Handle } from '../progs/object';
import { createMap } from '../progs/maps/create';
import type { MapSpec } from '../progs/maps/map';
import type { OwnerStorage, TaskOwner } from '../progs/maps/owners';
import { ValueSchema } from '../progs/maps/schema';
import {
  TaskStorageMap,
  bpf_task_storage_delete,
  bpf_task_storage_free,
  bpf_task_storage_get,
  taskStorageBusy,
} from '../progs/maps/local-storage';
import { CgroupHierarchy } from '../tags/hierarchy';

const F_CREATE = BPF_LOCAL_STORAGE_GET_F_CREATE;

/** A task: exit() marks it dying, release() is its last put (free_task), which destroys its storage. */
class Task implements TaskOwner {
  bpfStorage: OwnerStorage | null = null;
  dying = false;
  constructor(readonly pid: number) {}
  exit(): void {
    this.dying = true;
  }
  release(): void {
    this.bpfStorage?.destroy();
  }
}

/** The pid table: a reaped task leaves it. */
class Pids implements TaskResolver {
  readonly tasks = new Map<number, Task>();
  spawn(pid: number): Task {
    const task = new Task(pid);
    this.tasks.set(pid, task);
    return task;
  }
  reap(task: Task): void {
    this.tasks.delete(task.pid);
    task.release();
  }
  taskByPid(pid: number): TaskOwner | undefined {
    return this.tasks.get(pid);
  }
}

function taskMap(k: Kernel): TaskStorageMap {
  const v = ValueSchema.define('u32');
  const spec: MapSpec = {
    type: BpfMapType.TASK_STORAGE,
    keySize: 4,
    valueSize: 4,
    maxEntries: 0,
    flags: BPF_F_NO_PREALLOC,
    btf: { key: ValueSchema.define('s32'), value: v },
  };
  return createMap<TaskStorageMap>(k, spec).object;
}

function world(): { k: Kernel; pids: Pids } {
  const pids = new Pids();
  return { k: new Kernel({ tasks: pids }), pids };
}

const u32 = (n: number): Uint8Array => new Uint8Array(new Uint32Array([n]).buffer);
const readU32 = (b: Uint8Array): number => new DataView(b.buffer, b.byteOffset).getUint32(0, true);

t.test('a task key may be the task object or its pid (the kernel takes a pidfd)', async (t) => {
  const { k, pids } = world();
  const m = taskMap(k);
  const task = pids.spawn(100);
  m.updateElem(100, u32(1));
  t.equal(readU32(m.lookupElem(task)), 1);
  m.updateElem(task, u32(2));
  t.equal(readU32(m.lookupElem(100)), 2);
  m.deleteElem(100);
  t.throws(() => m.lookupElem(task), { code: 'ENOENT' }, 'no value: ENOENT');
  t.throws(() => m.deleteElem(task), { code: 'ENOENT' });
});

t.test('a key that is not a task is EBADF (pidfd_get_pid on a non-pidfd): a cgroup, a string, NaN, pid <= 0', async (t) => {
  const { k } = world();
  const m = taskMap(k);
  const h = new CgroupHierarchy(1);
  t.throws(() => m.lookupElem(h.root), { code: 'EBADF' });
  t.throws(() => m.lookupElem('100'), { code: 'EBADF' });
  t.throws(() => m.lookupElem(Number.NaN), { code: 'EBADF' });
  t.throws(() => m.lookupElem(0), { code: 'EBADF' });
  t.throws(() => m.lookupElem(-1), { code: 'EBADF' });
  t.throws(() => m.updateElem(1.5, u32(0)), { code: 'EBADF' });
});

t.test('a task that has exited, or a pid with no task, is ENOENT (pid_task() finds nothing)', async (t) => {
  const { k, pids } = world();
  const m = taskMap(k);
  const task = pids.spawn(5);
  m.updateElem(task, u32(1));
  task.exit();
  t.throws(() => m.lookupElem(task), { code: 'ENOENT' });
  t.throws(() => m.lookupElem(5), { code: 'ENOENT' });
  t.throws(() => m.updateElem(5, u32(2)), { code: 'ENOENT' });
  t.throws(() => m.deleteElem(task), { code: 'ENOENT' });
  t.throws(() => m.lookupElem(6), { code: 'ENOENT' });
  t.throws(() => taskMap(new Kernel()).lookupElem(5), { code: 'ENOENT' }, 'no task resolver: no task has that pid');
});

t.test('bpf_task_storage_get: bad flags or NULL task give NULL; existing value returned; F_CREATE creates zeroed or from value', async (t) => {
  const { k, pids } = world();
  const m = taskMap(k);
  const task = pids.spawn(1);
  t.equal(bpf_task_storage_get(m, task, null, 4), null);
  t.equal(bpf_task_storage_get(m, null, null, F_CREATE), null);
  t.equal(bpf_task_storage_get(m, task), null, 'absent without F_CREATE');
  const v = bpf_task_storage_get(m, task, null, F_CREATE)!;
  t.equal(readU32(v), 0);
  v[0] = 9;
  t.equal(bpf_task_storage_get(m, task), v);
  t.equal(readU32(m.lookupElem(1)), 9);
  t.equal(readU32(bpf_task_storage_get(m, pids.spawn(2), u32(77), F_CREATE)!), 77);
  t.equal(bpf_task_storage_get(m, { pid: 3 } as never, null, F_CREATE), null, 'not a task: nothing created');
});

t.test('bpf_task_storage_get never creates for an exited task, but still reads an existing value', async (t) => {
  const { k, pids } = world();
  const m = taskMap(k);
  const other = taskMap(k);
  const task = pids.spawn(1);
  bpf_task_storage_get(other, task, u32(3), F_CREATE);
  task.exit();
  t.equal(bpf_task_storage_get(m, task, null, F_CREATE), null);
  t.equal(readU32(bpf_task_storage_get(other, task, null, F_CREATE)!), 3);
});

t.test('bpf_task_storage_delete: NULL task -EINVAL, absent -ENOENT, present 0', async (t) => {
  const { k, pids } = world();
  const m = taskMap(k);
  const task = pids.spawn(1);
  t.equal(bpf_task_storage_delete(m, null), -ERRNO.EINVAL);
  t.equal(bpf_task_storage_delete(m, task), -ERRNO.ENOENT);
  m.updateElem(task, u32(1), BPF_NOEXIST);
  t.equal(bpf_task_storage_delete(m, task), 0);
  t.equal(task.bpfStorage, null);
});

t.test('recursion guard (bpf_task_storage_get_recur, v6.2+): re-entered, get still finds a value but creates none; delete is -ENOENT before -EBUSY', async (t) => {
  const { k, pids } = world();
  const m = taskMap(k);
  const task = pids.spawn(1);
  const other = pids.spawn(2);
  m.updateElem(task, u32(1));
  taskStorageBusy.lock();
  try {
    t.equal(bpf_task_storage_get(m, task)![0], 1, 'an existing value is still found');
    t.equal(bpf_task_storage_get(m, other, null, F_CREATE), null, 'no creation while busy');
    t.equal(other.bpfStorage, null);
    t.equal(bpf_task_storage_delete(m, other), -ERRNO.ENOENT, 'absent: ENOENT first');
    t.equal(bpf_task_storage_delete(m, task), -ERRNO.EBUSY);
    m.deleteElem(task);
  } finally {
    taskStorageBusy.unlock();
  }
  t.equal(taskStorageBusy.count, 0);
  t.equal(bpf_task_storage_get(m, task, null, F_CREATE)![0], 0);
});

t.test('values are freed when the task is released (bpf_task_storage_free), in every map', async (t) => {
  const { k, pids } = world();
  const a = taskMap(k);
  const b = new Handle(taskMap(k));
  const task = pids.spawn(1);
  const other = pids.spawn(2);
  bpf_task_storage_get(a, task, null, F_CREATE);
  bpf_task_storage_get(b.object, task, null, F_CREATE);
  bpf_task_storage_get(a, other, null, F_CREATE);
  task.exit();
  pids.reap(task);
  t.equal(task.bpfStorage, null);
  t.equal(a.nrElems, 1);
  t.equal(b.object.nrElems, 0);
  t.equal(taskStorageBusy.count, 0);
  b.close();
  t.equal(a.nrElems, 1, 'map free of another map leaves this one');
  bpf_task_storage_free(task);
  t.equal(task.bpfStorage, null, 'freeing a task without storage does nothing');
});
