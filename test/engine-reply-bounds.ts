/**
 * Replies are bounded (issue 14, class 3): `map dump` or `map lookup` of a map whose JSON would pass
 * MAX_REPLY_BYTES is E2BIG, refused before the engine builds it, and the mount keeps answering.
 * Before, a dump of an array of 1,000 values of 1 MiB built gigabytes of "0x.." strings on the engine
 * thread until its heap ran out, and every later request of the mount was EIO.
 *
 * Through a real mount and its control socket; the mount is looked at with real processes.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import t from 'tap';
import { BpfMapType } from '../uapi';
import { Kernel } from '../progs/kernel';
import { createMap } from '../progs/maps/create';
import { ReplyBudget, jsonEntrySize, mapDumpJson } from '../progs/maps/format';
import { ValueSchema } from '../progs/maps/schema';
import { controlCall } from '../fs/control/client';
import { MAX_REPLY_BYTES } from '../fs/engine/rpc';
import { fuseSkipReason, mountVbpffs } from './harness/mount';

const run = promisify(execFile);
t.setTimeout(600_000);

const MiB = 1 << 20;

t.test('map dump and map lookup replies are bounded, and the mount outlives a refused one', async (t) => {
  const skip = await fuseSkipReason();
  t.test('(mounted)', { skip }, async (t) => {
    const m = await mountVbpffs(t, { sim: 'demo' });
    // A dump of 16 MiB takes 2 s on an idle host; under coverage beside other suites, past the CLI's 30 s.
    const call = <T>(method: string, ...args: unknown[]): Promise<T> => controlCall<T>(m.daemon.socket, method, args, 180_000);
    const healthy = async (what: string): Promise<void> => {
      t.same((await run('ls', [m.mnt])).stdout.split('\n').filter(Boolean).sort(), ['maps'], `${what}: ls answers`);
      t.match(await call('status'), { engine: { restarts: 0 } }, `${what}: the engine never died`);
    };
    await run('mkdir', [m.p('maps')]);

    t.test('the dump of an array of 1,000 values of 1 MiB', async (t) => {
      await call('mapCreate', '/maps/huge_array', { type: 'array', key: 4, value: MiB, entries: 1000, name: 'huge_array' });
      await t.rejects(call('mapDump', { pinned: '/maps/huge_array' }), { code: 'E2BIG', message: /dump \(array, 1000 entries of 4\+1048576 bytes\) is over the 16777216 bytes a reply may hold/ });
      // Its elements are still there to read one at a time.
      const one = await call<{ value: string[] }>('mapLookup', { pinned: '/maps/huge_array' }, { hex: 'e7030000' });
      t.equal(one.value.length, MiB, 'map lookup of one 1 MiB value answers');
      await healthy('after the huge array');
    });

    t.test('the dump of a hash of 30,000-byte values: 79 fit, the 80th is over', async (t) => {
      const entry = jsonEntrySize(4, 30000);
      t.equal(Math.floor(MAX_REPLY_BYTES / entry), 79);
      await call('mapCreate', '/maps/huge_hash', { type: 'hash', key: 4, value: 30000, entries: 100, name: 'huge_hash' });
      const key = (i: number): { hex: string } => ({ hex: Buffer.from(new Uint32Array([i]).buffer).toString('hex') });
      for (let i = 0; i < 80; i++) await call('mapUpdate', { pinned: '/maps/huge_hash' }, key(i), { hex: (i % 256).toString(16).padStart(2, '0').repeat(30000) });
      await t.rejects(call('mapDump', { pinned: '/maps/huge_hash' }), { code: 'E2BIG' }, '80 elements');
      await call('mapDelete', { pinned: '/maps/huge_hash' }, key(0));
      const dump = await call<{ key: string[]; value: string[] }[]>('mapDump', { pinned: '/maps/huge_hash' });
      t.equal(dump.length, 79, '79 elements');
      t.equal(dump[0]!.value[0], '0x01');
      await healthy('after the huge hash');
    });

    t.test('a dump just over the limit is refused, and one just under is whole and within it', async (t) => {
      const entry = jsonEntrySize(4, 4096);
      const fit = Math.floor(MAX_REPLY_BYTES / entry);
      t.equal(fit, 584);
      await call('mapCreate', '/maps/fits', { type: 'array', key: 4, value: 4096, entries: fit, name: 'fits' });
      await call('mapCreate', '/maps/over', { type: 'array', key: 4, value: 4096, entries: fit + 1, name: 'over' });
      const dump = await call<unknown[]>('mapDump', { pinned: '/maps/fits' });
      t.equal(dump.length, fit);
      t.ok(JSON.stringify(dump).length <= MAX_REPLY_BYTES, 'the reply is within the limit it was charged against');
      await t.rejects(call('mapDump', { pinned: '/maps/over' }), { code: 'E2BIG' });
      await healthy('after the dumps at the limit');
    });

    t.test('map lookup of one value past the limit', async (t) => {
      await call('mapCreate', '/maps/one_big', { type: 'array', key: 4, value: 3 * MiB, entries: 1, name: 'one_big' });
      await t.rejects(call('mapLookup', { pinned: '/maps/one_big' }, { hex: '00000000' }), { code: 'E2BIG', message: /3145728-byte value is over the 16777216 bytes a reply may hold/ });
      await t.rejects(call('mapDump', { pinned: '/maps/one_big' }), { code: 'E2BIG' });
      await healthy('after the big lookup');
    });
  });
});

t.test('a budget charges the formatted part of a map with BTF too', (t) => {
  const u64 = ValueSchema.define('u64');
  const u32 = ValueSchema.define('u32');
  const m = createMap(new Kernel(), { type: BpfMapType.ARRAY, keySize: 4, valueSize: 8, maxEntries: 10, btf: { key: u32, value: u64 } }).object;
  const whole = JSON.stringify(mapDumpJson(m)).length;
  // Each entry is charged a few bytes more than its JSON takes (the charge is an upper bound).
  t.equal(mapDumpJson(m, new ReplyBudget(whole + 3 * 10, 'the dump')).length, 10, 'a budget of its size holds the dump');
  // The raw arrays alone fit: only the formatted values, charged after they are made, pass it.
  const raw = 10 * jsonEntrySize(4, 8);
  t.ok(raw < whole);
  t.throws(() => mapDumpJson(m, new ReplyBudget(raw, 'the dump')), { code: 'E2BIG', message: /the dump is over the \d+ bytes a reply may hold/ });
  t.end();
});
