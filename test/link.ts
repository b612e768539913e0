/**
 * The bpf_link base (progs/link/link.ts): ids, references from handles, the program reference, the
 * update flag rules and the defaults for kinds without detach or update ops (spec 4.7, 5.1.4).
 */
import t from 'tap';
import { BPF_F_REPLACE, BpfAttachType, BpfLinkType } from '../uapi';
import {
  BpfLink,
  Handle,
  Kernel,
  bpfLinkDetach,
  bpfLinkGetInfo,
  bpfLinkUpdate,
  linkFromRef,
  progFromRef,
  type BpfProg,
} from '../progs';
import { loadProgs } from './harness/cgroup-progs';
import { world } from './harness/progs';

/** A kind with no ops of its own beyond release: what an iterator link looks like to the base. */
class BareLink extends BpfLink {
  readonly type = BpfLinkType.ITER;
  releases = 0;

  constructor(kernel: Kernel, prog: BpfProg) {
    super(kernel, prog, BpfAttachType.TRACE_ITER);
  }

  get attached(): boolean {
    return this.releases === 0;
  }

  protected linkRelease(): void {
    this.releases++;
  }
}

/** A kind with an update op, to see the base's checks run before it. */
class SwapLink extends BareLink {
  protected override updateProg(newProg: BpfProg, oldProg: BpfProg | null): void {
    if (oldProg !== null && oldProg !== this.prog) throw new Error('unexpected');
    this.swapProg(newProg);
  }
}

function setup(): { k: Kernel; a: BpfProg; b: BpfProg } {
  const w = world();
  const p = loadProgs(w.kernel, { a: 'cgroup_view', b: 'cgroup_view' });
  return { k: w.kernel, a: p.a, b: p.b };
}

t.test('ids: a link gets the next link id, leaves the id table at its last put, and holds its program until then', async (t) => {
  const { k, a } = setup();
  const refs = a.refs;
  const link = new Handle(new BareLink(k, a));
  const l = link.object;
  t.equal(l.kind, 'link');
  t.equal(l.id, 1);
  t.equal(a.refs, refs + 1, 'the link holds its program');
  const byId = k.getById<BareLink>('link', l.id);
  link.close();
  t.equal(l.releases, 0, 'another holder keeps it');
  byId.close();
  t.equal(l.releases, 1, 'the last holder releases it: detached');
  t.equal(a.refs, refs, 'and its program reference dropped');
  t.throws(() => k.getById('link', l.id), { code: 'ENOENT' });
  t.equal(new BareLink(k, a).id, 2, 'ids are not reused');
});

t.test('info and fdinfo: type, id and program id, the common fdinfo lines', async (t) => {
  const { k, a } = setup();
  const h = new Handle(new BareLink(k, a));
  t.same(bpfLinkGetInfo(h), { type: BpfLinkType.ITER, id: h.object.id, progId: a.id });
  t.equal(h.object.showFdinfo(), `link_type:\titer\nlink_id:\t${h.object.id}\nprog_tag:\t${a.tag}\nprog_id:\t${a.id}\n`);
});

t.test('defaults: a kind without a detach op is EOPNOTSUPP, without an update op EINVAL', async (t) => {
  const { k, a, b } = setup();
  const h = new Handle(new BareLink(k, a));
  t.throws(() => bpfLinkDetach(h), { code: 'EOPNOTSUPP' });
  t.throws(() => bpfLinkUpdate(h, b), { code: 'EINVAL' });
});

t.test('update: rule flags: anything but BPF_F_REPLACE is EINVAL; an old program needs the flag; the flag needs an old program (EBADF)', async (t) => {
  const { k, a, b } = setup();
  const h = new Handle(new SwapLink(k, a));
  t.throws(() => bpfLinkUpdate(h, b, { flags: 2 }), { code: 'EINVAL' });
  t.throws(() => bpfLinkUpdate(h, b, { oldProg: a }), { code: 'EINVAL' });
  t.throws(() => bpfLinkUpdate(h, b, { flags: BPF_F_REPLACE }), { code: 'EBADF' });
  bpfLinkUpdate(h, b, { flags: BPF_F_REPLACE, oldProg: a });
  t.equal(h.object.prog, b);
  const ha = Handle.of(a);
  const refs = a.refs;
  bpfLinkUpdate(h, ha);
  t.equal(a.refs, refs + 1, 'the new program is held');
  t.equal(h.object.info().progId, a.id);
});

t.test('refs: a closed handle is EBADF, a released link EBADF, a non-link EINVAL', async (t) => {
  const { k, a, b } = setup();
  const h = new Handle(new SwapLink(k, a));
  const l = h.object;
  h.close();
  t.throws(() => bpfLinkDetach(h), { code: 'EBADF' });
  t.throws(() => linkFromRef(l), { code: 'EBADF' });
  t.throws(() => l.update(b), { code: 'EBADF' });
  t.throws(() => l.detach(), { code: 'EBADF' });
  t.throws(() => linkFromRef(Handle.of(a) as unknown as Handle<BpfLink>), { code: 'EINVAL' });
  t.throws(() => progFromRef(l as unknown as BpfProg), { code: 'EINVAL' });
});

t.test('release: a failing kind release still drops the program reference', async (t) => {
  const { k, a } = setup();
  class Failing extends BareLink {
    protected override linkRelease(): void {
      throw new Error('boom');
    }
  }
  const refs = a.refs;
  const l = new Failing(k, a);
  t.throws(() => l.put(), /boom/);
  t.equal(a.refs, refs);
});
