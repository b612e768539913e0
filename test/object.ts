import t from 'tap';
import { Kernel } from '../progs/kernel';
import { BpfObject, Handle, type ObjectKind } from '../progs/object';

/** The smallest real object: counts its releases so the tests can see cleanup run exactly once. */
class Probe extends BpfObject {
  readonly kind: ObjectKind = 'prog';
  releases = 0;
  constructor(k: Kernel) {
    super(k.progIdr);
  }
  protected release(): void {
    this.releases++;
  }
}

t.test('an object starts with the creator reference and an id from its kind table', async (t) => {
  const k = new Kernel();
  const p = new Probe(k);
  t.equal(p.refs, 1);
  t.equal(p.id, 1);
  t.equal(k.progIdr.get(1), p);
  t.notOk(p.released);
});

t.test('the last put releases the object once and removes its id (get_fd_by_id then fails with ENOENT)', async (t) => {
  const k = new Kernel();
  const p = new Probe(k);
  p.get();
  p.put();
  t.equal(p.releases, 0, 'one holder left: not released');
  p.put();
  t.equal(p.releases, 1);
  t.ok(p.released);
  t.throws(() => k.getById('prog', p.id), { code: 'ENOENT' });
  t.throws(() => p.put(), { code: 'EINVAL' }, 'a put past zero is a bug, reported as EINVAL');
  t.equal(p.releases, 1);
});

t.test('get() refuses a released object while tryGet() reports it (bpf_*_inc_not_zero)', async (t) => {
  const k = new Kernel();
  const p = new Probe(k);
  t.ok(p.tryGet());
  p.put();
  p.put();
  t.notOk(p.tryGet());
  t.throws(() => p.get(), { code: 'ENOENT' });
});

t.test('a handle owns one reference: close drops it, closing twice is EBADF', async (t) => {
  const k = new Kernel();
  const h = new Handle(new Probe(k));
  const d = h.dup();
  t.equal(h.object.refs, 2);
  h.close();
  t.ok(h.closed);
  t.throws(() => h.object, { code: 'EBADF' });
  t.throws(() => h.close(), { code: 'EBADF' });
  t.equal(d.object.releases, 0);
  const p = d.object;
  d.close();
  t.equal(p.releases, 1, 'the last handle releases the object');
});

t.test('getById takes a new reference; list() and nextId() follow id order like bpftool show', async (t) => {
  const k = new Kernel();
  const a = new Probe(k);
  const b = new Probe(k);
  const c = new Probe(k);
  const h = k.getById<Probe>('prog', b.id);
  t.equal(h.object, b);
  t.equal(b.refs, 2);
  t.same(k.list('prog').map((o) => o.id), [a.id, b.id, c.id]);
  t.equal(k.nextId('prog', 0), a.id);
  t.equal(k.nextId('prog', a.id), b.id);
  t.throws(() => k.nextId('prog', c.id), { code: 'ENOENT' });
  t.same(k.list('map'), [], 'maps and links have their own tables');
  t.same(k.list('link'), []);
  t.throws(() => k.getById('map', a.id), { code: 'ENOENT' });
  t.throws(() => k.getById('link', 99), { code: 'ENOENT' });
});
