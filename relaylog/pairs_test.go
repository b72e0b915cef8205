package relaylog_test

import (
	"context"
	"slices"
	"testing"

	"github.com/edgenode/edgenode/relaylog"
)

func shared(t *testing.T, l *relaylog.Log, viewer int64, users ...int64) []bool {
	t.Helper()
	out, err := l.Shared(context.Background(), viewer, users)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSharedConversationEitherWay(t *testing.T) {
	l := openLog(t, t.TempDir(), nil)
	defer l.Close()
	send(t, l, 5, 6, 1, "hi")
	if got, want := shared(t, l, 6, 5, 7, 6), []bool{true, false, true}; !slices.Equal(got, want) {
		t.Fatalf("6 shares with 5, 7, itself = %v, want %v", got, want)
	}
	if got, want := shared(t, l, 5, 6, 7), []bool{true, false}; !slices.Equal(got, want) {
		t.Fatalf("5 shares with 6, 7 = %v, want %v (5 wrote 6)", got, want)
	}
}

// A reader who hears from more senders than MaxPairsPerUser keeps the
// newest: the state per user is bounded by the cap, on every replica the
// same (it survives a snapshot and a restart unchanged).
func TestContactsAreCappedPerUser(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, nil)
	const reader = 100000
	n := int64(relaylog.MaxPairsPerUser + 10)
	senders := make([]int64, n)
	for i := range senders {
		senders[i] = int64(i + 1)
		send(t, l, senders[i], reader, int64(i+1), "hi")
	}
	check := func(when string, evicted int64) {
		t.Helper()
		if z := l.StateSizes(); z.Contacts != relaylog.MaxPairsPerUser {
			t.Fatalf("%s: %d contacts, want %d", when, z.Contacts, relaylog.MaxPairsPerUser)
		}
		got := shared(t, l, reader, senders...)
		for i, ok := range got {
			if want := int64(i) >= evicted; ok != want {
				t.Fatalf("%s: reader shares with sender %d = %v, want %v", when, senders[i], ok, want)
			}
		}
	}
	check("after the sends", 10)
	if err := l.Snapshot(); err != nil {
		t.Fatal(err)
	}
	l.Close()
	l = openLog(t, dir, nil)
	defer l.Close()
	check("after a snapshot and a restart", 10)

	// Read marks of one sender's conversations are capped the same way.
	const sender = 200000
	for i := range n {
		r := reader + 1 + i
		m := send(t, l, sender, r, 1000+i, "hello")
		if err := l.MarkRead(context.Background(), r, sender, m.ID); err != nil {
			t.Fatal(err)
		}
	}
	if z := l.StateSizes(); z.ReadMarks != relaylog.MaxPairsPerUser {
		t.Fatalf("%d read marks of one sender, want %d", z.ReadMarks, relaylog.MaxPairsPerUser)
	}
}
