import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { isBpfError } from '../uapi';
import {
  findCgroup2Mount,
  mountOf,
  parseMountinfo,
  parseMountinfoLine,
  pickCgroup2Mount,
  unescapeMountPath,
} from '../tags/host/mountinfo';

/** This machine's layout: a hybrid host, v1 controllers plus one cgroup2 mount at .../unified. */
const HYBRID = `22 1 253:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
23 22 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime shared:9 master:2 - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
`;

const V1_ONLY = HYBRID.split('\n')
  .filter((l) => !l.includes('cgroup2'))
  .join('\n');

t.test('a line splits at the " - " separator, whatever the number of optional fields', (t) => {
  const none = parseMountinfoLine('31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755');
  t.same(none.optionalFields, []);
  t.equal(none.fstype, 'tmpfs');
  t.equal(none.superOptions, 'rw,mode=755');

  const two = parseMountinfoLine('36 35 98:0 /mnt1 /mnt2 rw,noatime shared:5 master:1 - ext3 /dev/root rw,errors=continue');
  t.match(two, {
    mountId: 36,
    parentId: 35,
    root: '/mnt1',
    mountPoint: '/mnt2',
    mountOptions: 'rw,noatime',
    optionalFields: ['shared:5', 'master:1'],
    fstype: 'ext3',
    source: '/dev/root',
    superOptions: 'rw,errors=continue',
  });

  // A mount point named "-" is a field before the separator, not the separator.
  const dash = parseMountinfoLine('50 22 0:40 / /- rw - cgroup2 none rw');
  t.equal(dash.mountPoint, '/-');
  t.equal(dash.fstype, 'cgroup2');
  t.end();
});

t.test('octal escapes in paths are decoded', (t) => {
  t.equal(unescapeMountPath('/mnt/my\\040cgroup\\011tab\\012nl\\134bs'), '/mnt/my cgroup\ttab\nnl\\bs');
  const m = parseMountinfoLine('60 22 0:41 /sub\\040dir /run/my\\040cgroups rw - cgroup2 cg\\040src rw');
  t.equal(m.root, '/sub dir');
  t.equal(m.mountPoint, '/run/my cgroups');
  t.equal(m.source, 'cg src');
  t.end();
});

t.test('a malformed line is EINVAL and quotes the line', (t) => {
  t.throws(() => parseMountinfo('22 1 253:1 / / rw shared:1 ext4 /dev/vda1 rw\n'), { code: 'EINVAL', message: /malformed mountinfo line: "22 1/ });
  t.throws(() => parseMountinfoLine('22 1 253:1 / / rw - ext4'), { code: 'EINVAL' });
  t.end();
});

t.test('a hybrid host: the one cgroup2 mount among v1 ones', (t) => {
  const mounts = parseMountinfo(HYBRID);
  t.equal(mounts.length, 8, 'blank lines are skipped');
  t.equal(pickCgroup2Mount(mounts).mountPoint, '/sys/fs/cgroup/unified');
  t.end();
});

t.test('no cgroup2 mount is ENODEV naming what was found instead', (t) => {
  t.throws(() => pickCgroup2Mount(parseMountinfo(V1_ONLY)), {
    code: 'ENODEV',
    message:
      'ENODEV: no cgroup2 mount in /proc/self/mountinfo (found cgroup on /sys/fs/cgroup/cpu, cgroup on /sys/fs/cgroup/cpuacct, cgroup on /sys/fs/cgroup/memory, cgroup on /sys/fs/cgroup/systemd)',
  });
  const many = parseMountinfo(V1_ONLY + '\n42 31 0:39 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n');
  t.throws(() => pickCgroup2Mount(many), { message: /systemd, 1 more\)$/ });
  t.throws(() => pickCgroup2Mount(parseMountinfo('22 1 253:1 / / rw - ext4 /dev/vda1 rw'), 'sample'), {
    message: 'ENODEV: no cgroup2 mount in sample (found no cgroup mounts)',
  });
  t.end();
});

t.test('several cgroup2 mounts: a whole-filesystem mount first, then the shortest, then the first', (t) => {
  const line = (id: number, root: string, mp: string): string => `${id} 22 0:29 ${root} ${mp} rw - cgroup2 cgroup2 rw`;
  const pick = (...lines: string[]): string => pickCgroup2Mount(parseMountinfo(lines.join('\n'))).mountPoint;
  t.equal(pick(line(1, '/', '/sys/fs/cgroup'), line(2, '/', '/a')), '/a', 'shortest');
  t.equal(pick(line(1, '/', '/b'), line(2, '/', '/a')), '/b', 'first among equals');
  t.equal(pick(line(1, '/kubepods', '/c'), line(2, '/', '/sys/fs/cgroup')), '/sys/fs/cgroup', 'a bind-mounted subtree loses');
  t.equal(pick(line(1, '/x', '/c')), '/c', 'a subtree when nothing else');
  t.end();
});

t.test('mountOf takes the longest containing mount point, the last one when stacked', (t) => {
  const mounts = parseMountinfo(HYBRID + '42 41 0:50 / /sys/fs/cgroup/unified rw - tmpfs tmpfs rw\n');
  t.equal(mountOf(mounts, '/sys/fs/cgroup/unified')?.fstype, 'tmpfs', 'overmounted');
  t.equal(mountOf(mounts, '/sys/fs/cgroup/cpuset')?.fstype, 'tmpfs');
  t.equal(mountOf(mounts, '/sys/fs/cgroupx')?.fstype, 'sysfs', 'a prefix of the name is not containment');
  t.equal(mountOf(mounts, '/home')?.fstype, 'ext4');
  t.equal(mountOf([], '/home'), undefined);
  t.end();
});

t.test('an explicit path is verified against mountinfo and cgroup.controllers', async (t) => {
  const dir = fs.realpathSync(t.testdir({ cg: { 'cgroup.controllers': 'cpu io\n', sub: {} }, plain: {}, fakecg: {}, file: '' }));
  const info = path.join(dir, 'mountinfo');
  fs.writeFileSync(
    info,
    [
      `22 1 253:1 / / rw - ext4 /dev/vda1 rw`,
      `70 22 0:60 / ${dir} rw - tmpfs tmpfs rw`,
      `71 70 0:61 / ${dir}/cg rw - cgroup2 cgroup2 rw`,
      `72 70 0:62 / ${dir}/fakecg rw - cgroup2 cgroup2 rw`,
    ].join('\n'),
  );
  const found = await findCgroup2Mount({ path: `${dir}/cg/`, mountinfo: info });
  t.equal(found.mountPoint, `${dir}/cg`);
  t.equal(found.mountId, 71);

  await t.rejects(findCgroup2Mount({ path: `${dir}/plain`, mountinfo: info }), {
    code: 'EINVAL',
    message: `EINVAL: ${dir}/plain is tmpfs, not cgroup2`,
  });
  await t.rejects(findCgroup2Mount({ path: `${dir}/cg/sub`, mountinfo: info }), {
    code: 'EINVAL',
    message: `EINVAL: ${dir}/cg/sub is inside the cgroup2 mount at ${dir}/cg, not its mount point`,
  });
  await t.rejects(findCgroup2Mount({ path: `${dir}/fakecg`, mountinfo: info }), {
    code: 'EINVAL',
    message: `EINVAL: ${dir}/fakecg is listed as cgroup2 in ${info} but has no cgroup.controllers`,
  });
  await t.rejects(findCgroup2Mount({ path: `${dir}/missing`, mountinfo: info }), { code: 'ENOENT', message: new RegExp(`${dir}/missing`) });
  await t.rejects(findCgroup2Mount({ path: `${dir}/file/x`, mountinfo: info }), { code: 'ENOTDIR' });

  fs.writeFileSync(info, `70 22 0:60 / ${dir} rw - tmpfs tmpfs rw\n`);
  await t.rejects(findCgroup2Mount({ path: '/', mountinfo: info }), { code: 'EINVAL', message: `EINVAL: / is on no mount listed in ${info}` });
  await t.rejects(findCgroup2Mount({ mountinfo: info }), { code: 'ENODEV', message: /found no cgroup mounts/ });
});

t.test('an unreadable mountinfo surfaces with its path', async (t) => {
  const missing = path.join(t.testdirName, 'no-mountinfo');
  const e = await findCgroup2Mount({ mountinfo: missing }).catch((err: unknown) => err);
  t.ok(isBpfError(e, 'ENOENT'));
  t.match((e as Error).message, `read ${missing}`);
});

t.test('the running host: /proc/self/mountinfo parses, and a found cgroup2 mount checks out', async (t) => {
  const mounts = parseMountinfo(fs.readFileSync('/proc/self/mountinfo', 'utf8'));
  t.ok(mounts.some((m) => m.mountPoint === '/'), 'the root mount is listed');
  const auto = await findCgroup2Mount().catch((e: unknown) => e);
  if (isBpfError(auto, 'ENODEV')) return void t.pass(`no cgroup2 here: ${auto.message}`);
  const m = auto as Awaited<ReturnType<typeof findCgroup2Mount>>;
  t.equal(m.fstype, 'cgroup2');
  t.ok(fs.existsSync(path.join(m.mountPoint, 'cgroup.controllers')));
  t.same(await findCgroup2Mount({ path: m.mountPoint }), m, 'the explicit path verifies');
});
