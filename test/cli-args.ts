import t from 'tap';
import {
  MountPath,
  keyword,
  parseByte,
  parseCgroupCommand,
  parseIterPin,
  parseMapCommand,
  parseMapCreate,
  parseProgLinkCommand,
  parseTypeDesc,
  parseU32,
  takeMount,
} from '../fs/cli-args';
import { runCli } from '../fs/cli';
import { cgroupPath, dataBytes, mapSpec, mountPath, objRef, updateFlags, attachMode, hexBytes } from '../fs/engine/requests';
import { ValueSchema, formatEntryPlain } from '../progs';
import { entryPlain } from '../fs/cli-objects';

const pin = (raw: string): MountPath => new MountPath(raw);

t.test('keywords: any unambiguous prefix, an exact word even when it prefixes another', async (t) => {
  t.equal(keyword('up', ['update', 'delete']), 'update');
  t.equal(keyword('key', ['key', 'key_type']), 'key');
  t.throws(() => keyword('lo', ['load', 'loadall']), { code: 'EINVAL', message: /ambiguous keyword 'lo': load, loadall/ });
  t.throws(() => keyword(undefined, ['a']), { code: 'EINVAL', message: /expected one of: a/ });
});

t.test("bytes as bpftool's parse_bytes reads them: base 0, or hex after `hex`", async (t) => {
  t.same(['1', '0x2a', '017', '255', '0'].map((w) => parseByte(w, false)), [1, 42, 15, 255, 0]);
  t.same(['ff', '2A', '0'].map((w) => parseByte(w, true)), [255, 42, 0]);
  t.same(['256', 'ff', 'x', '0x123', '08'].map((w) => parseByte(w, false)), [undefined, undefined, undefined, undefined, undefined]);
  t.equal(parseByte('123', true), undefined);
});

t.test('map commands: MAP by id or pin, DATA as bytes, hex, json or a cgroup, update flags', async (t) => {
  t.same(parseMapCommand('update', ['pinned', '/m/x', 'key', '1', '0', '0', '0', 'value', 'hex', 'ff', '0a', 'noex']), {
    method: 'mapUpdate',
    args: [{ pinned: pin('/m/x') }, { hex: '01000000' }, { hex: 'ff0a' }, 1],
  });
  t.same(parseMapCommand('update', ['id', '3', 'key', 'json', '{"a":1}', 'value', 'json', '5']).args, [{ id: 3 }, { json: { a: 1 } }, { json: 5 }, 0]);
  t.same(parseMapCommand('lookup', ['id', '3', 'key', 'cgroup', '/a']).args, [{ id: 3 }, { cgroup: '/a' }]);
  t.same(parseMapCommand('lookup', ['id', '3', 'key', 'cgroup', 'rel']).args[1], { cgroup: `${process.cwd()}/rel` }, 'a relative cgroup is from here');
  t.same(parseMapCommand('getnext', ['id', '3']), { method: 'mapGetNext', args: [{ id: 3 }] });
  t.same(parseMapCommand('getnext', ['id', '3', 'key', '1']).args, [{ id: 3 }, { hex: '01' }]);
  t.same(parseMapCommand('delete', ['id', '3', 'key', '1']).method, 'mapDelete');
  t.same(parseMapCommand('pin', ['id', '3', '/m/p']).args, ['map', { id: 3 }, pin('/m/p')]);
  t.same(parseMapCommand('dump', ['id', '3']), { method: 'mapDump', args: [{ id: 3 }] });
  t.same(parseMapCommand('show', []), { method: 'mapShow', args: [] });
  t.same(parseMapCommand('show', ['id', '4']).args, [{ id: 4 }]);
});

t.test('map commands: each mistake is EINVAL saying what was wrong', async (t) => {
  t.throws(() => parseMapCommand('lookup', ['id', 'x', 'key', '1']), { code: 'EINVAL', message: /'x' is not a map id/ });
  t.throws(() => parseMapCommand('lookup', ['name', 'x']), { code: 'EINVAL', message: /unknown keyword 'name'/ });
  t.throws(() => parseMapCommand('lookup', ['id', '1']), { code: 'EINVAL', message: /usage: map lookup MAP key DATA/ });
  t.throws(() => parseMapCommand('lookup', ['id', '1', 'key', 'zz']), { code: 'EINVAL', message: /can't parse 'zz' as a byte/ });
  t.throws(() => parseMapCommand('lookup', ['id', '1', 'key', 'json', '{']), { code: 'EINVAL', message: /is not JSON/ });
  t.throws(() => parseMapCommand('update', ['id', '1', 'key', '1', 'value', '1', 'sometimes']), { code: 'EINVAL', message: /unknown keyword 'sometimes'/ });
  t.throws(() => parseMapCommand('delete', ['id', '1', 'key', '1', 'extra']), { code: 'EINVAL', message: /can't parse|unexpected argument 'extra'/ });
  t.throws(() => parseMapCommand('update', ['id', '1', 'key', '1', 'value', 'cgroup', '/a']), { code: 'EINVAL', message: /value: can't parse 'cgroup'/ }, 'only a key may be a cgroup');
});

t.test('map create: attributes in any order, sizes from key_type/value_type, each one once', async (t) => {
  t.same(parseMapCreate(['/m/c', 'name', 'c', 'type', 'cgrp_storage', 'key_type', 'u32', 'value_type', '{"n":"u64"}', 'entries', '0', 'flags', '0x1']), {
    method: 'mapCreate',
    args: [pin('/m/c'), { name: 'c', type: 'cgrp_storage', keyType: 'u32', valueType: { n: 'u64' }, entries: 0, flags: 1 }],
  });
  t.same(parseMapCreate(['/m/h', 'type', 'hash', 'key', '4', 'value', '010', 'entries', '8', 'name', 'h']).args[1], { type: 'hash', key: 4, value: 8, entries: 8, name: 'h' });
  t.throws(() => parseMapCreate(['/m/h', 'type', 'hash', 'key', '4', 'value', '8', 'entries', '8']), { code: 'EINVAL', message: /needs name/ });
  t.throws(() => parseMapCreate(['/m/h', 'type', 'hash', 'value', '8', 'entries', '8', 'name', 'h']), { code: 'EINVAL', message: /needs key KEY_SIZE or key_type/ });
  t.throws(() => parseMapCreate(['/m/h', 'type', 'hash', 'key', '4', 'entries', '8', 'name', 'h']), { code: 'EINVAL', message: /needs value VALUE_SIZE or value_type/ });
  t.throws(() => parseMapCreate(['/m/h', 'type', 'hash', 'type', 'array']), { code: 'EINVAL', message: /type is given twice/ });
  t.throws(() => parseMapCreate(['/m/h', 'key', 'four']), { code: 'EINVAL', message: /key: 'four' is not a number/ });
  t.throws(() => parseU32('0x100000000', 'n'), { code: 'EINVAL' });
  t.throws(() => parseTypeDesc('{', 'value_type'), { code: 'EINVAL', message: /neither an integer type/ });
});

t.test('prog, link, iter and cgroup commands', async (t) => {
  t.same(parseProgLinkCommand('prog', 'load', ['a.ts', '/m/p']).args, [`${process.cwd()}/a.ts`, pin('/m/p')]);
  t.same(parseProgLinkCommand('prog', 'show', ['pinned', '/m/p']), { method: 'progShow', args: [{ pinned: pin('/m/p') }] });
  t.same(parseProgLinkCommand('link', 'show', []), { method: 'linkShow', args: [] });
  t.same(parseProgLinkCommand('link', 'pin', ['id', '2', '/m/l']).args, ['link', { id: 2 }, pin('/m/l')]);
  t.same(parseProgLinkCommand('link', 'update', ['id', '2', 'pinned', '/m/p']).args, [{ id: 2 }, { pinned: pin('/m/p') }]);
  t.same(parseProgLinkCommand('link', 'detach', ['id', '2']), { method: 'linkDetach', args: [{ id: 2 }] });
  t.throws(() => parseProgLinkCommand('link', 'detach', ['id', '2', 'x']), { code: 'EINVAL', message: /unexpected argument 'x'/ });
  t.same(parseIterPin(['pinned', '/m/p', '/m/i', 'ord', 'children', 'cgroup', '/a']).args, [{ pinned: pin('/m/p') }, pin('/m/i'), { order: 'children', cgroup: '/a' }]);
  t.same(parseIterPin(['/x.ts', '/m/i']).args, ['/x.ts', pin('/m/i'), {}]);
  t.same(parseCgroupCommand('attach', ['/a', 'egress', 'id', '5', 'multi']).args, ['/a', 'egress', { id: 5 }, 2]);
  t.same(parseCgroupCommand('attach', ['/a', 'egress', 'id', '5', 'over']).args[3], 1);
  t.same(parseCgroupCommand('attach', ['/a', 'egress', 'id', '5']).args[3], 0);
  t.same(parseCgroupCommand('detach', ['/a', 'egress', 'id', '5']), { method: 'cgroupDetach', args: ['/a', 'egress', { id: 5 }] });
  t.same(parseCgroupCommand('reconcile', []), { method: 'cgroupReconcile', args: [] }, 'cgroup reconcile takes no argument');
  t.throws(() => parseCgroupCommand('reconcile', ['/a']), { code: 'EINVAL' });
  t.same(parseCgroupCommand('show', ['/a', 'eff']).args, ['/a', true]);
  t.same(parseCgroupCommand('show', ['/a']).args, ['/a', false]);
  t.same(parseCgroupCommand('run', ['/a', 'egress', 'ctx', '{"len":84}']).args, ['/a', 'egress', { len: 84 }]);
  t.same(parseCgroupCommand('run', ['/a', 'egress']).args, ['/a', 'egress']);
  t.throws(() => parseCgroupCommand('run', ['/a', 'egress', 'ctx', '{']), { code: 'EINVAL', message: /ctx: '\{' is not JSON/ });
  t.throws(() => parseCgroupCommand('show', []), { code: 'EINVAL', message: /CGROUP is missing/ });
});

t.test('`mount MOUNTPOINT` anywhere is taken out of the arguments', async (t) => {
  t.same(takeMount(['show', 'mount', '/m']), { args: ['show'], mount: '/m' });
  t.same(takeMount(['show']), { args: ['show'] });
  t.throws(() => takeMount(['show', 'mount']), { code: 'EINVAL', message: /mount needs a MOUNTPOINT/ });
  t.equal(new MountPath('rel/x').absolute, `${process.cwd()}/rel/x`);
});

t.test('the daemon decodes requests before anything is made: paths, references, data, flags, specs', async (t) => {
  t.equal(mountPath('/a/b'), '/a/b');
  t.equal(mountPath('/'), '/');
  for (const bad of ['a', '/a/../b', '/a/./b', '/a/', '//a', 3]) t.throws(() => mountPath(bad), { code: 'EINVAL' }, String(bad));
  t.same(objRef({ id: 3 }, 'map'), { id: 3 });
  t.same(objRef({ pinned: '/p' }, 'map'), { pinned: '/p' });
  t.throws(() => objRef({ id: -1 }, 'map'), { code: 'EINVAL', message: /a map is \{id: N\} or \{pinned: PATH\}/ });
  t.throws(() => objRef({ pinned: '/../x' }, 'map'), { code: 'EINVAL' });
  t.same([...hexBytes('00ff')], [0, 255]);
  t.throws(() => hexBytes('0'), { code: 'EINVAL' });
  t.throws(() => hexBytes(7), { code: 'EINVAL' });
  const u32 = ValueSchema.define('u32');
  t.same([...dataBytes({ json: 258 }, u32, 'key', 1)], [2, 1, 0, 0]);
  t.throws(() => dataBytes({ json: 1 }, undefined, 'value', 7), { code: 'EINVAL', message: /map 7 has no value type/ });
  t.throws(() => dataBytes({ cgroup: '/' }, u32, 'value', 7), { code: 'EINVAL', message: /a value is \{hex: \.\.\.\} or \{json: \.\.\.\}/ });
  t.throws(() => dataBytes(null, u32, 'key', 7), { code: 'EINVAL', message: /or \{cgroup: PATH\}/ });
  t.same([updateFlags(undefined), updateFlags(1), updateFlags(2)], [0, 1, 2]);
  t.throws(() => updateFlags(4), { code: 'EINVAL' });
  t.same([attachMode(undefined), attachMode(2), attachMode(1)], [0, 2, 1]);
  t.throws(() => attachMode(8), { code: 'EINVAL' });
  t.match(mapSpec({ type: 'hash', keyType: 'u32', valueType: { a: 'u64' }, entries: 4, name: 'h' }), { type: 1, keySize: 4, valueSize: 8, maxEntries: 4, flags: 0 });
  t.throws(() => mapSpec(null), { code: 'EINVAL' });
  t.throws(() => mapSpec({ type: 'ringbuf' }), { code: 'EINVAL', message: /unknown map type 'ringbuf'/ });
  t.throws(() => mapSpec({ type: 'hash', key: 4, value: 4, entries: 1 }), { code: 'EINVAL', message: /needs a name/ });
  t.throws(() => mapSpec({ type: 'hash', key: -1, value: 4, entries: 1, name: 'x' }), { code: 'EINVAL', message: /key size must be a u32/ });
  t.equal(cgroupPath('/sys/fs/cgroup/a/b/', '/sys/fs/cgroup'), '/a/b');
  t.equal(cgroupPath('/sys/fs/cgroup', '/sys/fs/cgroup'), '/');
  t.equal(cgroupPath('/a', '/sys/fs/cgroup'), '/a');
  t.throws(() => cgroupPath('/sys/fs/cgroup/../etc', '/sys/fs/cgroup'), { code: 'EINVAL', message: /leaves the cgroup hierarchy/ });
  t.throws(() => cgroupPath('a', '/sys/fs/cgroup'), { code: 'EINVAL' });
});

t.test('arguments that are not valid text are refused before anything is sent', async (t) => {
  for (const bad of ['\uFFFD', 'a\uD800', '\uDC00b']) {
    let err = '';
    const code = await runCli(['map', 'show', bad], { stdout: () => undefined, stderr: (s) => void (err += s) });
    t.equal(code, 1);
    t.equal(err, 'Error: argument 3 is not valid UTF-8 (EINVAL)\n');
  }
});

t.test("a looked-up element without types prints as bpftool's print_entry_plain (progs' formatEntryPlain)", async (t) => {
  const hex = (b: Uint8Array): string[] => Array.from(b, (x) => `0x${x.toString(16).padStart(2, '0')}`);
  for (const [k, v] of [[4, 8], [4, 24], [20, 4], [8, 16]] as const) {
    const key = Uint8Array.from({ length: k }, (_, i) => i);
    const value = Uint8Array.from({ length: v }, (_, i) => 255 - i);
    t.equal(entryPlain(hex(key), hex(value)), formatEntryPlain(key, value).trimEnd(), `key ${k}, value ${v}`);
  }
});
