/** The CLI's side of the control socket: one request, one reply. */
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { bpfError, BpfError, type ErrnoName } from '../../uapi';
import { MAX_REQUEST_BYTES, type ControlReply } from './protocol';

/**
 * How long the CLI waits for an answer: 30 s, or VBPFFS_CONTROL_TIMEOUT seconds (for a slow host, or
 * a daemon busy with a long replay).
 */
export function defaultTimeoutMs(env: NodeJS.ProcessEnv = process.env): number {
  const s = Number(env.VBPFFS_CONTROL_TIMEOUT);
  return env.VBPFFS_CONTROL_TIMEOUT !== undefined && env.VBPFFS_CONTROL_TIMEOUT.trim() !== '' && Number.isFinite(s) && s > 0 ? s * 1000 : 30_000;
}

/**
 * What to look at, after a request timed out, to learn whether it was carried out anyway: the
 * daemon does not drop a request its client gave up on (the engine may be part way through it, and
 * the journal has it), so a command retried blindly could be made twice. Reads change nothing.
 */
const CHECK: Readonly<Record<string, string>> = {
  progLoad: 'vbpffs prog show, or ls the pin path',
  progLoadAll: 'vbpffs prog show, or ls the directory',
  iterPin: 'ls the pin path (vbpffs link show)',
  objPin: 'ls the pin path',
  mapCreate: 'vbpffs map show, or ls the pin path',
  mapUpdate: 'vbpffs map lookup',
  mapDelete: 'vbpffs map lookup',
  linkUpdate: 'vbpffs link show',
  linkDetach: 'vbpffs link show',
  cgroupAttach: 'vbpffs cgroup show CGROUP',
  cgroupDetach: 'vbpffs cgroup show CGROUP',
  cgroupRun: "vbpffs prog show (the programs' run_cnt)",
  cgroupReconcile: 'vbpffs status',
  shutdown: 'vbpffs status',
};

/**
 * A Unix socket's connect() and a short write complete at once or fail at once (an error, not a
 * timeout), so a request that timed out reached the daemon.
 */
function timedOut(socketPath: string, method: string, timeoutMs: number): BpfError {
  const what = `the daemon at ${socketPath} did not answer ${method} in ${timeoutMs / 1000} s`;
  const check = CHECK[method];
  if (check === undefined) return bpfError('ETIMEDOUT', `${what} (a read: it changed nothing)`);
  return bpfError('ETIMEDOUT', `${what}: the request was sent and may still be carried out; check with ${check} before trying again`);
}

/** One exchange; `retry` when the daemon refused the connection unread (its cap): safe to resend. */
function exchange<T>(socketPath: string, method: string, line: string, timeoutMs: number, shownMs: number): Promise<{ value: T } | { retry: BpfError }> {
  return new Promise((resolve, reject) => {
    const conn = net.connect(socketPath);
    let buf = '';
    const timer = setTimeout(() => {
      conn.destroy();
      reject(timedOut(socketPath, method, shownMs));
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
      if (!('error' in reply)) return resolve({ value: reply.value as T });
      const err = new BpfError(reply.error.code as ErrnoName, reply.error.message.replace(/^[A-Z0-9]+: /, ''));
      if (reply.error.retry === true) resolve({ retry: err });
      else reject(err);
    });
    conn.write(line);
  });
}

/**
 * Sends one request and resolves with its value; a request over the protocol's limit is E2BIG,
 * unsent. One the daemon refused unread for its connection cap is sent again until the timeout.
 */
export async function controlCall<T = unknown>(socketPath: string, method: string, args: unknown[] = [], timeoutMs = defaultTimeoutMs()): Promise<T> {
  const line = JSON.stringify({ method, args }) + '\n';
  const size = Buffer.byteLength(line);
  if (size > MAX_REQUEST_BYTES) throw bpfError('E2BIG', `the arguments are too long: ${size} bytes, the control protocol takes at most ${MAX_REQUEST_BYTES}`);
  const deadline = Date.now() + timeoutMs;
  for (let pause = 20; ; pause = Math.min(pause * 2, 500)) {
    const r = await exchange<T>(socketPath, method, line, Math.max(1, deadline - Date.now()), timeoutMs);
    if ('value' in r) return r.value;
    if (Date.now() + pause >= deadline) throw r.retry;
    await sleep(pause);
  }
}
