package relaylog

import "slices"

// MaxPairsPerUser bounds the conversations a shard remembers per user:
// a user's contacts (the senders who wrote them within the retention
// period, kept in the reader's shard) and the read marks of conversations
// a user started (kept in the sender's shard). Past it, the pair with the
// oldest id is forgotten: a read mark to that sender then creates nothing,
// and their presence is hidden, until the next message between them.
const MaxPairsPerUser = 128

// pair is one entry of a user's list: the other user and an event id (the
// newest message, or the read mark).
type pair struct{ other, id int64 }

// pairs maps a user to at most MaxPairsPerUser pairs, in increasing (id,
// other) order, so that its content depends only on which pairs it holds
// (not on the order they came in, which a restore does not keep): every
// replica keeps and forgets the same ones.
//
// Lists are copy-on-write towards snapshots: while one reads the table, a
// change builds a new slice; otherwise it changes the list in place.
type pairs struct {
	t table[int64, []pair]
	n int // pairs in all lists
}

func newPairs() pairs { return pairs{t: newTable[int64, []pair]()} }

func (p *pairs) len() int { return p.n }

// get is the id of user's pair with other.
func (p *pairs) get(user, other int64) (int64, bool) {
	list, _ := p.t.get(user)
	for _, e := range list {
		if e.other == other {
			return e.id, true
		}
	}
	return 0, false
}

// set makes id the id of user's pair with other, dropping the user's pairs
// with an id below floor (expired) and, past MaxPairsPerUser, the oldest.
// The list is changed in place unless a snapshot is reading it.
func (p *pairs) set(user, other, id, floor int64) {
	old, _ := p.t.get(user)
	var list []pair
	if p.t.shared() {
		list = make([]pair, 0, min(len(old)+1, MaxPairsPerUser))
	} else {
		list = old[:0] // filtered in place: each write is at or before its read
	}
	for _, e := range old {
		if e.other != other && e.id >= floor {
			list = append(list, e)
		}
	}
	e := pair{other, id}
	at, _ := slices.BinarySearchFunc(list, e, cmpPair)
	switch {
	case len(list) < MaxPairsPerUser:
		if len(list) == cap(list) {
			// Grown by one, not doubled as Insert would: most users'
			// lists stay well below the cap, and a new conversation is
			// rarer than a message in one.
			list = append(make([]pair, 0, len(list)+1), list...)
		}
		list = slices.Insert(list, at, e) // within its capacity: in place
	case at > 0:
		// Full: the oldest pair makes room (one older than all is dropped).
		copy(list, list[1:at])
		list[at-1] = e
	}
	p.n += len(list) - len(old)
	p.t.set(user, list)
}

func cmpPair(a, b pair) int {
	switch {
	case a.id != b.id:
		return cmpInt(a.id, b.id)
	default:
		return cmpInt(a.other, b.other)
	}
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// expire drops every pair with an id below floor. Lists are in id order,
// so it looks at one pair of every list that has none to drop.
func (p *pairs) expire(floor int64) {
	type change struct {
		user int64
		list []pair
	}
	var cs []change
	p.t.each(func(user int64, list []pair) {
		if len(list) == 0 || list[0].id >= floor {
			return
		}
		k, _ := slices.BinarySearchFunc(list, pair{id: floor, other: minInt64}, cmpPair)
		cs = append(cs, change{user, list[k:len(list):len(list)]})
	})
	for _, c := range cs {
		old, _ := p.t.get(c.user)
		p.n -= len(old) - len(c.list)
		if len(c.list) == 0 {
			p.t.del(c.user)
		} else {
			p.t.set(c.user, c.list)
		}
	}
}

const minInt64 = -1 << 63

// sortAll puts every list in order after a restore wrote pairs in the
// snapshot's order, keeping the newest MaxPairsPerUser of each.
func (p *pairs) sortAll() {
	var over []int64
	p.t.each(func(user int64, list []pair) {
		slices.SortFunc(list, cmpPair)
		if len(list) > MaxPairsPerUser {
			over = append(over, user)
		}
	})
	for _, u := range over {
		list, _ := p.t.get(u)
		p.n -= len(list) - MaxPairsPerUser
		p.t.set(u, list[len(list)-MaxPairsPerUser:])
	}
}

// add appends a pair during a restore (sortAll follows).
func (p *pairs) add(user, other, id int64) {
	list, _ := p.t.get(user)
	p.t.set(user, append(list, pair{other, id}))
	p.n++
}
