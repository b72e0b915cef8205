package edge

import (
	"sync"
	"time"
)

// limiter is a token bucket per user: rate tokens a second, up to burst.
// Buckets live in 64 stripes so that users rarely share a lock. A bucket
// that has refilled is the same as no bucket, so each stripe forgets its
// full buckets at most once per sweepEvery, on a call that touches it: the
// buckets held are those of users active within the last minute or so,
// however many users ever called.
type limiter struct {
	rate    float64
	burst   float64
	now     func() time.Time
	stripes [64]struct {
		mu      sync.Mutex
		buckets map[int64]*bucket
		swept   time.Time
	}
}

// sweepEvery is how often a stripe forgets its full buckets.
const sweepEvery = time.Minute

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(rate float64, burst int, now func() time.Time) *limiter {
	l := &limiter{rate: rate, burst: float64(burst), now: now}
	t := now()
	for i := range l.stripes {
		l.stripes[i].buckets = make(map[int64]*bucket)
		l.stripes[i].swept = t
	}
	return l
}

// allow takes a token for user, or says how long until one is available.
func (l *limiter) allow(user int64) (time.Duration, bool) { return l.allowN(user, 1) }

// allowN takes n tokens for user (n at most burst), or says how long until
// they are available and takes none.
func (l *limiter) allowN(user int64, n float64) (time.Duration, bool) {
	n = min(n, l.burst)
	st := &l.stripes[uint64(user)%uint64(len(l.stripes))]
	now := l.now()
	st.mu.Lock()
	defer st.mu.Unlock()
	if now.Sub(st.swept) >= sweepEvery {
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
	b.tokens += now.Sub(b.last).Seconds() * l.rate
	if b.tokens > l.burst {
		b.tokens = l.burst
	}
	b.last = now
	if b.tokens >= n {
		b.tokens -= n
		return 0, true
	}
	return time.Duration((n - b.tokens) / l.rate * float64(time.Second)), false
}

// size is the number of buckets held.
func (l *limiter) size() int {
	n := 0
	for i := range l.stripes {
		st := &l.stripes[i]
		st.mu.Lock()
		n += len(st.buckets)
		st.mu.Unlock()
	}
	return n
}
