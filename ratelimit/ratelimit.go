// Package ratelimit is a token bucket per user: rate tokens a second, up to
// burst. Buckets live in 64 stripes so that users rarely share a lock. A
// bucket that has refilled is the same as no bucket, so each stripe
// forgets its full buckets at most once per SweepEvery, on a call that
// touches it: the buckets held are those of users active within about the
// last minute, however many users ever called.
//
// The edge takes from a user's bucket before each call (Allow, AllowN);
// the user's home, which sums what every node reports, takes what was
// already spent (Take) and answers how long the user must wait, which the
// nodes then impose (Block).
package ratelimit

import (
	"sync"
	"time"
)

// SweepEvery is how often a stripe forgets its full buckets.
const SweepEvery = time.Minute

// Limiter is a set of per-user token buckets; safe for concurrent use.
type Limiter struct {
	rate    float64
	burst   float64
	now     func() time.Time
	stripes [64]struct {
		mu      sync.Mutex
		buckets map[int64]*bucket
		swept   time.Time
	}
}

type bucket struct {
	tokens float64
	last   time.Time
}

// New returns a Limiter of rate tokens a second and burst at most; now is
// its clock (nil: time.Now).
func New(rate float64, burst int, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	l := &Limiter{rate: rate, burst: float64(burst), now: now}
	t := now()
	for i := range l.stripes {
		l.stripes[i].buckets = make(map[int64]*bucket)
		l.stripes[i].swept = t
	}
	return l
}

// with runs fn on user's bucket, refilled to now, under its stripe's lock.
func (l *Limiter) with(user int64, fn func(b *bucket, now time.Time)) {
	st := &l.stripes[uint64(user)%uint64(len(l.stripes))]
	now := l.now()
	st.mu.Lock()
	defer st.mu.Unlock()
	if now.Sub(st.swept) >= SweepEvery {
		st.swept = now
		for u, b := range st.buckets {
			if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
				delete(st.buckets, u)
			}
		}
	}
	b := st.buckets[user]
	if b == nil {
		b = &bucket{tokens: l.burst, last: now}
		st.buckets[user] = b
	}
	b.tokens = min(b.tokens+now.Sub(b.last).Seconds()*l.rate, l.burst)
	b.last = now
	fn(b, now)
}

// wait is how long until b holds n tokens.
func (l *Limiter) wait(b *bucket, n float64) time.Duration {
	if b.tokens >= n {
		return 0
	}
	return time.Duration((n - b.tokens) / l.rate * float64(time.Second))
}

// Allow takes a token for user, or says how long until one is available.
func (l *Limiter) Allow(user int64) (time.Duration, bool) { return l.AllowN(user, 1) }

// AllowN takes n tokens for user (n at most burst), or says how long until
// they are available and takes none.
func (l *Limiter) AllowN(user int64, n float64) (wait time.Duration, ok bool) {
	n = min(n, l.burst)
	l.with(user, func(b *bucket, _ time.Time) {
		if wait = l.wait(b, n); wait == 0 {
			b.tokens -= n
			ok = true
		}
	})
	return wait, ok
}

// Take takes n tokens that were already spent, going into debt if need
// be, and says how long until user has a token again (0: now).
func (l *Limiter) Take(user int64, n float64) (wait time.Duration) {
	l.with(user, func(b *bucket, _ time.Time) {
		b.tokens -= n
		wait = l.wait(b, 1)
	})
	return wait
}

// Block leaves user no token until until.
func (l *Limiter) Block(user int64, until time.Time) {
	l.with(user, func(b *bucket, now time.Time) {
		if d := until.Sub(now); d > 0 {
			b.tokens = min(b.tokens, 1-d.Seconds()*l.rate)
		}
	})
}

// Size is the number of buckets held.
func (l *Limiter) Size() int {
	n := 0
	for i := range l.stripes {
		st := &l.stripes[i]
		st.mu.Lock()
		n += len(st.buckets)
		st.mu.Unlock()
	}
	return n
}

// Usage is what one node spent of a user's allowances since its last
// report to the user's home: sends, and other calls.
type Usage struct{ Sends, Calls int }

// Block is the home's answer: the user may not send (Sends) or call
// (Calls) until then; zero means no block.
type Block struct{ Sends, Calls time.Time }
