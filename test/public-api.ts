/**
 * Each layer's one public face (its index.ts): the names it promises are there and defined, and the
 * top of progs/ re-exports every part of the layer, so users import from one place.
 */
import t from 'tap';
import * as uapi from '../uapi';
import * as tags from '../tags';
import * as host from '../tags/host';
import * as progs from '../progs';
import * as maps from '../progs/maps';
import * as localStorage from '../progs/maps/local-storage';
import * as helpers from '../progs/helpers';
import * as prog from '../progs/prog';
import * as runtime from '../progs/runtime';
import * as events from '../progs/events';
// progs/link and progs/cgroup import each other (a cgroup link attaches through the cgroup state,
// which auto-detaches links): an import cycle would show here as an undefined export.
import * as link from '../progs/link';
import * as cgroup from '../progs/cgroup';
import * as iter from '../iter';
import * as bpffs from '../fs/bpffs';

const faces = { uapi, tags, 'tags/host': host, progs, 'progs/maps': maps, 'progs/maps/local-storage': localStorage, 'progs/helpers': helpers, 'progs/prog': prog, 'progs/runtime': runtime, 'progs/events': events, 'progs/link': link, 'progs/cgroup': cgroup, iter, 'fs/bpffs': bpffs };

t.test('every export of every public face is defined (no re-export of a name that is gone)', async (t) => {
  for (const [name, mod] of Object.entries(faces)) {
    const undefinedNames = Object.entries(mod).filter(([, v]) => v === undefined).map(([k]) => k);
    t.same(undefinedNames, [], `${name}: every export is defined`);
  }
});

t.test('progs/ re-exports all of maps, helpers, prog, runtime, events, link and cgroup', async (t) => {
  for (const part of [maps, helpers, prog, runtime, events, link, cgroup]) {
    const missing = Object.keys(part).filter((k) => !(k in progs));
    t.same(missing, [], 'nothing is missing from progs/');
  }
  t.ok(Object.keys(localStorage).every((k) => k in maps), 'maps/ re-exports local storage');
});

t.test('the faces promise what the README and the docs use', async (t) => {
  for (const name of ['Kernel', 'loadCollection', 'BpfProg', 'Collection', 'createMap', 'ValueSchema', 'bpf_seq_printf', 'BufferSeqSink', 'ObjectIsolate', 'SchedSampler'] as const) {
    t.ok(name in progs, `progs exports ${name}`);
  }
  for (const name of ['SimCgroupSource', 'HostCgroupSource', 'KernfsNode', 'CgroupHierarchy', 'Task', 'DirTag'] as const) {
    t.ok(name in tags, `tags exports ${name}`);
  }
  t.ok('BpfError' in uapi && 'ERRNO' in uapi);
  for (const name of ['bpfIterLinkCreate', 'BpfIterLink', 'IterSession'] as const) t.ok(name in iter, `iter exports ${name}`);
  for (const name of ['Bpffs', 'isIterLink', 'bpfLinkSupportInherit'] as const) t.ok(name in bpffs, `fs/bpffs exports ${name}`);
  for (const name of ['BPF_FS_MAGIC', 'RENAME_EXCHANGE', 'S_IFREG', 'O_NOFOLLOW'] as const) t.ok(name in uapi, `uapi exports ${name}`);
});
