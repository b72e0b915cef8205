package relaylog

import (
	"bytes"
	"fmt"
	"io"
	"testing"
)

// TestExpiredReceiptSnapshotAndRepeat: an EXPIRED receipt is encoded in a
// snapshot and restored as it was; a repeated cmdExpired (an expiry run
// again after its receipts committed) names only ids no queued EXPIRED
// receipt of the same recipient names.
func TestExpiredReceiptSnapshotAndRepeat(t *testing.T) {
	f := newFSM(0, 1, nil)
	var touched []int64
	apply := func(c command) result {
		t.Helper()
		r := f.apply(&c, &touched)
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r
	}
	if r := apply(command{kind: cmdExpired, id: 10 << 20, user: 1, from: 2, ids: []int64{5, 9}}); !r.created || r.ev.Kind != KindExpired {
		t.Fatalf("first receipt = %+v", r)
	}
	if r := apply(command{kind: cmdExpired, id: 11 << 20, user: 1, from: 2, ids: []int64{5, 9}}); r.created {
		t.Fatalf("a repeat created %+v", r.ev)
	}
	if r := apply(command{kind: cmdExpired, id: 12 << 20, user: 1, from: 2, ids: []int64{9, 12}}); !r.created || fmt.Sprint(r.ev.MessageIDs) != "[12]" {
		t.Fatalf("partial repeat = %+v", r)
	}
	// Another recipient's receipt is its own.
	apply(command{kind: cmdExpired, id: 13 << 20, user: 1, from: 3, ids: []int64{5}})
	want, _ := f.pending(1, 0, 0)
	if len(want) != 3 {
		t.Fatalf("queue = %+v", want)
	}

	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	g := newFSM(0, 1, nil)
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	got, _ := g.pending(1, 0, 0)
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
		t.Fatalf("restored %+v, want %+v", got, want)
	}
	if g.depth(1) != 0 {
		t.Fatalf("receipts counted as messages: depth %d", g.depth(1))
	}

	// A log entry with the command decodes to the same command.
	c := command{kind: cmdExpired, id: 14 << 20, user: 7, from: 8, ids: []int64{3, 4}}
	cmds, err := decodeEntry(encodeEntry(nil, []*command{&c}))
	if err != nil || len(cmds) != 1 || fmt.Sprintf("%+v", cmds[0]) != fmt.Sprintf("%+v", c) {
		t.Fatalf("decoded %+v, %v; want %+v", cmds, err, c)
	}
}

// TestExpiringIsBounded: one run reads at most its limit of messages, the
// oldest, and cuts off right after them; receipts are grouped by sender and
// recipient and split at MaxExpiredIDs.
func TestExpiringIsBounded(t *testing.T) {
	f := newFSM(0, 1, nil)
	var touched []int64
	id := int64(1 << 20)
	var all []int64
	for i := range 50 {
		for _, to := range []int64{100, 101, 102} {
			id += 1 << 10
			f.apply(&command{kind: cmdSend, id: id, user: to, from: int64(i % 2), reqID: id, content: "x", createdAt: fmt.Sprintf("2026-11-27T10:00:%02d.%03dZ", i, to)}, &touched)
			all = append(all, id)
		}
	}
	// A receipt below the cutoff is dropped with the messages, never read.
	f.apply(&command{kind: cmdDelivered, id: id + 1<<10, user: 100, from: 5, ids: []int64{1}}, &touched)
	retain := id + 1<<20
	msgs, cutoff := f.expiring(retain, 1000)
	if len(msgs) != len(all) || cutoff != retain {
		t.Fatalf("unbounded: %d messages, cutoff %d; want %d, %d", len(msgs), cutoff, len(all), retain)
	}
	msgs, cutoff = f.expiring(retain, 7)
	if len(msgs) != 7 || cutoff != all[7] {
		t.Fatalf("limit 7: %d messages, cutoff %d; want 7, %d", len(msgs), cutoff, all[7])
	}
	for i, m := range msgs {
		if m.id != all[i] {
			t.Fatalf("message %d is %d, want the oldest, %d", i, m.id, all[i])
		}
	}
	// Dropping below that cutoff drops exactly those messages.
	before := f.queued.Load()
	f.expire(cutoff, 0)
	if n := before - f.queued.Load(); n != 7 {
		t.Fatalf("the cutoff dropped %d messages, want 7", n)
	}

	var many []expiringMsg
	for i := range MaxExpiredIDs + 5 {
		many = append(many, expiringMsg{id: int64(i + 1), from: 1, to: 2}, expiringMsg{id: int64(i + 1 + 1e6), from: 3, to: 2})
	}
	rs := expiredReceipts(many)
	if len(rs) != 4 || len(rs[0].ids) != MaxExpiredIDs || len(rs[2].ids) != 5 || rs[1].user != 3 || rs[1].from != 2 || rs[0].kind != cmdExpired {
		t.Fatalf("receipts: %d, first of %d ids", len(rs), len(rs[0].ids))
	}
}
