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
