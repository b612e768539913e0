/**
 * The process that acts on a real vbpffs mount for the FUSE fuzzer (fuse-real.ts starts it): it is
 * not the daemon, so every file operation it makes goes through the kernel's VFS and FUSE to the
 * daemon, and it runs the `vbpffs` CLI's own code (runCli) against the daemon's control socket, as
 * a `vbpffs` process would. One request per line on stdin, one JSON reply per line on stdout, in
 * order: a file operation's errno as the kernel gave it, a command's exit status and output, the
 * tree as `find` prints it.
 */
import { execFile } from 'node:child_process';
import { createInterface } from 'node:readline';
import { promises as fsp } from 'node:fs';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { runCli } from '../../fs/cli';

const run = promisify(execFile);

/** What the driver asks for. Paths are absolute on the host. */
export type ActorRequest =
  | { fs: 'mkdir' | 'rmdir' | 'unlink' | 'cat' | 'stat'; p: string }
  | { fs: 'rename' | 'link'; p: string; to: string }
  | { fs: 'symlink'; p: string; target: string }
  | { fs: 'chmod'; p: string; mode: number }
  | { cli: string[] }
  | { find: string[] }
  | { cgwait: string; present: boolean };

export type ActorReply =
  | { ok: true; out?: string; ino?: string }
  | { ok: false; errno: string; message: string }
  | { status: number; stdout: string; stderr: string };

/** Reads a file to its end in 64 KiB reads, as cat does (each read one FUSE read of that size). */
async function cat(p: string): Promise<string> {
  const fh = await fsp.open(p, 'r');
  try {
    const chunks: Buffer[] = [];
    for (;;) {
      const buf = Buffer.alloc(65536);
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      chunks.push(buf.subarray(0, bytesRead));
    }
    return Buffer.concat(chunks).toString();
  } finally {
    await fh.close();
  }
}

async function cli(argv: string[]): Promise<ActorReply> {
  let stdout = '';
  let stderr = '';
  const status = await runCli(argv, { stdout: (s) => void (stdout += s), stderr: (s) => void (stderr += s) });
  return { status, stdout, stderr };
}

async function fsCall(req: Extract<ActorRequest, { fs: string }>): Promise<ActorReply> {
  switch (req.fs) {
    case 'mkdir':
      await fsp.mkdir(req.p, 0o755);
      return { ok: true, ino: String((await fsp.stat(req.p, { bigint: true })).ino) };
    case 'rmdir':
      return void (await fsp.rmdir(req.p)), { ok: true };
    case 'unlink':
      return void (await fsp.unlink(req.p)), { ok: true };
    case 'rename':
      return void (await fsp.rename(req.p, req.to)), { ok: true };
    case 'link':
      return void (await fsp.link(req.p, req.to)), { ok: true };
    case 'symlink':
      return void (await fsp.symlink(req.target, req.p)), { ok: true };
    case 'chmod':
      return void (await fsp.chmod(req.p, req.mode)), { ok: true };
    case 'stat':
      return { ok: true, ino: String((await fsp.stat(req.p, { bigint: true })).ino) };
    case 'cat':
      return { ok: true, out: await cat(req.p) };
  }
}

/**
 * Waits until the daemon's hierarchy has (or no longer has) a cgroup: a host mkdir or rmdir reaches
 * it through inotify, and the mirror's directories change in the same step.
 */
async function cgwait(path: string, present: boolean): Promise<ActorReply> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const r = (await cli(['cgroup', 'show', path])) as { status: number; stderr: string };
    if ((r.status === 0) === present) return { ok: true };
    /* c8 ignore next -- a daemon that misses an inotify event for 10 s (reconcile repairs it later) */
    if (Date.now() > deadline) return { ok: false, errno: 'ETIMEDOUT', message: `the daemon did not see cgroup ${path} ${present ? 'made' : 'removed'}: ${r.stderr}` };
    await sleep(5);
  }
}

export async function serve(req: ActorRequest): Promise<ActorReply> {
  try {
    if ('cli' in req) return await cli(req.cli);
    if ('find' in req) {
      // find's complaints (an entry that vanished, an EIO) stay in the listing, where they differ.
      // A root that is not there (before the view that mirrors it) lists nothing, as in the library.
      const roots = (await Promise.all(req.find.map(async (p) => ((await fsp.lstat(p).then(() => true, () => false)) ? [p] : [])))).flat();
      if (roots.length === 0) return { ok: true, out: '' };
      const r = await run('find', [...roots, '-printf', '%y %m %n %p -> %l\n'], { encoding: 'utf8', maxBuffer: 16 << 20 }).catch(
        (e: { stdout: string; stderr: string }) => ({ stdout: `${e.stdout}${e.stderr}` }),
      );
      return { ok: true, out: r.stdout };
    }
    if ('cgwait' in req) return await cgwait(req.cgwait, req.present);
    return await fsCall(req);
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    return { ok: false, errno: err.code ?? 'EIO', message: err.stderr || err.message };
  }
}

/* c8 ignore start -- the stdin loop runs in the child, whose lines the driver's tests exercise */
if (require.main === module) {
  process.umask(0o022);
  const rl = createInterface({ input: process.stdin });
  let chain = Promise.resolve();
  rl.on('line', (line) => {
    chain = chain.then(async () => {
      const { id, req } = JSON.parse(line) as { id: number; req: ActorRequest };
      process.stdout.write(`${JSON.stringify({ id, res: await serve(req) })}\n`);
    });
  });
  rl.on('close', () => void chain.then(() => process.exit(0)));
}
/* c8 ignore stop */
