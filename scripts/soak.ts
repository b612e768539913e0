/**
 * `npm run soak [-- --seconds N --rate N --pool N --readers N --pin-every S]`: the soak of issue 8 on
 * the host's cgroup2 tree (scripts/soak/run.ts). Needs root, FUSE and a cgroup2 mount. Prints a
 * summary; exits 1 when the soak failed, 2 when it could not run, 130 on SIGINT (after cleaning up).
 */
import { inspect } from 'node:util';
import { DEFAULTS, failures, formatReport, runSoak, type SoakOptions, type SoakReport } from './soak/run';

const FLAGS: Readonly<Record<string, keyof SoakOptions>> = { '--seconds': 'seconds', '--rate': 'rate', '--pool': 'pool', '--readers': 'readers', '--pin-every': 'pinEverySeconds' };

export function parseSoakArgs(argv: string[]): SoakOptions {
  const o: SoakOptions = { ...DEFAULTS };
  for (let i = 0; i < argv.length; i += 2) {
    const key = FLAGS[argv[i]!];
    const v = Number(argv[i + 1]);
    if (key === undefined) throw new Error(`unknown option '${argv[i]}' (${Object.keys(FLAGS).join(', ')})`);
    if (!(v > 0)) throw new Error(`${argv[i]} needs a positive number`);
    (o as unknown as Record<string, number>)[key] = v;
  }
  return o;
}

async function main(): Promise<number> {
  const ac = new AbortController();
  process.on('SIGINT', () => ac.abort());
  const o = { ...parseSoakArgs(process.argv.slice(2)), signal: ac.signal, log: (l: string) => console.log(l) };
  const report = await runSoak(o);
  const failed = failures(report, o.checkRss && o.seconds > o.warmupSeconds);
  console.log(formatReport(report, failed));
  return exitStatus(report, failed);
}

/** 130 for a run cut short by SIGINT (as a shell reports it), 1 for a failed one, else 0. */
export function exitStatus(report: SoakReport, failed: string[]): number {
  if (report.interrupted) return 130;
  return failed.length === 0 ? 0 : 1;
}

if (require.main === module) {
  main().then(
    (code) => (process.exitCode = code),
    (e: unknown) => {
      console.error(`soak could not run: ${inspect(e)}`);
      process.exitCode = 2;
    },
  );
}
