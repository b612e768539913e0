import t from 'tap';
import { BpfError, ERRNO, bpfError, errnoName, fromSystemError, isBpfError } from '../uapi';

t.test('BpfError carries the errno name, the x86-64 number and the negative errno FUSE returns', async (t) => {
  const e = bpfError('ENOENT', 'no such cgroup /a');
  t.ok(e instanceof BpfError);
  t.ok(e instanceof Error);
  t.equal(e.code, 'ENOENT');
  t.equal(e.errno, 2);
  t.equal(e.negative, -2);
  t.equal(e.message, 'ENOENT: no such cgroup /a');
  t.equal(e.name, 'BpfError');
});

t.test('ENOTSUPP is 524, the kernel-internal errno that leaks to userspace', async (t) => {
  t.equal(ERRNO.ENOTSUPP, 524);
  t.equal(bpfError('ENOTSUPP', 'get_next_key').errno, 524);
});

t.test('errno numbers match x86-64 Linux for the errnos the spec names', async (t) => {
  const expected: Record<string, number> = {
    EPERM: 1, ENOENT: 2, E2BIG: 7, EBADF: 9, EAGAIN: 11, ENOMEM: 12, EACCES: 13, EFAULT: 14, EBUSY: 16,
    EEXIST: 17, ENOTDIR: 20, EINVAL: 22, ENOSPC: 28, ESPIPE: 29, ENOTEMPTY: 39, ENOLINK: 67,
    EOVERFLOW: 75, EOPNOTSUPP: 95, ESTALE: 116,
  };
  for (const [name, no] of Object.entries(expected)) t.equal(ERRNO[name as keyof typeof ERRNO], no, name);
});

t.test('errnoName maps numbers of either sign back to names', async (t) => {
  t.equal(errnoName(17), 'EEXIST');
  t.equal(errnoName(-39), 'ENOTEMPTY');
  t.equal(errnoName(4242), undefined);
});

t.test('isBpfError matches the type and optionally the code', async (t) => {
  const e = bpfError('EBUSY', 'x');
  t.ok(isBpfError(e));
  t.ok(isBpfError(e, 'EBUSY'));
  t.notOk(isBpfError(e, 'EINVAL'));
  t.notOk(isBpfError(new Error('plain')));
});

t.test('fromSystemError keeps a Node system errno with context and the cause', async (t) => {
  const sys = Object.assign(new Error("ENOENT: no such file or directory, open '/x'"), { code: 'ENOENT' });
  const e = fromSystemError(sys, 'reading /x/cpu.stat');
  t.equal(e.code, 'ENOENT');
  t.match(e.message, /^ENOENT: reading \/x\/cpu.stat: /);
  t.equal(e.cause, sys);
  const same = bpfError('EPERM', 'already ours');
  t.equal(fromSystemError(same, 'ctx'), same, 'a BpfError passes through unchanged');
});

t.test('fromSystemError turns an unknown failure into EIO, never losing the message', async (t) => {
  const e = fromSystemError(new Error('disk on fire'), 'ctx');
  t.equal(e.code, 'EIO');
  t.match(e.message, /disk on fire/);
  const odd = Object.assign(new Error('weird'), { code: 'EWEIRD' });
  t.equal(fromSystemError(odd, 'ctx').code, 'EIO');
  t.equal(fromSystemError('a string', 'ctx').message, 'EIO: ctx: a string');
});
