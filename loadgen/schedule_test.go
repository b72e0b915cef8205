package loadgen

import (
	"context"
	"testing"
	"time"
)

// virtualClock jumps to whatever time the pacer waits for, plus an
// optional lag on chosen waits (a stalled pacer).
type virtualClock struct {
	now   time.Time
	waits int
	lag   map[int]time.Duration // wait number → extra delay
}

func (c *virtualClock) Now() time.Time { return c.now }

func (c *virtualClock) Wait(t time.Time) <-chan time.Time {
	c.waits++
	if t.After(c.now) {
		c.now = t
	}
	c.now = c.now.Add(c.lag[c.waits])
	ch := make(chan time.Time, 1)
	ch <- c.now
	return ch
}

var t0 = time.Date(2026, 11, 27, 10, 20, 8, 0, time.UTC)

func TestScheduleAtAndDue(t *testing.T) {
	s := Schedule{Start: t0, Rate: 3} // every 333.333 ms
	if got := s.At(0); !got.Equal(t0) {
		t.Fatalf("At(0) = %v", got)
	}
	if got, want := s.At(3), t0.Add(time.Second); !got.Equal(want) {
		t.Fatalf("At(3) = %v, want %v", got, want)
	}
	if got, want := s.At(1), t0.Add(333333333); !got.Equal(want) {
		t.Fatalf("At(1) = %v, want %v", got, want)
	}
	for _, c := range []struct {
		at   time.Duration
		want int64
	}{
		{-time.Nanosecond, 0},
		{0, 1},
		{333333332, 1},
		{333333333, 2},
		{time.Second - 1, 3},
		{time.Second, 4},
		{10 * time.Second, 31},
	} {
		if got := s.Due(t0.Add(c.at)); got != c.want {
			t.Errorf("Due(+%v) = %d, want %d", c.at, got, c.want)
		}
	}
	// Due and At agree everywhere, at rates that do not divide a second.
	for _, rate := range []float64{1, 7, 999.5, 2000, 12345.678} {
		s := Schedule{Start: t0, Rate: rate}
		for k := int64(0); k < 5000; k += 7 {
			at := s.At(k)
			if d := s.Due(at); d != k+1 {
				t.Fatalf("rate %v: Due(At(%d)) = %d", rate, k, d)
			}
			if d := s.Due(at.Add(-1)); d != k {
				t.Fatalf("rate %v: Due(At(%d)-1ns) = %d", rate, k, d)
			}
		}
	}
}

func TestPaceFiresEveryEventAtItsTime(t *testing.T) {
	s := Schedule{Start: t0, Rate: 1000}
	clk := &virtualClock{now: t0.Add(-time.Millisecond)}
	end := t0.Add(100 * time.Millisecond)
	var fired []time.Time
	var firedAt []time.Time
	n := s.Pace(context.Background(), clk, end, -1, func(k int64, at time.Time) {
		if int64(len(fired)) != k {
			t.Fatalf("event %d fired out of order", k)
		}
		fired = append(fired, at)
		firedAt = append(firedAt, clk.Now())
	})
	if n != 100 || len(fired) != 100 {
		t.Fatalf("fired %d events (returned %d), want 100 (end is exclusive)", len(fired), n)
	}
	for k, at := range fired {
		if want := s.At(int64(k)); !at.Equal(want) {
			t.Fatalf("event %d scheduled %v, want %v", k, at, want)
		}
		if firedAt[k].Before(at) {
			t.Fatalf("event %d fired early", k)
		}
	}
}

func TestPaceCatchesUpWithoutSlipping(t *testing.T) {
	s := Schedule{Start: t0, Rate: 1000} // 1 ms apart
	// The 5th wait returns 35 ms late: the events due meanwhile fire at
	// once, each keeping its own scheduled time.
	clk := &virtualClock{now: t0, lag: map[int]time.Duration{5: 35 * time.Millisecond}}
	end := t0.Add(60 * time.Millisecond)
	burst := map[time.Time]int{}
	var last time.Time
	n := s.Pace(context.Background(), clk, end, -1, func(k int64, at time.Time) {
		if want := s.At(k); !at.Equal(want) {
			t.Fatalf("event %d scheduled %v, want %v", k, at, want)
		}
		if at.Before(last) {
			t.Fatalf("event %d goes back in time", k)
		}
		last = at
		burst[clk.Now()]++
	})
	if n != 60 {
		t.Fatalf("fired %d, want 60", n)
	}
	biggest := 0
	for _, c := range burst {
		biggest = max(biggest, c)
	}
	if biggest != 36 {
		t.Fatalf("largest burst %d, want 36 (the stalled event and the 35 due during the stall)", biggest)
	}
}

func TestPaceLimitAndCancel(t *testing.T) {
	s := Schedule{Start: t0, Rate: 100}
	clk := &virtualClock{now: t0}
	if n := s.Pace(context.Background(), clk, t0.Add(time.Hour), 7, func(int64, time.Time) {}); n != 7 {
		t.Fatalf("limit 7: fired %d", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	count := 0
	n := s.Pace(ctx, &virtualClock{now: t0}, t0.Add(time.Hour), -1, func(k int64, at time.Time) {
		count++
		if k == 9 {
			cancel()
		}
	})
	if n != 10 || count != 10 {
		t.Fatalf("cancel after 10: fired %d (returned %d)", count, n)
	}
}
