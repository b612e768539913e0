/**
 * uapi/: the vocabulary every layer shares (errno, the error type, uapi constants). It imports nothing
 * of ours; fs, iter, progs and tags all import it.
 */
export * from './errno';
export * from './bpf';
export * from './fs';
