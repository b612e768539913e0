#!/usr/bin/env node
/**
 * The vbpffs command line, in bpftool's grammar: `vbpffs [-j|-p] OBJECT COMMAND ARGS`, keywords may be
 * abbreviated, errors go to stderr as `Error: <what> (<ERRNO>)` (or `{"error": "<what> (<ERRNO>)"}`
 * with -j) and exit 1. `mount` starts a daemon; the object commands (prog, map, link, iter, cgroup
 * show|attach|detach|run) talk to the daemon of the mount their path is in, over its control socket.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { BpfError, bpfError, fromSystemError } from '../uapi';
import { HostCgroupSource, type KernfsNode } from '../tags';
import { mountBackground, mountForeground, parseMountArgs, status, umount } from './cli-daemon';
import { objectCommand, printStatus } from './cli-objects';
import { keyword } from './cli-args';

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
                    [--reconcile-interval SECONDS] [--timeout SECONDS] [--foreground] [--allow-other]
       vbpffs umount MOUNTPOINT
       vbpffs status
       vbpffs iter pin OBJ PATH [order ORDER] [cgroup CGROUP]      OBJ := { FILE | pinned PATH }
       vbpffs prog { show | list } [PROG]
       vbpffs prog load OBJ PATH          pins the object file's first program at PATH
       vbpffs prog loadall OBJ DIR
       vbpffs prog pin PROG PATH
       vbpffs map { show | list } [MAP]
       vbpffs map create PATH type TYPE key KEY_SIZE value VALUE_SIZE entries MAX_ENTRIES name NAME
                    [flags FLAGS] [key_type TYPE_DESC] [value_type TYPE_DESC]
       vbpffs map dump MAP
       vbpffs map lookup MAP key DATA
       vbpffs map update MAP key DATA value VALUE [UPDATE_FLAGS]
       vbpffs map delete MAP key DATA
       vbpffs map getnext MAP [key DATA]
       vbpffs map pin MAP PATH
       vbpffs link { show | list } [LINK]
       vbpffs link pin LINK PATH
       vbpffs link update LINK PROG
       vbpffs link detach LINK
       vbpffs cgroup show CGROUP [effective]
       vbpffs cgroup attach CGROUP ATTACH_TYPE PROG [multi | override]
       vbpffs cgroup detach CGROUP ATTACH_TYPE PROG
       vbpffs cgroup run CGROUP ATTACH_TYPE [ctx JSON]   fires the hook once
       vbpffs cgroup reconcile            walks the cgroup2 tree now and repairs the mirror
       vbpffs cgroup tree [PATH]          the host's cgroup2 hierarchy (ids are inode numbers)
       vbpffs version
       PROG := { id PROG_ID | pinned PATH }   MAP := { id MAP_ID | pinned PATH }   LINK := { id LINK_ID | pinned PATH }
       DATA := { [hex] BYTES | json JSON | cgroup CGROUP }   VALUE := { [hex] BYTES | json JSON }
       UPDATE_FLAGS := { any | noexist | exist }
       TYPE := { hash | array | cgroup_storage | cgrp_storage | task_storage | sk_storage | inode_storage }
       TYPE_DESC := { u8 | u16 | u32 | u64 | s8 | ... | JSON such as '{"count":"u64","hist":["u32",4]}' }
       ORDER := { descendants_pre | descendants_post | ancestors_up | self_only | children }
       CGROUP := a path in the mount's cgroup hierarchy (/system.slice) or under its cgroup2 mount
       Commands that name no path in a mount go to the only running mount, or to [mount MOUNTPOINT].
Options: -j, --json   JSON output; -p, --pretty   pretty JSON
`;

export { keyword };

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

/**
 * Arguments must be well-formed text: invalid UTF-8 reaches us as U+FFFD (how Node decodes argv),
 * a lone surrogate only in-process. Refused before anything is sent.
 */
function checkText(argv: string[]): void {
  const bad = argv.findIndex((a) => /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]|\uFFFD/.test(a));
  if (bad >= 0) throw bpfError('EINVAL', `argument ${bad + 1} is not valid UTF-8`);
}

async function dispatch(argv: string[], o: Opts): Promise<void> {
  checkText(argv);
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
      const command = keyword(args[1] ?? 'tree', ['tree', 'show', 'list', 'attach', 'detach', 'run', 'reconcile']);
      if (command === 'tree') return cgroupTree(args.slice(2), o);
      return objectCommand('cgroup', args.slice(1), o);
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
    const what = `${err.message.replace(/^[A-Z0-9]+: /, '')} (${err.code})`;
    if (o.json) io.stdout(`${JSON.stringify({ error: what })}\n`);
    else io.stderr(`Error: ${what}\n`);
    return 1;
  }
}

if (require.main === module) {
  const io: CliIo = { stdout: (s) => process.stdout.write(s), stderr: (s) => process.stderr.write(s) };
  void runCli(process.argv.slice(2), io).then((status) => {
    process.exitCode = status;
  });
}
