/**
 * struct bpf_local_storage_cache: one per owner type. A new map takes the cache slot index with the
 * smallest usage count (the first zero wins, ties go to the lowest index); map free gives it back.
 * Maps sharing an index only evict each other from an owner's cache: a matter of speed, not
 * correctness.
 */
import { BPF_LOCAL_STORAGE_CACHE_SIZE } from '../../uapi';

export class LocalStorageCache {
  readonly idxUsageCounts = new Array<number>(BPF_LOCAL_STORAGE_CACHE_SIZE).fill(0);

  /** bpf_local_storage_cache_idx_get */
  idxGet(): number {
    let res = 0;
    let min = Infinity;
    for (let i = 0; i < BPF_LOCAL_STORAGE_CACHE_SIZE; i++) {
      const usage = this.idxUsageCounts[i]!;
      if (usage < min) {
        min = usage;
        res = i;
        if (usage === 0) break;
      }
    }
    this.idxUsageCounts[res]!++;
    return res;
  }

  /** bpf_local_storage_cache_idx_free */
  idxFree(idx: number): void {
    this.idxUsageCounts[idx]!--;
  }
}
