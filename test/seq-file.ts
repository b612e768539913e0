/**
 * SeqFile (iter/seq-file.ts): the seq_file buffer an iterator's programs print into, with seq_write's
 * all-or-nothing rule, the overflow mark, copying out, and the per-file read lock.
 */
import t from 'tap';
import { SEQ_BUF_SIZE, bpf_seq_printf, bpf_seq_write } from '../progs';
import { SeqFile, checkReadSize } from '../iter/seq-file';

const bytes = (n: number, fill = 0x61): Uint8Array => new Uint8Array(n).fill(fill);

t.test('there is no buffer until the first read allocates PAGE_SIZE << 3 bytes; a write before that overflows', async (t) => {
  const seq = new SeqFile();
  t.equal(seq.size, 0);
  t.notOk(seq.write(bytes(1)), 'nowhere to put it');
  t.ok(seq.overflowed);
  seq.count = 0;
  seq.alloc();
  t.equal(seq.size, SEQ_BUF_SIZE);
  t.equal(SEQ_BUF_SIZE, 32768);
  seq.alloc();
  t.equal(seq.size, SEQ_BUF_SIZE, 'allocated once');
});

t.test('a write fits only while count + len < size, and keeps all of its bytes or none', async (t) => {
  const seq = new SeqFile();
  seq.alloc();
  t.ok(seq.write(bytes(32760)));
  t.equal(seq.room(), 8);
  t.notOk(seq.write(bytes(8)), '32760 + 8 is not < 32768');
  t.ok(seq.overflowed, 'the buffer is marked overflowed (count = size)');
  t.equal(seq.count, seq.size);
  t.equal(seq.room(), 0);
  t.notOk(seq.write(bytes(0)), 'and takes nothing more, not even nothing');
  seq.count = 32760; // the read loop's roll back
  t.notOk(seq.overflowed, 'rolling count back clears the mark');
  t.ok(seq.write(bytes(7)), '32767 bytes is the most it holds');
  t.equal(seq.count, 32767);
});

t.test('take copies bytes out from `from` on and consumes them', async (t) => {
  const seq = new SeqFile();
  seq.alloc();
  seq.write(new TextEncoder().encode('hello world'));
  seq.from = 0;
  t.equal(Buffer.from(seq.take(5)).toString(), 'hello');
  t.same([seq.count, seq.from], [6, 5]);
  const rest = seq.take(6);
  t.equal(Buffer.from(rest).toString(), ' world');
  seq.alloc();
  seq.write(bytes(3, 0x7a));
  t.equal(Buffer.from(rest).toString(), ' world', 'a copy: later writes do not change what a read returned');
});

t.test('bpf_seq_printf and bpf_seq_write write into it with -EOVERFLOW when it is full', async (t) => {
  const seq = new SeqFile();
  seq.alloc();
  t.equal(bpf_seq_write(seq, bytes(32765)), 0);
  t.equal(bpf_seq_printf(seq, '%s\n', 'x'), 0, '32767 bytes fit');
  t.equal(bpf_seq_write(seq, bytes(1)), -75, 'one more does not');
  seq.count = 0;
  t.equal(bpf_seq_printf(seq, '%40000d', 1), -75, 'a width past the buffer');
  t.ok(seq.overflowed);
});

t.test('locked runs reads one at a time, in call order, and goes on after one fails', async (t) => {
  const seq = new SeqFile();
  const order: string[] = [];
  const step = (name: string, fail = false) => async (): Promise<string> => {
    order.push(`${name} in`);
    await new Promise((r) => setImmediate(r));
    order.push(`${name} out`);
    if (fail) throw new Error(name);
    return name;
  };
  const results = await Promise.allSettled([seq.locked(step('a')), seq.locked(step('b', true)), seq.locked(step('c'))]);
  t.same(order, ['a in', 'a out', 'b in', 'b out', 'c in', 'c out']);
  t.same(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled']);
});

t.test('a read size is a non-negative integer (EINVAL otherwise)', async (t) => {
  for (const ok of [0, 1, 1 << 20]) t.doesNotThrow(() => checkReadSize(ok));
  for (const bad of [-1, 0.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 60]) t.throws(() => checkReadSize(bad), { code: 'EINVAL' }, String(bad));
});
