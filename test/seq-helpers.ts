import t from 'tap';
import { bpf_seq_printf, bpf_seq_write, BufferSeqSink, SEQ_BUF_SIZE, type SeqSink } from '../progs/helpers/seq';
import { bpfPutBuffers, bpfTryGetBuffers } from '../progs/helpers/bprintf';

const EINVAL = -22;
const EBUSY = -16;
const EOVERFLOW = -75;
const ENOSPC = -28;

t.test('BufferSeqSink defaults to the bpf_iter seq buffer, PAGE_SIZE << 3 = 32768 bytes', async (t) => {
  t.equal(SEQ_BUF_SIZE, 32768);
  const s = new BufferSeqSink();
  t.equal(s.capacity, 32768);
  t.equal(s.room(), 32768);
  t.throws(() => new BufferSeqSink(0), { code: 'EINVAL' });
  t.throws(() => new BufferSeqSink(1.5), { code: 'EINVAL' });
});

t.test('bpf_seq_printf formats into the sink and returns 0 (the cgroup_iter selftest lines)', async (t) => {
  const s = new BufferSeqSink();
  t.equal(bpf_seq_printf(s, 'prologue\n'), 0);
  t.equal(bpf_seq_printf(s, '%8llu\n', 1n), 0);
  t.equal(bpf_seq_printf(s, 'cgroup_id: %8lu\nqueue_self: %8lu\n', 42, 7), 0);
  t.equal(s.text(), 'prologue\n       1\ncgroup_id:       42\nqueue_self:        7\n');
  t.equal(s.count, s.contents().length);
});

t.test('bpf_seq_printf returns -EINVAL for a bad format or more than 12 arguments, and writes nothing', async (t) => {
  const s = new BufferSeqSink();
  t.equal(bpf_seq_printf(s, '%.2f', 1), EINVAL);
  t.equal(bpf_seq_printf(s, '%d'), EINVAL);
  t.equal(bpf_seq_printf(s, '%d', ...Array(13).fill(1)), EINVAL);
  t.equal(bpf_seq_printf(null as unknown as SeqSink, 'x'), EINVAL, 'no sink');
  t.equal(bpf_seq_printf(s, 5 as unknown as string), EINVAL, 'no format string');
  t.equal(s.count, 0);
});

t.test('bpf_seq_printf passes on -ENOSPC when the packed arguments exceed 512 bytes', async (t) => {
  const s = new BufferSeqSink();
  t.equal(bpf_seq_printf(s, '%s %s', 'x'.repeat(600), 'y'), ENOSPC);
  t.equal(s.count, 0);
});

t.test('-EOVERFLOW when the output does not fit: nothing of it is kept, the sink is overflowed ("the same object will be tried again")', async (t) => {
  const s = new BufferSeqSink(16);
  t.equal(bpf_seq_printf(s, '%s', 'abcdefghij'), 0);
  t.equal(bpf_seq_printf(s, '%s', '123456'), EOVERFLOW, '10 + 6 = 16 is not < 16 (seq_bprintf)');
  t.ok(s.overflowed);
  t.equal(s.count, 16, 'count reads as the size once overflowed (seq_set_overflow)');
  t.equal(s.room(), 0);
  t.equal(s.text(), 'abcdefghij', 'what came before is kept');
  t.equal(bpf_seq_printf(s, ''), EOVERFLOW, 'an overflowed seq takes nothing more, not even empty output');
  t.equal(bpf_seq_write(s, new Uint8Array(0)), EOVERFLOW);
  s.rollback(10);
  t.notOk(s.overflowed, 'bpf_seq_read rolls back to the object\'s start');
  t.equal(bpf_seq_printf(s, '%s', '12345'), 0, '15 < 16 fits');
  t.equal(s.text(), 'abcdefghij12345');
  t.throws(() => s.rollback(20), { code: 'EINVAL' });
  s.clear();
  t.equal(s.count, 0);
});

t.test('a huge width is formatted only as far as the sink has room', async (t) => {
  const s = new BufferSeqSink();
  const t0 = process.hrtime.bigint();
  t.equal(bpf_seq_printf(s, '%8000000d', 1), EOVERFLOW);
  t.ok(process.hrtime.bigint() - t0 < 1_000_000_000n, 'fast');
  t.equal(bpf_seq_printf(s, '%32767d', 1), EOVERFLOW, 'exactly the size does not fit');
  s.clear();
  t.equal(bpf_seq_printf(s, '%32766d', 1), 0, 'one byte less does');
  t.equal(s.count, 32766);
});

t.test('a sink whose room() is no number is offered the whole output and write() decides', async (t) => {
  const writes: number[] = [];
  const sink: SeqSink = { write: (b) => (writes.push(b.length), b.length < 4), room: () => NaN };
  t.equal(bpf_seq_printf(sink, 'abc'), 0);
  t.equal(bpf_seq_printf(sink, 'abcd'), EOVERFLOW);
  t.same(writes, [3, 4]);
});

t.test('output longer than room() is -EOVERFLOW even if a sink breaks its contract and accepts the cut piece', async (t) => {
  const writes: number[] = [];
  const sink: SeqSink = { write: (b) => (writes.push(b.length), true), room: () => 2 };
  t.equal(bpf_seq_printf(sink, 'abcdef'), EOVERFLOW);
  t.same(writes, [3], 'room() + 1 bytes offered');
});

t.test('bpf_seq_printf returns -EBUSY when the per-CPU buffers are taken (nested use)', async (t) => {
  const s = new BufferSeqSink();
  for (let i = 0; i < 3; i++) bpfTryGetBuffers();
  try {
    t.equal(bpf_seq_printf(s, '%d', 1), EBUSY);
    t.equal(bpf_seq_printf(s, 'plain'), 0, 'without arguments no buffer is needed');
  } finally {
    for (let i = 0; i < 3; i++) bpfPutBuffers();
  }
  t.equal(bpf_seq_printf(s, '%d', 1), 0);
  t.equal(s.text(), 'plain1');
});

t.test('a program nested inside bpf_seq_printf (a hook firing while formatting) sees the levels in use', async (t) => {
  const s = new BufferSeqSink();
  let depth = 0;
  const results: number[] = [];
  const nesting: SeqSink = {
    room: () => s.room(),
    write: (b) => {
      // a program run from inside the write: the outer call released its buffer level already
      if (depth++ < 1) results.push(bpf_seq_printf(s, '[%d]', depth));
      return s.write(b);
    },
  };
  t.equal(bpf_seq_printf(nesting, 'outer %d', 1), 0);
  t.same(results, [0], 'the kernel releases the buffers after bstr_printf, before the next call');
  t.equal(s.text(), '[1]outer 1');
});

t.test('bpf_seq_write appends bytes, 0 or -EOVERFLOW; len defaults to the view and may not exceed it', async (t) => {
  const s = new BufferSeqSink(8);
  t.equal(bpf_seq_write(s, new Uint8Array([0x61, 0x62, 0x63])), 0);
  const dv = new DataView(new Uint8Array([0x78, 0x64, 0x65, 0x66]).buffer, 1);
  t.equal(bpf_seq_write(s, dv, 2), 0, 'a DataView over part of a buffer, first 2 bytes');
  t.equal(s.text(), 'abcde');
  t.equal(bpf_seq_write(s, new Uint8Array(3)), EOVERFLOW, '5 + 3 is not < 8');
  t.equal(s.text(), 'abcde', 'nothing of it kept');
  s.rollback(5);
  t.equal(bpf_seq_write(s, new Uint8Array(4), 5), EINVAL, 'len past the data');
  t.equal(bpf_seq_write(s, new Uint8Array(4), -1), EINVAL);
  t.equal(bpf_seq_write(s, 'abc' as unknown as Uint8Array), EINVAL, 'not bytes');
  t.equal(bpf_seq_write({} as SeqSink, new Uint8Array(1)), EINVAL, 'not a sink');
  t.equal(bpf_seq_write(s, new Uint16Array([0x4141])), 0, 'any typed array, as bytes');
  t.equal(s.text(), 'abcdeAA');
});
