/**
 * The daemon's control server: answers the CLI over the control socket by forwarding to the engine,
 * plus `shutdown`, which the daemon itself handles. Malformed input (bad JSON, an unknown method, a
 * line over MAX_REQUEST_BYTES) gets an EINVAL reply; it never throws out of the server.
 *
 * Connections cost the daemon a descriptor each, and FUSE, the journal and the CLI need theirs: a
 * connection with no request under way is closed after `idleMs`, and at most `maxConnections` are
 * open. Past the cap, a new connection takes the place of the one idle longest; when every one has a
 * request under way, it is refused with EAGAIN (`retry` set: it was never read, so the client may
 * send it again). A flood of idle connections thus never locks the CLI out.
 */
import net from 'node:net';
import { chmod, lstat, rm } from 'node:fs/promises';
import { bpfError, isBpfError } from '../../uapi';
import { MAX_REQUEST_BYTES, type ControlReply, type ControlRequest } from './protocol';

/** How long a connection may wait with no request under way; the CLI sends its one at once. */
export const CONTROL_IDLE_MS = 10_000;
/** Open connections at most: far below any descriptor limit, far above the CLI's concurrency. */
export const MAX_CONTROL_CONNECTIONS = 64;

export interface ControlServerOptions {
  idleMs?: number;
  maxConnections?: number;
}

interface Conn {
  readonly sock: net.Socket;
  /** Requests read and not yet answered. */
  pending: number;
  /** When it last had no request under way (its start, or its last reply). */
  idleSince: number;
  timer: NodeJS.Timeout | null;
}

/** The methods a client may call, with how many arguments each takes at most. */
const METHODS: Readonly<Record<string, number>> = {
  status: 0,
  progShow: 1,
  mapShow: 1,
  linkShow: 1,
  mapDump: 1,
  progLoadAll: 2,
  progLoad: 2,
  iterPin: 3,
  mapCreate: 2,
  objPin: 3,
  mapLookup: 2,
  mapUpdate: 4,
  mapDelete: 2,
  mapGetNext: 2,
  linkUpdate: 2,
  linkDetach: 1,
  cgroupAttach: 4,
  cgroupDetach: 3,
  cgroupShow: 2,
  cgroupRun: 3,
  cgroupReconcile: 0,
  shutdown: 0,
};

export type ControlHandler = (method: string, args: unknown[]) => Promise<unknown>;

export async function startControlServer(socketPath: string, handle: ControlHandler, opts: ControlServerOptions = {}): Promise<net.Server> {
  const idleMs = opts.idleMs ?? CONTROL_IDLE_MS;
  const max = opts.maxConnections ?? MAX_CONTROL_CONNECTIONS;
  const conns = new Set<Conn>();
  // A clean refusal is a reply line, then the descriptor closed as soon as the line is written: the
  // peer still reads it (queued to it already), and refused sockets cannot pile up past the cap.
  const refuse = (sock: net.Socket, code: string, message: string, retry: boolean): void => {
    sock.on('error', () => sock.destroy());
    sock.end(`${JSON.stringify({ error: { code, message: `${code}: ${message}`, ...(retry ? { retry } : {}) } })}\n`);
    sock.destroySoon();
  };
  const drop = (c: Conn): void => {
    if (c.timer !== null) clearTimeout(c.timer);
    c.timer = null;
    conns.delete(c);
  };
  const idle = (c: Conn): void => {
    c.idleSince = Date.now();
    c.timer = setTimeout(() => {
      drop(c);
      refuse(c.sock, 'ETIMEDOUT', `no request in ${idleMs / 1000} s: the connection is closed`, false);
    }, idleMs);
    c.timer.unref();
  };
  const server = net.createServer((sock) => {
    if (conns.size >= max) {
      let oldest: Conn | undefined;
      for (const c of conns) if (c.pending === 0 && (oldest === undefined || c.idleSince < oldest.idleSince)) oldest = c;
      if (oldest === undefined) {
        refuse(sock, 'EAGAIN', `the daemon is answering ${max} control connections, the most it takes: try again`, true);
        return;
      }
      drop(oldest);
      refuse(oldest.sock, 'EAGAIN', `closed to make room for a newer connection (${max} at most): try again`, true);
    }
    const c: Conn = { sock, pending: 0, idleSince: 0, timer: null };
    conns.add(c);
    idle(c);
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('error', () => sock.destroy());
    sock.on('close', () => drop(c));
    sock.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > MAX_REQUEST_BYTES) {
        send(sock, { error: { code: 'E2BIG', message: `E2BIG: a request is at most ${MAX_REQUEST_BYTES} bytes` } });
        sock.end();
        return;
      }
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        // A request under way is not idle, however long the engine takes: only its reply restarts
        // the clock, so a slow operation is never cut off and a trickled one is not kept alive.
        if (c.pending++ === 0 && c.timer !== null) clearTimeout(c.timer);
        void answer(line, handle).then((r) => {
          send(sock, r);
          if (--c.pending === 0 && conns.has(c)) idle(c);
        });
      }
    });
  });
  await rm(socketPath, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  // chmod follows a symlink: the socket is checked to be the one bind() just made first (the
  // directory is private, so nothing else can swap it between the two).
  if (!(await lstat(socketPath)).isSocket()) throw bpfError('ELOOP', `${socketPath} is not the socket just made`);
  await chmod(socketPath, 0o600);
  return server;
}

async function answer(line: string, handle: ControlHandler): Promise<ControlReply> {
  try {
    let req: ControlRequest;
    try {
      req = JSON.parse(line) as ControlRequest;
    } catch {
      throw bpfError('EINVAL', 'a request is one JSON object per line');
    }
    if (typeof req !== 'object' || req === null || typeof req.method !== 'string' || !Array.isArray(req.args)) {
      throw bpfError('EINVAL', 'a request is {"method": string, "args": [...]}');
    }
    const max = METHODS[req.method];
    if (max === undefined || !Object.hasOwn(METHODS, req.method)) throw bpfError('EINVAL', `unknown method '${req.method}'`);
    if (req.args.length > max) throw bpfError('EINVAL', `${req.method} takes at most ${max} arguments`);
    return { value: await handle(req.method, req.args) };
  } catch (e) {
    if (isBpfError(e)) return { error: { code: e.code, message: e.message } };
    return { error: { code: 'EIO', message: `EIO: ${(e as Error)?.message ?? String(e)}` } };
  }
}

function send(conn: net.Socket, reply: ControlReply): void {
  if (!conn.destroyed) conn.write(JSON.stringify(reply) + '\n');
}
