package edge

import (
	"sync"
	"time"
)

// limiter is a token bucket per user: rate tokens a second, up to burst.
// Buckets live in 64 stripes so that senders rarely share a lock, and full
// buckets are forgotten by sweep so idle users cost nothing.
type limiter struct {
	rate    float64
	burst   float64
	now     func() time.Time
	stripes [64]struct {
		mu      sync.Mutex
		buckets map[int64]*bucket
	}
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(rate float64, burst int, now func() time.Time) *limiter {
	l := &limiter{rate: rate, burst: float64(burst), now: now}
	for i := range l.stripes {
		l.stripes[i].buckets = make(map[int64]*bucket)
	}
	return l
}

// allow takes a token for user, or says how long until one is available.
func (l *limiter) allow(user int64) (time.Duration, bool) {
	st := &l.stripes[uint64(user)%uint64(len(l.stripes))]
	now := l.now()
	st.mu.Lock()
	defer st.mu.Unlock()
	b := st.buckets[user]
	if b == nil {
		b = &bucket{tokens: l.burst, last: now}
		st.buckets[user] = b
	}
	b.tokens += now.Sub(b.last).Seconds() * l.rate
	if b.tokens > l.burst {
		b.tokens = l.burst
	}
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return 0, true
	}
	return time.Duration((1 - b.tokens) / l.rate * float64(time.Second)), false
}

// sweep forgets buckets that have refilled.
func (l *limiter) sweep() {
	now := l.now()
	for i := range l.stripes {
		st := &l.stripes[i]
		st.mu.Lock()
		for u, b := range st.buckets {
			if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
				delete(st.buckets, u)
			}
		}
		st.mu.Unlock()
	}
}
