/**
 * The one error type of vbpffs: a kernel errno plus what was wrong.
 *
 * Every layer throws BpfError; only the boundaries translate it (the FUSE adapter to a negative errno,
 * the CLI to "Error: ..."). Numbers are x86-64 Linux's. ENOTSUPP (524) is kernel-internal but leaks to
 * userspace, e.g. from BPF_MAP_GET_NEXT_KEY on local-storage maps, so it is here too.
 */

export const ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  EIO: 5,
  E2BIG: 7,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  EXDEV: 18,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  EMFILE: 24,
  ENOSPC: 28,
  ESPIPE: 29,
  EROFS: 30,
  EMLINK: 31,
  ERANGE: 34,
  ENAMETOOLONG: 36,
  ENOSYS: 38,
  ENOTEMPTY: 39,
  ELOOP: 40,
  ENODATA: 61,
  ENOLINK: 67,
  EOVERFLOW: 75,
  EILSEQ: 84,
  ENOTSOCK: 88,
  EOPNOTSUPP: 95,
  ETIMEDOUT: 110,
  ESTALE: 116,
  ENOTSUPP: 524,
} as const;

export type ErrnoName = keyof typeof ERRNO;

const NAME_BY_NUMBER = new Map<number, ErrnoName>(
  (Object.entries(ERRNO) as [ErrnoName, number][]).map(([name, no]) => [no, name]),
);

export class BpfError extends Error {
  /** The errno name, as Node names system errors (`err.code === 'ENOENT'`). */
  readonly code: ErrnoName;
  /** The positive errno number. */
  readonly errno: number;

  constructor(code: ErrnoName, message: string, options?: { cause?: unknown }) {
    super(`${code}: ${message}`, options);
    this.name = 'BpfError';
    this.code = code;
    this.errno = ERRNO[code];
  }

  /** The value a FUSE handler or a kernel-style helper returns: the negative errno. */
  get negative(): number {
    return -this.errno;
  }
}

/** Throws a BpfError; for `cond || fail(...)`-free early returns read `throw bpfError(...)`. */
export function bpfError(code: ErrnoName, message: string, cause?: unknown): BpfError {
  return new BpfError(code, message, cause === undefined ? undefined : { cause });
}

export function isBpfError(e: unknown, code?: ErrnoName): e is BpfError {
  return e instanceof BpfError && (code === undefined || e.code === code);
}

/** The errno name for a number, or undefined for one we do not model. */
export function errnoName(no: number): ErrnoName | undefined {
  return NAME_BY_NUMBER.get(Math.abs(no));
}

/**
 * Wraps an error from Node's fs (which carries `code: 'ENOENT'` etc.) into a BpfError with context,
 * keeping the original as the cause. Anything that is not a system error becomes EIO.
 */
export function fromSystemError(e: unknown, context: string): BpfError {
  if (e instanceof BpfError) return e;
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && code in ERRNO) {
    return new BpfError(code as ErrnoName, `${context}: ${(e as Error).message}`, { cause: e });
  }
  return new BpfError('EIO', `${context}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
}
