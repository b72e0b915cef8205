package loadgen

import (
	"context"
	"math"
	"time"
)

// Schedule is an open-loop timeline: event k (k = 0, 1, 2, ...) is due at
// Start + k/Rate. Events keep their scheduled time however late they are
// fired, so latency measured from At(k) includes any time the event spent
// waiting behind a slow server or a slow client (no coordinated omission).
type Schedule struct {
	Start time.Time
	Rate  float64 // events per second, > 0
}

// At is the scheduled time of event k.
func (s Schedule) At(k int64) time.Time {
	return s.Start.Add(time.Duration(math.Round(float64(k) * 1e9 / s.Rate)))
}

// Due is the number of events due at or before t: the smallest k with
// At(k) after t.
func (s Schedule) Due(t time.Time) int64 {
	if t.Before(s.Start) {
		return 0
	}
	n := int64(float64(t.Sub(s.Start))*s.Rate/1e9) + 1
	// Float rounding can be off by one either way; settle it against At.
	for n > 0 && s.At(n-1).After(t) {
		n--
	}
	for !s.At(n).After(t) {
		n++
	}
	return n
}

// Clock is the time source of Pace; tests pass a virtual one.
type Clock interface {
	Now() time.Time
	// Wait returns a channel that receives once the clock reaches t.
	Wait(t time.Time) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Wait(t time.Time) <-chan time.Time { return time.After(time.Until(t)) }

// RealClock is the wall clock.
var RealClock Clock = realClock{}

// Pace fires the events of s that are scheduled before end (and at most
// limit of them when limit >= 0), in order, each as soon as it is due.
// When the pacer falls behind (a long pause, a busy CPU), it fires every
// overdue event at once, each with its own scheduled time, so the timeline
// never slips. fire must not block. Pace returns the number of events fired.
func (s Schedule) Pace(ctx context.Context, clk Clock, end time.Time, limit int64, fire func(k int64, at time.Time)) int64 {
	var k int64
	for {
		if (limit >= 0 && k >= limit) || ctx.Err() != nil {
			return k
		}
		next := s.At(k)
		if !next.Before(end) {
			return k
		}
		now := clk.Now()
		if now.Before(next) {
			select {
			case <-ctx.Done():
				return k
			case <-clk.Wait(next):
			}
			now = clk.Now()
		}
		due := s.Due(now)
		for ; k < due; k++ {
			if (limit >= 0 && k >= limit) || ctx.Err() != nil {
				return k
			}
			at := s.At(k)
			if !at.Before(end) {
				return k
			}
			fire(k, at)
		}
	}
}
