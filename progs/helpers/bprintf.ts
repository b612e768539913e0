/**
 * The kernel's printf for BPF programs: bpf_bprintf_prepare() (kernel/bpf/helpers.c) validating the
 * format and packing the arguments, then bstr_printf() (lib/vsprintf.c) rendering them, done here in
 * one pass over the format's bytes with the same rules, the same errnos and the same output bytes.
 *
 * Followed: bpf_bprintf_prepare as of upstream commit b960430ea886 ("bpf: allow UTF-8 literals in
 * bpf_bprintf_prepare()", v7.1, backported to 7.0.y): bytes >= 0x80 are allowed in plain text, ASCII
 * control bytes are not, and the byte right after '%' must be ASCII. Older kernels reject every byte
 * >= 0x80 with -EINVAL. Also from the newest code: "%p" followed by NUL, a space or punctuation is a
 * plain pointer whose next byte is parsed as format again (so "%p%" is -EINVAL, as the selftest says).
 *
 * Rules, in the kernel's order:
 * - at most MAX_BPRINTF_VARARGS (12) arguments (bpf_seq_printf's data_len <= 96) else -EINVAL;
 * - the format ends at its first NUL (strnchr); more arguments than specifiers is fine, a specifier
 *   without an argument is -EINVAL (num_spec >= num_args);
 * - -EBUSY when the per-CPU buffers are all taken (nesting deeper than MAX_BPRINTF_NEST_LEVEL = 3);
 *   taken only when there are arguments, as the kernel does;
 * - '%%'; flags '0' '+' '-' ' '; a decimal width; no precision, no '#', no '*', no h/hh/z/t/L;
 * - %d %i %u %x %X with optional l or ll (32-bit without l: %d of 0xffffffff is -1, %u of -1 is
 *   4294967295, as bstr_printf reads an int), %c (the low byte), %s, %pks, %pus (strings; a string
 *   that cannot be read prints as empty), %p %pK %px %ps %pS %pB, %pi4 %pI4 %pi6 %pI6; anything else
 *   (floats, %n, %lc, %llc, %pi5, ...) -EINVAL; %s and %pks/%pus must be followed by NUL, a space or
 *   punctuation;
 * - the packed arguments share a 512-byte per-CPU buffer (MAX_BPRINTF_BIN_ARGS): numbers take 4 or 8
 *   bytes (4-aligned), %c 1, a string its bytes plus NUL (truncated to fit), an IP address its text
 *   plus NUL; no room left is -ENOSPC.
 *
 * vbpffs has no kernel memory, so where the kernel takes an address (strings, IP addresses, %p) the
 * argument is the thing itself, and where it would print an address it prints what the kernel prints
 * for an address that is not special:
 * - %s / %pks / %pus: a JS string (its UTF-8 bytes up to the first NUL) or a Uint8Array (up to its
 *   first 0); null, a number or a bigint is an address vbpffs cannot read, which prints as an empty
 *   string, as a failed copy does in the kernel.
 * - %pi4 %pI4 %pi6 %pI6: a Uint8Array in network order (4 or 16 bytes, as in memory), or a number /
 *   bigint read as the address's value, most significant byte first (0x7f000001 is 127.0.0.1); null or
 *   a shorter array is a failed read, which the kernel prints as zeros.
 * - %p and %pK hash the value the way ptr_to_id() does: "00000000" then 8 hex digits of a keyed hash
 *   (random per process, as the kernel's is per boot); NULL and error values (>= -4095) print raw.
 *   %pK is %p because kptr_restrict defaults to 0. %px prints the value (16 hex digits).
 * - %ps %pS %pB: vbpffs has no kernel symbols, so they print what kallsyms prints for an address that
 *   matches no symbol: "0x" and the value in hex.
 * - Numbers are u64 on the wire: a negative number or bigint is its 64-bit two's complement, a
 *   fractional number is truncated toward zero (the (u64) cast of BPF_SEQ_PRINTF), true is 1, null
 *   is 0. NaN, Infinity, undefined, objects, and a string or array where a number is expected are
 *   -EINVAL (the kernel cannot receive them; vbpffs will not guess).
 */

/** include/linux/bpf.h: at most 12 u64 arguments (data_len <= 96). */
export const MAX_BPRINTF_VARARGS = 12;
/** kernel/bpf/helpers.c: the per-CPU buffer the packed arguments share. */
export const MAX_BPRINTF_BIN_ARGS = 512;
/** kernel/bpf/helpers.c: "Support executing three nested bprintf helper calls on a given CPU". */
export const MAX_BPRINTF_NEST_LEVEL = 3;
/** lib/vsprintf.c: the kernel's FIELD_WIDTH_MAX, the widest field a width can ask for. */
export const FIELD_WIDTH_MAX = (1 << 23) - 1;

const EINVAL = -22;
const EBUSY = -16;
const ENOSPC = -28;

/** One argument as a program passes it. */
export type BprintfArg = number | bigint | string | null | boolean | Uint8Array;

export type BprintfResult =
  /** bytes: the output exactly (UTF-8 plain text and strings pass through as bytes); text: the same
   *  bytes decoded as UTF-8; length: the output's full length (bytes may stop at the limit). */
  | { readonly ok: true; readonly text: string; readonly bytes: Uint8Array; readonly length: number }
  /** errno: negative, as the helper returns it (-EINVAL, -EBUSY, -ENOSPC). */
  | { readonly ok: false; readonly errno: number };

// ---------------------------------------------------------------------------------------------------
// The per-CPU buffers: bpf_try_get_buffers() / bpf_put_buffers(). vbpffs runs programs on one thread,
// so one nesting counter stands for this CPU's.

let nestLevel = 0;

/** bpf_try_get_buffers(): false (the kernel's -EBUSY) when MAX_BPRINTF_NEST_LEVEL are taken. */
export function bpfTryGetBuffers(): boolean {
  if (nestLevel >= MAX_BPRINTF_NEST_LEVEL) return false;
  nestLevel++;
  return true;
}

/** bpf_put_buffers(): releases one level; like the kernel's WARN_ON_ONCE, an extra put does nothing. */
export function bpfPutBuffers(): void {
  if (nestLevel > 0) nestLevel--;
}

/** How many buffer levels are taken now. */
export function bpfBprintfNestLevel(): number {
  return nestLevel;
}

// ---------------------------------------------------------------------------------------------------
// lib/ctype.c: the kernel's ctype table is Latin-1, so bytes >= 0x80 have classes too (0xa0 is a
// space, 0xa1-0xbf punctuation, 0xc0-0xff letters but for 0xd7 and 0xf7). These decide what may
// follow %p and %s, and which bytes bstr_printf skips after a %p extension.

const C_SPACE = 1;
const C_PUNCT = 2;
const C_ALNUM = 4;
const C_PRINT = 8;
const CTYPE = new Uint8Array(256);
for (let c = 0; c < 256; c++) {
  let k = 0;
  if ((c >= 0x09 && c <= 0x0d) || c === 0x20 || c === 0xa0) k |= C_SPACE;
  const alnum = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0xc0 && c !== 0xd7 && c !== 0xf7);
  if (alnum) k |= C_ALNUM;
  const punct = (c >= 0x21 && c <= 0x7e && !alnum) || (c >= 0xa1 && c <= 0xbf) || c === 0xd7 || c === 0xf7;
  if (punct) k |= C_PUNCT;
  if ((c >= 0x20 && c <= 0x7e) || c >= 0xa0) k |= C_PRINT;
  CTYPE[c] = k;
}
const isSpace = (c: number): boolean => (CTYPE[c]! & C_SPACE) !== 0;
const isPunct = (c: number): boolean => (CTYPE[c]! & C_PUNCT) !== 0;
const isAlnum = (c: number): boolean => (CTYPE[c]! & C_ALNUM) !== 0;
const isPrint = (c: number): boolean => (CTYPE[c]! & C_PRINT) !== 0;
const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39;
/** NUL, a space or punctuation: what may follow %p (plain pointer), %s, %pks and %pus. */
const endsSpec = (c: number): boolean => c === 0 || isSpace(c) || isPunct(c);

const ch = (s: string): number => s.charCodeAt(0);
const PCT = ch('%');

// ---------------------------------------------------------------------------------------------------
// The output, bounded: like vsnprintf it counts the full length but keeps at most `limit` bytes, so a
// width of millions costs nothing past what the sink can take.

class Out {
  buf = new Uint8Array(64);
  kept = 0;
  length = 0;
  constructor(readonly limit: number) {}

  private room(n: number): number {
    const take = Math.max(0, Math.min(n, this.limit - this.kept));
    if (this.kept + take > this.buf.length) {
      let size = this.buf.length * 2;
      while (size < this.kept + take) size *= 2;
      const next = new Uint8Array(size);
      next.set(this.buf.subarray(0, this.kept));
      this.buf = next;
    }
    return take;
  }

  bytes(b: Uint8Array): void {
    const take = this.room(b.length);
    this.buf.set(b.subarray(0, take), this.kept);
    this.kept += take;
    this.length += b.length;
  }

  byte(c: number): void {
    if (this.room(1) === 1) this.buf[this.kept++] = c;
    this.length++;
  }

  pad(c: number, n: number): void {
    if (n <= 0) return;
    const take = this.room(n);
    this.buf.fill(c, this.kept, this.kept + take);
    this.kept += take;
    this.length += n;
  }

  ascii(s: string): void {
    for (let i = 0; i < s.length; i++) this.byte(s.charCodeAt(i));
  }
}

// ---------------------------------------------------------------------------------------------------
// lib/vsprintf.c's number(), string_nocheck()/widen_string(), pointer_string(), ptr_to_id().

const LEFT = 1;
const PLUS = 2;
const SPACE = 4;
const ZEROPAD = 8;
const SIGN = 16;
const SMALL = 32;

interface Spec {
  flags: number;
  /** -1 when absent, as in the kernel. */
  width: number;
}

const U64 = 1n << 64n;
const S64_MIN = 1n << 63n;

function number(out: Out, num: bigint, spec: Spec, base: 10 | 16): void {
  let flags = spec.flags;
  let fw = spec.width;
  if (flags & LEFT) flags &= ~ZEROPAD;
  let sign = 0;
  if (flags & SIGN) {
    if (num >= S64_MIN) {
      sign = ch('-');
      num = U64 - num;
      fw--;
    } else if (flags & PLUS) {
      sign = ch('+');
      fw--;
    } else if (flags & SPACE) {
      sign = ch(' ');
      fw--;
    }
  }
  let digits = num.toString(base);
  if (base === 16 && !(flags & SMALL)) digits = digits.toUpperCase();
  fw -= digits.length;
  if (!(flags & (ZEROPAD | LEFT))) {
    out.pad(ch(' '), fw);
    fw = 0;
  }
  if (sign) out.byte(sign);
  if (!(flags & LEFT)) {
    out.pad(flags & ZEROPAD ? ch('0') : ch(' '), fw);
    fw = 0;
  }
  out.ascii(digits);
  out.pad(ch(' '), fw);
}

/** string_nocheck() + widen_string(): the bytes, padded with spaces to the width. */
function widened(out: Out, b: Uint8Array, spec: Spec): void {
  const spaces = spec.width - b.length;
  if (!(spec.flags & LEFT)) out.pad(ch(' '), spaces);
  out.bytes(b);
  if (spec.flags & LEFT) out.pad(ch(' '), spaces);
}

function pointerString(out: Out, value: bigint, spec: Spec): void {
  const s: Spec = { flags: spec.flags | SMALL, width: spec.width };
  if (s.width === -1) {
    s.width = 16;
    s.flags |= ZEROPAD;
  }
  number(out, value, s, 16);
}

/** The key ptr_to_id() hashes with: random per process, as the kernel's ptr_key is per boot. */
const PTR_KEY = (() => {
  const b = new Uint32Array(2);
  globalThis.crypto.getRandomValues(b);
  return (BigInt(b[0]!) << 32n) | BigInt(b[1]!);
})();

const M64 = U64 - 1n;
/** A keyed 64-bit mix (splitmix64's finalizer) standing in for siphash_1u64(ptr, &ptr_key). */
function ptrHash(v: bigint): bigint {
  let z = (v ^ PTR_KEY) & M64;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M64;
  return (z ^ (z >> 31n)) & 0xffffffffn;
}

/** IS_ERR_OR_NULL(): NULL, or the top 4095 values (error pointers). */
const isErrOrNull = (v: bigint): boolean => v === 0n || v >= U64 - 4095n;

/** default_pointer() / ptr_to_id(): NULL and error pointers raw, others hashed to 32 bits. */
function defaultPointer(out: Out, v: bigint, spec: Spec): void {
  pointerString(out, isErrOrNull(v) ? v : ptrHash(v), spec);
}

// ---------------------------------------------------------------------------------------------------
// Arguments.

const utf8 = new TextEncoder();
const utf8d = new TextDecoder();

/** The u64 a number argument carries, or undefined when it cannot be one. */
function toU64(a: unknown): bigint | undefined {
  if (typeof a === 'bigint') return BigInt.asUintN(64, a);
  if (typeof a === 'number') return Number.isFinite(a) ? BigInt.asUintN(64, BigInt(Math.trunc(a))) : undefined;
  if (a === null) return 0n;
  if (typeof a === 'boolean') return a ? 1n : 0n;
  return undefined;
}

const cString = (b: Uint8Array): Uint8Array => {
  const nul = b.indexOf(0);
  return nul < 0 ? b : b.subarray(0, nul);
};

/** The bytes a string argument points at; empty for an address that cannot be read. */
function toCString(a: unknown): Uint8Array | undefined {
  if (typeof a === 'string') return cString(utf8.encode(a));
  if (a instanceof Uint8Array) return cString(a);
  if (a === null || typeof a === 'number' || typeof a === 'bigint' || typeof a === 'boolean') return new Uint8Array(0);
  return undefined;
}

/** The 4 or 16 address bytes of an IP argument; zeros for a failed read. */
function toIpBytes(a: unknown, size: 4 | 16): Uint8Array | undefined {
  if (a instanceof Uint8Array) return a.length >= size ? a.subarray(0, size) : new Uint8Array(size);
  if (a === null) return new Uint8Array(size);
  let v: bigint;
  if (typeof a === 'bigint') v = a;
  else if (typeof a === 'number' && Number.isFinite(a)) v = BigInt(Math.trunc(a));
  else return undefined;
  v = BigInt.asUintN(size * 8, v);
  const b = new Uint8Array(size);
  for (let i = size - 1; i >= 0; i--) {
    b[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return b;
}

/** ip4_string() / ip6_string(): 'I4' 1.2.3.4, 'i4' 001.002.003.004, 'I6' 0001:...:0008, 'i6' 32 digits. */
function ipString(b: Uint8Array, upper: boolean): string {
  const hex = (x: number): string => x.toString(16).padStart(2, '0');
  if (b.length === 4) return Array.from(b, (x) => (upper ? String(x) : String(x).padStart(3, '0'))).join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(hex(b[i]!) + hex(b[i + 1]!));
  return groups.join(upper ? ':' : '');
}

// ---------------------------------------------------------------------------------------------------

/**
 * bpf_bprintf_prepare() and bstr_printf(): validates `fmt` against `args` and renders it. `limit`
 * bounds the bytes kept (the full length is still counted), as bstr_printf's buffer size does.
 */
export function bpfBprintfPrepare(
  fmt: string,
  args: readonly BprintfArg[],
  opts: { readonly limit?: number } = {},
): BprintfResult {
  const numArgs = args.length;
  if (numArgs > MAX_BPRINTF_VARARGS) return { ok: false, errno: EINVAL };
  const f = cString(utf8.encode(fmt));
  const at = (i: number): number => (i < f.length ? f[i]! : 0);

  if (numArgs > 0 && !bpfTryGetBuffers()) return { ok: false, errno: EBUSY };
  try {
    const out = new Out(opts.limit ?? Infinity);
    /** Bytes of the per-CPU bin_args buffer used so far (may pass the end after an IP, as in the kernel). */
    let used = 0;
    let numSpec = 0;
    /** After a %p extension bstr_printf skips the alphanumeric bytes that follow it. */
    let skipAlnum = false;
    const fail = (errno: number): BprintfResult => ({ ok: false, errno });
    /** bpf_trace_copy_string() into what is left of bin_args: -ENOSPC when nothing is. */
    const copyString = (a: BprintfArg | undefined): Uint8Array | number => {
      const left = MAX_BPRINTF_BIN_ARGS - used;
      if (left <= 0) return ENOSPC;
      const b = toCString(a);
      if (b === undefined) return EINVAL;
      const kept = b.subarray(0, Math.min(b.length, left - 1));
      used += kept.length + 1;
      return kept;
    };

    for (let i = 0; i < f.length; i++) {
      const c = f[i]!;
      if (c < 0x80 && !isPrint(c) && !isSpace(c)) return fail(EINVAL);
      if (c !== PCT) {
        if (skipAlnum && isAlnum(c)) continue;
        skipAlnum = false;
        out.byte(c);
        continue;
      }
      skipAlnum = false;
      if (at(i + 1) === PCT) {
        out.byte(PCT);
        i++;
        continue;
      }
      if (numSpec >= numArgs) return fail(EINVAL);
      const arg = args[numSpec];
      i++;
      if (at(i) >= 0x80) return fail(EINVAL);

      // skip optional "[0 +-][num]" width formatting field
      const spec: Spec = { flags: 0, width: -1 };
      for (;;) {
        const x = at(i);
        if (x === ch('0')) spec.flags |= ZEROPAD;
        else if (x === ch('+')) spec.flags |= PLUS;
        else if (x === ch('-')) spec.flags |= LEFT;
        else if (x === ch(' ')) spec.flags |= SPACE;
        else break;
        i++;
      }
      if (isDigit(at(i))) {
        // skip_atoi() into an int (wrapping as C does); a negative width pads nothing
        let w = 0;
        while (isDigit(at(i))) w = (w * 10 + at(i++) - 0x30) | 0;
        spec.width = Math.min(w, FIELD_WIDTH_MAX);
      }

      /** Takes room for a number or pointer in bin_args (4-aligned), or fails with ENOSPC. */
      const takeNum = (size: 4 | 8): boolean => {
        used = (used + 3) & ~3;
        if (MAX_BPRINTF_BIN_ARGS - used < size) return false;
        used += size;
        return true;
      };
      /** A pre-formatted string (%pB, IP address): snprintf into what is left, advance by its length. */
      const preformatted = (s: string): void => {
        const b = utf8.encode(s);
        out.bytes(b.subarray(0, Math.max(0, MAX_BPRINTF_BIN_ARGS - used - 1)));
        used += b.length + 1;
      };
      const conv = at(i);

      if (conv === ch('p')) {
        const e1 = at(i + 1);
        let kind: 'plain' | 'K' | 'x' | 's' = 'plain';
        if (!endsSpec(e1)) {
          if ((e1 === ch('k') || e1 === ch('u')) && at(i + 2) === ch('s')) {
            i += 2;
            if (!endsSpec(at(i + 1))) return fail(EINVAL);
            const r = copyString(arg);
            if (typeof r === 'number') return fail(r);
            out.bytes(r); // pre-copied strings are printed as they are: no width (bstr_printf)
            numSpec++;
            skipAlnum = true;
            continue;
          }
          if (e1 === ch('K') || e1 === ch('x') || e1 === ch('s') || e1 === ch('S')) {
            kind = e1 === ch('K') ? 'K' : e1 === ch('x') ? 'x' : 's';
            i++;
          } else if (e1 === ch('B')) {
            const v = toU64(arg);
            if (v === undefined) return fail(EINVAL);
            preformatted(`0x${v.toString(16)}`);
            i++;
            numSpec++;
            skipAlnum = true;
            continue;
          } else {
            // only support "%pI4", "%pi4", "%pI6" and "%pi6"
            const e2 = at(i + 2);
            if ((e1 !== ch('i') && e1 !== ch('I')) || (e2 !== ch('4') && e2 !== ch('6'))) return fail(EINVAL);
            i += 2;
            const size = e2 === ch('4') ? 4 : 16;
            if (MAX_BPRINTF_BIN_ARGS - used < size) return fail(ENOSPC);
            const b = toIpBytes(arg, size);
            if (b === undefined) return fail(EINVAL);
            preformatted(ipString(b, e1 === ch('I')));
            numSpec++;
            skipAlnum = true;
            continue;
          }
        }
        const v = toU64(arg);
        if (v === undefined) return fail(EINVAL);
        if (!takeNum(8)) return fail(ENOSPC);
        if (kind === 'x') pointerString(out, v, spec);
        else if (kind === 's') widened(out, utf8.encode(`0x${v.toString(16)}`), spec);
        else defaultPointer(out, v, spec); // %p, and %pK with kptr_restrict = 0
        numSpec++;
        skipAlnum = kind !== 'plain';
        continue;
      }

      if (conv === ch('s')) {
        if (!endsSpec(at(i + 1))) return fail(EINVAL);
        const r = copyString(arg);
        if (typeof r === 'number') return fail(r);
        widened(out, r, spec);
        numSpec++;
        continue;
      }

      if (conv === ch('c')) {
        if (MAX_BPRINTF_BIN_ARGS - used <= 0) return fail(ENOSPC);
        const v = toU64(arg);
        if (v === undefined) return fail(EINVAL);
        used++;
        if (!(spec.flags & LEFT)) out.pad(ch(' '), spec.width - 1);
        out.byte(Number(v & 0xffn));
        if (spec.flags & LEFT) out.pad(ch(' '), spec.width - 1);
        numSpec++;
        continue;
      }

      let size: 4 | 8 = 4;
      if (at(i) === ch('l')) {
        size = 8;
        i++;
        if (at(i) === ch('l')) i++;
      }
      const k = at(i);
      const signed = k === ch('d') || k === ch('i');
      if (!signed && k !== ch('u') && k !== ch('x') && k !== ch('X')) return fail(EINVAL);
      const v = toU64(arg);
      if (v === undefined) return fail(EINVAL);
      if (!takeNum(size)) return fail(ENOSPC);
      let num = size === 8 ? v : v & 0xffffffffn;
      if (signed && size === 4) num = BigInt.asUintN(64, BigInt.asIntN(32, num));
      const s: Spec = { flags: spec.flags | (signed ? SIGN : 0) | (k === ch('x') ? SMALL : 0), width: spec.width };
      number(out, num, s, k === ch('x') || k === ch('X') ? 16 : 10);
      numSpec++;
    }

    const bytes = out.buf.slice(0, out.kept);
    return { ok: true, bytes, text: utf8d.decode(bytes), length: out.length };
  } finally {
    if (numArgs > 0) bpfPutBuffers();
  }
}
