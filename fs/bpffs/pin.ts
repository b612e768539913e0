/**
 * BPF_OBJ_PIN and BPF_OBJ_GET (kernel/bpf/inode.c: bpf_obj_pin_user, bpf_obj_do_pin, bpf_obj_do_get).
 *
 * A pin is a regular file, mode S_IFREG | 0600 & ~umask, size 0, whose inode holds one reference on
 * the object (bpf_any_get); the reference goes when the inode does (its last name unlinked and no
 * file open). A cgroup_view link's pin also tags its directory or joins its inherit list (tags.ts).
 * BPF_OBJ_GET follows symlinks and gives a new handle (a new reference) on the object.
 */
import { S_IFREG, bpfError } from '../../uapi';
import { BpfObject, Handle, type Kernel } from '../../progs';
import { ObjInode, type Cred, type DirInode, type SuperBlock } from './inode';
import { bpfLinkSupportInherit } from './iter-link';
import { dInstantiate } from './libfs';
import { CREATE_NOT_NORM, checkNewName, requireNorm, walk, walkParent } from './namei';
import { bpfInheritObject, type InheritResult } from './tags';

export interface PinResult {
  dir: DirInode;
  name: string;
  /** For a cgroup_view link: what the pin did to the directory's tag; null for anything else. */
  inherit: InheritResult | null;
}

/**
 * bpf_fd_probe_obj: a live program, map or link of this Kernel, or EINVAL (what an fd naming none of
 * them gives).
 */
function bpfFdProbeObj(kernel: Kernel, obj: unknown): BpfObject {
  if (!(obj instanceof BpfObject)) throw bpfError('EINVAL', 'not a BPF program, map or link');
  const table = obj.kind === 'prog' ? kernel.progIdr : obj.kind === 'map' ? kernel.mapIdr : kernel.linkIdr;
  if (table.get(obj.id) !== obj) throw bpfError('EINVAL', `${obj.kind} ${obj.id} is released or of another Kernel`);
  return obj;
}

function bpfObjDoPin(sb: SuperBlock, path: string, obj: BpfObject, cred: Cred): PinResult {
  const p = walkParent(sb, path);
  requireNorm(p, CREATE_NOT_NORM);
  checkNewName(p.dir, p.name);
  const mode = S_IFREG | (0o600 & ~sb.umask);
  // bpf_mklink: an inheritable link first tags the directory or joins its list, then is pinned.
  const inherit = bpfLinkSupportInherit(obj) ? bpfInheritObject(sb, p.dir, p.name, mode, obj) : null;
  dInstantiate(p.dir, p.name, sb.newObj(p.dir, mode, cred, obj));
  return { dir: p.dir, name: p.name, inherit };
}

/** bpf_obj_pin_user: the pin takes its own reference, which a failed pin drops again. */
export function bpfObjPin(sb: SuperBlock, path: string, obj: BpfObject, cred: Cred): PinResult {
  bpfFdProbeObj(sb.kernel, obj).get();
  try {
    return bpfObjDoPin(sb, path, obj, cred);
  } catch (e) {
    obj.put();
    throw e;
  }
}

/** bpf_obj_do_get: the object pinned at path (symlinks followed), EACCES for anything but a pin. */
export function bpfObjGet(sb: SuperBlock, path: string): Handle<BpfObject> {
  const { inode } = walk(sb, path, true);
  if (!(inode instanceof ObjInode)) throw bpfError('EACCES', `${path}: not a pinned BPF object`);
  const handle = Handle.of(inode.obj);
  inode.atime = new Date();
  return handle;
}
