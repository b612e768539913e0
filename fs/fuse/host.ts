/**
 * Mounting: the one file that imports fuse-native. It works around the binding's gaps measured on
 * our machines: there is no option for direct_io or use_ino, so they ride in the fsname string,
 * which libfuse parses as further options; a 0 timeout is dropped unless given as a string.
 *
 * Options: direct_io, because an iterator file's size is unknown until it is read (its stat says 0,
 * and without direct_io the kernel would read nothing); use_ino, so inode numbers are ours; 1 s
 * entry and attribute timeouts (0 doubles read latency and makes stat 50x slower, and bpffs's
 * entries change only through this mount or the mirror, which a second of staleness suits);
 * auto_unmount, so a daemon that dies leaves no dead mount behind; force, so a stale mount left by
 * a killed daemon is cleared before mounting.
 */
import Fuse from 'fuse-native';
import { bpfError } from '../../uapi';
import type { VfsBackend } from './backend';
import { fuseOps } from './ops';
import { mountLibfuse3 } from './libfuse3';

/** The FUSE bindings: fuse-native (libfuse 2, the default) or our libfuse3 one (native/fuse3). */
export type FuseBinding = 'fuse-native' | 'libfuse3';
export const FUSE_BINDINGS: readonly FuseBinding[] = ['fuse-native', 'libfuse3'];

/** The binding asked for: `--fuse`, else VBPFFS_FUSE, else fuse-native. */
export function fuseBinding(asked?: string): FuseBinding {
  const b = asked ?? process.env['VBPFFS_FUSE'] ?? 'fuse-native';
  if (b === '' || b === 'fuse-native') return 'fuse-native';
  if (b === 'libfuse3') return b;
  throw bpfError('EINVAL', `the FUSE binding is fuse-native or libfuse3, not '${b}'`);
}

export interface MountOptions {
  /** Others may use the mount (then file modes are enforced: default_permissions). */
  allowOther?: boolean;
  /** Seconds the kernel may cache entries and attributes. */
  cacheSeconds?: number;
  /** Which binding serves the mount (default: fuseBinding()). */
  fuse?: FuseBinding;
}

export interface FuseMount {
  readonly mountPoint: string;
  unmount(): Promise<void>;
}

export async function mountFuse(mountPoint: string, backend: VfsBackend, opts: MountOptions = {}): Promise<FuseMount> {
  if (fuseBinding(opts.fuse) === 'libfuse3') return mountLibfuse3(mountPoint, backend, opts);
  const cache = String(opts.cacheSeconds ?? 1);
  const fuse = new Fuse(mountPoint, fuseOps(backend), {
    fsname: 'vbpffs,direct_io,use_ino',
    subtype: 'vbpffs',
    force: true,
    mkdir: true,
    autoUnmount: true,
    allowOther: opts.allowOther === true,
    defaultPermissions: opts.allowOther === true,
    entryTimeout: cache,
    attrTimeout: cache,
    // Our operations answer or fail on their own (program runs have deadlines); fuse-native's
    // 15 s timer would only answer a slow request with a misleading errno.
    timeout: false,
  });
  await new Promise<void>((resolve, reject) =>
    fuse.mount((err) => (err === null || err === undefined ? resolve() : reject(mountError(mountPoint, err)))),
  );
  let mounted = true;
  return {
    mountPoint,
    unmount: () =>
      new Promise<void>((resolve, reject) => {
        if (!mounted) return resolve();
        fuse.unmount((err) => {
          if (err) return reject(bpfError('EBUSY', `cannot unmount ${mountPoint}: ${err.message}`));
          mounted = false;
          resolve();
        });
      }),
  };
}

function mountError(mountPoint: string, err: Error): Error {
  if (/in use/i.test(err.message)) return bpfError('EBUSY', `${mountPoint} is already a mount point (unmount it first)`, err);
  if (/not a directory/i.test(err.message)) return bpfError('ENOTDIR', `${mountPoint} is not a directory`, err);
  return bpfError('EIO', `cannot mount ${mountPoint}: ${err.message}`, err);
}
