import t from 'tap';
import { ID_MAX, IdTable } from '../progs/idr';

t.test('ids increase from 1 and a freed id is not reused before the counter wraps (idr_alloc_cyclic)', async (t) => {
  const idr = new IdTable<string>('map');
  const a = idr.alloc('a');
  const b = idr.alloc('b');
  t.same([a, b], [1, 2]);
  idr.remove(a);
  t.equal(idr.alloc('c'), 3);
  t.equal(idr.size, 2);
  t.equal(ID_MAX, 0x7fffffff, 'the real range ends at INT_MAX');
});

t.test('at the end of the range ids wrap to 1 and skip ids still alive', async (t) => {
  const idr = new IdTable<string>('link', 5);
  t.same([idr.alloc('a'), idr.alloc('b'), idr.alloc('c'), idr.alloc('d')], [1, 2, 3, 4]);
  idr.remove(2);
  idr.remove(4);
  t.equal(idr.alloc('e'), 2, 'wrapped past the end, skipping live id 1');
  t.equal(idr.alloc('f'), 4, 'skips live id 3');
  t.equal(idr.get(1), 'a');
});

t.test('ENOSPC when every id in the range is taken', async (t) => {
  const idr = new IdTable<string>('prog', 3);
  idr.alloc('a');
  idr.alloc('b');
  t.throws(() => idr.alloc('x'), { code: 'ENOSPC' });
});
