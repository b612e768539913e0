/**
 * A stand-in iterator link for the bpffs tests until issue 6's BpfIterLink lands: a real BpfLink
 * (id, references, a real cgroup_view or iter/cgroup program) whose sessions return fixed text
 * rendered from what open() was given, and which records every session.
 */
import { BpfAttachType, BpfLinkType } from '../../uapi';
import { BpfLink, type BpfProg, type Collection, type Kernel } from '../../progs';
import type { IterLinkLike, IterOpenOptions, IterSession } from '../../fs/bpffs';
import { iterCtx, load } from './progs';

export interface FakeSession {
  readonly opts: IterOpenOptions;
  closed: boolean;
}

/** What a session prints by default: the cgroup it was given, or that it was given none. */
export const renderCgroup = (o: IterOpenOptions): string => (o.cgroup === undefined ? 'no cgroup\n' : `cgroup_id: ${o.cgroup.id} path: ${o.cgroup.path}\n`);

/**
 * A render that runs the link's cgroup_view program once for the session's cgroup, as the RFC's
 * cgroup_view_seq_show does, and prints what it wrote to its seq_file.
 */
export const runView =
  (prog: BpfProg) =>
  (o: IterOpenOptions): string => {
    const { ctx, sink } = iterCtx(o.cgroup ?? null);
    prog.run(ctx);
    return sink.text();
  };

export class FakeIterLink extends BpfLink implements IterLinkLike {
  readonly type = BpfLinkType.ITER;
  readonly target: 'cgroup' | 'cgroup_view';
  readonly sessions: FakeSession[] = [];
  render: (o: IterOpenOptions) => string;
  #released = false;

  constructor(kernel: Kernel, prog: BpfProg, target: 'cgroup' | 'cgroup_view', render = renderCgroup) {
    super(kernel, prog, BpfAttachType.TRACE_ITER);
    this.target = target;
    this.render = render;
  }

  get attached(): boolean {
    return !this.#released;
  }

  /** Whether the last reference went (bpf_link_free ran). */
  get freed(): boolean {
    return this.#released;
  }

  protected linkRelease(): void {
    this.#released = true;
  }

  open(opts: IterOpenOptions): IterSession {
    const session: FakeSession = { opts, closed: false };
    this.sessions.push(session);
    const bytes = new TextEncoder().encode(this.render(opts));
    let pos = 0;
    return {
      read: async (size) => {
        const out = bytes.subarray(pos, pos + size);
        pos += out.length;
        return out;
      },
      close: () => {
        session.closed = true;
      },
    };
  }
}

const VIEW_OBJ = `import { SEC, bpf_seq_printf } from 'vbpffs/bpf';
export const view = SEC('cgroup_view', (ctx) => { bpf_seq_printf(ctx.meta.seq, 'view\\n'); return 0; });
export const walk = SEC('iter/cgroup', (ctx) => { bpf_seq_printf(ctx.meta.seq, 'walk\\n'); return 0; });
export const tick = SEC('tp/timer/tick', (ctx) => 0);
`;

export interface IterProgs {
  coll: Collection;
  /** A cgroup_view program. */
  view: BpfProg;
  /** An iter/cgroup program. */
  walk: BpfProg;
  /** A tracepoint program (tp/timer/tick). */
  tick: BpfProg;
}

/** Loads one object with a cgroup_view, an iter/cgroup and a tracepoint program. */
export function iterProgs(kernel: Kernel): IterProgs {
  const coll = load(kernel, VIEW_OBJ);
  const prog = (name: string): BpfProg => coll.programs.get(name)!.object;
  return { coll, view: prog('view'), walk: prog('walk'), tick: prog('tick') };
}
