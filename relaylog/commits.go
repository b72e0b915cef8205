package relaylog

import (
	"context"
	"sync"
)

// The commit stream: the one way the log tells the layers above it what
// changed. The state machine publishes the users whose queue got events
// (on every replica, after each apply), the leadership loop the shards
// this node starts or stops serving; the node's fan-out reads them
// (Commits.Next) and hands them to the sockets, the homes and push. The
// log calls nothing above it, and a commit made before the readers exist
// (a restarted node replaying its log) waits in the stream instead of
// being lost.
//
// Bounds: a user waits at most once however many commits touch its queue
// before the next read (the reader looks at the queue, not the events),
// so the stream holds at most one entry per user with new events plus one
// per serving change; serving changes of one shard collapse to the latest.

// Commit is one entry of the stream.
type Commit struct {
	// User's queue got events (0: a serving change).
	User int64
	// Shard is served by this node (Serving) or no longer is; only when
	// User is 0.
	Shard   int
	Serving bool
}

// Commits is the log's commit stream (Log.Commits).
type Commits struct {
	mu      sync.Mutex
	users   map[int64]struct{}
	order   []int64
	serving map[int]bool
	sorder  []int
	wake    chan struct{}
}

func newCommits() *Commits {
	return &Commits{users: map[int64]struct{}{}, serving: map[int]bool{}, wake: make(chan struct{}, 1)}
}

// Commits is the log's commit stream; it has one reader.
func (l *Log) Commits() *Commits { return l.commits }

func (c *Commits) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// events publishes that users' queues got events. It never blocks.
func (c *Commits) events(users []int64) {
	if len(users) == 0 {
		return
	}
	c.mu.Lock()
	for _, u := range users {
		if _, ok := c.users[u]; !ok {
			c.users[u] = struct{}{}
			c.order = append(c.order, u)
		}
	}
	c.mu.Unlock()
	c.signal()
}

// served publishes that this node starts or stops serving shard.
func (c *Commits) served(shard int, on bool) {
	c.mu.Lock()
	if _, ok := c.serving[shard]; !ok {
		c.sorder = append(c.sorder, shard)
	}
	c.serving[shard] = on
	c.mu.Unlock()
	c.signal()
}

// Next waits for commits and returns every one published since the last
// call: serving changes first (in the order their shards first changed),
// then users in the order their queues first changed. It returns nil when
// ctx ends.
func (c *Commits) Next(ctx context.Context) []Commit {
	for {
		c.mu.Lock()
		if len(c.order) > 0 || len(c.sorder) > 0 {
			out := make([]Commit, 0, len(c.sorder)+len(c.order))
			for _, s := range c.sorder {
				out = append(out, Commit{Shard: s, Serving: c.serving[s]})
			}
			for _, u := range c.order {
				out = append(out, Commit{User: u})
			}
			clear(c.users)
			clear(c.serving)
			c.order, c.sorder = c.order[:0], c.sorder[:0]
			c.mu.Unlock()
			return out
		}
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-c.wake:
		}
	}
}

// Run reads the stream until ctx ends, handing each user with new events
// to onEvents and each serving change to onServing (nil: ignored), in the
// stream's order, on the caller's goroutine.
func (c *Commits) Run(ctx context.Context, onEvents func(user int64), onServing func(shard int, serving bool)) {
	for {
		batch := c.Next(ctx)
		if batch == nil {
			return
		}
		for _, cm := range batch {
			switch {
			case cm.User != 0 && onEvents != nil:
				onEvents(cm.User)
			case cm.User == 0 && onServing != nil:
				onServing(cm.Shard, cm.Serving)
			}
		}
	}
}
