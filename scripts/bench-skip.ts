/**
 * Why a benchmark that makes real cgroups cannot run here, or null when it can. Kept outside
 * scripts/bench/, where every module is a benchmark the runner loads.
 */
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
