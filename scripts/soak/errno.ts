/**
 * The errno behind a failed `cat` or `ls`: coreutils print `cat: FILE: <strerror(errno)>`, so the
 * message glibc gives each errno names it back. Only the errnos a read of the mount can plausibly
 * meet are listed; any other message is kept as it is, so nothing unexpected is folded into a name.
 */
const GLIBC_MESSAGES: Readonly<Record<string, string>> = {
  'No such file or directory': 'ENOENT',
  'Input/output error': 'EIO',
  'No such device': 'ENODEV',
  'Transport endpoint is not connected': 'ENOTCONN',
  'Permission denied': 'EACCES',
  'Operation not permitted': 'EPERM',
  'Argument list too long': 'E2BIG',
  'Resource temporarily unavailable': 'EAGAIN',
  'Not a directory': 'ENOTDIR',
  'Is a directory': 'EISDIR',
  'Cannot allocate memory': 'ENOMEM',
  'Invalid argument': 'EINVAL',
  'Stale file handle': 'ESTALE',
  'Bad file descriptor': 'EBADF',
  'Interrupted system call': 'EINTR',
  'Value too large for defined data type': 'EOVERFLOW',
  'Device or resource busy': 'EBUSY',
  'No such device or address': 'ENXIO',
  'Software caused connection abort': 'ECONNABORTED',
  'Too many levels of symbolic links': 'ELOOP',
  'Too many open files': 'EMFILE',
};

/** The errno name in a coreutils error line (`cat: /m/x: No such file or directory`), else the line. */
export function errnoOfMessage(stderr: string): string {
  const line = stderr.trim().split('\n')[0]!;
  const message = line.slice(line.lastIndexOf(': ') + 2);
  return GLIBC_MESSAGES[message] ?? (line === '' ? 'no message' : line);
}
