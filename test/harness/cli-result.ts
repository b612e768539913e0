/** A finished command as tests look at it: its exit code and output, whether it failed or not. */
export interface Out {
  code: number;
  stdout: string;
  stderr: string;
}

/** A promisified execFile's result, a failure (non-zero exit) included, as an Out. */
export const settle = (p: Promise<{ stdout: string; stderr: string }>): Promise<Out> =>
  p.then(
    (r) => ({ code: 0, ...r }),
    (e: Out) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );

/**
 * `vbpffs mount --timeout` for daemons the tests start through the TypeScript loader. The default
 * 30 s is for the built package, which starts in about 1.5 s; through the loader a daemon compiles
 * every file it loads again, 5-15 s on a loaded 2-core host and more when a neighbouring test file
 * starts a dozen children at once.
 */
export const LOADER_TIMEOUT = '120';
