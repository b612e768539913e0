/**
 * The messages between the serving thread and the engine's thread: a call names an engine method
 * from a fixed list and carries structured-clonable arguments; a reply carries the value or the
 * error as its errno name and message, rebuilt as a BpfError on the other side.
 */
import { BpfError, isBpfError, type ErrnoName } from '../../uapi';

/** The engine methods the serving thread may call. */
export const ENGINE_METHODS = [
  'getattr', 'readdir', 'readlink', 'mkdir', 'rmdir', 'unlink', 'rename', 'link', 'symlink', 'create', 'mknod',
  'chmod', 'chown', 'utimens', 'open', 'read', 'release', 'statfs',
  'progLoadAll', 'iterPin', 'progShow', 'mapShow', 'linkShow', 'mapDump', 'status',
  'progLoad', 'mapCreate', 'objPin', 'mapLookup', 'mapUpdate', 'mapDelete', 'mapGetNext',
  'linkUpdate', 'linkDetach', 'cgroupAttach', 'cgroupDetach', 'cgroupShow', 'cgroupRun', 'cgroupReconcile',
] as const;
export type EngineMethod = (typeof ENGINE_METHODS)[number];

/**
 * The largest reply the engine builds (its JSON size): a reply crosses the thread boundary as a
 * structured clone and the control socket as one JSON line, and is held whole on both threads and
 * in the CLI on the way. A dump past it is E2BIG; bigger maps are read element by element (`map
 * getnext`, `map lookup`), as bpftool itself walks them.
 */
export const MAX_REPLY_BYTES = 16 * 1024 * 1024;

export interface CallMessage {
  id: number;
  method: EngineMethod;
  args: unknown[];
}

/** The worker's first message: its engine is up (with what its start replayed), or why not. */
export interface ReadyMessage {
  ready: boolean;
  error?: { code: string; message: string };
  replay?: { records: number; failed: number };
}

export type ReplyMessage = { id: number; value: unknown } | { id: number; error: { code: string; message: string } };

export function errorReply(id: number, e: unknown): ReplyMessage {
  if (isBpfError(e)) return { id, error: { code: e.code, message: e.message } };
  return { id, error: { code: 'EIO', message: `EIO: ${(e as Error)?.message ?? String(e)}` } };
}

export function replyError(error: { code: string; message: string }): BpfError {
  // The message already starts with the errno name (BpfError's format): keep it as it was.
  const e = new BpfError(error.code as ErrnoName, error.message.replace(/^[A-Z0-9]+: /, ''));
  return e;
}
