/**
 * Port of the kernel selftest prog_tests/cgroup_link.c (serial_test_cgroup_link, newest version),
 * step by step. `egress` counts its runs in calls (counter[0]) and `egress_alt` in alt_calls
 * (counter[1]), both allowing, as progs/test_cgroup_link.c does with two globals; the test process
 * sits in the last of /cg1/cg2/cg3/cg4, and each ping_and_check is one egress fire there.
 */
import t, { type Test } from 'tap';
import { BPF_F_ALLOW_MULTI, BPF_F_QUERY_EFFECTIVE, BPF_F_REPLACE, BpfAttachType } from '../uapi';
import {
  cgroupBpfAttach,
  cgroupBpfDetach,
  cgroupBpfLinkAttach,
  cgroupBpfQuery,
  bpfLinkDetach,
  bpfLinkGetInfo,
  bpfLinkUpdate,
  type BpfCgroupLink,
  type Handle,
} from '../progs';
import type { KernfsNode } from '../tags';
import { counterWorld } from './harness/cgroup-progs';

const EGRESS = BpfAttachType.CGROUP_INET_EGRESS;

t.test('cgroup_link: links coexist with legacy MULTI, update in place, detach and auto-detach as the kernel does', async (t) => {
  const w = counterWorld([
    { val: 1n, verdict: 1, key: 0 }, // egress: calls++
    { val: 1n, verdict: 1, key: 1 }, // egress_alt: alt_calls++
  ], 2);
  const [egress, egressAlt] = w.progs as [(typeof w.progs)[0], (typeof w.progs)[0]];
  const k = w.kernel;
  const cgs = w.mkdirs('cg1', 'cg2', 'cg3', 'cg4');
  const cgNr = cgs.length;
  const last = cgs[cgNr - 1]!;
  // join_cgroup(cgs[last_cg].path): the pings come from the last cgroup until it is removed.
  let here: KernfsNode = last;
  const pingAndCheck = (t: Test, calls: number, altCalls: number, what: string): void => {
    w.reset(0);
    w.reset(1);
    t.equal(w.ping(here).retval, 0, `${what}: ping`);
    t.equal(w.read(0), BigInt(calls), `${what}: call_cnt`);
    t.equal(w.read(1), BigInt(altCalls), `${what}: alt_call_cnt`);
  };
  const links: (Handle<BpfCgroupLink> | null)[] = cgs.map((cg) => cgroupBpfLinkAttach(k, cg, EGRESS, egress));

  pingAndCheck(t, cgNr, 0, 'a link per level');

  // query the number of attached progs and attach flags in root cg
  const q0 = cgroupBpfQuery(k, cgs[0]!, EGRESS, { progCnt: 0 });
  t.equal(q0.attachFlags, BPF_F_ALLOW_MULTI, 'links attach in MULTI mode');
  t.equal(q0.progCnt, 1);
  // query the number of effective progs in last cg
  t.equal(cgroupBpfQuery(k, last, EGRESS, { queryFlags: BPF_F_QUERY_EFFECTIVE, progCnt: 0 }).progCnt, cgNr);
  // query the effective prog IDs in last cg
  const eff = cgroupBpfQuery(k, last, EGRESS, { queryFlags: BPF_F_QUERY_EFFECTIVE, progCnt: cgNr });
  t.equal(eff.progCnt, cgNr);
  t.ok(eff.progIds.every((id) => id === egress.id), 'prog_id_check: the same program at every level');

  // detach bottom program and ping again
  links[cgNr - 1]!.close();
  links[cgNr - 1] = null;
  pingAndCheck(t, cgNr - 1, 0, 'bottom link destroyed');

  // mix in with non link-based multi-attachments
  cgroupBpfAttach(k, last, EGRESS, egress, { flags: BPF_F_ALLOW_MULTI });
  links[cgNr - 1] = cgroupBpfLinkAttach(k, last, EGRESS, egress);
  pingAndCheck(t, cgNr + 1, 0, 'a legacy MULTI program and a link of the same program side by side');

  // detach link
  links[cgNr - 1]!.close();
  links[cgNr - 1] = null;
  // detach legacy
  cgroupBpfDetach(k, last, EGRESS, egress);
  // attach legacy exclusive prog attachment
  cgroupBpfAttach(k, last, EGRESS, egress, { flags: 0 });
  // attempt to mix in with multi-attach bpf_link
  const before = k.list('link').length;
  t.throws(() => cgroupBpfLinkAttach(k, last, EGRESS, egress), { code: 'EPERM' }, 'cg_attach_fail: a link cannot join a NONE program');
  t.equal(k.list('link').length, before, 'the refused link is gone');
  pingAndCheck(t, cgNr, 0, 'the NONE program and the three links above');

  // detach
  cgroupBpfDetach(k, last, EGRESS, egress);
  pingAndCheck(t, cgNr - 1, 0, 'NONE program detached');

  // attach back link-based one
  links[cgNr - 1] = cgroupBpfLinkAttach(k, last, EGRESS, egress);
  pingAndCheck(t, cgNr, 0, 'link back');

  // check legacy exclusive prog can't be attached
  t.throws(() => cgroupBpfAttach(k, last, EGRESS, egress, { flags: 0 }), { code: 'EPERM' }, 'cg_attach_exclusive: NONE cannot join links');

  // replace BPF programs inside their links for all but first link
  for (let i = 1; i < cgNr; i++) bpfLinkUpdate(links[i]!, egressAlt);
  pingAndCheck(t, 1, cgNr - 1, 'prog_upd');

  // Attempt program update with wrong expected BPF program
  t.throws(() => bpfLinkUpdate(links[0]!, egressAlt, { flags: BPF_F_REPLACE, oldProg: egressAlt }), { code: 'EPERM' }, 'prog_cmpxchg1');
  // Compare-exchange single link program from egress to egress_alt
  bpfLinkUpdate(links[0]!, egressAlt, { flags: BPF_F_REPLACE, oldProg: egress });
  pingAndCheck(t, 0, cgNr, 'prog_cmpxchg2');

  // close cgroup FDs before detaching links: vbpffs holds no cgroup fds; the links hold the cgroups.
  // BPF programs should still get called
  pingAndCheck(t, 0, cgNr, 'after closing the cgroup fds');

  let info = bpfLinkGetInfo(links[0]!);
  t.equal(info.progId, egressAlt.id, 'link_info');
  t.equal((info.cgroup as { cgroupId: number }).cgroupId, cgs[0]!.id, 'cgroup_id');

  bpfLinkDetach(links[0]!);
  // cgroup_id should be zero in link_info
  info = bpfLinkGetInfo(links[0]!);
  t.equal(info.progId, egressAlt.id, 'a detached link still holds its program');
  t.equal((info.cgroup as { cgroupId: number }).cgroupId, 0, 'cgroup_id');

  // First BPF program shouldn't be called anymore
  pingAndCheck(t, 0, cgNr - 1, 'first link detached');

  // leave cgroup and remove them, don't detach programs
  here = w.root;
  for (const cg of [...cgs].reverse()) w.hierarchy.remove(cg);
  // BPF programs should have been auto-detached
  pingAndCheck(t, 0, 0, 'cgroups removed');
  for (const l of links) {
    t.equal((bpfLinkGetInfo(l!).cgroup as { cgroupId: number }).cgroupId, 0, `link ${l!.object.id} auto-detached`);
    t.equal(l!.object.attached, false);
  }
  t.equal(cgs.every((cg) => cg.released), true, 'auto-detach dropped the links\' cgroup references');

  // cleanup
  for (const l of links) l!.close();
  w.coll.close();
  t.equal(k.list('link').length + k.list('prog').length, 0, 'nothing left');
});
