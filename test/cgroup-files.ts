import t from 'tap';
import { parseInterfaceFile, readCgroupFiles } from '../progs';
import { SimCgroupSource } from '../tags';

t.test('interface files: flat keyed, nested keyed and single value formats (cgroup-v2.rst "Format")', async (t) => {
  t.same({ ...parseInterfaceFile('usage_usec 10\nuser_usec 7\nnr_periods 0\n') }, { usage_usec: 10n, user_usec: 7n, nr_periods: 0n, lines: 3 });
  t.same({ ...parseInterfaceFile('some avg10=0.12 avg60=1.00 avg300=0.00 total=5\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n') }, {
    some_avg10: 0.12, some_avg60: 1, some_avg300: 0, some_total: 5n, full_avg10: 0, full_avg60: 0, full_avg300: 0, full_total: 0n, lines: 2,
  });
  t.same({ ...parseInterfaceFile('max\n') }, { value: 'max', lines: 1 }, 'a word stays a string');
  t.same({ ...parseInterfaceFile('12\n340\n') }, { value: 12n, lines: 2 }, 'a list: the first value and how many lines');
  t.same({ ...parseInterfaceFile('') }, { lines: 0 });
  t.same({ ...parseInterfaceFile('18446744073709551615\n') }, { value: 18446744073709551615n, lines: 1 }, 'u64 counters are exact');
});

t.test('interface files: a run\'s snapshot reads the files a program names; an absent one is null', async (t) => {
  const source = new SimCgroupSource();
  await source.start();
  const cg = await source.mkdir('/a');
  const files = await readCgroupFiles(source, cg, ['cpu.stat', 'cgroup.procs', 'memory.nonexistent']);
  t.match(files.get('cpu.stat'), /^usage_usec 0\n/);
  t.equal(files.get('cgroup.procs'), '');
  t.equal(files.get('memory.nonexistent'), null);
  await source.stop();
});
