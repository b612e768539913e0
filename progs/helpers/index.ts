/**
 * progs/helpers: the kernel-named helpers' shared pieces: the printf engine of bpf_seq_printf
 * (bpf_bprintf_prepare + bstr_printf), the seq_file sink and the seq helpers, and the table of which
 * helper each program type may call and which values it may return (the kernel's func_proto and
 * check_return_code).
 */
export * from './bprintf';
export * from './seq';
export * from './func-proto';
