package relaylog

// table is a map whose snapshot costs O(1) however large it is: freeze hands
// out the current map, which nobody writes again until thaw, and records the
// writes made meanwhile in a small delta that reads consult first. thaw
// folds the delta back in, in time proportional to the writes made during
// the snapshot, not to the table.
//
// Values are stored by value and must not be modified in place while
// frozen: a writer gets a copy, changes it and sets it. Slices inside
// values are shared with the frozen map, so while shared() they may only
// be appended to past their length or replaced; otherwise they may be
// changed in place (the pair lists and idempotency records are, to spare
// an allocation per send).
//
// A table is not safe for concurrent use; the fsm's lock guards it. A frozen
// map may be read by one other goroutine (the snapshot's Persist) while the
// fsm goes on writing the delta.
type table[K comparable, V any] struct {
	base   map[K]V
	delta  map[K]change[V] // non-nil while frozen
	n      int
	frozen int // generation of the freeze under way, 0 when none
}

type change[V any] struct {
	v       V
	deleted bool
}

func newTable[K comparable, V any]() table[K, V] {
	return table[K, V]{base: make(map[K]V)}
}

func (t *table[K, V]) get(k K) (V, bool) {
	if t.delta != nil {
		if c, ok := t.delta[k]; ok {
			return c.v, !c.deleted
		}
	}
	v, ok := t.base[k]
	return v, ok
}

func (t *table[K, V]) set(k K, v V) {
	if t.delta == nil {
		if _, ok := t.base[k]; !ok {
			t.n++
		}
		t.base[k] = v
		return
	}
	if _, ok := t.get(k); !ok {
		t.n++
	}
	t.delta[k] = change[V]{v: v}
}

func (t *table[K, V]) del(k K) {
	if _, ok := t.get(k); !ok {
		return
	}
	t.n--
	if t.delta == nil {
		delete(t.base, k)
		return
	}
	t.delta[k] = change[V]{deleted: true}
}

func (t *table[K, V]) len() int { return t.n }

// shared reports whether a snapshot is reading the table's values. While
// it is not, nothing else reads them (earlier snapshots were released), so
// a writer may change a value's slices in place instead of copying them.
func (t *table[K, V]) shared() bool { return t.delta != nil }

// each calls fn for every entry, in no particular order; fn must not write
// the table (collect keys and write after).
func (t *table[K, V]) each(fn func(K, V)) {
	for k, c := range t.delta {
		if !c.deleted {
			fn(k, c.v)
		}
	}
	for k, v := range t.base {
		if t.delta != nil {
			if _, ok := t.delta[k]; ok {
				continue
			}
		}
		fn(k, v)
	}
}

// deleteIf deletes every entry for which drop holds.
func (t *table[K, V]) deleteIf(drop func(K, V) bool) {
	var keys []K
	t.each(func(k K, v V) {
		if drop(k, v) {
			keys = append(keys, k)
		}
	})
	for _, k := range keys {
		t.del(k)
	}
}

// freeze returns the current map for a snapshot to read; until thaw with
// the same generation, writes go to the delta.
func (t *table[K, V]) freeze(gen int) map[K]V {
	t.thaw(t.frozen)
	t.frozen = gen
	t.delta = make(map[K]change[V])
	return t.base
}

// thaw ends the freeze of generation gen (a stale generation, from before a
// restore or a later freeze, does nothing).
func (t *table[K, V]) thaw(gen int) {
	if t.delta == nil || gen != t.frozen {
		return
	}
	for k, c := range t.delta {
		if c.deleted {
			delete(t.base, k)
		} else {
			t.base[k] = c.v
		}
	}
	t.delta = nil
	t.frozen = 0
}
