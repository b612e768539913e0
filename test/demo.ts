import path from 'node:path';
import t from 'tap';
import { runTs } from './harness/run-ts';

t.test('npm start: the demo runs and its simulated part prints exactly what the README shows', async (t) => {
  // From the sources, not a possibly stale build.
  const { stdout } = await runTs(path.join(__dirname, '..', 'scripts', 'demo.ts'));
  const simulated = stdout.slice(0, stdout.indexOf('\n== The host cgroup2 tree'));
  const readme = (await import('node:fs')).readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8');
  t.ok(readme.includes(simulated.trimEnd()), 'the README quotes the simulated part verbatim');
  t.match(simulated, /^  \/ +id 1 +cpu 10700000 us  waited  5842000 us  ticks 10$/m, 'figures on the simulated clock are exact');
  t.match(simulated, /get_next_key on cgrp_storage: ENOTSUPP: .*\(errno 524, as the kernel\)/);
  t.match(simulated, /rmdir cron.service: state released; its value was freed at release \(6 -> 5 values in map 1\)/);
  t.match(stdout, /== The host cgroup2 tree \(tags\/host\)\n(cgroup2 at .*: \d+ cgroups? loaded and watched in [\d.]+ ms|skipped: .+)\n/);
});
