/**
 * The daemon's control server: answers the CLI over the control socket by forwarding to the engine,
 * plus `shutdown`, which the daemon itself handles. Malformed input (bad JSON, an unknown method, a
 * line over MAX_REQUEST_BYTES) gets an EINVAL reply; it never throws out of the server.
 */
import net from 'node:net';
import { chmod, rm } from 'node:fs/promises';
import { bpfError, isBpfError } from '../../uapi';
import { MAX_REQUEST_BYTES, type ControlReply, type ControlRequest } from './protocol';

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

export async function startControlServer(socketPath: string, handle: ControlHandler): Promise<net.Server> {
  await rm(socketPath, { force: true });
  const server = net.createServer((conn) => {
    let buf = '';
    conn.setEncoding('utf8');
    conn.on('error', () => conn.destroy());
    conn.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > MAX_REQUEST_BYTES) {
        send(conn, { error: { code: 'E2BIG', message: `E2BIG: a request is at most ${MAX_REQUEST_BYTES} bytes` } });
        conn.end();
        return;
      }
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        void answer(line, handle).then((r) => send(conn, r));
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
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
