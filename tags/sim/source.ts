/**
 * SimCgroupSource: a CgroupSource over a simulated cgroup2 mount (SimCgroupfs, in memfs) with a
 * workload simulator, so everything above tags/ can be tested deterministically without root.
 *
 * It behaves as the host source does. While started it tracks the cgroupfs's mkdir/rmdir events
 * (the host's inotify); stop() (alias pause()) stops that, so changes made meanwhile through
 * `cgroupfs` (what a shell's mkdir would do) or directly in the volume are seen only by reconcile()
 * or the next start(). Its own mkdir/rmdir update the hierarchy whether tracking or not.
 *
 * Interface files are kept in the volume, rewritten whenever the workload or the tree changes, and
 * readFile reads them from there, as the host reads its mount. /proc/<pid>/{comm,cgroup,schedstat}
 * of every simulated task are in the same volume under `procRoot`.
 */
import createDebug from 'debug';
import type { IFs } from 'memfs';
import { bpfError, fromSystemError } from '../../uapi';
import { CgroupHierarchy } from '../hierarchy';
import type { KernfsNode } from '../kernfs-node';
import type { CgroupSource, InterfaceFile, ReconcileResult } from '../source';
import type { Task, TaskResolver } from '../task';
import { SimCgroupfs, cgroupPath, parentPath } from './cgroupfs';
import { STATIC_FILES, filesOf, freshFigures, schedstatText, type CgroupFigures, type SimFile } from './files';
import { Workload, type WorkloadChange } from './workload';

const debug = createDebug('vbpffs:tags');

export interface SimSourceOptions {
  /** Where the cgroup2 root is in the volume. Default /sys/fs/cgroup. */
  mountPoint?: string;
  /** Where the simulated procfs is in the volume. Default /proc. */
  procRoot?: string;
  /** The root cgroup's id; later ones count up from it. Default 1, as on a real host. */
  firstId?: number;
  /** The workload clock's start, in ns. Default 0. */
  clockNs?: number;
}

export class SimCgroupSource implements CgroupSource, TaskResolver {
  readonly kind = 'simulated' as const;
  readonly cgroupfs: SimCgroupfs;
  readonly mountPoint: string;
  readonly procRoot: string;
  readonly hierarchy: CgroupHierarchy;
  readonly workload: Workload;
  #tracking = false;

  constructor(opts: SimSourceOptions = {}) {
    this.cgroupfs = new SimCgroupfs({ mountPoint: opts.mountPoint ?? '/sys/fs/cgroup', firstId: opts.firstId ?? 1 });
    this.mountPoint = this.cgroupfs.mountPoint;
    this.procRoot = opts.procRoot ?? '/proc';
    this.fs.mkdirSync(this.procRoot, { recursive: true });
    this.hierarchy = new CgroupHierarchy(this.cgroupfs.idOf('/') as number);
    this.workload = new Workload(opts.clockNs ?? 0);

    this.cgroupfs.on('mkdir', (p, id) => this.#tracking && this.#seenMkdir(p, id));
    this.cgroupfs.on('rmdir', (_p, id) => this.#tracking && this.#seenRmdir(id));
    this.workload.on('change', (c) => this.#flushWorkload(c));
    // Descendant counts in cgroup.stat change with every mkdir, rmdir and release below. The nodes
    // keep the counts (as struct cgroup does), so each ancestor's file costs O(1) to render.
    const counts = (n: KernfsNode): void => {
      for (let a = n.parent; a !== null; a = a.parent) this.#writeStat(a);
    };
    this.hierarchy.on('mkdir', counts).on('rmdir', counts).on('release', counts);
  }

  /** The memfs file system the simulated mount and procfs live in. */
  get fs(): IFs {
    return this.cgroupfs.fs;
  }

  /** Loads the tree on first start (a later start reconciles) and begins tracking. */
  async start(): Promise<void> {
    if (this.#tracking) return;
    await this.reconcile();
    this.#tracking = true;
  }

  async stop(): Promise<void> {
    this.#tracking = false;
  }

  /** stop() by the name tests use for it. */
  pause(): Promise<void> {
    return this.stop();
  }

  /** start() by the name tests use for it. */
  resume(): Promise<void> {
    return this.start();
  }

  get tracking(): boolean {
    return this.#tracking;
  }

  async mkdir(path: string): Promise<KernfsNode> {
    const c = cgroupPath(path);
    return this.#ensure(c, this.cgroupfs.mkdir(c));
  }

  async rmdir(path: string): Promise<void> {
    const c = cgroupPath(path);
    const id = this.cgroupfs.rmdir(c);
    const node = this.hierarchy.cgroupById(id);
    if (node !== undefined && !node.dying) this.hierarchy.remove(node);
  }

  async readFile(cgroup: KernfsNode, file: InterfaceFile): Promise<string> {
    const where = `${this.cgroupfs.dirOf(cgroup.path)}/${file}`;
    if (cgroup.dying || this.cgroupfs.idOf(cgroup.path) !== cgroup.id) {
      throw bpfError('ENOENT', `cgroup ${cgroup.path} (id ${cgroup.id}) is gone`);
    }
    try {
      return this.fs.readFileSync(where, 'utf8') as string;
    } catch (e) {
      throw fromSystemError(e, `read ${where}`);
    }
  }

  /**
   * Writes an interface file. Only cgroup.procs and cgroup.threads are writable here: the pid
   * moves to this cgroup (EINVAL for text that is not a pid, ESRCH for an unknown one, ENODEV for a
   * removed cgroup).
   */
  async writeFile(cgroup: KernfsNode, file: InterfaceFile, text: string): Promise<void> {
    if (file !== 'cgroup.procs' && file !== 'cgroup.threads') throw bpfError('EACCES', `${file} is not writable in the simulator`);
    const pid = Number(text.trim());
    if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(pid)) throw bpfError('EINVAL', `${JSON.stringify(text)} is not a pid`);
    if (cgroup.dying) throw bpfError('ENODEV', `cgroup ${cgroup.path} is ${cgroup.state}`);
    this.workload.migrate(pid, cgroup);
  }

  taskByPid(pid: number): Task | undefined {
    return this.workload.taskByPid(pid);
  }

  /** Repairs the hierarchy from the volume: drops what is gone or replaced, then adds what is new. */
  async reconcile(): Promise<ReconcileResult> {
    const scanned = this.cgroupfs.scan();
    const want = new Map(scanned.map((s) => [s.path, s.id]));
    const result: ReconcileResult = { added: 0, removed: 0 };
    for (const node of [...this.hierarchy.walk()]) {
      if (node.dying || node === this.hierarchy.root || want.get(node.path) === node.id) continue;
      result.removed += [...this.hierarchy.walk(node)].filter((n) => !n.dying).length;
      this.hierarchy.remove(node);
    }
    for (const s of scanned) {
      if (s.parentPath === null || this.hierarchy.cgroupByPath(s.path) !== undefined) continue;
      this.hierarchy.add(this.hierarchy.cgroupByPath(s.parentPath) as KernfsNode, s.name, s.id);
      result.added++;
    }
    debug('reconcile: %d added, %d removed', result.added, result.removed);
    return result;
  }

  /**
   * The node for cgroup c with this id, adding it and any ancestors the hierarchy missed (made while
   * paused). c was just made, so every ancestor directory exists in the volume.
   */
  #ensure(c: string, id: number): KernfsNode {
    const known = this.hierarchy.cgroupByPath(c);
    if (known?.id === id) return known;
    if (known !== undefined) this.hierarchy.remove(known);
    const pp = parentPath(c);
    const parent = this.#ensure(pp, this.cgroupfs.idOf(pp) as number);
    return this.hierarchy.add(parent, c.slice(c.lastIndexOf('/') + 1), id);
  }

  #seenMkdir(c: string, id: number): void {
    const parent = this.hierarchy.cgroupByPath(parentPath(c));
    // A parent made behind our back (directly in the volume) is reconcile's to find.
    if (parent !== undefined) this.hierarchy.add(parent, c.slice(c.lastIndexOf('/') + 1), id);
  }

  #seenRmdir(id: number): void {
    const node = this.hierarchy.cgroupById(id);
    if (node !== undefined && !node.dying) this.hierarchy.remove(node);
  }

  #figures(node: KernfsNode): CgroupFigures {
    return {
      isRoot: node.parent === null,
      pids: this.workload.procs(node),
      populated: this.workload.populated(node),
      nrDescendants: node.nrDescendants,
      nrDyingDescendants: node.nrDyingDescendants,
      cputime: this.workload.cputime(node),
      pressure: (r) => this.workload.pressure(node, r),
    };
  }

  #write(node: KernfsNode, files: readonly SimFile[]): void {
    if (node.dying) return;
    this.cgroupfs.writeFiles(node.path, node.id, this.#figures(node), files);
  }

  /** cgroup.stat only: made from the node's counters, without the workload's per-task figures. */
  #writeStat(node: KernfsNode): void {
    if (node.dying) return;
    const figures = { ...freshFigures(node.parent === null), nrDescendants: node.nrDescendants, nrDyingDescendants: node.nrDyingDescendants };
    this.cgroupfs.writeFiles(node.path, node.id, figures, ['cgroup.stat']);
  }

  #flushWorkload(change: WorkloadChange): void {
    for (const node of change.cgroups) {
      this.#write(node, filesOf(node.parent === null).filter((f) => !STATIC_FILES.has(f) && f !== 'cgroup.stat'));
    }
    for (const task of change.tasks) {
      const pid = task.pid;
      const dir = `${this.procRoot}/${pid}`;
      this.fs.mkdirSync(dir, { recursive: true });
      this.fs.writeFileSync(`${dir}/comm`, `${task.comm}\n`);
      this.fs.writeFileSync(`${dir}/cgroup`, `0::${task.cgroup.path}${task.cgroup.dying ? ' (deleted)' : ''}\n`);
      this.fs.writeFileSync(`${dir}/schedstat`, schedstatText(this.workload.schedstat(pid)));
    }
    for (const pid of change.exited) this.fs.rmSync(`${this.procRoot}/${pid}`, { recursive: true, force: true });
  }
}
