import t from 'tap';
import {
  bpfBprintfPrepare,
  bpfBprintfNestLevel,
  bpfPutBuffers,
  bpfTryGetBuffers,
  MAX_BPRINTF_NEST_LEVEL,
  type BprintfArg,
} from '../progs/helpers/bprintf';

const EINVAL = -22;
const EBUSY = -16;
const ENOSPC = -28;

function out(fmt: string, ...args: BprintfArg[]): string {
  const r = bpfBprintfPrepare(fmt, args);
  if (!r.ok) throw new Error(`${fmt}: errno ${r.errno}`);
  return r.text;
}
function err(fmt: string, ...args: BprintfArg[]): number | undefined {
  const r = bpfBprintfPrepare(fmt, args);
  return r.ok ? undefined : r.errno;
}

t.test('the kernel selftest outputs (prog_tests/snprintf.c) are reproduced exactly', async (t) => {
  t.equal(out('%d %u %x %li %llu %lX', -8, 9, 150, -424242, 1337, 0xdabbad00), '-8 9 96 -424242 1337 DABBAD00');
  t.equal(
    out('%pi4 %pI6', new Uint8Array([127, 0, 0, 1]), new Uint8Array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])),
    '127.000.000.001 0000:0000:0000:0000:0000:0000:0000:0001',
  );
  t.equal(out('%s % 9c %+2c %-3c %04c %0c %+05s', 'str1', 97, 98, 99, 100, 101, 'longstr'), 'str1         a  b c      d e longstr');
  t.equal(out('%%overflow'), '%overflow');
  const pad = bpfBprintfPrepare('%5d %0900000X', [4, 4]);
  t.ok(pad.ok && pad.length === 900006 && pad.text.startsWith('    4 000') && pad.text.endsWith('04'));
  t.equal(out('simple case'), 'simple case');
  const addr = out('%pK %px %p', 0, 0xffff00000add4e55n, 0xffff00000add4e55n);
  t.match(addr, /^0000000000000000 ffff00000add4e55 00000000[0-9a-f]{8}$/);
});

t.test('field widths and flags format as vsprintf number() does', async (t) => {
  t.equal(out('%8llu|', 42), '      42|', '%8llu pads with spaces');
  t.equal(out('%-5d|', 42), '42   |', '- left-justifies');
  t.equal(out('%05x', 255), '000ff', '0 pads with zeros');
  t.equal(out('%+d', 5), '+5', '+ shows the sign');
  t.equal(out('% d', 5), ' 5', "' ' puts a space for the sign");
  t.equal(out('%+ d', 5), '+5', '+ wins over space');
  t.equal(out('%05d', -42), '-0042', 'zero padding goes after the sign');
  t.equal(out('%-05d|', 7), '7    |', '- cancels 0');
  t.equal(out('%+u % x', 5, 5), '5 5', '+ and space only apply to signed conversions');
  t.equal(out('%2d', 100), '100', 'a narrow width does not truncate');
  t.equal(out('%X %x', 0xabcdef, 0xabcdef), 'ABCDEF abcdef');
  t.equal(out('%i', -3), '-3', '%i is %d');
  t.equal(out('%4294967294d|', 1), '1|', 'a width that wraps an int negative pads nothing (skip_atoi)');
  t.equal(out('%99999999999d|', 1).length, 8388608, 'a wide one is capped at FIELD_WIDTH_MAX');
});

t.test('numbers are u64 on the wire: %d without l is a 32-bit int, with l/ll a 64-bit one', async (t) => {
  t.equal(out('%d', 0xffffffff), '-1', '%d of 0xffffffff is -1');
  t.equal(out('%u', -1), '4294967295', '%u reads the low 32 bits');
  t.equal(out('%x', -1), 'ffffffff');
  t.equal(out('%ld %lld', -1, -1n), '-1 -1');
  t.equal(out('%lu', -1), '18446744073709551615', 'negative numbers are two\'s complement');
  t.equal(out('%llx', -2n), 'fffffffffffffffe', 'negative bigints too');
  t.equal(out('%lld', 1n << 63n), '-9223372036854775808', 'the most negative s64');
  t.equal(out('%llu', (1n << 64n) + 5n), '5', 'bigints wrap at 64 bits');
  t.equal(out('%d', 0x1_0000_0005), '5', '%d drops the high word');
  t.equal(out('%d %d', 3.9, -3.9), '3 -3', 'fractions truncate toward zero, as the (u64) cast does');
  t.equal(out('%d %d %d', true, false, null), '1 0 0', 'booleans and null are numbers');
});

t.test('%c prints the low byte, padded with spaces only', async (t) => {
  t.equal(out('[%c]', 0x141), '[A]');
  t.equal(out('[%3c][%-3c]', 65, 66), '[  A][B  ]');
  const r = bpfBprintfPrepare('%c', [0xff]);
  t.ok(r.ok && r.bytes.length === 1 && r.bytes[0] === 0xff, 'a raw byte, not UTF-8');
});

t.test('%s copies a string: width applies, an unreadable pointer prints empty', async (t) => {
  t.equal(out('[%6s][%-6s]', 'ab', 'ab'), '[    ab][ab    ]');
  t.equal(out('[%05s]', 'ab'), '[   ab]', '0 pads strings with spaces');
  t.equal(out('[%s]', 'a\0b'), '[a]', 'a string ends at NUL');
  t.equal(out('[%s]', new Uint8Array([0x68, 0x69, 0, 0x78])), '[hi]', 'a byte array is a C string');
  t.equal(out('[%s][%s][%3s]', null, 1234, 5n), '[][][   ]', 'null or an address prints empty (failed copy)');
  t.equal(out('%s!', 'é'), 'é!', 'UTF-8 bytes pass through');
  t.equal(out('%pks %pus.', 'k', 'u'), 'k u.', '%pks and %pus are strings');
  t.equal(out('[%5pks]', 'k'), '[k]', 'pre-copied %pks ignores width (bstr_printf copies it raw)');
});

t.test('%s, %pks and %pus must be followed by NUL, a space or punctuation (bpf_bprintf_prepare)', async (t) => {
  t.equal(err('%sa', 'x'), EINVAL);
  t.equal(err('%pksa', 'x'), EINVAL);
  t.equal(err('%s\u00e9', 'x'), EINVAL, 'é starts with 0xc3, a Latin-1 letter in the kernel ctype');
  t.equal(err('%s\u00a9', 'x'), EINVAL, 'so is every UTF-8 lead byte (0xc2-0xf4)');
  t.equal(out('%s. %s\t%s', 'a', 'b', 'c'), 'a. b\tc');
});

t.test('pointers: %p hashes (NULL and error pointers raw), %px raw, %pK is %p, %ps/%pS/%pB print 0x<hex>', async (t) => {
  const a = out('%p', 0x1234);
  t.match(a, /^00000000[0-9a-f]{8}$/, 'ptr_to_id shape');
  t.equal(out('%p', 0x1234), a, 'the same value hashes the same');
  t.not(out('%p', 0x1235), a, 'another value hashes differently');
  t.equal(out('%pK', 0x1234), a, 'kptr_restrict=0: %pK is %p');
  t.equal(out('%p', 0), '0000000000000000', 'NULL is not hashed');
  t.equal(out('%p', -1), 'ffffffffffffffff', 'error pointers are not hashed');
  t.equal(out('%px', 0xabc), '0000000000000abc');
  t.equal(out('%20px|', 0xabc), '                 abc|', 'a width replaces the 16-digit zero padding');
  t.equal(out('%ps %pS %pB', 0x10, 0xff, 0xffn), '0x10 0xff 0xff', 'no kernel symbols: 0x<hex>');
  t.equal(out('[%6ps][%6pB]', 0x10, 0x10), '[  0x10][0x10]', '%ps takes a width, pre-formatted %pB does not');
  t.equal(out('%pKabc-', 0), '0000000000000000-', 'bstr_printf skips the alphanumerics after a %p extension');
  t.equal(out('%p-%d', 0, 5), '0000000000000000-5', '%p then punctuation: the next byte is format again');
  t.equal(err('%p%'), EINVAL, '"%p%" is invalid (selftest "invalid specifier 8")');
  t.equal(err('%p', 'str'), EINVAL, 'a string is no pointer value');
});

t.test('%pi4 %pI4 %pi6 %pI6 from bytes or from the address value', async (t) => {
  t.equal(out('%pI4', 0x7f000001), '127.0.0.1', 'a number is the address value, most significant byte first');
  t.equal(out('%pi4', 0x0a000001n), '010.000.000.001');
  t.equal(out('%pI6', 1n), '0000:0000:0000:0000:0000:0000:0000:0001');
  t.equal(out('%pi6', (0x20010db8n << 96n) | 1n), '20010db8000000000000000000000001');
  t.equal(out('%pI4 %pI4', null, new Uint8Array([1, 2])), '0.0.0.0 0.0.0.0', 'a failed read prints zeros');
  t.equal(out('%pI4', -1), '255.255.255.255');
  t.equal(out('[%20pI4]', 0x01020304), '[1.2.3.4]', 'pre-formatted: no width');
  t.equal(out('%pI4xyz.', 0x01020304), '1.2.3.4.', 'trailing alphanumerics are skipped');
  t.equal(err('%pI4', '1.2.3.4'), EINVAL, 'a string is not parsed');
  t.equal(err('%pi5', 1), EINVAL, 'selftest "invalid specifier 1"');
  t.equal(err('%pI', 1), EINVAL);
  t.equal(err('%pX', 1), EINVAL, 'other %p extensions are invalid');
});

t.test('precision is rejected with -EINVAL (bpf_bprintf_prepare: no \'.\' after %)', async (t) => {
  t.equal(err('%.2f', 1), EINVAL);
  t.equal(err('%.3s', 'abc'), EINVAL);
  t.equal(err('%5.1d', 1), EINVAL);
});

t.test('unsupported conversions are -EINVAL: floats, %n, %lc, %llc, h/hh, #, *, z, unknown', async (t) => {
  for (const f of ['%f', '%e', '%g', '%n', '%lc', '%llc', '%ls', '%hd', '%hhd', '%#x', '%*d', '%zu', '%Lu', '%lllu', '%a', '%o', '%']) {
    t.equal(err(f, 1), EINVAL, f);
  }
  t.equal(err('%12345678', 1), EINVAL, 'selftest "invalid specifier 4"');
  t.equal(err('%--------', 1), EINVAL, 'selftest "invalid specifier 5"');
  t.equal(err('%s%', 'x'), EINVAL, 'selftest "invalid specifier 9"');
  t.equal(err('%5%', 1), EINVAL, 'only "%%" is a literal percent');
});

t.test('more specifiers than arguments is -EINVAL; fewer is fine (num_spec >= num_args)', async (t) => {
  t.equal(err('%d %d', 1), EINVAL, 'selftest "too many specifiers"');
  t.equal(err('%d'), EINVAL);
  t.equal(out('%d', 1, 2, 3), '1', 'extra arguments are ignored');
  t.equal(out('100%%', 1), '100%', '%% takes no argument');
});

t.test('at most MAX_BPRINTF_VARARGS = 12 arguments (data_len <= 96) else -EINVAL', async (t) => {
  const twelve = Array.from({ length: 12 }, (_, i) => i);
  t.equal(out('%d'.repeat(12), ...twelve), '01234567891011');
  t.equal(err('%d', ...twelve, 12), EINVAL);
});

t.test('the format: non-printable ASCII is -EINVAL, UTF-8 is allowed in plain text only (b960430ea886)', async (t) => {
  t.equal(err('\x01'), EINVAL, 'selftest "non printable character"');
  t.equal(err('a\x7f'), EINVAL, 'DEL');
  t.equal(out('tab\there\nnewline\r\v\f'), 'tab\there\nnewline\r\v\f', 'isspace bytes are fine');
  t.equal(out('\u0080 grüß 日本 %d', 1), '\u0080 grüß 日本 1', 'bytes >= 0x80 pass in plain text');
  t.equal(err('%\u00e9', 1), EINVAL, 'selftest "non ascii in specifier"');
  t.equal(out('ab\0%d'), 'ab', 'the format ends at its first NUL (strnchr)');
});

t.test('args of the wrong kind are -EINVAL (vbpffs cannot turn them into a u64)', async (t) => {
  for (const bad of [NaN, Infinity, 'x', new Uint8Array(1), undefined as unknown as null, {} as unknown as null]) {
    t.equal(err('%d', bad), EINVAL, String(bad));
  }
  t.equal(err('%c', 'A'), EINVAL);
  t.equal(err('%pB', 'x'), EINVAL);
  t.equal(err('%s', undefined as unknown as null), EINVAL);
  t.equal(err('%pI4', NaN), EINVAL);
});

t.test('the arguments share 512 bytes of per-CPU buffer: -ENOSPC when they do not fit', async (t) => {
  const long = 'x'.repeat(600);
  const r = bpfBprintfPrepare('%s', [long]);
  t.ok(r.ok && r.text.length === 511, 'a string is truncated to 511 bytes + NUL');
  t.equal(err('%s %s', long, 'y'), ENOSPC, 'no room for the next string');
  t.equal(err('%s %c', long, 65), ENOSPC, 'nor a char');
  t.equal(err('%s %d', 'x'.repeat(508), 1), ENOSPC, 'a number needs 4 aligned bytes');
  t.equal(out('%s %d', 'x'.repeat(507), 1), 'x'.repeat(507) + ' 1', '507 + NUL + 4 fits exactly');
  t.equal(err('%s %ld', 'x'.repeat(504), 1), ENOSPC, 'a long needs 8');
  t.equal(err('%s %p', 'x'.repeat(504), 1), ENOSPC, 'so does a pointer');
  t.equal(err('%s %pks', 'x'.repeat(600), 'k'), ENOSPC, '%pks needs a byte at least');
  t.equal(err('%pus', {} as unknown as null), EINVAL, 'an object is no string');
  t.equal(err('%s %pI6', 'x'.repeat(500), 1), ENOSPC, 'an IPv6 address needs 16 bytes to be read');
  const ip = bpfBprintfPrepare('%s %pI6', ['x'.repeat(480), 1n]);
  t.ok(ip.ok && ip.text === 'x'.repeat(480) + ' 0000:0000:0000:0000:0000:0000:', 'its text is cut to what is left (snprintf)');
  t.equal(err('%s %pI6 %s', 'x'.repeat(480), 1n, 'y'), ENOSPC, 'and then nothing is left');
  const pb = bpfBprintfPrepare('%s%pB', ['x'.repeat(511), 0x1234]);
  t.ok(pb.ok && pb.text === 'x'.repeat(511), '%pB past the end prints nothing');
});

t.test('nesting deeper than MAX_BPRINTF_NEST_LEVEL is -EBUSY; without arguments no buffer is taken', async (t) => {
  t.equal(MAX_BPRINTF_NEST_LEVEL, 3);
  for (let i = 0; i < 3; i++) t.ok(bpfTryGetBuffers());
  t.notOk(bpfTryGetBuffers(), 'a fourth level is refused');
  t.equal(err('%d', 1), EBUSY);
  t.equal(out('no args'), 'no args', 'no arguments, no buffers, no EBUSY');
  t.equal(err('%d', ...Array(13).fill(0)), EINVAL, 'the argument count is checked first');
  for (let i = 0; i < 3; i++) bpfPutBuffers();
  bpfPutBuffers(); // an extra put is ignored
  t.equal(bpfBprintfNestLevel(), 0);
  t.equal(out('%d', 1), '1');
  t.equal(bpfBprintfNestLevel(), 0, 'released after use');
  t.equal(err('%q', 1), EINVAL);
  t.equal(bpfBprintfNestLevel(), 0, 'released after an error too');
});

t.test('limit keeps at most that many bytes but counts the full length (bstr_printf into a short buffer)', async (t) => {
  const r = bpfBprintfPrepare('%-1000000d|%s', [1, 'abc'], { limit: 4 });
  t.ok(r.ok && r.bytes.length === 4 && r.length === 1000004);
  const z = bpfBprintfPrepare('abc', [], { limit: 0 });
  t.ok(z.ok && z.bytes.length === 0 && z.length === 3);
});
