/**
 * The object commands end to end: `vbpffs mount --sim demo` in the background, and the real vbpffs
 * command as a child process for prog, map, link, iter and cgroup commands, their errors, and a
 * restart after kill -9 that brings back what the CLI made. Independent commands run concurrently
 * (each child pays the TypeScript loader's start-up).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { isMountPoint } from '../fs/daemon';
import { stateDirFor } from '../fs/control/registry';
import { counterObject } from './harness/cgroup-progs';
import { fuseSkipReason } from './harness/mount';
import { LOADER_TIMEOUT, type Out } from './harness/cli-result';

const run = promisify(execFile);
// About 40 children of the TypeScript loader, a mount and a remount: more than the default file timeout.
t.setTimeout(900_000);
const CLI = path.join(__dirname, '..', 'fs', 'cli.ts');

const ITERS = `import { SEC, bpf_seq_printf } from 'vbpffs/bpf';
export const first = SEC('iter/cgroup', (ctx) => {
  if (ctx.cgroup !== null) bpf_seq_printf(ctx.meta.seq, 'first\\n');
  return 0;
});
export const second = SEC('iter/cgroup', (ctx) => {
  if (ctx.cgroup !== null) bpf_seq_printf(ctx.meta.seq, 'second\\n');
  return 0;
});
`;

t.test('the object commands on a real mount', async (t) => {
  const skip = await fuseSkipReason();
  t.test('(mounted)', { skip, timeout: 900_000 }, async (t) => {
    const base = mkdtempSync(path.join(tmpdir(), 'vbpffs-o-'));
    const mnt = path.join(base, 'mnt');
    const p = (...parts: string[]): string => path.join(mnt, ...parts);
    const stateRoot = path.join(base, 'state');
    const journal = path.join(stateDirFor(mnt, stateRoot), 'journal.jsonl');
    const env = { ...process.env, VBPFFS_STATE_ROOT: stateRoot };
    const execArgv = process.execArgv.filter((a) => !a.includes('processinfo'));
    const cli = async (...args: string[]): Promise<Out> => {
      try {
        return { code: 0, ...(await run(process.execPath, [...execArgv, CLI, ...args], { env, encoding: 'utf8', maxBuffer: 1 << 24 })) };
      } catch (e) {
        const x = e as Out;
        return { code: x.code, stdout: x.stdout, stderr: x.stderr };
      }
    };
    /** Runs a command that must succeed; its stdout (parsed when it ran with -j). */
    const ok = async (...args: string[]): Promise<any> => {
      const r = await cli(...args);
      t.equal(r.code, 0, `vbpffs ${args.join(' ')}: ${r.stderr}`);
      return args[0] === '-j' ? JSON.parse(r.stdout) : r.stdout;
    };
    const journalLines = (): number => readFileSync(journal, 'utf8').split('\n').filter(Boolean).length;
    t.teardown(async () => {
      await cli('umount', mnt);
      if (await isMountPoint(mnt)) await run('fusermount', ['-uz', mnt]).catch(() => undefined);
    });
    const allow = path.join(base, 'allow.ts');
    const deny = path.join(base, 'deny.ts');
    const iters = path.join(base, 'iters.ts');
    writeFileSync(allow, counterObject([{ val: 1n, verdict: 1 }]));
    writeFileSync(deny, counterObject([{ val: 10n, verdict: 0 }]));
    writeFileSync(iters, ITERS);

    await ok('mount', mnt, '--sim', 'demo', '--timeout', LOADER_TIMEOUT);

    t.test('prog load pins the first program; prog pin and prog show by reference', async (t) => {
      const [a, d, it] = await Promise.all([ok('prog', 'load', allow, p('allow')), ok('prog', 'load', deny, p('deny')), ok('-j', 'p', 'load', iters, p('iter_first'))]);
      t.equal(a, '', 'bpftool prints nothing on success');
      t.equal(d, '');
      t.match(it, { id: Number, name: 'first' }, 'with -j: the new program');
      const [shown] = (await ok('-j', 'prog', 'show', 'pinned', p('allow'))) as { id: number; name: string; map_ids: number[] }[];
      t.match(shown, { name: 'p0', type: 'cgroup_skb' });
      t.equal(await ok('prog', 'pin', 'id', String(shown!.id), p('allow2')), '');
      t.equal((await run('ls', [mnt])).stdout, 'allow\nallow2\ndeny\niter_first\n');
    });

    t.test('map create, update (bytes, json, flags), lookup, getnext, dump, delete, pin', async (t) => {
      const created = await ok('-j', 'map', 'create', p('m'), 'type', 'hash', 'key', '4', 'value', '8', 'entries', '8', 'name', 'm', 'key_type', 'u32', 'value_type', '{"a":"u32","b":"u32"}');
      t.match(created, { id: Number }, 'with -j: the new map');
      await Promise.all([
        // In this order: key 1 is the hash's first.
        ok('map', 'update', 'pinned', p('m'), 'key', '1', '0', '0', '0', 'value', 'hex', '2a', '00', '00', '00', '07', '00', '00', '00').then(() =>
          ok('map', 'up', 'pinned', p('m'), 'key', 'json', '2', 'value', 'json', '{"a":5}', 'noexist'),
        ),
        ok('map', 'create', p('cs'), 'type', 'cgrp_storage', 'key_type', 'u32', 'value_type', 'u64', 'entries', '0', 'name', 'cs', 'flags', '0x1'),
      ]);
      await ok('map', 'update', 'pinned', p('cs'), 'key', 'cgroup', '/system.slice', 'value', 'json', '7');
      const [one, two, next, dump, cs, shown] = await Promise.all([
        ok('map', 'lookup', 'pinned', p('m'), 'key', '0x01', '0', '0', '0'),
        ok('-j', 'map', 'lookup', 'pinned', p('m'), 'key', 'json', '2'),
        ok('map', 'getnext', 'pinned', p('m')),
        ok('-j', 'map', 'dump', 'pinned', p('m')),
        ok('-j', 'map', 'lookup', 'pinned', p('cs'), 'key', 'cgroup', '/sys/fs/cgroup/system.slice'),
        ok('map', 'show', 'id', String(created.id)),
      ]);
      t.equal(one, '{\n    "key": 1,\n    "value": {\n        "a": 42,\n        "b": 7\n    }\n}\n', 'with a value type bpftool prints the formatted element');
      t.same(two, { key: ['0x02', '0x00', '0x00', '0x00'], value: ['0x05', '0x00', '0x00', '0x00', '0x00', '0x00', '0x00', '0x00'], formatted: { key: 2, value: { a: 5, b: 0 } } });
      t.equal(next, 'key: None\nnext key:\n01 00 00 00\n');
      t.same(dump.map((e: { formatted: unknown }) => e.formatted), [{ key: 1, value: { a: 42, b: 7 } }, { key: 2, value: { a: 5, b: 0 } }]);
      t.match(cs, { cgroup: '/system.slice', formatted: { value: 7 } }, 'a cgroup key by its path under the source mount');
      t.equal(shown, `${created.id}: hash  name m  flags 0x0\n\tkey 4B  value 8B  max_entries 8\n`);
      const mapId = String(created.id);
      await Promise.all([ok('map', 'delete', 'id', mapId, 'key', 'json', '2'), ok('map', 'pin', 'id', mapId, p('m2'))]);
      const after = await cli('map', 'getnext', 'pinned', p('m2'), 'key', '1', '0', '0', '0');
      t.match(after, { code: 1, stderr: /\(ENOENT\)\n$/ }, 'key 2 is gone: nothing after key 1');
    });

    t.test('cgroup attach, show, run, detach', async (t) => {
      await ok('cgroup', 'attach', '/system.slice', 'egress', 'pinned', p('allow'), 'multi');
      await ok('cg', 'att', '/system.slice', 'egress', 'pinned', p('deny'), 'multi');
      const [show, run1] = await Promise.all([ok('cgroup', 'show', '/system.slice'), ok('-j', 'cgroup', 'run', '/system.slice/cron.service', 'egress')]);
      t.match(show, /^ID {7}AttachType {6}AttachFlags {5}Name\n\d+ +egress +multi +p0\n\d+ +egress +multi +p0\n$/);
      t.match(run1, { progs: [{ name: 'p0', ret: 1 }, { name: 'p0', ret: 0 }], verdict: 'deny', retval: -1 });
      await ok('cgroup', 'detach', '/system.slice', 'egress', 'pinned', p('deny'));
      const [eff, run2] = await Promise.all([ok('-j', 'cgroup', 'show', '/system.slice/cron.service', 'effective'), ok('cgroup', 'run', '/system.slice/cron.service', 'egress')]);
      t.match(eff, [{ attach_type: 'egress', name: 'p0' }]);
      t.equal(eff.length, 1);
      t.match(run2, /^prog \d+ p0: returned 1\nverdict: allow  retval 0\n$/);
    });

    t.test('iter pin of a pinned program; link show, pin, update, detach', async (t) => {
      const out = await ok('iter', 'pin', 'pinned', p('iter_first'), p('walk'), 'order', 'self_only');
      t.match(out, /^pinned cgroup iterator link \d+ \(prog \d+\) at /);
      t.equal((await run('cat', [p('walk')])).stdout, 'first\n');
      const [link] = (await ok('-j', 'link', 'show', 'pinned', p('walk'))) as { id: number }[];
      await ok('link', 'pin', 'id', String(link!.id), p('walk2'));
      t.match(await ok('prog', 'loadall', iters, p('its')), /pinned prog \d+ first at .*\npinned prog \d+ second at /);
      const [upd, det] = await Promise.all([ok('link', 'update', 'pinned', p('walk'), 'pinned', p('its', 'second')), cli('link', 'detach', 'pinned', p('walk'))]);
      t.equal(upd, '');
      t.match(det, { code: 1, stderr: /cannot be detached \(EOPNOTSUPP\)\n$/ }, 'the kernel has no detach for iterator links');
      t.equal((await run('cat', [p('walk2')])).stdout, 'second\n', 'both pins are the one link, now running the new program');
    });

    t.test('errors: `Error: <what> (<ERRNO>)`, or JSON with -j, exit 1, and nothing changes', async (t) => {
      const before = journalLines();
      const big = JSON.stringify({ a: 'x'.repeat(70_000) });
      const [size, json, esc, exists, unknown, type, badUtf8] = await Promise.all([
        cli('map', 'update', 'pinned', p('m'), 'key', '1', '0', '0', 'value', '1', '0', '0', '0', '0', '0', '0', '0'),
        cli('-j', 'map', 'lookup', 'id', '99999', 'key', '1', '0', '0', '0'),
        cli('prog', 'pin', 'id', '1', `${mnt}/../escaped`),
        cli('map', 'update', 'pinned', p('m'), 'key', '1', '0', '0', '0', 'value', 'json', '{}', 'noexist'),
        cli('map', 'update', 'pinned', p('m'), 'key', '1', '0', '0', '0', 'value', 'json', big),
        cli('cgroup', 'attach', '/system.slice', 'ingress', 'pinned', p('m')),
        run('sh', ['-c', `exec "$0" "$@" "$(printf '\\377')"`, process.execPath, ...execArgv, CLI, 'map', 'show', 'pinned'], { env }).catch((e: Out) => e),
      ]);
      t.match(size, { code: 1, stderr: /^Error: map \d+: the key is 4 bytes, got 3 \(EINVAL\)\n$/ });
      t.same(JSON.parse(json.stdout), { error: 'no map with id 99999 (ENOENT)' });
      t.equal(json.code, 1);
      t.match(esc, { code: 1, stderr: /^Error: .*\/\.\.\/escaped leaves the mount .* \(EINVAL\)\n$/ });
      t.match(exists, { code: 1, stderr: /\(EEXIST\)\n$/ });
      t.match(unknown, { code: 1, stderr: /^Error: the arguments are too long: \d+ bytes, the control protocol takes at most 65536 \(E2BIG\)\n$/ });
      t.match(type, { code: 1, stderr: /is a pinned map, not a prog \(EINVAL\)\n$/ });
      t.match(badUtf8, { code: 1, stderr: /^Error: argument \d+ is not valid UTF-8 \(EINVAL\)\n$/ });
      t.equal(journalLines(), before, 'nothing refused was journalled');
    });

    t.test('after kill -9, a new mount on the same state has the maps, values, pins and attachments back', async (t) => {
      const [st] = (await ok('-j', 'status')) as { pid: number }[];
      process.kill(st!.pid, 'SIGKILL');
      for (let i = 0; i < 100 && (await isMountPoint(mnt)); i++) await sleep(50);
      await ok('mount', mnt, '--sim', 'demo', '--timeout', LOADER_TIMEOUT);
      const [one, cs, show, status, ls] = await Promise.all([
        ok('-j', 'map', 'lookup', 'pinned', p('m2'), 'key', '1', '0', '0', '0'),
        ok('-j', 'map', 'lookup', 'pinned', p('cs'), 'key', 'cgroup', '/system.slice'),
        ok('-j', 'cgroup', 'show', '/system.slice'),
        ok('-j', 'status'),
        run('ls', [mnt]),
      ]);
      t.same(one.formatted, { key: 1, value: { a: 42, b: 7 } }, 'values written through the CLI');
      t.same(cs.formatted, { value: 7 }, 'local storage values too');
      t.match(show, [{ attach_type: 'egress', attach_flags: 'multi', name: 'p0' }]);
      t.equal(show.length, 1, 'the detached program stays detached');
      t.same(status[0].journal.failed, [], 'every record replays; the refused detach is skipped');
      t.equal(ls.stdout, 'allow\nallow2\ncs\ndeny\niter_first\nits\nm\nm2\nwalk\nwalk2\n');
      t.equal((await run('cat', [p('walk2')])).stdout, 'second\n', 'the link update is back too');
    });
  });
});
