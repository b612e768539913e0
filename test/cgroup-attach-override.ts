/**
 * Port of the kernel selftest prog_tests/cgroup_attach_override.c (serial_test_cgroup_attach_override),
 * step by step. allow_prog returns 1 and drop_prog 0 (each also counts its runs here); a PING_CMD is
 * one egress fire for the cgroup the test process is in, and "ping fails" is the hook's -EPERM. The
 * selftest only checks that the refused attaches fail; the errnos asserted here are the kernel's
 * (__cgroup_bpf_attach, __cgroup_bpf_detach; spec 4.2, 4.4).
 */
import t from 'tap';
import { BPF_F_ALLOW_OVERRIDE, BpfAttachType, ERRNO } from '../uapi';
import { cgroupBpfAttach, cgroupBpfDetach } from '../progs';
import { counterWorld } from './harness/cgroup-progs';

const EGRESS = BpfAttachType.CGROUP_INET_EGRESS;

t.test('cgroup_attach_override: OVERRIDE yields to a descendant, NONE forbids the subtree', async (t) => {
  const w = counterWorld([
    { val: 1n, verdict: 1 }, // allow_prog
    { val: 1n, verdict: 0, key: 1 }, // drop_prog
  ], 2);
  const [allow, drop] = w.progs as [typeof w.progs[0], typeof w.progs[0]];
  const k = w.kernel;
  const [foo, bar] = w.mkdirs('foo', 'bar');
  const pingOk = (cg: typeof foo): boolean => w.ping(cg).retval === 0;

  // test__join_cgroup(FOO)
  cgroupBpfAttach(k, foo, EGRESS, drop, { flags: BPF_F_ALLOW_OVERRIDE });
  t.equal(w.ping(foo).retval, -ERRNO.EPERM, 'ping_fail: drop_prog denies in foo');

  // test__join_cgroup(BAR): bar inherits foo's drop_prog
  t.notOk(pingOk(bar), 'ping_fail in bar');

  cgroupBpfAttach(k, bar, EGRESS, allow, { flags: BPF_F_ALLOW_OVERRIDE });
  t.ok(pingOk(bar), 'ping_ok: bar\'s program overrides foo\'s');

  cgroupBpfDetach(k, bar, EGRESS);
  t.notOk(pingOk(bar), 'ping_fail: foo\'s program again');

  cgroupBpfAttach(k, bar, EGRESS, allow, { flags: BPF_F_ALLOW_OVERRIDE });
  cgroupBpfDetach(k, foo, EGRESS);
  t.ok(pingOk(bar), 'ping_ok');

  cgroupBpfAttach(k, bar, EGRESS, allow, { flags: BPF_F_ALLOW_OVERRIDE });
  t.pass('prog_attach_allow_bar_override again: the one program is replaced by itself');
  t.throws(() => cgroupBpfAttach(k, bar, EGRESS, allow, { flags: 0 }), { code: 'EPERM' }, 'fail_prog_attach_allow_bar_none: the mode must match');
  cgroupBpfDetach(k, bar, EGRESS);
  t.throws(() => cgroupBpfDetach(k, foo, EGRESS), { code: 'ENOENT' }, 'fail_prog_detach_foo: double detach');

  cgroupBpfAttach(k, foo, EGRESS, allow, { flags: 0 });
  t.throws(() => cgroupBpfAttach(k, bar, EGRESS, allow, { flags: 0 }), { code: 'EPERM' }, 'fail_prog_attach_allow_bar_none: NONE above forbids the subtree');
  t.throws(() => cgroupBpfAttach(k, bar, EGRESS, allow, { flags: BPF_F_ALLOW_OVERRIDE }), { code: 'EPERM' }, 'fail_prog_attach_allow_bar_override');
  t.throws(() => cgroupBpfAttach(k, foo, EGRESS, allow, { flags: BPF_F_ALLOW_OVERRIDE }), { code: 'EPERM' }, 'fail_prog_attach_allow_foo_override: NONE cannot become OVERRIDE');
  cgroupBpfAttach(k, foo, EGRESS, drop, { flags: 0 });
  t.pass('prog_attach_drop_foo_none: NONE replaces its one program');

  t.notOk(pingOk(bar), 'and bar runs the replacement');
  t.equal(w.read(0), 2n, 'allow_prog ran in the two allowed pings and no other time');
  t.equal(w.read(1), 4n, 'drop_prog ran in the four denied pings');
});
