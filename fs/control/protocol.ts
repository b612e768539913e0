/**
 * The control socket's protocol: one JSON object per line each way. A request names a method and its
 * arguments; the reply has the value, or the error's errno name and message. The socket is a Unix
 * socket of mode 0600 in a 0700 directory, so only its owner (root, for a daemon started by root)
 * can connect: the kernel checks the permission at connect().
 */
export interface ControlRequest {
  method: string;
  args: unknown[];
}

/** `retry`: the request was refused unread (the connection cap), so sending it again is safe. */
export type ControlReply = { value: unknown } | { error: { code: string; message: string; retry?: boolean } };

/** The largest request line accepted: a path, options and an object file's path fit easily. */
export const MAX_REQUEST_BYTES = 64 * 1024;
