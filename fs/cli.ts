#!/usr/bin/env node
/**
 * The vbpffs command line, in bpftool's grammar: `vbpffs [-j|-p] OBJECT COMMAND ARGS`, keywords may be
 * abbreviated, errors go to stderr as `Error: ...` (or `{"error": ...}` with -j). `mount` starts a
 * daemon; the object commands (prog, map, link, iter) talk to the daemon of the mount their path is
 * in, over its control socket.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { BpfError, fromSystemError } from '../uapi';
import { HostCgroupSource, type KernfsNode } from '../tags';
import { mountBackground, mountForeground, parseMountArgs, status, umount } from './cli-daemon';
import { objectCommand, printStatus } from './cli-objects';

export interface Opts {
  json: boolean;
  pretty: boolean;
  out: (line: string) => void;
}

/** Where the CLI writes: the process's streams when run as `vbpffs`, a buffer in tests. */
export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
}

const USAGE = `Usage: vbpffs [-j|-p] OBJECT COMMAND
       OBJECT := { mount | umount | status | prog | map | link | iter | cgroup | version | help }
       vbpffs mount MOUNTPOINT [--cgroup-root DIR | --sim demo] [--mirror auto|manual] [--state DIR]
                    [--foreground] [--allow-other]
       vbpffs umount MOUNTPOINT
       vbpffs status
       vbpffs iter pin OBJ PATH [order ORDER] [cgroup CGROUP]
                    ORDER := { descendants_pre | descendants_post | ancestors_up | self_only | children }
       vbpffs prog loadall OBJ DIR
       vbpffs prog show [mount MOUNTPOINT]
       vbpffs map show [mount MOUNTPOINT]
       vbpffs map dump id ID [mount MOUNTPOINT]
       vbpffs link show [mount MOUNTPOINT]
       vbpffs cgroup tree [PATH]   the host's cgroup2 hierarchy (ids are inode numbers)
       vbpffs version
Options: -j, --json   JSON output; -p, --pretty   pretty JSON
`;

/** bpftool's keyword matching: any unambiguous prefix. */
export function keyword(word: string | undefined, choices: string[]): string {
  if (word === undefined) throw new BpfError('EINVAL', `expected one of: ${choices.join(', ')}`);
  const hits = choices.filter((c) => c.startsWith(word));
  if (hits.length === 1) return hits[0]!;
  if (hits.includes(word)) return word;
  throw new BpfError('EINVAL', hits.length === 0 ? `unknown keyword '${word}'` : `ambiguous keyword '${word}': ${hits.join(', ')}`);
}

async function cgroupTree(args: string[], o: Opts): Promise<void> {
  const source = await HostCgroupSource.open({ reconcileIntervalMs: 0 });
  await source.reconcile(); // loads the tree without watching it: one look is all the CLI needs
  const start = args[0] === undefined ? source.hierarchy.root : source.hierarchy.cgroupByPath(args[0]);
  if (start === undefined) throw new BpfError('ENOENT', `no cgroup ${args[0]} under ${source.mountPoint}`);
  const nodes = [...source.hierarchy.walk(start)].filter((n) => !n.dying);
  if (o.json) {
    const out = nodes.map((n: KernfsNode) => ({ id: n.id, path: n.path, level: n.level }));
    o.out(JSON.stringify(out, null, o.pretty ? 2 : undefined));
    return;
  }
  o.out(`CgroupPath (cgroup2 at ${source.mountPoint})`);
  for (const n of nodes) o.out(`${String(n.id).padEnd(10)} ${n.path}`);
}

/** Our package.json, found from here whether running from the sources or from dist/. */
function packageJson(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    const file = path.join(dir, 'package.json');
    if (existsSync(file)) return file;
    if (dir === path.dirname(dir)) throw new BpfError('ENOENT', `no package.json above ${__dirname}`);
  }
}

async function dispatch(argv: string[], o: Opts): Promise<void> {
  const args = argv.filter((a) => {
    if (a === '-j' || a === '--json') return !(o.json = true);
    if (a === '-p' || a === '--pretty') return !(o.json = o.pretty = true);
    return true;
  });
  if (args[0]?.startsWith('-') === true) throw new BpfError('EINVAL', `unknown option '${args[0]}'`);
  const object = keyword(args[0] ?? 'help', ['mount', 'umount', 'status', 'prog', 'map', 'link', 'iter', 'cgroup', 'version', 'help']);
  if (object !== 'mount') {
    const bad = args.find((a) => a.startsWith('-') && a !== '-');
    if (bad !== undefined) throw new BpfError('EINVAL', `unknown option '${bad}'`);
  }
  switch (object) {
    case 'help':
      return void o.out(USAGE.trimEnd());
    case 'version': {
      const { version } = require(packageJson()) as { version: string };
      return void o.out(o.json ? JSON.stringify({ version }) : `vbpffs v${version}`);
    }
    case 'mount': {
      const m = parseMountArgs(args.slice(1));
      return m.foreground ? mountForeground(m, o.out) : mountBackground(m, args, o.out);
    }
    case 'umount':
      if (args[1] === undefined) throw new BpfError('EINVAL', 'usage: vbpffs umount MOUNTPOINT');
      return umount(args[1], o.out);
    case 'status':
      return printStatus(await status(), o);
    case 'cgroup': {
      const command = keyword(args[1] ?? 'tree', ['tree']);
      if (command === 'tree') await cgroupTree(args.slice(2), o);
      return;
    }
    default:
      return objectCommand(object, args.slice(1), o);
  }
}

/** Runs one command line; resolves with the exit status. Errors never escape: they are printed. */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  const o: Opts = { json: false, pretty: false, out: (line) => io.stdout(`${line}\n`) };
  try {
    await dispatch(argv, o);
    return 0;
  } catch (e) {
    const err = e instanceof BpfError ? e : fromSystemError(e, 'vbpffs');
    if (o.json) io.stdout(`${JSON.stringify({ error: err.message })}\n`);
    else io.stderr(`Error: ${err.message}\n`);
    return 1;
  }
}

if (require.main === module) {
  const io: CliIo = { stdout: (s) => process.stdout.write(s), stderr: (s) => process.stderr.write(s) };
  void runCli(process.argv.slice(2), io).then((status) => {
    process.exitCode = status;
  });
}
