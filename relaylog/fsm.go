package relaylog

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// fsm is the replicated state of one shard: the undelivered queues of its
// users, the idempotency table of sends to them, their push devices, their
// last connection times and the read marks of conversations whose sender
// lives here. Everything is in memory; raft's log and snapshots make it
// durable.
type fsm struct {
	shard     int
	shardBits uint
	notify    func(user int64) // called after commit, outside the lock; must not block

	mu       sync.RWMutex
	lastID   int64
	queues   map[int64]*queue
	idem     map[idemKey]idemRec
	idemFIFO []idemRec // insertion (= id) order; holds exactly what idem holds
	devices  map[int64][]Device
	tokens   map[string]int64 // device token → user, so a token moves between users
	lastConn map[int64]int64  // user → Unix ms
	lastRead map[readKey]int64
	queued   atomic.Int64 // messages in all queues (metrics read it without the lock)
}

type idemKey struct{ from, reqID int64 }

type idemRec struct {
	from, reqID int64
	id          int64
	fp          uint64
}

type readKey struct{ sender, reader int64 }

// queue holds events in increasing id order. Its slice is copy-on-write
// towards snapshots: the prefix is dropped by reslicing, new events are
// appended past every snapshot's length, and removal from the middle builds
// a new slice.
type queue struct {
	events []Event
	msgs   int   // events of KindMessage, bounded by the depth limit
	pushed int64 // the user's devices were alerted of messages up to this id
}

func newFSM(shard, shards int, notify func(int64)) *fsm {
	f := &fsm{shard: shard, shardBits: shardBits(shards), notify: notify}
	f.reset()
	return f
}

func (f *fsm) reset() {
	f.lastID = 0
	f.queues = make(map[int64]*queue)
	f.idem = make(map[idemKey]idemRec)
	f.idemFIFO = nil
	f.devices = make(map[int64][]Device)
	f.tokens = make(map[string]int64)
	f.lastConn = make(map[int64]int64)
	f.lastRead = make(map[readKey]int64)
	f.queued.Store(0)
}

// result is what applying one command answers to its proposer.
type result struct {
	ev      Event
	created bool
	n       int
	err     error
}

// Apply implements raft.FSM.
func (f *fsm) Apply(l *raft.Log) any {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch implements raft.BatchingFSM: one lock and one round of
// notifications for everything raft committed together.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	var touched []int64
	f.mu.Lock()
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			continue
		}
		cmds, err := decodeEntry(l.Data)
		if err != nil {
			// A corrupt entry cannot be applied on any replica; skipping
			// it keeps every replica identical.
			out[i] = []result{{err: fmt.Errorf("relaylog: shard %d entry %d: %w", f.shard, l.Index, err)}}
			continue
		}
		res := make([]result, len(cmds))
		for j := range cmds {
			res[j] = f.apply(&cmds[j], &touched)
		}
		out[i] = res
	}
	f.mu.Unlock()
	if f.notify != nil {
		for _, u := range touched {
			f.notify(u)
		}
	}
	return out
}

// Errors answered by the state machine.
var (
	// ErrQueueFull: the recipient has too many undelivered messages.
	ErrQueueFull = errors.New("relaylog: recipient's queue is full")
	// ErrRequestIDReused: a requestId came again with other content.
	ErrRequestIDReused = errors.New("relaylog: requestId already used for a different message")
)

func (f *fsm) nextID(proposed int64) int64 {
	id := proposed
	if id <= f.lastID {
		id = f.lastID + 1<<f.shardBits
	}
	f.lastID = id
	return id
}

func (f *fsm) queue(user int64) *queue {
	q := f.queues[user]
	if q == nil {
		q = &queue{}
		f.queues[user] = q
	}
	return q
}

func (f *fsm) apply(c *command, touched *[]int64) result {
	switch c.kind {
	case cmdSend:
		k := idemKey{c.from, c.reqID}
		fp := fingerprint(c.user, c.content, c.createdAt)
		if rec, ok := f.idem[k]; ok {
			if rec.fp != fp {
				return result{err: ErrRequestIDReused}
			}
			return result{ev: Event{ID: rec.id, Kind: KindMessage, From: c.from, To: c.user, Content: c.content, CreatedAt: c.createdAt}}
		}
		q := f.queues[c.user]
		if q != nil && c.limit > 0 && int64(q.msgs) >= c.limit {
			return result{err: ErrQueueFull}
		}
		ev := Event{ID: f.nextID(c.id), Kind: KindMessage, From: c.from, To: c.user, Content: c.content, CreatedAt: c.createdAt}
		q = f.queue(c.user)
		q.events = append(q.events, ev)
		q.msgs++
		f.queued.Add(1)
		rec := idemRec{from: c.from, reqID: c.reqID, id: ev.ID, fp: fp}
		f.idem[k] = rec
		f.idemFIFO = append(f.idemFIFO, rec)
		*touched = append(*touched, c.user)
		return result{ev: ev, created: true}
	case cmdDelivered:
		ev := Event{ID: f.nextID(c.id), Kind: KindDelivered, By: c.from, MessageIDs: c.ids}
		q := f.queue(c.user)
		q.events = append(q.events, ev)
		*touched = append(*touched, c.user)
		return result{ev: ev, created: true}
	case cmdRead:
		k := readKey{sender: c.user, reader: c.from}
		if f.lastRead[k] >= c.upTo {
			return result{}
		}
		f.lastRead[k] = c.upTo
		q := f.queue(c.user)
		// A newer read mark replaces the one still queued: a sender needs
		// only the latest, and the queue stays bounded by contacts.
		for i := range q.events {
			if e := &q.events[i]; e.Kind == KindRead && e.By == c.from {
				kept := make([]Event, 0, len(q.events))
				kept = append(kept, q.events[:i]...)
				q.events = append(kept, q.events[i+1:]...)
				break
			}
		}
		ev := Event{ID: f.nextID(c.id), Kind: KindRead, By: c.from, UpTo: c.upTo}
		q.events = append(q.events, ev)
		*touched = append(*touched, c.user)
		return result{ev: ev, created: true}
	case cmdAck:
		q := f.queues[c.user]
		if q == nil {
			return result{}
		}
		n := sort.Search(len(q.events), func(i int) bool { return q.events[i].ID > c.upTo })
		f.dropPrefix(c.user, q, n)
		return result{n: n}
	case cmdDevice:
		f.removeToken(c.device.Token)
		d := c.device
		d.RegisteredAt = c.at
		list := append(f.devices[c.user], d)
		if len(list) > MaxDevicesPerUser {
			delete(f.tokens, list[0].Token)
			list = append([]Device(nil), list[1:]...)
		}
		f.devices[c.user] = list
		f.tokens[d.Token] = c.user
		return result{created: true}
	case cmdDeviceRemove:
		if f.tokens[c.device.Token] != c.user {
			return result{}
		}
		// at > 0 removes the token only if it was not registered again
		// since at (push removing a token the provider rejected).
		if c.at > 0 {
			for _, d := range f.devices[c.user] {
				if d.Token == c.device.Token && d.RegisteredAt > c.at {
					return result{}
				}
			}
		}
		f.removeToken(c.device.Token)
		return result{n: 1}
	case cmdPushed:
		if q := f.queues[c.user]; q != nil && c.upTo > q.pushed {
			q.pushed = c.upTo
		}
		return result{}
	case cmdLastConnected:
		if c.at > f.lastConn[c.user] {
			f.lastConn[c.user] = c.at
		}
		return result{}
	case cmdExpire:
		n := 0
		for user, q := range f.queues {
			k := sort.Search(len(q.events), func(i int) bool { return q.events[i].ID >= c.upTo })
			n += k
			f.dropPrefix(user, q, k)
		}
		for len(f.idemFIFO) > 0 && f.idemFIFO[0].id < c.at {
			rec := f.idemFIFO[0]
			if cur, ok := f.idem[idemKey{rec.from, rec.reqID}]; ok && cur.id == rec.id {
				delete(f.idem, idemKey{rec.from, rec.reqID})
			}
			f.idemFIFO = f.idemFIFO[1:]
		}
		if len(f.idemFIFO) == 0 {
			f.idemFIFO = nil
		}
		return result{n: n}
	}
	return result{err: fmt.Errorf("relaylog: unknown command %d", c.kind)}
}

func (f *fsm) dropPrefix(user int64, q *queue, n int) {
	if n == 0 {
		return
	}
	for i := 0; i < n; i++ {
		if q.events[i].Kind == KindMessage {
			q.msgs--
			f.queued.Add(-1)
		}
	}
	if n == len(q.events) {
		delete(f.queues, user)
		return
	}
	q.events = q.events[n:]
}

func (f *fsm) removeToken(token string) {
	owner, ok := f.tokens[token]
	if !ok {
		return
	}
	delete(f.tokens, token)
	list := f.devices[owner]
	kept := make([]Device, 0, len(list))
	for _, d := range list {
		if d.Token != token {
			kept = append(kept, d)
		}
	}
	if len(kept) == 0 {
		delete(f.devices, owner)
	} else {
		f.devices[owner] = kept
	}
}

// Reads, used by the node that leads the shard.

func (f *fsm) pending(user, after int64, limit int) ([]Event, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	q := f.queues[user]
	if q == nil {
		return nil, false
	}
	i := sort.Search(len(q.events), func(i int) bool { return q.events[i].ID > after })
	rest := q.events[i:]
	more := false
	if limit > 0 && len(rest) > limit {
		rest, more = rest[:limit], true
	}
	out := make([]Event, len(rest))
	copy(out, rest)
	return out, more
}

// pendingUpTo copies the events of user's queue with ids up to upTo.
func (f *fsm) pendingUpTo(user, upTo int64) []Event {
	f.mu.RLock()
	defer f.mu.RUnlock()
	q := f.queues[user]
	if q == nil {
		return nil
	}
	n := sort.Search(len(q.events), func(i int) bool { return q.events[i].ID > upTo })
	return append([]Event(nil), q.events[:n]...)
}

// depth is how many messages wait for user.
func (f *fsm) depth(user int64) int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if q := f.queues[user]; q != nil {
		return q.msgs
	}
	return 0
}

func (f *fsm) lastConnected(user int64) (int64, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	ms, ok := f.lastConn[user]
	return ms, ok
}

func (f *fsm) devicesOf(user int64) []Device {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return append([]Device(nil), f.devices[user]...)
}

// pushState is what a push alert for user needs: the messages waiting, the
// newest of them, and how far the user was already alerted.
func (f *fsm) pushState(user int64) (unread int, latest Event, pushed int64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	q := f.queues[user]
	if q == nil {
		return 0, Event{}, 0
	}
	for i := len(q.events) - 1; i >= 0; i-- {
		if q.events[i].Kind == KindMessage {
			latest = q.events[i]
			break
		}
	}
	return q.msgs, latest, q.pushed
}

// awaitingPush lists the users with a message newer than their last push.
func (f *fsm) awaitingPush() []int64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []int64
	for u, q := range f.queues {
		if q.msgs == 0 {
			continue
		}
		for i := len(q.events) - 1; i >= 0; i-- {
			if q.events[i].Kind == KindMessage {
				if q.events[i].ID > q.pushed {
					out = append(out, u)
				}
				break
			}
		}
	}
	return out
}

// lastEvent is the id of the newest event in user's queue, 0 if it is empty.
func (f *fsm) lastEvent(user int64) int64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if q := f.queues[user]; q != nil && len(q.events) > 0 {
		return q.events[len(q.events)-1].ID
	}
	return 0
}

func (f *fsm) maxID() int64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.lastID
}

// Snapshots.

// Version 2 added the push marks of queues after the read marks; version 1
// snapshots still restore.
const snapshotVersion = 2

type fsmSnapshot struct {
	lastID   int64
	users    []int64
	queues   []queue
	idem     []idemRec
	devices  map[int64][]Device
	lastConn map[int64]int64
	lastRead map[readKey]int64
}

// Snapshot implements raft.FSM. It runs between applies, so it only takes
// what Persist needs without copying events: queues and the idempotency FIFO
// are copy-on-write (see queue).
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s := &fsmSnapshot{
		lastID:   f.lastID,
		users:    make([]int64, 0, len(f.queues)),
		queues:   make([]queue, 0, len(f.queues)),
		idem:     f.idemFIFO[:len(f.idemFIFO):len(f.idemFIFO)],
		devices:  make(map[int64][]Device, len(f.devices)),
		lastConn: make(map[int64]int64, len(f.lastConn)),
		lastRead: make(map[readKey]int64, len(f.lastRead)),
	}
	for u, q := range f.queues {
		s.users = append(s.users, u)
		s.queues = append(s.queues, *q)
	}
	for u, d := range f.devices {
		s.devices[u] = d // device slices are replaced, never modified in place
	}
	for u, t := range f.lastConn {
		s.lastConn[u] = t
	}
	for k, v := range f.lastRead {
		s.lastRead[k] = v
	}
	return s, nil
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	w := bufio.NewWriterSize(sink, 256<<10)
	e := enc{b: make([]byte, 0, 64<<10)}
	flush := func() error {
		if len(e.b) < 48<<10 {
			return nil
		}
		_, err := w.Write(e.b)
		e.b = e.b[:0]
		return err
	}
	e.u8(snapshotVersion)
	e.varint(s.lastID)
	e.uvarint(uint64(len(s.users)))
	for i, u := range s.users {
		q := &s.queues[i]
		e.varint(u)
		e.uvarint(uint64(len(q.events)))
		for j := range q.events {
			encodeEvent(&e, &q.events[j])
			if err := flush(); err != nil {
				sink.Cancel()
				return err
			}
		}
	}
	e.uvarint(uint64(len(s.idem)))
	for _, r := range s.idem {
		e.varint(r.from)
		e.varint(r.reqID)
		e.varint(r.id)
		e.uvarint(r.fp)
		if err := flush(); err != nil {
			sink.Cancel()
			return err
		}
	}
	e.uvarint(uint64(len(s.devices)))
	for u, list := range s.devices {
		e.varint(u)
		e.uvarint(uint64(len(list)))
		for _, d := range list {
			e.str(d.Platform)
			e.str(d.Token)
			e.str(d.Topic)
			if d.Sandbox {
				e.u8(1)
			} else {
				e.u8(0)
			}
			e.varint(d.RegisteredAt)
		}
		if err := flush(); err != nil {
			sink.Cancel()
			return err
		}
	}
	e.uvarint(uint64(len(s.lastConn)))
	for u, t := range s.lastConn {
		e.varint(u)
		e.varint(t)
		if err := flush(); err != nil {
			sink.Cancel()
			return err
		}
	}
	e.uvarint(uint64(len(s.lastRead)))
	for k, v := range s.lastRead {
		e.varint(k.sender)
		e.varint(k.reader)
		e.varint(v)
		if err := flush(); err != nil {
			sink.Cancel()
			return err
		}
	}
	var marked int
	for i := range s.queues {
		if s.queues[i].pushed > 0 {
			marked++
		}
	}
	e.uvarint(uint64(marked))
	for i, u := range s.users {
		if p := s.queues[i].pushed; p > 0 {
			e.varint(u)
			e.varint(p)
		}
	}
	if _, err := w.Write(e.b); err != nil {
		sink.Cancel()
		return err
	}
	if err := w.Flush(); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}

func encodeEvent(e *enc, ev *Event) {
	e.u8(uint8(ev.Kind))
	e.varint(ev.ID)
	switch ev.Kind {
	case KindMessage:
		e.varint(ev.From)
		e.varint(ev.To)
		e.str(ev.Content)
		e.str(ev.CreatedAt)
	case KindDelivered:
		e.varint(ev.By)
		e.ids(ev.MessageIDs)
	case KindRead:
		e.varint(ev.By)
		e.varint(ev.UpTo)
	}
}

func decodeEvent(d *dec) Event {
	ev := Event{Kind: EventKind(d.u8()), ID: d.varint()}
	switch ev.Kind {
	case KindMessage:
		ev.From = d.varint()
		ev.To = d.varint()
		ev.Content = d.str()
		ev.CreatedAt = d.str()
	case KindDelivered:
		ev.By = d.varint()
		ev.MessageIDs = d.ids()
	case KindRead:
		ev.By = d.varint()
		ev.UpTo = d.varint()
	default:
		d.fail()
	}
	return ev
}

// Restore implements raft.FSM.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("relaylog: shard %d restore: %w", f.shard, err)
	}
	d := dec{b: data}
	version := d.u8()
	if version != 1 && version != snapshotVersion {
		return fmt.Errorf("relaylog: shard %d restore: unknown snapshot version %d", f.shard, version)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reset()
	f.lastID = d.varint()
	for n := d.count(2); n > 0 && d.err == nil; n-- {
		u := d.varint()
		q := &queue{events: make([]Event, d.count(2))}
		for i := range q.events {
			q.events[i] = decodeEvent(&d)
			if q.events[i].Kind == KindMessage {
				q.msgs++
			}
		}
		f.queued.Add(int64(q.msgs))
		if len(q.events) > 0 {
			f.queues[u] = q
		}
	}
	for n := d.count(4); n > 0 && d.err == nil; n-- {
		r := idemRec{from: d.varint(), reqID: d.varint(), id: d.varint(), fp: d.uvarint()}
		f.idem[idemKey{r.from, r.reqID}] = r
		f.idemFIFO = append(f.idemFIFO, r)
	}
	for n := d.count(2); n > 0 && d.err == nil; n-- {
		u := d.varint()
		list := make([]Device, d.count(5))
		for i := range list {
			list[i] = Device{Platform: d.str(), Token: d.str(), Topic: d.str(), Sandbox: d.u8() == 1, RegisteredAt: d.varint()}
			f.tokens[list[i].Token] = u
		}
		if len(list) > 0 {
			f.devices[u] = list
		}
	}
	for n := d.count(2); n > 0 && d.err == nil; n-- {
		u := d.varint()
		f.lastConn[u] = d.varint()
	}
	for n := d.count(3); n > 0 && d.err == nil; n-- {
		k := readKey{sender: d.varint(), reader: d.varint()}
		f.lastRead[k] = d.varint()
	}
	if version >= 2 {
		for n := d.count(2); n > 0 && d.err == nil; n-- {
			u, p := d.varint(), d.varint()
			if q := f.queues[u]; q != nil {
				q.pushed = p
			}
		}
	}
	if d.err != nil {
		return fmt.Errorf("relaylog: shard %d restore: %w", f.shard, d.err)
	}
	return nil
}
