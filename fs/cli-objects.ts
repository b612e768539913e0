/**
 * The object commands (bpftool's): prog, map, link and iter, sent to the daemon of the mount their
 * path is in, and printed as bpftool prints them (or as JSON with -j).
 */
import path from 'node:path';
import { BpfError, bpfError } from '../uapi';
import { controlCall } from './control/client';
import { listMounts, DEFAULT_STATE_ROOT, type MountInfo } from './control/registry';
import { insideMount, mountOf } from './cli-daemon';
import { keyword, type Opts } from './cli';
import type { LinkShow, MapShow, ProgShow } from './engine/engine';

function print(o: Opts, value: unknown, plain: () => void): void {
  if (o.json) o.out(JSON.stringify(value, null, o.pretty ? 2 : undefined));
  else plain();
}

/** `[mount MOUNTPOINT]`, or the one live mount there is. */
async function daemonFor(args: string[]): Promise<MountInfo> {
  const i = args.indexOf('mount');
  if (i >= 0) {
    if (args[i + 1] === undefined) throw bpfError('EINVAL', 'mount needs a MOUNTPOINT');
    return mountOf(path.resolve(args[i + 1]!), true);
  }
  const live = (await listMounts(DEFAULT_STATE_ROOT)).filter((m) => m.alive);
  if (live.length === 1) return live[0]!;
  throw bpfError(live.length === 0 ? 'ENOENT' : 'EINVAL', live.length === 0 ? 'no vbpffs mount is running (vbpffs mount MOUNTPOINT)' : `${live.length} mounts are running: name one with 'mount MOUNTPOINT'`);
}

/** An object file's path as the daemon reads it (absolute; the daemon's cwd is not ours). */
const objectPath = (p: string | undefined): string => {
  if (p === undefined) throw bpfError('EINVAL', 'an object file (OBJ) is required');
  return path.resolve(p);
};

export async function objectCommand(object: string, args: string[], o: Opts): Promise<void> {
  switch (object) {
    case 'iter': {
      keyword(args[0], ['pin']);
      const [obj, pin] = [objectPath(args[1]), args[2]];
      if (pin === undefined) throw bpfError('EINVAL', 'usage: vbpffs iter pin OBJ PATH [order ORDER] [cgroup CGROUP]');
      const opts: { order?: string; cgroup?: string } = {};
      for (let i = 3; i < args.length; i += 2) {
        const k = keyword(args[i], ['order', 'cgroup']);
        const v = args[i + 1];
        if (v === undefined) throw bpfError('EINVAL', `${k} needs a value`);
        opts[k as 'order' | 'cgroup'] = v;
      }
      const m = await mountOf(path.resolve(pin));
      const r = await controlCall<{ linkId: number; progId: number; target: string }>(m.socket, 'iterPin', [obj, insideMount(m, path.resolve(pin)), opts]);
      return print(o, r, () => o.out(`pinned ${r.target} iterator link ${r.linkId} (prog ${r.progId}) at ${path.resolve(pin)}`));
    }
    case 'prog': {
      const cmd = keyword(args[0] ?? 'show', ['show', 'list', 'loadall']);
      if (cmd === 'loadall') {
        const [obj, dir] = [objectPath(args[1]), args[2]];
        if (dir === undefined) throw bpfError('EINVAL', 'usage: vbpffs prog loadall OBJ DIR');
        const m = await mountOf(path.resolve(dir));
        const r = await controlCall<{ name: string; id: number; path: string }[]>(m.socket, 'progLoadAll', [obj, insideMount(m, path.resolve(dir))]);
        return print(o, r, () => r.forEach((p) => o.out(`pinned prog ${p.id} ${p.name} at ${path.join(m.mountPoint, p.path)}`)));
      }
      const m = await daemonFor(args);
      const progs = await controlCall<ProgShow[]>(m.socket, 'progShow');
      return print(o, progs, () => {
        for (const p of progs) {
          o.out(`${p.id}: ${p.type}  name ${p.name}  tag ${p.tag}  run_time_ns ${p.run_time_ns} run_cnt ${p.run_cnt}${p.faults ? `  faults ${p.faults}` : ''}`);
          o.out(`\tsection ${p.section}  loaded_at ${p.loaded_at}${p.map_ids.length ? `  map_ids ${p.map_ids.join(',')}` : ''}`);
          if (p.last_fault !== undefined) o.out(`\tlast_fault ${p.last_fault}`);
        }
      });
    }
    case 'map': {
      const cmd = keyword(args[0] ?? 'show', ['show', 'list', 'dump']);
      const m = await daemonFor(args);
      if (cmd === 'dump') {
        if (args[1] !== 'id' || !/^\d+$/.test(args[2] ?? '')) throw bpfError('EINVAL', 'usage: vbpffs map dump id ID');
        const dump = await controlCall<unknown>(m.socket, 'mapDump', [Number(args[2])]);
        return void o.out(JSON.stringify(dump, null, o.json && !o.pretty ? undefined : 2));
      }
      const maps = await controlCall<MapShow[]>(m.socket, 'mapShow');
      return print(o, maps, () => maps.forEach((x) => o.out(`${x.id}: ${x.type}  name ${x.name}  flags 0x${x.flags.toString(16)}\n\tkey ${x.key}B  value ${x.value}B  max_entries ${x.max_entries}`)));
    }
    case 'link': {
      keyword(args[0] ?? 'show', ['show', 'list']);
      const m = await daemonFor(args);
      const links = await controlCall<LinkShow[]>(m.socket, 'linkShow');
      return print(o, links, () => links.forEach((l) => o.out(`${l.id}: ${l.type}  prog ${l.prog_id}${l.info ? `\n\t${l.info.trim().replaceAll('\n', '\n\t')}` : ''}`)));
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
    }
  });
}
