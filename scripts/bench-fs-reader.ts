/**
 * The reader process of scripts/bench/fs.ts (kept outside scripts/bench/, where every module is a
 * benchmark the runner loads). It is a process of its own so that its synchronous open, read and
 * close reach a FUSE mount served by another process, never by itself. Prints one JSON line.
 *
 *   latency WARMUP N FILE...   N rounds, each file in turn: open, read to EOF in 128 KiB reads
 *                              (what cat asks for), close; per file the µs of each round
 *   rate START_MS MS FILE      from START_MS (epoch ms, so concurrent readers start together) for MS,
 *                              open+read+close of FILE in a loop; the count and the seconds taken
 */
import { closeSync, openSync, readSync } from 'node:fs';

const buf = Buffer.alloc(1 << 17);

/** open, read to EOF, close: the bytes read. */
function readFile(file: string): number {
  const fd = openSync(file, 'r');
  let n = 0;
  try {
    for (let r = readSync(fd, buf, 0, buf.length, null); r > 0; r = readSync(fd, buf, 0, buf.length, null)) n += r;
  } finally {
    closeSync(fd);
  }
  return n;
}

const nowUs = (): number => Number(process.hrtime.bigint()) / 1000;

function latency(warmup: number, n: number, files: string[]): void {
  const bytes = files.map(readFile);
  for (let i = 0; i < warmup; i++) files.forEach(readFile);
  const us: number[][] = files.map(() => []);
  for (let i = 0; i < n; i++) {
    files.forEach((f, k) => {
      const t0 = nowUs();
      readFile(f);
      us[k]!.push(nowUs() - t0);
    });
  }
  console.log(JSON.stringify({ bytes, us }));
}

async function rate(startMs: number, ms: number, file: string): Promise<void> {
  readFile(file);
  const wait = startMs - Date.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  const t0 = nowUs();
  const end = t0 + ms * 1000;
  let ops = 0;
  while (nowUs() < end) {
    readFile(file);
    ops++;
  }
  console.log(JSON.stringify({ ops, seconds: (nowUs() - t0) / 1e6 }));
}

async function main(): Promise<void> {
  const [mode, ...args] = process.argv.slice(2);
  if (mode === 'latency') return latency(Number(args[0]), Number(args[1]), args.slice(2));
  if (mode === 'rate') return rate(Number(args[0]), Number(args[1]), args[2]!);
  throw new Error(`usage: bench-fs-reader latency WARMUP N FILE... | rate START_MS MS FILE`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
