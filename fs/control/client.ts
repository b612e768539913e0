/** The CLI's side of the control socket: one request, one reply. */
import net from 'node:net';
import { bpfError, BpfError, type ErrnoName } from '../../uapi';
import { MAX_REQUEST_BYTES, type ControlReply } from './protocol';

/** Sends one request and resolves with its value; a request over the protocol's limit is E2BIG, unsent. */
export async function controlCall<T = unknown>(socketPath: string, method: string, args: unknown[] = [], timeoutMs = 30_000): Promise<T> {
  const line = JSON.stringify({ method, args }) + '\n';
  const size = Buffer.byteLength(line);
  if (size > MAX_REQUEST_BYTES) throw bpfError('E2BIG', `the arguments are too long: ${size} bytes, the control protocol takes at most ${MAX_REQUEST_BYTES}`);
  return new Promise<T>((resolve, reject) => {
    const conn = net.connect(socketPath);
    let buf = '';
    const timer = setTimeout(() => {
      conn.destroy();
      reject(bpfError('ETIMEDOUT', `the daemon at ${socketPath} did not answer ${method} in ${timeoutMs} ms`));
    }, timeoutMs);
    conn.setEncoding('utf8');
    conn.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      const code = e.code === 'EACCES' ? 'EACCES' : e.code === 'ENOENT' || e.code === 'ECONNREFUSED' ? 'ENOENT' : 'EIO';
      reject(bpfError(code, code === 'EACCES' ? `${socketPath}: only the daemon's owner may control it` : `no daemon answers at ${socketPath} (${e.code})`));
    });
    conn.on('data', (chunk: string) => {
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      conn.end();
      const reply = JSON.parse(buf.slice(0, nl)) as ControlReply;
      if ('error' in reply) reject(new BpfError(reply.error.code as ErrnoName, reply.error.message.replace(/^[A-Z0-9]+: /, '')));
      else resolve(reply.value as T);
    });
    conn.write(line);
  });
}
