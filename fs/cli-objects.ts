/**
 * The object commands (bpftool's): prog, map, link, iter and cgroup show|attach|detach|run, parsed
 * by cli-args.ts, sent to the daemon of their mount, and printed as bpftool prints them (or as JSON
 * with -j). The mount is the one `mount MOUNTPOINT` names, else the one the command's first path is
 * in, else the only live mount; every path of a command must be inside that mount (EINVAL).
 */
import path from 'node:path';
import { BpfError, bpfError } from '../uapi';
import { controlCall } from './control/client';
import { listMounts, DEFAULT_STATE_ROOT, type MountInfo } from './control/registry';
import { insideMount, journalReport, mountOf } from './cli-daemon';
import type { Opts } from './cli';
import {
  MountPath,
  keyword,
  parseCgroupCommand,
  parseIterPin,
  parseMapCommand,
  parseMapCreate,
  parseProgLinkCommand,
  takeMount,
  Words,
  objectFile,
  type Request,
} from './cli-args';
import type { CgroupRun, CgroupShow, EngineStatus, LinkShow, MapShow, ProgShow } from './engine/engine';

function print(o: Opts, value: unknown, plain: () => void): void {
  if (o.json) o.out(JSON.stringify(value, null, o.pretty ? 2 : undefined));
  else plain();
}

/** Every MountPath in a request's arguments, in order. */
function mountPaths(x: unknown, out: MountPath[] = []): MountPath[] {
  if (x instanceof MountPath) out.push(x);
  else if (Array.isArray(x)) x.forEach((v) => mountPaths(v, out));
  else if (typeof x === 'object' && x !== null) Object.values(x).forEach((v) => mountPaths(v, out));
  return out;
}

/** The request with its MountPaths as paths inside the mount. */
function inMount(m: MountInfo, x: unknown): unknown {
  if (x instanceof MountPath) return insideMount(m, path.resolve(x.raw));
  if (Array.isArray(x)) return x.map((v) => inMount(m, v));
  if (typeof x === 'object' && x !== null) return Object.fromEntries(Object.entries(x).map(([k, v]) => [k, inMount(m, v)]));
  return x;
}

/**
 * The daemon a command goes to: `mount MOUNTPOINT`, else the mount of its first path, else the
 * only live one. A path that leaves the mount it names with `..` is EINVAL, as is one in another.
 */
export async function daemonFor(mount: string | undefined, paths: MountPath[]): Promise<MountInfo> {
  if (mount !== undefined) return mountOf(mount, true);
  if (paths.length > 0) {
    const first = paths[0]!;
    try {
      return await mountOf(path.resolve(first.raw));
    } catch (e) {
      const live = (await listMounts(DEFAULT_STATE_ROOT)).filter((m) => m.alive);
      const escaped = live.find((m) => first.absolute.startsWith(`${m.mountPoint}/`));
      if (escaped !== undefined) throw bpfError('EINVAL', `${first.raw} leaves the mount ${escaped.mountPoint}`);
      throw e;
    }
  }
  const live = (await listMounts(DEFAULT_STATE_ROOT)).filter((m) => m.alive);
  if (live.length === 1) return live[0]!;
  if (live.length === 0) throw bpfError('ENOENT', 'no vbpffs mount is running (vbpffs mount MOUNTPOINT)');
  throw bpfError('EINVAL', `${live.length} mounts are running: name one with 'mount MOUNTPOINT'`);
}

/** Sends a parsed request to its daemon; resolves with the reply and the mount it went to. */
async function send<T>(req: Request, mount: string | undefined): Promise<{ value: T; m: MountInfo }> {
  const m = await daemonFor(mount, mountPaths(req.args));
  const value = await controlCall<T>(m.socket, req.method, inMount(m, req.args) as unknown[]);
  return { value, m };
}

const hexLine = (bytes: string[]): string => bytes.map((b) => b.slice(2)).join(' ');

/**
 * bpftool's print_entry_plain (progs' formatEntryPlain, redone here so the CLI does not load the
 * object model): hex bytes, a double space every 8, a line every 16; one line when both are short.
 */
export function entryPlain(key: string[], value: string[]): string {
  const hex = (b: string[]): string => b.map((x, i) => `${i === 0 ? '' : i % 16 === 0 ? '\n' : i % 8 === 0 ? '  ' : ' '}${x.slice(2)}`).join('');
  const breakNames = key.length > 16 || value.length > 16;
  const singleLine = key.length + value.length <= 24 && !breakNames;
  return `key:${breakNames ? '\n' : ' '}${hex(key)}${singleLine ? '  ' : '\n'}value:${breakNames ? '\n' : ' '}${hex(value)}`;
}

type Entry = { key: string[]; value: string[]; cgroup?: string; formatted?: { key?: unknown; value: unknown } };

/** A looked-up element as bpftool prints it: the formatted JSON with a value type, else hex. */
function printEntry(o: Opts, e: Entry): void {
  const keyPart = e.cgroup !== undefined ? { cgroup: e.cgroup } : e.formatted?.key !== undefined ? { key: e.formatted.key } : { key: hexLine(e.key) };
  if (e.formatted !== undefined) return o.out(JSON.stringify({ ...keyPart, value: e.formatted.value }, null, 4));
  if (e.cgroup !== undefined) return o.out(`cgroup: ${e.cgroup}  value: ${hexLine(e.value)}`);
  o.out(entryPlain(e.key, e.value));
}

function printProgs(o: Opts, progs: ProgShow[]): void {
  print(o, progs, () => {
    for (const p of progs) {
      o.out(`${p.id}: ${p.type}  name ${p.name}  tag ${p.tag}  run_time_ns ${p.run_time_ns} run_cnt ${p.run_cnt}${p.faults ? `  faults ${p.faults}` : ''}`);
      o.out(`\tsection ${p.section}  loaded_at ${p.loaded_at}${p.map_ids.length ? `  map_ids ${p.map_ids.join(',')}` : ''}`);
      if (p.last_fault !== undefined) o.out(`\tlast_fault ${p.last_fault}`);
    }
  });
}

/** bpftool's `cgroup show`: ID, AttachType, AttachFlags (not for effective), Name. */
function printCgroupShow(o: Opts, rows: CgroupShow[], effective: boolean): void {
  print(o, rows, () => {
    if (rows.length === 0) return;
    const cols = (r: { id: string; attach_type: string; attach_flags?: string; name: string }): string =>
      `${r.id.padEnd(8)} ${r.attach_type.padEnd(15)}${effective ? '' : ` ${(r.attach_flags ?? '').padEnd(15)}`} ${r.name}`.trimEnd();
    o.out(cols({ id: 'ID', attach_type: 'AttachType', attach_flags: 'AttachFlags', name: 'Name' }));
    for (const r of rows) o.out(cols({ ...r, id: String(r.id) }));
  });
}

function printCgroupRun(o: Opts, r: CgroupRun): void {
  print(o, r, () => {
    for (const p of r.progs) o.out(`prog ${p.id} ${p.name}: ${p.fault === undefined ? `returned ${p.ret}` : `faulted (counts as 0): ${p.fault}`}`);
    o.out(`verdict: ${r.verdict}  retval ${r.retval}${r.flags ? `  flags 0x${r.flags.toString(16)}` : ''}${r.progs.length === 0 ? '  (no program attached)' : ''}`);
  });
}

/** A command that changes state: silent, or its reply (`null`, or the new object's id) with -j. */
const quiet = (o: Opts, v: unknown): void => print(o, v ?? null, () => undefined);

export async function objectCommand(object: string, argv: string[], o: Opts): Promise<void> {
  const { args, mount } = takeMount(argv);
  switch (object) {
    case 'iter': {
      keyword(args[0], ['pin']);
      const req = parseIterPin(args.slice(1));
      const { value: r } = await send<{ linkId: number; progId: number; target: string }>(req, mount);
      const pin = path.resolve((req.args[1] as MountPath).raw);
      return print(o, r, () => o.out(`pinned ${r.target} iterator link ${r.linkId} (prog ${r.progId}) at ${pin}`));
    }
    case 'prog': {
      const cmd = keyword(args[0] ?? 'show', ['show', 'list', 'load', 'loadall', 'pin']);
      if (cmd === 'loadall') {
        const w = new Words(args.slice(1), 'prog loadall OBJ DIR');
        const req: Request = { method: 'progLoadAll', args: [objectFile(w.next('OBJ')), new MountPath(w.next('DIR'))] };
        w.end();
        const { value: r, m } = await send<{ name: string; id: number; path: string }[]>(req, mount);
        return print(o, r, () => r.forEach((p) => o.out(`pinned prog ${p.id} ${p.name} at ${path.join(m.mountPoint, p.path)}`)));
      }
      const req = parseProgLinkCommand('prog', cmd === 'list' ? 'show' : cmd, args.slice(1));
      const { value } = await send<unknown>(req, mount);
      return req.method === 'progShow' ? printProgs(o, value as ProgShow[]) : quiet(o, value);
    }
    case 'map': {
      const cmd = keyword(args[0] ?? 'show', ['show', 'list', 'create', 'dump', 'lookup', 'update', 'delete', 'getnext', 'pin']);
      const req = cmd === 'create' ? parseMapCreate(args.slice(1)) : parseMapCommand(cmd === 'list' ? 'show' : cmd, args.slice(1));
      const { value } = await send<unknown>(req, mount);
      switch (req.method) {
        case 'mapShow': {
          const maps = value as MapShow[];
          return print(o, maps, () => maps.forEach((x) => o.out(`${x.id}: ${x.type}  name ${x.name}  flags 0x${x.flags.toString(16)}\n\tkey ${x.key}B  value ${x.value}B  max_entries ${x.max_entries}`)));
        }
        case 'mapDump':
          return void o.out(JSON.stringify(value, null, o.json && !o.pretty ? undefined : 2));
        case 'mapLookup':
          return print(o, value, () => printEntry(o, value as Entry));
        case 'mapGetNext': {
          const r = value as { key: string[] | null; next_key: string[] };
          return print(o, r, () => o.out(`key:${r.key === null ? ' None' : `\n${hexLine(r.key)}`}\nnext key:\n${hexLine(r.next_key)}`));
        }
        default:
          return quiet(o, value);
      }
    }
    case 'link': {
      const cmd = keyword(args[0] ?? 'show', ['show', 'list', 'pin', 'update', 'detach']);
      const req = parseProgLinkCommand('link', cmd === 'list' ? 'show' : cmd, args.slice(1));
      const { value } = await send<unknown>(req, mount);
      if (req.method !== 'linkShow') return quiet(o, value);
      const links = value as LinkShow[];
      return print(o, links, () => links.forEach((l) => o.out(`${l.id}: ${l.type}  prog ${l.prog_id}${l.info ? `\n\t${l.info.trim().replaceAll('\n', '\n\t')}` : ''}`)));
    }
    case 'cgroup': {
      const cmd = keyword(args[0], ['show', 'list', 'attach', 'detach', 'run', 'reconcile']);
      const req = parseCgroupCommand(cmd === 'list' ? 'show' : cmd, args.slice(1));
      const { value } = await send<unknown>(req, mount);
      if (req.method === 'cgroupShow') return printCgroupShow(o, value as CgroupShow[], req.args[1] === true);
      if (req.method === 'cgroupRun') return printCgroupRun(o, value as CgroupRun);
      if (req.method === 'cgroupReconcile') {
        const r = value as { added: number; removed: number };
        return print(o, r, () => o.out(`reconciled: ${r.added} cgroups added, ${r.removed} removed`));
      }
      return quiet(o, value);
    }
    default:
      throw new BpfError('EINVAL', `unknown object '${object}'`);
  }
}

export function printStatus(mounts: unknown[], o: Opts): void {
  print(o, mounts, () => {
    if (mounts.length === 0) return o.out('no vbpffs mounts');
    for (const m of mounts as Record<string, unknown>[]) {
      const src = m.source as { kind: string; mountPoint: string; cgroups: number } | undefined;
      const obj = m.objects as { progs: number; maps: number; links: number } | undefined;
      o.out(`${m.mountPoint}  pid ${m.pid}  ${m.state}`);
      if (src !== undefined && obj !== undefined) {
        const up = Math.round((Date.now() - Date.parse(String(m.startedAt))) / 1000);
        o.out(`\tcgroups ${src.cgroups} (${src.kind} at ${src.mountPoint})  mirror ${m.mirror}  progs ${obj.progs}  maps ${obj.maps}  links ${obj.links}  up ${up}s`);
      }
      for (const line of journalReport(m.journal as EngineStatus['journal'] | undefined)) o.out(`\t${line}`);
    }
  });
}
