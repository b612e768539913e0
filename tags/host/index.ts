/**
 * tags/host: the host's cgroup2 hierarchy as a CgroupSource, the mountinfo lookup behind it, and the
 * host's tasks. The scan worker, watches and diff are this folder's own business.
 */
export { HostCgroupSource, type HostSourceOptions, type HostSourceStatus } from './host-source';
export {
  findCgroup2Mount,
  parseMountinfo,
  parseMountinfoLine,
  pickCgroup2Mount,
  type FindCgroup2Options,
  type MountInfo,
} from './mountinfo';
export { cgroupPids, cgroupTasks, hostTask, readTaskInfo, taskCgroupPath, taskComm, type HostTaskInfo } from './tasks';
