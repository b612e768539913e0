import t from 'tap';
import { BPF_F_NO_PREALLOC, BpfMapType } from '../uapi';
import { Kernel } from '../progs/kernel';
import { ArrayMap } from '../progs/maps/array';
import { CgroupStorageMap, cgroupStoragesAlloc } from '../progs/maps/cgroup-storage';
import { createMap } from '../progs/maps/create';
import {
  BPFFS_MAP_HEADER,
  bpffsMapShow,
  btfTypeSeqShow,
  formatEntryPlain,
  fprintHex,
  mapDumpJson,
  mapDumpPlain,
  mapEntries,
  mapSupportsSeqShow,
} from '../progs/maps/format';
import { HashMap } from '../progs/maps/hash';
import { cgrpStorageMapOps } from '../progs/maps/local-storage';
import type { MapSpec } from '../progs/maps/map';
import { ValueSchema } from '../progs/maps/schema';
import { KernfsNode } from '../tags/kernfs-node';

const bytes = (...b: number[]): Uint8Array => new Uint8Array(b);
const u32 = ValueSchema.define('u32');
const u64 = ValueSchema.define('u64');
const hashSpec = (over: Partial<MapSpec> = {}): MapSpec => ({ type: BpfMapType.HASH, keySize: 4, valueSize: 8, maxEntries: 8, ...over });

t.test('bpftool print_entry_plain: key and value on one line when both fit in 24 bytes', (t) => {
  t.equal(formatEntryPlain(bytes(1, 0, 0, 0), bytes(0x2a, 0, 0, 0, 0, 0, 0, 0)), 'key: 01 00 00 00  value: 2a 00 00 00 00 00 00 00\n');
  t.end();
});

t.test('bpftool print_entry_plain: over 24 bytes the value goes on its own line; over 16 the names break too', (t) => {
  t.equal(formatEntryPlain(bytes(...new Array(8).fill(1)), bytes(...new Array(16).fill(2))),
    'key: 01 01 01 01 01 01 01 01  value: 02 02 02 02 02 02 02 02  02 02 02 02 02 02 02 02\n', 'exactly 24 bytes');
  t.equal(formatEntryPlain(bytes(...new Array(12).fill(1)), bytes(...new Array(16).fill(2))),
    'key: 01 01 01 01 01 01 01 01  01 01 01 01\nvalue: 02 02 02 02 02 02 02 02  02 02 02 02 02 02 02 02\n');
  t.equal(formatEntryPlain(bytes(3), bytes(...new Array(17).fill(0xff))),
    'key:\n03\nvalue:\nff ff ff ff ff ff ff ff  ff ff ff ff ff ff ff ff\nff\n');
  t.end();
});

t.test('bpftool fprint_hex: a double space every 8 bytes and a newline every 16', (t) => {
  t.equal(fprintHex(bytes()), '');
  t.equal(fprintHex(bytes(...Array.from({ length: 18 }, (_, i) => i))),
    '00 01 02 03 04 05 06 07  08 09 0a 0b 0c 0d 0e 0f\n10 11');
  t.end();
});

t.test('bpftool map dump: one entry per key, then "Found N element(s)"', (t) => {
  const m = createMap<HashMap>(new Kernel(), hashSpec()).object;
  t.equal(mapDumpPlain(m), 'Found 0 elements\n');
  m.updateElem(1, bytes(0x2a, 0, 0, 0, 0, 0, 0, 0));
  t.equal(mapDumpPlain(m), 'key: 01 00 00 00  value: 2a 00 00 00 00 00 00 00\nFound 1 element\n');
  m.updateElem(2, bytes(0, 0, 0, 0, 0, 0, 0, 1));
  t.equal(mapDumpPlain(m),
    'key: 01 00 00 00  value: 2a 00 00 00 00 00 00 00\nkey: 02 00 00 00  value: 00 00 00 00 00 00 00 01\nFound 2 elements\n');
  t.end();
});

t.test('bpftool map dump -j: "0x.." byte strings, and "formatted" by the schema when the map has BTF', (t) => {
  const plain = createMap<HashMap>(new Kernel(), hashSpec()).object;
  plain.updateElem(1, bytes(0x2a, 0, 0, 0, 0, 0, 0, 0));
  t.same(mapDumpJson(plain), [{ key: ['0x01', '0x00', '0x00', '0x00'], value: ['0x2a', '0x00', '0x00', '0x00', '0x00', '0x00', '0x00', '0x00'] }]);
  const typed = createMap<HashMap>(new Kernel(), hashSpec({ btf: { key: u32, value: u64 } })).object;
  typed.updateElem(7, u64.fromJson('18446744073709551615'));
  t.same(mapDumpJson(typed)[0]!.formatted, { key: 7, value: '18446744073709551615' });
  const arr = createMap<ArrayMap>(new Kernel(), { type: BpfMapType.ARRAY, keySize: 4, valueSize: 4, maxEntries: 1, btf: { key: u32, value: u32 } }).object;
  t.same(mapDumpJson(arr), [{ key: ['0x00', '0x00', '0x00', '0x00'], value: ['0x00', '0x00', '0x00', '0x00'], formatted: { key: 0, value: 0 } }]);
  t.end();
});

t.test('btf_type_seq_show: ints in decimal; inside structs and arrays every value is followed by ","', (t) => {
  const s = ValueSchema.define({ a: 'u64', b: 's32', h: ['u16', 2], n: { x: 's8', y: 'u8' }, l: 'bpf_spin_lock' });
  const v = s.fromJson({ a: '18446744073709551615', b: -5, h: [1, 2], n: { x: -1, y: 200 } });
  t.equal(btfTypeSeqShow(s, v), '{18446744073709551615,-5,[1,2,],{-1,200,},{0,},}');
  t.equal(btfTypeSeqShow(ValueSchema.define('s64'), ValueSchema.define('s64').fromJson(-3)), '-3');
  t.equal(btfTypeSeqShow(ValueSchema.define('s16'), ValueSchema.define('s16').fromJson(-3)), '-3');
  t.equal(btfTypeSeqShow(ValueSchema.define('u16'), ValueSchema.define('u16').fromJson(9)), '9');
  t.end();
});

t.test('__btf_array_show: 1-byte arrays show printable bytes as chars and stop at the first NUL', (t) => {
  const s = ValueSchema.define({ comm: ['u8', 6], sc: ['s8', 3], g: [{ a: 'u8' }, 2] });
  const v = s.fromJson({ comm: [0x76, 0x6d, 1, 0, 0x41, 0], sc: [-2, 0x7a, 0], g: [{ a: 0 }, { a: 66 }] });
  t.equal(btfTypeSeqShow(s, v), "{['v','m',1,],[-2,'z',],[{0,},{66,},],}");
  t.equal(btfTypeSeqShow(s, s.zero()), '{[],[],[{0,},{0,},],}');
  t.end();
});

t.test('bpffs pinned hash map: the two WARNING lines, then "key: value" per element', (t) => {
  const value = ValueSchema.define({ wait_ns: 'u64', count: 'u32' });
  const m = createMap<HashMap>(new Kernel(), hashSpec({ valueSize: 16, btf: { key: u32, value } })).object;
  t.equal(bpffsMapShow(m), BPFFS_MAP_HEADER);
  m.updateElem(1, value.fromJson({ wait_ns: 5, count: 2 }));
  m.updateElem(300, value.fromJson({ wait_ns: 0, count: 0 }));
  t.equal(bpffsMapShow(m),
    '# WARNING!! The output is for debug purpose only\n# WARNING!! The output format will change\n1: {5,2,}\n300: {0,0,}\n');
  t.end();
});

t.test('bpffs pinned array map: array_map_seq_show_elem prints the index with %u', (t) => {
  const m = createMap<ArrayMap>(new Kernel(), { type: BpfMapType.ARRAY, keySize: 4, valueSize: 8, maxEntries: 2, btf: { key: u32, value: u64 } }).object;
  m.updateElem(1, u64.fromJson(42));
  t.equal(bpffsMapShow(m), `${BPFFS_MAP_HEADER}0: 0\n1: 42\n`);
  t.end();
});

t.test('bpffs pinned old cgroup storage: the key shown by its type (struct for isolated, u64 for shared)', (t) => {
  const root = new KernfsNode(1, '', null);
  const cg = new KernfsNode(7, 'a', root);
  const kernel = new Kernel();
  const isolated = createMap<CgroupStorageMap>(kernel, {
    type: BpfMapType.CGROUP_STORAGE, keySize: 16, valueSize: 4, maxEntries: 0,
    btf: { key: ValueSchema.define({ cgroup_inode_id: 'u64', attach_type: 'u32' }), value: u32 },
  }).object;
  cgroupStoragesAlloc(isolated, cg, 2).storage.value[0] = 9;
  t.equal(bpffsMapShow(isolated), `${BPFFS_MAP_HEADER}{7,2,}: 9\n`);
  const shared = createMap<CgroupStorageMap>(kernel, {
    type: BpfMapType.CGROUP_STORAGE, keySize: 8, valueSize: 4, maxEntries: 0, btf: { key: u64, value: u32 },
  }).object;
  cgroupStoragesAlloc(shared, cg, 2);
  t.equal(bpffsMapShow(shared), `${BPFFS_MAP_HEADER}7: 0\n`);
  t.end();
});

t.test('bpf_map_support_seq_show: no value type, or no map_seq_show_elem (local storage), is EIO at open', (t) => {
  const untyped = createMap<HashMap>(new Kernel(), hashSpec()).object;
  t.equal(mapSupportsSeqShow(untyped), false);
  t.throws(() => bpffsMapShow(untyped), { code: 'EIO' });
  const local = cgrpStorageMapOps.alloc(new Kernel(), {
    type: BpfMapType.CGRP_STORAGE, keySize: 4, valueSize: 8, maxEntries: 0, flags: BPF_F_NO_PREALLOC,
    btf: { key: ValueSchema.define('s32'), value: u64 },
  });
  t.equal(mapSupportsSeqShow(local), false);
  t.throws(() => bpffsMapShow(local), { code: 'EIO' });
  t.end();
});

t.test('dumping a map that cannot enumerate its keys passes on its errno (ENOTSUPP for local storage)', (t) => {
  const local = cgrpStorageMapOps.alloc(new Kernel(), {
    type: BpfMapType.CGRP_STORAGE, keySize: 4, valueSize: 8, maxEntries: 0, flags: BPF_F_NO_PREALLOC,
    btf: { key: ValueSchema.define('s32'), value: u64 },
  });
  t.throws(() => [...mapEntries(local)], { code: 'ENOTSUPP' });
  t.end();
});

t.test('mapEntries skips a key whose element vanished between get_next_key and lookup', (t) => {
  const m = createMap<HashMap>(new Kernel(), hashSpec()).object;
  for (const k of [1, 2, 3]) m.updateElem(k, bytes(k, 0, 0, 0, 0, 0, 0, 0));
  // Another user deletes the key get_next_key just returned, before the dump's lookup reaches it.
  const getNextKey = m.getNextKey.bind(m);
  const lookupElem = m.lookupElem.bind(m);
  let raceOn: number | null = null;
  m.getNextKey = (key: unknown): Uint8Array => {
    const next = getNextKey(key);
    if (next[0] === raceOn) {
      raceOn = null;
      m.deleteElem(next);
    }
    return next;
  };
  const lookupErrors: unknown[] = [];
  m.lookupElem = (key: unknown, flags?: number): Uint8Array => {
    try {
      return lookupElem(key, flags);
    } catch (e) {
      lookupErrors.push(e);
      throw e;
    }
  };
  const it = mapEntries(m);
  raceOn = 1;
  const first = it.next();
  t.same(lookupErrors.map((e) => (e as { code: string }).code), ['ENOENT'], 'the lookup of the vanished key failed with ENOENT');
  t.same(first.value, [bytes(2, 0, 0, 0), bytes(2, 0, 0, 0, 0, 0, 0, 0)], 'and the walk went on from there (htab restarts at the first key)');
  t.same(it.next().value, [bytes(3, 0, 0, 0), bytes(3, 0, 0, 0, 0, 0, 0, 0)]);
  t.equal(it.next().done, true);
  t.equal(lookupErrors.length, 1);
  t.end();
});

t.test('mapEntries passes errors other than ENOENT through', (t) => {
  const m = createMap<HashMap>(new Kernel(), hashSpec()).object;
  m.updateElem(1, new Uint8Array(8));
  m.updateElem(2, new Uint8Array(8));
  const it = mapEntries(m);
  t.same((it.next().value as [Uint8Array, Uint8Array])[0], bytes(1, 0, 0, 0));
  m.lookupElem = () => {
    throw Object.assign(new Error('gone'), { name: 'BpfError' });
  };
  t.throws(() => it.next(), /gone/);
  t.end();
});
