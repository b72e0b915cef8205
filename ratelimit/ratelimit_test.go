package ratelimit_test

import (
	"sync"
	"testing"
	"time"

	"github.com/edgenode/edgenode/ratelimit"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// Spent tokens put a bucket in debt: the wait is until it holds one again,
// and a block holds until its time even with tokens left.
func TestTakeAndBlock(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	l := ratelimit.New(2, 10, c.now)
	if w := l.Take(1, 15); w != 3*time.Second { // 10 - 15 = -5: 6 tokens to one, at 2/s
		t.Fatalf("wait after taking 15 of 10 = %v, want 3s", w)
	}
	if _, ok := l.Allow(1); ok {
		t.Fatal("a bucket in debt allowed a call")
	}
	c.advance(3 * time.Second)
	if _, ok := l.Allow(1); !ok {
		t.Fatal("no token once the debt was paid")
	}
	l.Block(2, c.now().Add(5*time.Second))
	if w, ok := l.Allow(2); ok || w != 5*time.Second {
		t.Fatalf("blocked user: wait %v ok %v, want 5s false", w, ok)
	}
	c.advance(5 * time.Second)
	if _, ok := l.Allow(2); !ok {
		t.Fatal("still blocked after the block's time")
	}
}
