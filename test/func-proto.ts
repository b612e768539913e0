import t from 'tap';
import {
  BpfAttachType,
  BpfProgType,
  checkHelperCall,
  HELPERS,
  helperAllowed,
  helperInfo,
  helpersFor,
  knownSections,
  parseSection,
  requireSection,
  returnAllowed,
  returnRange,
} from '../progs/helpers/func-proto';

const ALL = knownSections();

t.test('parseSection maps libbpf section names to the kernel prog type and expected_attach_type', async (t) => {
  t.match(parseSection('cgroup_skb/ingress'), { type: 'cgroup_skb', progType: BpfProgType.CGROUP_SKB, attachType: BpfAttachType.CGROUP_INET_INGRESS, family: 'cgroup' });
  t.match(parseSection('cgroup_skb/egress'), { attachType: BpfAttachType.CGROUP_INET_EGRESS });
  t.match(parseSection('cgroup/skb'), { attachType: BpfAttachType.CGROUP_INET_INGRESS }, 'no attach type means 0, ingress');
  t.match(parseSection('cgroup/connect4'), { type: 'cgroup_sock_addr', progType: 18, attachType: 10 });
  t.match(parseSection('cgroup/connect6'), { attachType: 11 });
  t.match(parseSection('cgroup/sock_create'), { type: 'cgroup_sock', progType: 9, attachType: 2 });
  t.match(parseSection('cgroup/sock'), { attachType: 2 });
  t.match(parseSection('cgroup/getsockopt'), { type: 'cgroup_sockopt', progType: 25, attachType: 21 });
  t.match(parseSection('cgroup/sysctl'), { type: 'cgroup_sysctl', progType: 23, attachType: 18 });
  t.match(parseSection('cgroup/dev'), { type: 'cgroup_device', progType: 15, attachType: 6 });
  t.match(parseSection('sockops'), { type: 'sock_ops', progType: 13, attachType: 3 });
  t.match(parseSection('cgroup/tick'), { type: 'cgroup_collector', progType: BpfProgType.VBPFFS_CGROUP_COLLECTOR, attachType: BpfAttachType.VBPFFS_CGROUP_TICK, family: 'cgroup' });
  t.match(parseSection('cgroup/sched_sample'), { type: 'cgroup_collector', attachType: BpfAttachType.VBPFFS_CGROUP_SCHED_SAMPLE, family: 'cgroup' });
  t.match(parseSection('iter/cgroup'), { type: 'iter', progType: 26, attachType: 28, family: 'iter', iterTarget: 'cgroup', sleepable: false });
  t.match(parseSection('iter.s/cgroup'), { sleepable: true, iterTarget: 'cgroup' });
  t.match(parseSection('cgroup_view'), { type: 'cgroup_view', family: 'iter', iterTarget: 'cgroup_view' });
  t.equal(parseSection('iter/cgroup_view'), parseSection('cgroup_view'), "the RFC selftest's SEC(\"iter/cgroup_view\")");
  for (const tp of ['sched/sample', 'cgroup/mkdir', 'cgroup/rmdir', 'timer/tick']) {
    const [category, name] = tp.split('/');
    t.match(parseSection(`tp/${tp}`), { type: 'tracepoint', progType: 5, attachType: undefined, family: 'tracing', tracepoint: { category, name } });
    t.equal(parseSection(`tracepoint/${tp}`), parseSection(`tp/${tp}`), 'libbpf accepts tracepoint/ too');
  }
});

t.test('an unknown section is undefined from parseSection and EINVAL from requireSection', async (t) => {
  for (const s of ['', 'iter/task', 'tp/sched/sched_switch', 'lsm/file_open', 'cgroup/connect5', 'kprobe/foo', 'xdp']) {
    t.equal(parseSection(s), undefined, s);
    t.throws(() => requireSection(s), { code: 'EINVAL' }, s);
  }
  t.equal(requireSection('sockops').section, 'sockops');
  t.throws(() => helpersFor('nope'), { code: 'EINVAL' });
  t.throws(() => returnRange('nope'), { code: 'EINVAL' });
});

t.test('bpf_seq_printf and bpf_seq_write are for iterators only (tracing_prog_func_proto: BPF_TRACE_ITER)', async (t) => {
  for (const s of ALL) {
    const iter = parseSection(s)!.family === 'iter';
    t.equal(helperAllowed(s, 'bpf_seq_printf'), iter, `${s}: bpf_seq_printf`);
    t.equal(helperAllowed(s, 'bpf_seq_write'), iter, `${s}: bpf_seq_write`);
  }
});

t.test('the base helpers are allowed for every type (bpf_base_func_proto with CAP_BPF and CAP_PERFMON)', async (t) => {
  const base = [
    'bpf_map_lookup_elem', 'bpf_map_update_elem', 'bpf_map_delete_elem', 'bpf_ktime_get_ns',
    'bpf_cgrp_storage_get', 'bpf_cgrp_storage_delete', 'bpf_task_storage_get', 'bpf_task_storage_delete',
    'bpf_get_current_cgroup_id', 'bpf_get_current_task',
    'vbpffs_cgroup_id', 'vbpffs_cgroup_level', 'vbpffs_cgroup_name', 'vbpffs_cgroup_ancestor_id',
  ];
  for (const s of ALL) for (const h of base) t.ok(helperAllowed(s, h), `${s}: ${h}`);
});

t.test('bpf_sk_storage_get/delete: socket-bearing cgroup types and iterators; cgroup_sock gets only get', async (t) => {
  const both = ['cgroup_skb/ingress', 'cgroup_skb/egress', 'cgroup/connect4', 'cgroup/sendmsg6', 'cgroup/getsockopt', 'cgroup/setsockopt', 'sockops', 'iter/cgroup', 'cgroup_view'];
  for (const s of both) {
    t.ok(helperAllowed(s, 'bpf_sk_storage_get'), `${s}: get`);
    t.ok(helperAllowed(s, 'bpf_sk_storage_delete'), `${s}: delete`);
  }
  for (const s of ['cgroup/sock_create', 'cgroup/post_bind4', 'cgroup/sock_release']) {
    t.ok(helperAllowed(s, 'bpf_sk_storage_get'), `${s}: get (bpf_sk_storage_get_cg_sock_proto)`);
    t.notOk(helperAllowed(s, 'bpf_sk_storage_delete'), `${s}: no delete (sock_filter_func_proto)`);
  }
  for (const s of ['cgroup/sysctl', 'cgroup/dev', 'tp/sched/sample', 'tp/timer/tick']) {
    t.notOk(helperAllowed(s, 'bpf_sk_storage_get'), `${s}: no sk storage`);
  }
});

t.test('bpf_inode_storage_get/delete are LSM-only in the kernel, so no vbpffs type may call them', async (t) => {
  for (const s of ALL) {
    t.notOk(helperAllowed(s, 'bpf_inode_storage_get'), s);
    t.notOk(helperAllowed(s, 'bpf_inode_storage_delete'), s);
  }
});

t.test('vbpffs_cgroup_read (interface files) only where reading files is reasonable', async (t) => {
  const yes = ['cgroup_view', 'iter/cgroup', 'iter.s/cgroup', 'tp/timer/tick', 'cgroup/tick', 'tp/cgroup/mkdir'];
  for (const s of ALL) t.equal(helperAllowed(s, 'vbpffs_cgroup_read'), yes.includes(s) || s === 'iter/cgroup_view' || s === 'tracepoint/timer/tick' || s === 'tracepoint/cgroup/mkdir', s);
});

t.test('helpersFor lists a type\'s helpers sorted; unknown helpers are never allowed', async (t) => {
  t.same(helpersFor('cgroup/dev'), [
    'bpf_cgrp_storage_delete', 'bpf_cgrp_storage_get', 'bpf_get_current_cgroup_id', 'bpf_get_current_task',
    'bpf_ktime_get_ns', 'bpf_map_delete_elem', 'bpf_map_lookup_elem', 'bpf_map_update_elem',
    'bpf_task_storage_delete', 'bpf_task_storage_get',
    'vbpffs_cgroup_ancestor_id', 'vbpffs_cgroup_id', 'vbpffs_cgroup_level', 'vbpffs_cgroup_name',
  ]);
  t.same(helpersFor(parseSection('cgroup_view')!), helpersFor('cgroup_view'), 'accepts a SectionInfo');
  t.notOk(helperAllowed('cgroup_view', 'bpf_probe_read'));
  t.notOk(helperAllowed('nope', 'bpf_ktime_get_ns'));
});

t.test('checkHelperCall gives the kernel verifier\'s words and EINVAL', async (t) => {
  t.same(checkHelperCall('cgroup_view', 'bpf_seq_printf'), { ok: true });
  t.same(checkHelperCall('tp/sched/sample', 'bpf_seq_printf'), {
    ok: false, errno: 'EINVAL', reason: 'program of this type cannot use helper bpf_seq_printf#126 (tp/sched/sample)',
  });
  t.same(checkHelperCall('cgroup/dev', 'vbpffs_cgroup_read'), {
    ok: false, errno: 'EINVAL', reason: 'program of this type cannot use helper vbpffs_cgroup_read (cgroup/dev)',
  });
  t.same(checkHelperCall('cgroup_view', 'bpf_probe_read'), { ok: false, errno: 'EINVAL', reason: 'unknown func bpf_probe_read' });
  t.match(checkHelperCall('bogus', 'bpf_ktime_get_ns'), { ok: false, errno: 'EINVAL' });
});

t.test('helpers keep the kernel names and bpf_func_id; vbpffs_* are ours', async (t) => {
  t.match(helperInfo('bpf_cgrp_storage_get'), { origin: 'kernel', id: 210 });
  t.match(helperInfo('bpf_seq_printf'), { origin: 'kernel', id: 126 });
  t.match(helperInfo('vbpffs_cgroup_read'), { origin: 'vbpffs' });
  t.equal(helperInfo('vbpffs_cgroup_read')!.id, undefined);
  t.equal(helperInfo('nope'), undefined);
  for (const h of HELPERS) t.equal(h.origin === 'vbpffs', h.name.startsWith('vbpffs_'), h.name);
});

t.test('return ranges follow check_return_code', async (t) => {
  t.match(returnRange('cgroup_view'), { min: 0, max: 1 });
  t.match(returnRange('iter/cgroup'), { min: 0, max: 1 });
  t.match(returnRange('cgroup_skb/ingress'), { min: 0, max: 1, meaning: { 0: 'drop', 1: 'allow' } });
  t.match(returnRange('cgroup_skb/egress'), { min: 0, max: 3, meaning: { 2: /congestion/, 3: /congestion/ } }, 'egress adds congestion notification');
  t.match(returnRange('cgroup/connect4'), { min: 0, max: 1 });
  t.match(returnRange('cgroup/bind6'), { min: 0, max: 3, meaning: { 3: /CAP_NET_BIND_SERVICE/ } });
  for (const s of ['cgroup/recvmsg4', 'cgroup/recvmsg6', 'cgroup/recvmsg_unix', 'cgroup/getpeername4', 'cgroup/getpeername6', 'cgroup/getpeername_unix', 'cgroup/getsockname4', 'cgroup/getsockname6', 'cgroup/getsockname_unix']) {
    t.match(returnRange(s), { min: 1, max: 1 }, s);
  }
  for (const s of ['cgroup/sock_create', 'cgroup/sysctl', 'cgroup/setsockopt', 'cgroup/dev', 'sockops']) t.match(returnRange(s), { min: 0, max: 1 }, s);
  for (const s of ['cgroup/tick', 'cgroup/sched_sample']) t.match(returnRange(s), { min: 0, max: 1, meaning: { 0: /EPERM/ } }, s);
  t.equal(returnRange('tp/timer/tick'), null, 'tracepoints are not checked');
});

t.test('returnAllowed: integers in range, anything for tracepoints', async (t) => {
  t.ok(returnAllowed('cgroup_skb/egress', 3));
  t.notOk(returnAllowed('cgroup_skb/ingress', 2));
  t.notOk(returnAllowed('cgroup_view', -1));
  t.notOk(returnAllowed('cgroup_view', 0.5));
  t.notOk(returnAllowed('cgroup/recvmsg4', 0));
  t.ok(returnAllowed('tp/sched/sample', -12345));
});
