import t from 'tap';
import net from 'node:net';
import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { bpfError } from '../uapi';
import { controlCall } from '../fs/control/client';
import { startControlServer } from '../fs/control/server';
import { MAX_REQUEST_BYTES } from '../fs/control/protocol';
import { listMounts, readInfo, removeInfo, stateDirFor, writeInfo } from '../fs/control/registry';

/** Sends raw text, returns the first reply line parsed. */
function raw(socket: string, text: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const c = net.connect(socket);
    let buf = '';
    c.setEncoding('utf8');
    c.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        c.destroy();
        resolve(JSON.parse(buf.slice(0, nl)));
      }
    });
    c.on('error', reject);
    c.write(text);
  });
}

t.test('control socket: a request is forwarded; its BpfError comes back with its errno', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'vbpffs-ctl-'));
  const sock = path.join(dir, 'control.sock');
  const calls: [string, unknown[]][] = [];
  const server = await startControlServer(sock, async (method, args) => {
    calls.push([method, args]);
    if (method === 'mapDump') throw bpfError('ENOENT', 'no map with id 9');
    if (method === 'linkShow') throw new Error('a bug');
    return { ok: true };
  });
  t.teardown(() => void server.close());
  t.equal(statSync(sock).mode & 0o777, 0o600, 'only the owner may connect');
  t.same(await controlCall(sock, 'status'), { ok: true });
  await t.rejects(controlCall(sock, 'mapDump', [9]), { code: 'ENOENT', message: 'ENOENT: no map with id 9' });
  await t.rejects(controlCall(sock, 'linkShow'), { code: 'EIO', message: /a bug/ }, 'an unexpected error is EIO, the server lives on');
  t.same(calls, [['status', []], ['mapDump', [9]], ['linkShow', []]]);
});

t.test('control socket: bad input gets EINVAL or E2BIG and never reaches the engine', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'vbpffs-ctl-'));
  const sock = path.join(dir, 'control.sock');
  let reached = 0;
  const server = await startControlServer(sock, async () => void reached++);
  t.teardown(() => void server.close());
  t.match(await raw(sock, 'not json\n'), { error: { code: 'EINVAL', message: /one JSON object per line/ } });
  t.match(await raw(sock, '{"method": 3}\n'), { error: { code: 'EINVAL' } });
  t.match(await raw(sock, '{"method": "toString", "args": []}\n'), { error: { code: 'EINVAL', message: /unknown method 'toString'/ } });
  t.match(await raw(sock, '{"method": "status", "args": [1]}\n'), { error: { code: 'EINVAL', message: /at most 0 arguments/ } });
  t.match(await raw(sock, 'x'.repeat(MAX_REQUEST_BYTES + 1)), { error: { code: 'E2BIG' } });
  t.match(await raw(sock, '{"method": "\\udc00", "args": []}\n'), { error: { code: 'EINVAL' } }, 'invalid UTF-16 in a name is just an unknown method');
  t.equal(reached, 0);
});

t.test('control client: no daemon answering is ENOENT, with the socket named', async (t) => {
  await t.rejects(controlCall('/nonexistent/control.sock', 'status'), { code: 'ENOENT', message: /no daemon answers/ });
});

t.test('registry: one directory per mount point, listed with whether its daemon lives', async (t) => {
  const root = mkdtempSync(path.join(tmpdir(), 'vbpffs-reg-'));
  const stateDir = stateDirFor('/mnt/a b/%x', root);
  t.equal(path.basename(stateDir), '%2Fmnt%2Fa b%2F%25x', 'the mount point, escaped, names the directory');
  await writeInfo({ mountPoint: '/mnt/a b/%x', pid: process.pid, startedAt: 'now', socket: path.join(stateDir, 'control.sock'), stateDir });
  await writeInfo({ mountPoint: '/mnt/dead', pid: 2 ** 22 + 12345, startedAt: 'then', socket: 'x', stateDir: stateDirFor('/mnt/dead', root) });
  const list = await listMounts(root);
  t.same(list.map((m) => [m.mountPoint, m.alive]), [['/mnt/a b/%x', true], ['/mnt/dead', false]]);
  t.equal(statSync(path.join(stateDir, 'info.json')).mode & 0o777, 0o600);
  await removeInfo(stateDir);
  t.equal(await readInfo(stateDir), undefined);
  t.same(await listMounts(path.join(root, 'nope')), []);
});
