/**
 * Port of the kernel selftest prog_tests/cgroup_attach_multi.c (serial_test_cgroup_attach_multi),
 * step by step. Seven programs add 1, 2, 4, ..., 64 to counter[0] and allow; the test process sits
 * in /cg1/cg2/cg3/cg4/cg5 and each PING_CMD is one egress fire for cg5. The selftest's programs also
 * bump an old CGROUP_STORAGE and a per-CPU one through bpf_get_local_storage, which nothing checks;
 * vbpffs's programs only add to the counter.
 */
import t from 'tap';
import {
  BPF_F_ALLOW_MULTI,
  BPF_F_ALLOW_OVERRIDE,
  BPF_F_QUERY_EFFECTIVE,
  BPF_F_REPLACE,
  BpfAttachType,
} from '../uapi';
import { CgroupQueryError, Handle, cgroupBpfAttach, cgroupBpfDetach, cgroupBpfQuery, type CgroupAttachOpts, type ProgRef } from '../progs';
import { counterWorld } from './harness/cgroup-progs';

const EGRESS = BpfAttachType.CGROUP_INET_EGRESS;

t.test('cgroup_attach_multi: the counter sums match the kernel selftest at every step', async (t) => {
  const w = counterWorld(Array.from({ length: 7 }, (_, i) => ({ val: 1n << BigInt(i), verdict: 1 as const })));
  const allow = w.progs;
  const [cg1, cg2, cg3, cg4, cg5] = w.mkdirs('cg1', 'cg2', 'cg3', 'cg4', 'cg5');
  const k = w.kernel;

  cgroupBpfAttach(k, cg1, EGRESS, allow[0]!, { flags: BPF_F_ALLOW_MULTI });
  t.throws(() => cgroupBpfAttach(k, cg1, EGRESS, allow[0]!, { flags: BPF_F_ALLOW_MULTI }), { code: 'EINVAL' }, 'fail_same_prog_attach_to_cg1');
  cgroupBpfAttach(k, cg1, EGRESS, allow[1]!, { flags: BPF_F_ALLOW_MULTI });
  cgroupBpfAttach(k, cg2, EGRESS, allow[2]!, { flags: BPF_F_ALLOW_OVERRIDE });
  cgroupBpfAttach(k, cg3, EGRESS, allow[3]!, { flags: BPF_F_ALLOW_MULTI });
  cgroupBpfAttach(k, cg4, EGRESS, allow[4]!, { flags: BPF_F_ALLOW_OVERRIDE });
  cgroupBpfAttach(k, cg5, EGRESS, allow[5]!, { flags: 0 });

  t.equal(w.ping(cg5).retval, 0, 'ping');
  t.equal(w.read(), 1n + 2n + 8n + 32n, 'cg5 NONE, cg4 OVERRIDE skipped, cg3 MULTI, cg2 OVERRIDE skipped, cg1 MULTI');

  // query the number of effective progs in cg5
  t.equal(cgroupBpfQuery(k, cg5, EGRESS, { queryFlags: BPF_F_QUERY_EFFECTIVE, progCnt: 0 }).progCnt, 4);
  // retrieve prog_ids of effective progs in cg5
  const eff = cgroupBpfQuery(k, cg5, EGRESS, { queryFlags: BPF_F_QUERY_EFFECTIVE, progCnt: 4 });
  t.equal(eff.progCnt, 4);
  t.equal(eff.attachFlags, 0, 'attach_flags is 0 for an effective query');
  t.same(eff.progIds, [allow[5]!.id, allow[3]!.id, allow[0]!.id, allow[1]!.id], 'own first, then MULTI ancestors nearest first');
  const savedProgId = eff.progIds[0];
  // check enospc handling
  const err = t.throws(() => cgroupBpfQuery(k, cg5, EGRESS, { queryFlags: BPF_F_QUERY_EFFECTIVE, progCnt: 2 }), { code: 'ENOSPC' });
  t.ok(err instanceof CgroupQueryError);
  const short = (err as CgroupQueryError).result;
  t.equal(short.progCnt, 4, 'prog_cnt is the full count');
  t.equal(short.progIds[0], savedProgId, 'prog_ids are returned even when the buffer is too small');
  t.equal(short.progIds.length, 2);
  // retrieve prog_id of single attached prog in cg5
  const own = cgroupBpfQuery(k, cg5, EGRESS, { progCnt: 4 });
  t.equal(own.progCnt, 1);
  t.equal(own.progIds[0], savedProgId);

  // detach bottom program and ping again (bpf_prog_detach2(-1, cg5, ...): no program needed)
  cgroupBpfDetach(k, cg5, EGRESS);
  w.reset();
  t.equal(w.ping(cg5).retval, 0);
  t.equal(w.read(), 1n + 2n + 8n + 16n, 'cg4 OVERRIDE now counts');

  // test replace
  const replaceOpts = (flags: number, replaceProg: ProgRef): CgroupAttachOpts => ({ flags, replaceProg });
  t.throws(() => cgroupBpfAttach(k, cg1, EGRESS, allow[6]!, replaceOpts(BPF_F_ALLOW_OVERRIDE | BPF_F_REPLACE, allow[0]!)), { code: 'EINVAL' }, 'fail_prog_replace_override');
  t.throws(() => cgroupBpfAttach(k, cg1, EGRESS, allow[6]!, replaceOpts(BPF_F_REPLACE, allow[0]!)), { code: 'EINVAL' }, 'fail_prog_replace_no_multi');
  const closed = Handle.of(allow[0]!);
  closed.close();
  t.throws(() => cgroupBpfAttach(k, cg1, EGRESS, allow[6]!, replaceOpts(BPF_F_ALLOW_MULTI | BPF_F_REPLACE, closed)), { code: 'EBADF' }, 'fail_prog_replace_bad_fd');
  // replacing a program that is not attached to cgroup should fail
  t.throws(() => cgroupBpfAttach(k, cg1, EGRESS, allow[6]!, replaceOpts(BPF_F_ALLOW_MULTI | BPF_F_REPLACE, allow[3]!)), { code: 'ENOENT' }, 'fail_prog_replace_no_ent');
  // replace 1st from the top program
  cgroupBpfAttach(k, cg1, EGRESS, allow[6]!, replaceOpts(BPF_F_ALLOW_MULTI | BPF_F_REPLACE, allow[0]!));
  // replace program with itself
  cgroupBpfAttach(k, cg1, EGRESS, allow[6]!, replaceOpts(BPF_F_ALLOW_MULTI | BPF_F_REPLACE, allow[6]!));
  w.reset();
  t.equal(w.ping(cg5).retval, 0);
  t.equal(w.read(), 64n + 2n + 8n + 16n, 'prog6 took prog0\'s place');
  t.same(cgroupBpfQuery(k, cg1, EGRESS).progIds, [allow[6]!.id, allow[1]!.id], 'in place: still first in cg1');

  // detach 3rd from bottom program and ping again
  t.throws(() => cgroupBpfDetach(k, cg3, EGRESS), { code: 'EINVAL' }, 'fail_prog_detach_from_cg3: MULTI needs the program');
  cgroupBpfDetach(k, cg3, EGRESS, allow[3]!);
  w.reset();
  t.equal(w.ping(cg5).retval, 0);
  t.equal(w.read(), 64n + 2n + 16n);

  // detach 2nd from bottom program and ping again
  cgroupBpfDetach(k, cg4, EGRESS);
  w.reset();
  t.equal(w.ping(cg5).retval, 0);
  t.equal(w.read(), 64n + 2n + 4n, 'with nothing below it, cg2\'s OVERRIDE program runs');

  const eff2 = cgroupBpfQuery(k, cg5, EGRESS, { queryFlags: BPF_F_QUERY_EFFECTIVE, progCnt: 4 });
  t.equal(eff2.progCnt, 3);
  t.equal(eff2.attachFlags, 0);
  t.equal(cgroupBpfQuery(k, cg5, EGRESS, { progCnt: 4 }).progCnt, 0);

  // err: close the programs: the cgroups' own references keep the attached ones loaded
  w.coll.close();
  t.equal(allow[6]!.released, false, 'attached programs outlive their fds');
  t.equal(allow[0]!.released, true, 'the replaced program was put');
  for (const cg of [cg5, cg4, cg3, cg2, cg1]) w.hierarchy.remove(cg);
  t.equal(k.list('prog').length, 0, 'cleanup_cgroup_environment releases the rest');
});
