/**
 * Why a benchmark that makes real cgroups, or mounts FUSE, cannot run here, or null when it can. Kept
 * outside scripts/bench/, where every module is a benchmark the runner loads.
 */
import { execFile } from 'node:child_process';
import { access, constants } from 'node:fs/promises';
import { promisify } from 'node:util';
import { findCgroup2Mount } from '../tags';

export async function cgroupBenchSkipReason(): Promise<string | null> {
  if (process.getuid?.() !== 0) return 'needs root to make cgroups';
  try {
    await findCgroup2Mount();
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

/** Why a benchmark that mounts FUSE cannot run here, or null when it can. */
export async function fuseBenchSkipReason(): Promise<string | null> {
  if (process.getuid?.() !== 0) return 'needs root to mount FUSE filesystems';
  try {
    await access('/dev/fuse', constants.R_OK | constants.W_OK);
  } catch {
    return 'no /dev/fuse, or no permission to open it';
  }
  try {
    await promisify(execFile)('fusermount', ['-V']);
  } catch {
    return 'fusermount is not installed (Debian: apt-get install fuse)';
  }
  try {
    require('fuse-native');
  } catch (e) {
    return `fuse-native does not load (Debian: apt-get install libfuse2): ${(e as Error).message}`;
  }
  return null;
}
