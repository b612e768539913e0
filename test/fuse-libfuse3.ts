/**
 * The libfuse3 backend (fs/fuse/libfuse3.ts over native/fuse3) on a real mount of the simulated
 * tree: real processes (cat, dd, head, ls, find, stat, rm, mv, ln) use it. Skips, saying why, when
 * FUSE or the addon is not there; the node table and the binding's choice are tested without one.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { examplePath } from '../progs/examples';
import { startDaemon } from '../fs/daemon';
import { stateDirFor } from '../fs/control/registry';
import { fuseBinding, mountFuse } from '../fs/fuse/host';
import { parseMountArgs } from '../fs/cli-daemon';
import { NodeTable, OP, addonPaths, libfuse3Unavailable, loadAddon, serve, type Addon, type Handler } from '../fs/fuse/libfuse3';
import { fuseSkipReason } from './harness/mount';
import { ERRNO, S_IFDIR, S_IFREG, bpfError } from '../uapi';
import type { VfsBackend, VfsStat } from '../fs/fuse/backend';

const run = promisify(execFile);
const CLI = path.join(__dirname, '..', 'fs', 'cli.ts');

t.test('the node table maps node ids to paths as the kernel looks them up, moves and forgets them', async (t) => {
  const tab = new NodeTable();
  const a = tab.remember(tab.root, 'a');
  const b = tab.remember(a, 'b');
  t.equal(tab.pathOf(tab.root), '/');
  t.equal(tab.pathOf(b), '/a/b');
  t.equal(tab.remember(a, 'b'), b, 'a second lookup is the same node');
  t.not(b.id, a.id);
  const c = tab.remember(tab.root, 'c');
  tab.move(a, 'b', c, 'b2', false);
  t.equal(tab.pathOf(b), '/c/b2', 'rename moves the node');
  const d = tab.remember(tab.root, 'd');
  tab.move(tab.root, 'a', tab.root, 'd', false);
  t.equal(tab.pathOf(a), '/d');
  t.equal(tab.pathOf(d), null, 'the replaced node has no path');
  const e = tab.remember(tab.root, 'e');
  tab.move(tab.root, 'e', tab.root, 'c', true);
  t.equal(tab.pathOf(e), '/c');
  t.equal(tab.pathOf(b), '/e/b2', 'RENAME_EXCHANGE swaps both');
  tab.move(tab.root, 'nothing', tab.root, 'none', true);
  tab.detach(tab.root, 'nothing');
  tab.detach(c, 'nope');
  t.equal(tab.pathOf(b), '/e/b2', 'detaching a name not there changes nothing');
  tab.detach(c, 'b2');
  t.equal(tab.pathOf(b), null, 'unlink detaches');
  const before = tab.size;
  tab.forget(b.id, 2);
  t.equal(tab.node(b.id), undefined, 'forgotten once every lookup is');
  t.equal(tab.size, before - 1);
  tab.forget(a.id, 1);
  tab.forget(12345, 1);
  tab.forget(1, 1);
  t.equal(tab.node(1), tab.root, 'the root is never forgotten');
  const f = tab.remember(tab.root, 'f');
  const g = tab.remember(f, 'g');
  tab.forget(f.id, 1);
  t.equal(tab.pathOf(g), '/f/g', 'a forgotten parent keeps its known child reachable');
  t.equal(tab.remember(tab.root, 'f'), f, 'and is found again by name');
  tab.forget(g.id, 1);
  tab.forget(f.id, 1);
  t.not(tab.remember(tab.root, 'f').id, f.id, 'a node dropped entirely gets a new id');
});

t.test('the binding: --fuse, else VBPFFS_FUSE, else fuse-native', async (t) => {
  const saved = process.env['VBPFFS_FUSE'];
  t.teardown(() => {
    if (saved === undefined) delete process.env['VBPFFS_FUSE'];
    else process.env['VBPFFS_FUSE'] = saved;
  });
  delete process.env['VBPFFS_FUSE'];
  t.equal(fuseBinding(), 'fuse-native');
  t.equal(fuseBinding('libfuse3'), 'libfuse3');
  process.env['VBPFFS_FUSE'] = 'libfuse3';
  t.equal(fuseBinding(), 'libfuse3');
  t.equal(fuseBinding('fuse-native'), 'fuse-native', '--fuse wins');
  process.env['VBPFFS_FUSE'] = '';
  t.equal(fuseBinding(), 'fuse-native');
  t.throws(() => fuseBinding('fuse2'), { code: 'EINVAL', message: /fuse-native or libfuse3, not 'fuse2'/ });
  t.match(parseMountArgs(['/m', '--fuse', 'libfuse3']), { fuse: 'libfuse3' }, 'vbpffs mount --fuse');
  t.notOk('fuse' in parseMountArgs(['/m']), 'no --fuse: the daemon asks VBPFFS_FUSE');
  t.throws(() => parseMountArgs(['/m', '--fuse', 'fuse2']), { code: 'EINVAL' });
});

t.test('without the addon the backend is unavailable and says why', async (t) => {
  const none = loadAddon(['/nonexistent/vbpffs_fuse3.node']);
  t.match(none, { why: /not built.*setup\.sh/ });
  const dir = mkdtempSync(path.join(tmpdir(), 'vbpffs-noaddon-'));
  writeFileSync(path.join(dir, 'bad.node'), 'not an ELF file');
  t.match(loadAddon([path.join(dir, 'bad.node')]), { why: /does not load/ });
  t.ok(addonPaths().some((p) => p.endsWith(path.join('native', 'fuse3', 'build', 'Release', 'vbpffs_fuse3.node'))));
  const why = libfuse3Unavailable();
  if (why !== null) await t.rejects(mountFuse(path.join(dir, 'mnt'), undefined as never, { fuse: 'libfuse3' }), { code: 'ENODEV', message: why });
});

/**
 * A cgroup_view printing `lines` numbered lines of 200 bytes, built first and written with one
 * helper call: runs have a 50 ms deadline, which a helper call per line can miss on a loaded host.
 */
function bigView(dir: string, lines: number): string {
  const file = path.join(dir, `big${lines}.ts`);
  writeFileSync(
    file,
    `import { SEC, bpf_seq_write } from 'vbpffs/bpf';
let text = '';
for (let i = 0; i < ${lines}; i++) text += String(i).padStart(5) + ' ${LINE}\\n';
export const big = SEC('cgroup_view', (ctx) => {
  bpf_seq_write(ctx.meta.seq, text);
  return 0;
});
`,
  );
  return file;
}

const LINE = 'abcdefghijklmnopqrstuvwxyz0123456789'.repeat(6).slice(0, 193);
const expectBig = (lines: number): string => Array.from({ length: lines }, (_, i) => `${String(i).padStart(5)} ${LINE}\n`).join('');

t.test('a libfuse3 mount of the simulated tree', async (t) => {
  const skip = (await fuseSkipReason()) || libfuse3Unavailable() || (process.getuid?.() === 0 ? false : 'libfuse3 mounts as root here (no fusermount3)');
  t.test('(mounted)', { skip }, async (t) => {
    const base = mkdtempSync(path.join(tmpdir(), 'vbpffs-l3-'));
    const mnt = path.join(base, 'mnt');
    const stateRoot = path.join(base, 'state');
    const daemon = await startDaemon({ mountPoint: mnt, state: stateDirFor(mnt, stateRoot), stateRoot, sim: 'demo', fuse: 'libfuse3' });
    let stopped = false;
    t.teardown(() => (stopped ? undefined : daemon.stop()));
    const p = (...parts: string[]): string => path.join(mnt, ...parts);
    const sh = async (cmd: string, ...args: string[]): Promise<string> => (await run(cmd, args, { encoding: 'utf8', env: { ...process.env, VBPFFS_STATE_ROOT: stateRoot }, maxBuffer: 16 << 20 })).stdout;
    const cli = (...args: string[]): Promise<string> => sh(process.execPath, ...process.execArgv.filter((a) => !a.includes('processinfo')), CLI, ...args);

    t.match(await readFile('/proc/self/mountinfo', 'utf8'), new RegExp(` ${mnt} .* fuse\\.vbpffs vbpffs `), 'mounted as fuse.vbpffs');
    t.equal((await sh('stat', '-c', '%a %F', mnt)).trim(), '1777 directory');
    t.equal(await sh('ls', '-A', mnt), '');

    t.match(await cli('iter', 'pin', examplePath('procs'), p('procs')), /^pinned cgroup_view iterator link/);
    t.same((await sh('ls', mnt)).trim().split('\n'), ['procs', 'system.slice', 'user.slice']);
    t.equal(await sh('cat', p('system.slice', 'postgres.service', 'procs')), 'procs     2\nthreads   2\n', 'cat runs the view');
    t.equal(await sh('cat', p('system.slice', 'postgres.service', 'procs')), 'procs     2\nthreads   2\n', 'and again: a session per open');
    t.equal((await sh('find', mnt, '-name', 'procs')).trim().split('\n').length, 6);
    t.match(await sh('stat', '-c', '%a %s %i %h', p('procs')), /^600 0 \d+ 1\n$/, 'pins are 0600, size 0, our inode numbers');
    const ino = (await sh('stat', '-c', '%i', p('procs'))).trim();
    t.match(await sh('ls', '-i', mnt), new RegExp(`${ino} procs`), 'readdir and stat agree on nothing but names; stat gives our ino');

    await cli('iter', 'pin', bigView(base, 100), p('big'));
    const big = p('system.slice', 'cron.service', 'big');
    t.equal(await sh('cat', big), expectBig(100), 'a 20 KB view through cat');
    t.equal(await sh('dd', `if=${big}`, 'bs=1000', 'status=none'), expectBig(100), 'the same read 1000 bytes at a time (21 reads and EOF)');
    t.equal(await sh('head', '-c', '100', big), expectBig(100).slice(0, 100), 'a reader that closes early');
    t.equal(await sh('sh', '-c', `exec 3<${big}; head -c 61 <&3 >/dev/null; head -c 61 <&3`), expectBig(100).slice(61, 122), 'two readers of one open file share its cursor');
    await cli('iter', 'pin', bigView(base, 200), p('toobig'));
    await t.rejects(sh('cat', p('user.slice', 'toobig')), /Argument list too long|Input\/output error/, 'a run that fails fails the read, as through fuse-native');

    await t.rejects(sh('touch', p('file')), /Permission denied/);
    await t.rejects(sh('mkfifo', p('fifo')), /Operation not permitted/);
    await t.rejects(sh('mkdir', p('nocgroup')), /No such file or directory/);
    await t.rejects(sh('cat', p('nothing')), /No such file or directory/);
    await t.rejects(sh('truncate', '-s', '0', p('procs')), /Invalid argument/);
    await sh('chmod', '0640', p('procs'));
    t.equal((await sh('stat', '-c', '%a', p('procs'))).trim(), '640', 'chmod');
    await sh('touch', '-d', '2001-02-03 04:05:06Z', p('procs'));
    t.equal((await sh('stat', '-c', '%Y', p('procs'))).trim(), String(Date.UTC(2001, 1, 3, 4, 5, 6) / 1000), 'utimens');
    await sh('touch', '-m', '-d', '2002-02-03 04:05:06Z', p('procs'));
    t.equal((await sh('stat', '-c', '%Y', p('procs'))).trim(), String(Date.UTC(2002, 1, 3, 4, 5, 6) / 1000), 'mtime alone');
    await sh('chown', '0:0', p('procs'));
    t.match(await sh('stat', '-f', '-c', '%l', mnt), /^\d+\n$/, 'statfs');

    await cli('iter', 'pin', examplePath('procs'), p('victim'));
    t.match(await sh('sh', '-c', `exec 3<${p('victim')}; rm ${p('victim')}; stat -L -c %h /dev/fd/3; cat <&3`), /^0\nprocs +\d+\nthreads +\d+\n$/, 'a pin unlinked while open: fstat says nlink 0, and it reads on');
    await sh('mv', p('big'), p('big2'));
    t.equal(await sh('cat', p('big2')), expectBig(100), 'a moved pin reads at its new name');
    await t.rejects(sh('cat', p('big')), /No such file or directory/, 'and not at its old one');
    await sh('ln', p('big2'), p('big3'));
    t.equal((await sh('stat', '-c', '%i %h', p('big3'))).trim(), `${(await sh('stat', '-c', '%i', p('big2'))).trim()} 2`, 'ln makes a second name of one inode');
    await sh('ln', '-s', 'big2', p('sym'));
    t.equal((await sh('readlink', p('sym'))).trim(), 'big2');
    await sh('rm', p('big2'), p('big3'), p('sym'), p('toobig'));
    t.same((await sh('ls', mnt)).trim().split('\n'), ['procs', 'system.slice', 'user.slice'], 'rm drops the pins');
    await t.rejects(sh('rmdir', p('system.slice')), /Directory not empty|Operation not permitted/, 'rmdir reaches the engine');

    await daemon.stop();
    stopped = true;
    t.notMatch(await readFile('/proc/self/mountinfo', 'utf8'), ` ${mnt} `, 'unmounted');
  });
});

/**
 * A backend of our own, so the paths the engine never takes are taken for real: readEof (the EOF
 * read answered by the binding), create that succeeds, a release that fails, and an unmount while
 * a process holds a file open.
 */
function memBackend(): VfsBackend & { released: number; emptyReads: number } {
  const now = new Date();
  const big = Buffer.alloc(3 << 20, 'y');
  const files = new Map<string, Uint8Array>([['/big', big], ['/slow', Buffer.from('slow\n')]]);
  const open = new Map<number, { data: Uint8Array; pos: number }>();
  let fh = 1;
  const st = (p: string): VfsStat => {
    if (p === '/') return { ino: 1, mode: S_IFDIR | 0o755, nlink: 2, uid: 0, gid: 0, size: 0, atime: now, mtime: now, ctime: now };
    const data = files.get(p);
    if (data === undefined) throw bpfError('ENOENT', p);
    return { ino: 10 + [...files.keys()].indexOf(p), mode: S_IFREG | 0o644, nlink: 1, uid: 0, gid: 0, size: 0, atime: now, mtime: now, ctime: now };
  };
  const no = async (): Promise<never> => {
    throw bpfError('EPERM', 'no');
  };
  const b = {
    released: 0,
    emptyReads: 0,
    getattr: async (p: string) => st(p),
    readdir: async () => [...files.keys()].map((k) => k.slice(1)),
    readlink: no,
    mkdir: no,
    rmdir: no,
    unlink: no,
    rename: no,
    link: no,
    symlink: no,
    mknod: no,
    chmod: no,
    chown: no,
    utimens: async () => {},
    create: async (p: string) => void files.set(p, new Uint8Array(0)),
    open: async (p: string) => {
      open.set(fh, { data: files.get(p)!, pos: 0 });
      return fh++;
    },
    read: async (h: number, size: number) => (await b.readEof(h, size)).bytes,
    readEof: async (h: number, size: number) => {
      const f = open.get(h);
      if (f === undefined) throw new Error('a bug: no such handle'); // becomes EIO
      if (f.data.length === 5) await new Promise((r) => setTimeout(r, 1500));
      const bytes = f.data.subarray(f.pos, f.pos + size);
      f.pos += bytes.length;
      if (bytes.length === 0) b.emptyReads++;
      return { bytes, eof: f.pos === f.data.length };
    },
    release: async (h: number) => {
      b.released++;
      open.delete(h);
      if (h % 2 === 0) throw bpfError('EBADF', 'a release that fails is only logged');
    },
    statfs: async () => ({ bsize: 4096, blocks: 0, bfree: 0, bavail: 0, files: 0, ffree: 0, namemax: 255, type: 0 }),
  };
  return b;
}

t.test('a libfuse3 mount of a backend of the test\'s own', async (t) => {
  const skip = (await fuseSkipReason()) || libfuse3Unavailable() || (process.getuid?.() === 0 ? false : 'libfuse3 mounts as root here (no fusermount3)');
  t.test('(mounted)', { skip }, async (t) => {
    const base = mkdtempSync(path.join(tmpdir(), 'vbpffs-l3mem-'));
    const backend = memBackend();
    const m = await mountFuse(path.join(base, 'mnt'), backend, { fuse: 'libfuse3' });
    let down = false;
    t.teardown(() => (down ? undefined : m.unmount()));
    const sh = async (cmd: string, ...args: string[]): Promise<string> => (await run(cmd, args, { encoding: 'utf8', maxBuffer: 16 << 20 })).stdout;
    const big = path.join(m.mountPoint, 'big');
    t.equal((await sh('sh', '-c', `cat ${big} | wc -c`)).trim(), String(3 << 20), 'a 3 MiB file reads whole');
    t.equal((await sh('sh', '-c', `dd if=${big} bs=1M status=none | md5sum`)).trim(), (await sh('sh', '-c', `head -c ${3 << 20} /dev/zero | tr '\\0' y | md5sum`)).trim(), 'in order, read 1 MiB at a time');
    t.equal(backend.emptyReads, 0, 'no read reached the backend at EOF: readEof said so, and the binding answered it');
    await sh('touch', path.join(m.mountPoint, 'new'));
    t.equal(await sh('cat', path.join(m.mountPoint, 'new')), '', 'create answers an entry and an open file');
    t.same((await sh('ls', m.mountPoint)).trim().split('\n'), ['big', 'new', 'slow']);
    const released = backend.released;
    await t.rejects(sh('timeout', '-s', 'KILL', '0.5', 'cat', path.join(m.mountPoint, 'slow')), 'a reader killed while its read waits on the backend');
    await new Promise((r) => setTimeout(r, 2000));
    t.equal(backend.released, released + 1, 'its file is released once the read it left comes back');
    t.equal(await sh('cat', path.join(m.mountPoint, 'slow')), 'slow\n');
    await t.rejects(sh('ls', path.join(m.mountPoint, 'big', 'x')), /Not a directory|No such file/);

    // A reader holding the file open keeps the connection after the lazy unmount: it is aborted.
    const holder = spawn('sh', ['-c', `exec 3<${big}; head -c 1 <&3 >/dev/null; sleep 3.5`], { stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 500));
    const t0 = Date.now();
    await m.unmount();
    down = true;
    t.ok(Date.now() - t0 < 8000, 'unmount ends though a file was open: aborted after 2 s, or once it is closed');
    holder.kill();
    t.notMatch(await readFile('/proc/self/mountinfo', 'utf8'), ` ${m.mountPoint} `, 'unmounted');
    t.ok(backend.released >= 4, 'every open file was released');
    await m.unmount();
  });
});

/**
 * The JS half over a recording addon, with no kernel: every operation's request and reply, so it
 * is covered where the addon is not built too.
 */
t.test('the JS half answers each operation through the addon', async (t) => {
  const replies: unknown[][] = [];
  let handler!: Handler;
  const fake: Addon = {
    mount: (_m, _o, h) => ((handler = h), {}),
    unmount: () => setImmediate(() => handler(OP.EXIT, undefined, 0, [], undefined, undefined, undefined, 0, 0, 0)),
    destroy: () => undefined,
    replyErr: (...a) => void replies.push(['err', ...a]),
    replyEntry: (...a) => void replies.push(['entry', ...a]),
    replyAttr: (...a) => void replies.push(['attr', ...a]),
    replyReadlink: (...a) => void replies.push(['readlink', ...a]),
    replyStatfs: (...a) => void replies.push(['statfs', ...a]),
    replyOpen: (...a) => (replies.push(['open', ...a]), { file: a[1] }),
    replyDir: (...a) => void replies.push(['dir', ...a]),
    feed: (...a) => void replies.push(['feed', ...a]),
    fileClose: () => undefined,
  };
  const backend = memBackend();
  Object.assign(backend, {
    readlink: async () => 'target',
    mkdir: async () => undefined,
    mknod: async () => undefined,
    symlink: async () => undefined,
    unlink: async () => undefined,
    rmdir: async () => undefined,
    rename: async () => undefined,
    link: async () => undefined,
    chmod: async () => undefined,
    chown: async () => undefined,
  });
  const m = await serve(fake, path.join(mkdtempSync(path.join(tmpdir(), 'vbpffs-fake-')), 'mnt'), backend, { allowOther: true });
  let n = 0n;
  /** Sends a request; the reply it got. */
  const ask = async (op: number, ino: number, v: number[] = [], name?: string, name2?: string, ptr?: object): Promise<unknown[]> => {
    const req = ++n;
    handler(op, req, ino, v, name, name2, ptr, 0, 0, 1);
    for (let i = 0; i < 100 && !replies.some((r) => r[1] === req); i++) await new Promise((r) => setTimeout(r, 5));
    const r = replies.find((x) => x[1] === req)!;
    return [r[0], ...r.slice(2)];
  };
  t.match(await ask(OP.LOOKUP, 1, [], 'big'), ['entry', 2]);
  t.match(await ask(OP.LOOKUP, 1, [], 'nothing'), ['err', ERRNO.ENOENT]);
  t.match(await ask(OP.GETATTR, 2), ['attr', [10]]);
  t.match(await ask(OP.GETATTR, 99), ['err', ERRNO.ENOENT], 'an unknown node');
  t.match(await ask(OP.SETATTR, 2, [1 | 2 | 4 | 16 | 256, 0o600, 0, 0, 1000, 0]), ['attr']);
  t.match(await ask(OP.SETATTR, 2, [32 | 128, 0, 0, 0, 0, 2000]), ['attr']);
  t.match(await ask(OP.SETATTR, 2, [16, 0, 0, 0, 3000, 0]), ['attr'], 'atime alone keeps mtime');
  t.match(await ask(OP.SETATTR, 2, [8]), ['err', ERRNO.EINVAL], 'no truncate');
  t.match(await ask(OP.READLINK, 2), ['readlink', 'target']);
  t.match(await ask(OP.MKNOD, 1, [0o100644], 'new'), ['err', ERRNO.ENOENT], 'made, but not there: the entry fails');
  t.match(await ask(OP.CREATE, 1, [0o100644, 0], 'made'), ['open', 1, 3]);
  t.match(await ask(OP.MKDIR, 1, [0o755], 'made'), ['entry', 3]);
  t.match(await ask(OP.SYMLINK, 1, [], 'made', 'target'), ['entry', 3]);
  t.match(await ask(OP.LINK, 2, [1], 'made'), ['entry', 3]);
  t.match(await ask(OP.LINK, 2, [99], 'x'), ['err', ERRNO.ENOENT]);
  t.match(await ask(OP.RENAME, 1, [1, 0], 'made', 'big'), ['err', 0]);
  t.match(await ask(OP.RENAME, 1, [99, 0], 'big', 'x'), ['err', ERRNO.ENOENT]);
  t.match(await ask(OP.GETATTR, 2), ['attr', [10, 0o100644, 0]], 'the replaced node answers fstat from its last stat, nlink 0');
  t.match(await ask(OP.UNLINK, 1, [], 'big'), ['err', 0]);
  t.match(await ask(OP.RMDIR, 1, [], 'made'), ['err', 0]);
  t.match(await ask(OP.READDIR, 1, [4096, 0], undefined, undefined, {}), ['dir', {}, ['big', 'slow', 'made']]);
  t.match(await ask(OP.STATFS, 1), ['statfs', [4096]]);
  t.match(await ask(OP.OPEN, 1, [0]), ['open', 2]);
  handler(OP.READ, 25n, 0, [4096, 2], undefined, undefined, { file: 2 }, 0, 0, 0);
  handler(OP.READ, 26n, 0, [4096, 99], undefined, undefined, {}, 0, 0, 0);
  handler(OP.RELEASE, undefined, 0, [99], undefined, undefined, {}, 0, 0, 0);
  handler(OP.FORGET, undefined, 2, [1], undefined, undefined, undefined, 0, 0, 0);
  for (let i = 0; i < 100 && !replies.some((r) => r[0] === 'feed'); i++) await new Promise((r) => setTimeout(r, 5));
  t.match(replies.find((r) => r[0] === 'feed'), ['feed', { file: 2 }, null, -ERRNO.EIO], 'a backend bug is EIO');
  t.match(await ask(OP.OPEN, 3), ['err', ERRNO.ENOENT], 'an unlinked node has no path to open');
  t.match(await ask(OP.OPEN, 1, [0]), ['open', 3]);
  await m.unmount();
  t.equal(backend.released, 3, 'files still open at unmount are released');
});
