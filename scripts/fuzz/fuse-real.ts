/**
 * The real side of the FUSE fuzzer: a vbpffs daemon in its own process (`vbpffs mount --foreground`,
 * the command users run), mounted for real, on the host's cgroup2 hierarchy with a fuzz-owned cgroup
 * under its root, or on the simulated `demo` tree; and an actor process (fuse-actor.ts) that makes
 * every file operation and CLI command. Nothing here touches the mount itself: this process may be
 * a tap test, and the daemon is not in it, but a synchronous call on a FUSE mount is never safe.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { bpfError } from '../../uapi';
import { findCgroup2Mount } from '../../tags/host/mountinfo';
import { cgroupIdOf } from '../../tags/host/scan';
import { FUZZ_SOURCES, OBJECT_KINDS, type ObjectKind } from './objects';
import type { ActorReply, ActorRequest } from './fuse-actor';
import type { Action, Outcome } from './fuse-ops';

/** The little-endian bytes of a u32 key or u64 value, as `vbpffs map update` takes them. */
function bytesArg(v: number, size: number): string[] {
  const b = Buffer.alloc(size);
  b.writeUInt32LE(v);
  return [...b].map(String);
}

/** The fields of `vbpffs -j ... show` both sides must agree on (not load times or run times). */
function project(what: string, rows: Record<string, unknown>[]): unknown[] {
  const keep: Record<string, string[]> = {
    prog: ['id', 'type', 'name', 'section', 'run_cnt', 'faults', 'map_ids'],
    map: ['id', 'type', 'name', 'key', 'value', 'max_entries', 'flags'],
    link: ['id', 'type', 'prog_id'],
  };
  return rows.map((r) => Object.fromEntries(keep[what]!.map((k) => [k, r[k]])));
}

const run = promisify(execFile);

/** How children of this process run TypeScript (under tap) or JavaScript (dist/), without tap's coverage hook. */
function child(script: string, args: string[], env: NodeJS.ProcessEnv): ChildProcess {
  const ext = path.extname(__filename);
  const execArgv = process.execArgv.filter((a) => !a.includes('processinfo'));
  return spawn(process.execPath, [...execArgv, `${script}${ext}`, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
}

export interface RealOptions {
  /** The simulated `demo` tree instead of the host's cgroup2 hierarchy (no cgroup mkdir/rmdir then). */
  sim: boolean;
}

export class RealWorld {
  /** Cgroup id on this side -> path in the hierarchy. */
  readonly ids = new Map<number, string>();
  readonly #pending = new Map<number, (r: ActorReply) => void>();
  #seq = 0;
  #daemonErr = '';

  private constructor(
    readonly base: string,
    readonly mnt: string,
    /** The fuzz-owned cgroup ("/vbpffs-fuzz-..." on the host, "/system.slice" on the simulator). */
    readonly fuzzCgroup: string,
    /** The host's cgroup2 mount, or null on the simulator. */
    readonly cgroupMount: string | null,
    readonly objects: Record<ObjectKind, string>,
    readonly daemon: ChildProcess,
    readonly actor: ChildProcess,
  ) {
    createInterface({ input: actor.stdout! }).on('line', (line) => {
      const { id, res } = JSON.parse(line) as { id: number; res: ActorReply };
      this.#pending.get(id)?.(res);
      this.#pending.delete(id);
    });
    actor.once('exit', () => {
      for (const r of this.#pending.values()) r({ ok: false, errno: 'ECHILD', message: 'the actor process exited' });
      this.#pending.clear();
    });
    daemon.stderr!.on('data', (d: Buffer) => void (this.#daemonErr = (this.#daemonErr + d.toString()).slice(-4000)));
  }

  /** What the daemon wrote on stderr lately (a crash's stack). */
  get daemonStderr(): string {
    return this.#daemonErr;
  }

  static async start(opts: RealOptions): Promise<RealWorld> {
    const base = await fsp.mkdtemp(path.join(tmpdir(), 'vbpffs-fuzz-'));
    const mnt = path.join(base, 'mnt');
    const env = { ...process.env, VBPFFS_STATE_ROOT: path.join(base, 'state') };
    const objects = {} as Record<ObjectKind, string>;
    for (const k of OBJECT_KINDS) {
      objects[k] = path.join(base, `fuzz-${k}.ts`);
      await fsp.writeFile(objects[k], FUZZ_SOURCES[k]);
    }
    let cgroupMount: string | null = null;
    let fuzzCgroup = '/system.slice';
    if (!opts.sim) {
      cgroupMount = (await findCgroup2Mount()).mountPoint;
      fuzzCgroup = `/vbpffs-fuzz-${process.pid}-${randomBytes(4).toString('hex')}`;
      await fsp.mkdir(path.join(cgroupMount, fuzzCgroup));
    }
    const daemon = child(path.join(__dirname, '..', '..', 'fs', 'cli'), ['mount', mnt, '--foreground', ...(opts.sim ? ['--sim', 'demo'] : [])], env);
    daemon.stdin!.end();
    // Started with the daemon: loading the CLI's code takes as long as the daemon's start, and needs no mount.
    const actor = child(path.join(__dirname, 'fuse-actor'), [], env);
    try {
      await new Promise<void>((resolve, reject) => {
        let out = '';
        let err = '';
        /* c8 ignore next -- a daemon that hangs before mounting */
        const timer = setTimeout(() => reject(bpfError('ETIMEDOUT', `the daemon did not mount ${mnt} in 120 s: ${err}`)), 120_000);
        daemon.stdout!.on('data', (d: Buffer) => {
          out += d.toString();
          if (!out.includes('vbpffs mounted at')) return;
          clearTimeout(timer);
          resolve();
        });
        daemon.stderr!.on('data', (d: Buffer) => void (err += d.toString()));
        daemon.once('exit', (code) => {
          clearTimeout(timer);
          reject(bpfError('EIO', `the daemon exited (${code}) before mounting: ${err}`));
        });
      });
      /* c8 ignore start -- a daemon that cannot mount: the run fails with its stderr */
    } catch (e) {
      actor.kill('SIGKILL');
      if (cgroupMount !== null) await fsp.rmdir(path.join(cgroupMount, fuzzCgroup)).catch(() => undefined);
      await fsp.rm(base, { recursive: true, force: true });
      throw e;
    }
    /* c8 ignore stop */
    const w = new RealWorld(base, mnt, fuzzCgroup, cgroupMount, objects, daemon, actor);
    if (cgroupMount !== null) {
      w.ids.set(cgroupIdOf((await fsp.stat(cgroupMount, { bigint: true })).ino, cgroupMount), '/');
      w.ids.set(cgroupIdOf((await fsp.stat(path.join(cgroupMount, fuzzCgroup), { bigint: true })).ino, fuzzCgroup), fuzzCgroup);
    }
    return w;
  }

  call(req: ActorRequest): Promise<ActorReply> {
    if (this.actor.exitCode !== null) return Promise.resolve({ ok: false, errno: 'ECHILD', message: 'the actor process exited' });
    const id = ++this.#seq;
    return new Promise((resolve) => {
      this.#pending.set(id, resolve);
      this.actor.stdin!.write(`${JSON.stringify({ id, req })}\n`);
    });
  }

  /** The `vbpffs` command line of a CLI action. */
  argv(a: Action): string[] {
    const p = (x: string): string => this.p(x);
    const key = (k: number | { cgroup: string }): string[] => (typeof k === 'number' ? ['key', ...bytesArg(k, 4)] : ['key', 'cgroup', k.cgroup]);
    switch (a.t) {
      case 'iterPin': {
        const obj = typeof a.obj === 'string' ? [this.objects[a.obj]] : ['pinned', p(a.obj.pinned)];
        return ['iter', 'pin', ...obj, p(a.p), ...(a.order === undefined ? [] : ['order', a.order]), ...(a.cgroup === undefined ? [] : ['cgroup', a.cgroup])];
      }
      case 'progLoad':
        return ['prog', 'load', this.objects[a.obj], p(a.p)];
      case 'objPin':
        return [a.kind, 'pin', ...('id' in a.ref ? ['id', String(a.ref.id)] : ['pinned', p(a.ref.pinned)]), p(a.p)];
      case 'mapCreate':
        return a.type === 'hash'
          ? ['map', 'create', p(a.p), 'type', 'hash', 'key', '4', 'value', '8', 'entries', '4', 'name', 'h', 'key_type', 'u32', 'value_type', 'u64']
          : ['map', 'create', p(a.p), 'type', 'cgrp_storage', 'key_type', 'u32', 'value_type', 'u64', 'entries', '0', 'name', 'c', 'flags', '1'];
      case 'mapUpdate':
        return ['map', 'update', 'pinned', p(a.map), ...key(a.key), 'value', ...bytesArg(a.value, 8), a.flag];
      case 'mapDelete':
        return ['map', 'delete', 'pinned', p(a.map), ...key(a.key)];
      case 'linkUpdate':
        return ['link', 'update', 'pinned', p(a.link), 'pinned', p(a.prog)];
      case 'linkDetach':
        return ['link', 'detach', 'pinned', p(a.link)];
      case 'attach':
        return ['cgroup', 'attach', a.cg, a.type, 'pinned', p(a.prog), ...(a.mode === undefined ? [] : [a.mode])];
      case 'detach':
        return ['cgroup', 'detach', a.cg, a.type, 'pinned', p(a.prog)];
      case 'run':
        return ['-j', 'cgroup', 'run', a.cg, a.type];
      case 'show':
        return ['-j', a.what, 'show'];
      case 'cgShow':
        return ['-j', 'cgroup', 'show', a.cg];
      /* c8 ignore next 2 -- exec sends only commands here */
      default:
        throw new Error(`${a.t} is no command`);
    }
  }

  /** Runs one action through the mount (or on the host's cgroup2 tree) and says what it gave. */
  async exec(a: Action): Promise<Outcome> {
    const fsOutcome = (r: ActorReply): Outcome => ('ok' in r && r.ok ? { errno: null, out: r.out } : { errno: (r as { errno: string }).errno });
    switch (a.t) {
      case 'mkdir':
      case 'rmdir':
      case 'unlink':
      case 'cat':
        return fsOutcome(await this.call({ fs: a.t, p: this.p(a.p) }));
      case 'rename':
      case 'link':
        return fsOutcome(await this.call({ fs: a.t, p: this.p(a.p), to: this.p(a.to) }));
      case 'symlink':
        return fsOutcome(await this.call({ fs: 'symlink', p: this.p(a.p), target: a.target }));
      case 'chmod':
        return fsOutcome(await this.call({ fs: 'chmod', p: this.p(a.p), mode: a.mode }));
      case 'cgMkdir':
      case 'cgRmdir': {
        const made = a.t === 'cgMkdir';
        const r = await this.call({ fs: made ? 'mkdir' : 'rmdir', p: this.hostPath(a.cg) });
        if (!('ok' in r) || !r.ok) return fsOutcome(r);
        if (made) this.ids.set(cgroupIdOf(BigInt(r.ino!), a.cg), a.cg);
        const seen = await this.call({ cgwait: a.cg, present: made });
        return 'ok' in seen && !seen.ok ? { errno: `${seen.errno} (${seen.message.trim()})` } : { errno: null };
      }
      default: {
        const r = (await this.call({ cli: this.argv(a) })) as Extract<ActorReply, { status: number }>;
        if (r.status !== 0) return { errno: /\(([A-Z0-9]+)\)\s*$/.exec(r.stderr)?.[1] ?? `exit ${r.status}: ${r.stderr}${r.stdout}` };
        if (a.t === 'show') return { errno: null, out: JSON.stringify(project(a.what, JSON.parse(r.stdout) as Record<string, unknown>[])) };
        return { errno: null, out: a.t === 'run' || a.t === 'cgShow' ? r.stdout.trim() : undefined };
      }
    }
  }

  /** What `find` lists under the area's roots (paths in the mount). */
  async find(roots: string[]): Promise<string> {
    const r = await this.call({ find: roots.map((x) => this.p(x)) });
    return 'ok' in r && r.ok ? r.out! : `find failed: ${JSON.stringify(r)}`;
  }

  /** A path in the mount. */
  p(inMount: string): string {
    return inMount === '/' ? this.mnt : path.join(this.mnt, inMount);
  }

  /** The host directory of a cgroup. */
  hostPath(cgroup: string): string {
    return path.join(this.cgroupMount!, cgroup);
  }

  /** Stops the actor and the daemon (SIGTERM: it unmounts; SIGKILL after 10 s), removes the cgroups and files. */
  async stop(): Promise<void> {
    this.actor.stdin!.end();
    const gone = (c: ChildProcess, ms: number): Promise<boolean> =>
      c.exitCode !== null || c.signalCode !== null
        ? Promise.resolve(true)
        : new Promise((resolve) => {
            const timer = setTimeout(() => resolve(false), ms);
            c.once('exit', () => (clearTimeout(timer), resolve(true)));
          });
    if (!(await gone(this.actor, 5000))) this.actor.kill('SIGKILL');
    this.daemon.kill('SIGTERM');
    /* c8 ignore start -- a daemon that does not stop on SIGTERM: killed, and its mount cleared */
    if (!(await gone(this.daemon, 10_000))) {
      this.daemon.kill('SIGKILL');
      await gone(this.daemon, 5000);
      await run('fusermount', ['-uz', this.mnt]).catch(() => undefined);
    }
    /* c8 ignore stop */
    if (this.cgroupMount !== null) await removeCgroupTree(this.hostPath(this.fuzzCgroup));
    await fsp.rm(this.base, { recursive: true, force: true });
  }
}

/** rmdir of a cgroup directory and everything below it, deepest first. */
async function removeCgroupTree(dir: string): Promise<void> {
  const entries = await fsp.readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const e of entries) if (e.isDirectory()) await removeCgroupTree(path.join(dir, e.name));
  await fsp.rmdir(dir).catch(() => undefined);
}
