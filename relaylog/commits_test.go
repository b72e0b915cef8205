package relaylog_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/edgenode/edgenode/relaylog"
)

// nextCommits reads the stream until cond holds for what was read, or
// fails after d.
func nextCommits(t *testing.T, l *relaylog.Log, d time.Duration, cond func([]relaylog.Commit) bool) []relaylog.Commit {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var all []relaylog.Commit
	for !cond(all) {
		got := l.Commits().Next(ctx)
		if got == nil {
			t.Fatalf("timed out after %v; the stream gave %+v", d, all)
		}
		all = append(all, got...)
	}
	return all
}

func hasUser(cs []relaylog.Commit, u int64) bool {
	return slices.ContainsFunc(cs, func(c relaylog.Commit) bool { return c.User == u })
}

// The commit stream tells its reader which shards this node serves and
// which users' queues got events, once per user however many commits
// touched the queue before the read, and keeps what was published before
// anyone read (a node replaying its log before its readers exist).
func TestCommitStream(t *testing.T) {
	l := openLog(t, t.TempDir(), nil)
	defer l.Close()
	// Every shard's serving change came before this first read.
	served := nextCommits(t, l, 10*time.Second, func(cs []relaylog.Commit) bool {
		n := 0
		for _, c := range cs {
			if c.User == 0 && c.Serving {
				n++
			}
		}
		return n == 4
	})
	for _, c := range served {
		if c.User != 0 {
			t.Fatalf("a user's commit before any send: %+v", served)
		}
	}
	// Three sends to bob and one to carol, unread: bob comes once.
	for i := range int64(3) {
		send(t, l, 1, 2, 10+i, "hi bob")
	}
	send(t, l, 1, 3, 20, "hi carol")
	got := nextCommits(t, l, 10*time.Second, func(cs []relaylog.Commit) bool { return hasUser(cs, 2) && hasUser(cs, 3) })
	bob := 0
	for _, c := range got {
		if c.User == 2 {
			bob++
		}
	}
	if bob != 1 {
		t.Fatalf("bob's queue came %d times in one read, want once: %+v", bob, got)
	}
	// Bob's ack queues DELIVERED receipts for alice: her queue changed.
	if _, err := l.Ack(context.Background(), 2, 1<<62); err != nil {
		t.Fatal(err)
	}
	nextCommits(t, l, 10*time.Second, func(cs []relaylog.Commit) bool { return hasUser(cs, 1) })
	// Next ends with its context.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if got := l.Commits().Next(ctx); got != nil {
		t.Fatalf("Next on an ended context: %+v", got)
	}
}
