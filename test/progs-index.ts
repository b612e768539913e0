/**
 * The public faces of progs/link and progs/cgroup: every export resolves when loaded through
 * progs/index.ts. The two folders import each other (a cgroup link attaches through the cgroup
 * state, the state auto-detaches links), so an import cycle would show here as an undefined export.
 */
import t from 'tap';
import * as progs from '../progs';
import * as cgroup from '../progs/cgroup';
import * as link from '../progs/link';

for (const [name, face] of [['progs/cgroup', cgroup], ['progs/link', link]] as const) {
  t.test(`${name}: every export is defined and re-exported by progs/index.ts`, async (t) => {
    const names = Object.keys(face);
    t.ok(names.length > 10);
    for (const k of names) {
      t.not((face as Record<string, unknown>)[k], undefined, k);
      t.equal((progs as Record<string, unknown>)[k], (face as Record<string, unknown>)[k], `progs.${k}`);
    }
  });
}
