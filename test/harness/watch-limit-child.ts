/**
 * Run by test/host-source.ts in a user namespace whose inotify watch limit is small, so the kernel
 * refuses watches with ENOSPC: runs host sources over the plain directory argv[2] and prints one JSON
 * line of what they saw. Not a test file itself.
 */
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { HostCgroupSource } from '../../tags/host/host-source';
import { sharedScanWorker } from '../../tags/host/scanner';

async function until(probe: () => boolean, ms = 5000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!probe()) {
    if (Date.now() > deadline) return false;
    await sleep(20);
  }
  return true;
}

function counts(src: HostCgroupSource): { watches: number; unwatched: number; watchFailures: number } {
  const { watches, unwatched, watchFailures } = src.status();
  return { watches, unwatched, watchFailures };
}

async function main(): Promise<void> {
  const dir = process.argv[2]!;
  const rootId = Number(fs.statSync(dir).ino);
  const report: Record<string, unknown> = { startError: null };

  // Without periodic walks: only live tracking and the listing of new cgroups can find things.
  const first = new HostCgroupSource(dir, rootId, { reconcileIntervalMs: 0 });
  try {
    await first.start();
  } catch (e) {
    report.startError = String(e);
  }
  report.loaded = [...first.hierarchy.walk()].map((n) => n.path);
  report.afterStart = counts(first);
  // e's watch fails (the limit is reached); its child f is found by listing e, since nothing walks.
  fs.mkdirSync(path.join(dir, 'e', 'f'), { recursive: true });
  report.listedBelowUnwatched = await until(() => first.hierarchy.cgroupByPath('/e/f') !== undefined);
  await first.stop();

  // With periodic walks: a change below an unwatched directory is found by the walk.
  const second = new HostCgroupSource(dir, rootId, { reconcileIntervalMs: 100 });
  await second.start();
  report.secondStart = counts(second);
  fs.mkdirSync(path.join(dir, 'd', 'new'));
  report.foundByWalk = await until(() => second.hierarchy.cgroupByPath('/d/new') !== undefined);
  await sleep(250);
  report.final = counts(second);
  await second.stop();
  await sharedScanWorker().close();
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

void main();
