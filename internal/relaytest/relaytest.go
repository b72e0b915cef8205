// Package relaytest opens relay logs for the tests of relaylog and of the
// packages built on it: a small single-node log in a test's directory,
// ready for calls when Open returns.
package relaytest

import (
	"context"
	"testing"
	"time"

	"github.com/edgenode/edgenode/relaylog"
)

// readyTimeout bounds Open's wait for every shard of the log to have a
// leader.
const readyTimeout = 10 * time.Second

// Options returns the options of a test log in dir: node n1 alone, with
// 4 shards and a heartbeat timeout of 100 ms, so that its shards elect
// themselves quickly.
func Options(dir string) relaylog.Options {
	return relaylog.Options{Dir: dir, NodeID: "n1", Shards: 4, HeartbeatTimeout: 100 * time.Millisecond}
}

// Open opens a log with o and waits until it is ready (every shard has a
// leader; at most 10 s); either failing fails t. Closing the log is the
// caller's.
func Open(t testing.TB, o relaylog.Options) *relaylog.Log {
	t.Helper()
	l, err := relaylog.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if err := l.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return l
}
