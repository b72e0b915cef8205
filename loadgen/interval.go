package loadgen

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"slices"
	"sync"
	"time"
)

// Interval reports (--report-every): the measurement window is cut into
// consecutive intervals of ReportEvery from its start (the last one may be
// shorter), and each worker reports every interval once it has ended, so a
// long run (a soak) shows how throughput, errors and latency evolve without
// reconnecting the sockets. Events are attributed by their own time: a send
// to the interval it was scheduled in, a 201, an error or a delivery to the
// interval it arrived in. A worker reports interval k intervalGrace after
// its end, so that events stamped just before the boundary are still
// counted in it; an event that is later still (a stalled pacer) goes to the
// oldest interval not yet reported.

// SlowestPerInterval is how many of an interval's slowest deliveries its
// report lists (IntervalReport.Slowest), to trace what made them slow.
const SlowestPerInterval = 20

// SlowDelivery is one of an interval's slowest deliveries: when its send
// was due, how long the message took to reach its recipient's socket, and
// the recipient (whose shard the message went through).
type SlowDelivery struct {
	Sent      time.Time `json:"sent"`
	LatencyMs float64   `json:"latencyMs"`
	To        int64     `json:"to"`
}

// keepSlowest adds d to list if it is among the SlowestPerInterval slowest.
func keepSlowest(list []SlowDelivery, d SlowDelivery) []SlowDelivery {
	if len(list) < SlowestPerInterval {
		return append(list, d)
	}
	min := 0
	for i := range list {
		if list[i].LatencyMs < list[min].LatencyMs {
			min = i
		}
	}
	if d.LatencyMs > list[min].LatencyMs {
		list[min] = d
	}
	return list
}

// slowestFirst sorts list by latency, slowest first, and keeps
// SlowestPerInterval.
func slowestFirst(list []SlowDelivery) []SlowDelivery {
	slices.SortFunc(list, func(a, b SlowDelivery) int {
		switch {
		case a.LatencyMs > b.LatencyMs:
			return -1
		case a.LatencyMs < b.LatencyMs:
			return 1
		}
		return a.Sent.Compare(b.Sent)
	})
	if len(list) > SlowestPerInterval {
		list = list[:SlowestPerInterval]
	}
	return list
}

// intervalGrace is how long a worker waits after an interval's end before
// reporting it.
const intervalGrace = 250 * time.Millisecond

// IntervalReport is one interval of the measurement window: a line of
// --report-file, and the message a worker sends for it.
type IntervalReport struct {
	Interval        int              `json:"interval"` // 1, 2, ...
	Start           time.Time        `json:"start"`
	End             time.Time        `json:"end"`
	Seconds         float64          `json:"seconds"`
	Attempted       int64            `json:"attempted"`  // sends scheduled in the interval (open loop) or started (closed loop), overload included
	Accepted        int64            `json:"accepted"`   // 201s that arrived in the interval
	ErrorCount      int64            `json:"errorCount"` // the sum of Errors
	Errors          map[string]int64 `json:"errors"`     // errors that happened in the interval, by kind (http_<status>_<code>, timeout, overload, socket_...)
	Delivered       int64            `json:"delivered"`  // messages matched on their recipient's socket in the interval
	AcceptedPerSec  float64          `json:"acceptedPerSec"`
	DeliveredPerSec float64          `json:"deliveredPerSec"`
	Deliver         Summary          `json:"deliver"` // send→deliver latency of the interval's deliveries
	Send201         Summary          `json:"send201"` // send→201 latency of the interval's 201s
	ReadySockets    int64            `json:"readySockets"`
	Workers         int              `json:"workers"`           // worker processes merged into this report
	Slowest         []SlowDelivery   `json:"slowest,omitempty"` // the interval's slowest deliveries, slowest first

	// Worker → coordinator only (dropped from the merged line).
	DeliverHist *HistSnapshot `json:"deliverHist,omitempty"`
	Send201Hist *HistSnapshot `json:"send201Hist,omitempty"`
}

// finish computes the rates and the error total.
func (r *IntervalReport) finish() {
	r.Seconds = r.End.Sub(r.Start).Seconds()
	r.ErrorCount = 0
	for _, v := range r.Errors {
		r.ErrorCount += v
	}
	if r.Seconds > 0 {
		r.AcceptedPerSec = float64(r.Accepted) / r.Seconds
		r.DeliveredPerSec = float64(r.Delivered) / r.Seconds
	}
}

type intervalBucket struct {
	attempted, accepted, delivered int64
	errors                         map[string]int64
	deliver, send201               *hdrHistogram
	slow                           []SlowDelivery
}

// intervals accumulates one worker's events per interval.
type intervals struct {
	start, end time.Time // the measurement window
	every      time.Duration

	mu       sync.Mutex
	next     int // the oldest interval not yet reported
	buckets  map[int]*intervalBucket
	onReport func(IntervalReport)
}

func newIntervals(every time.Duration) *intervals {
	return &intervals{every: every, buckets: map[int]*intervalBucket{}}
}

// window sets the measurement window; events before it are not counted.
func (iv *intervals) window(start, end time.Time) {
	iv.mu.Lock()
	iv.start, iv.end = start, end
	iv.mu.Unlock()
}

// bucket returns the bucket of an event at t, or nil outside the window.
// Called with mu held.
func (iv *intervals) bucket(t time.Time) *intervalBucket {
	if iv.start.IsZero() || t.Before(iv.start) || !t.Before(iv.end) {
		return nil
	}
	k := max(int(t.Sub(iv.start)/iv.every), iv.next)
	b := iv.buckets[k]
	if b == nil {
		b = &intervalBucket{errors: map[string]int64{}, deliver: newHDR(), send201: newHDR()}
		iv.buckets[k] = b
	}
	return b
}

func (iv *intervals) attempt(at time.Time) {
	if iv == nil {
		return
	}
	iv.mu.Lock()
	if b := iv.bucket(at); b != nil {
		b.attempted++
	}
	iv.mu.Unlock()
}

func (iv *intervals) accept(now time.Time, lat time.Duration) {
	if iv == nil {
		return
	}
	iv.mu.Lock()
	if b := iv.bucket(now); b != nil {
		b.accepted++
		_ = b.send201.RecordValue(toMicros(lat))
	}
	iv.mu.Unlock()
}

func (iv *intervals) deliver(now time.Time, lat time.Duration, to int64) {
	if iv == nil {
		return
	}
	iv.mu.Lock()
	if b := iv.bucket(now); b != nil {
		b.delivered++
		_ = b.deliver.RecordValue(toMicros(lat))
		b.slow = keepSlowest(b.slow, SlowDelivery{Sent: now.Add(-lat), LatencyMs: float64(lat.Microseconds()) / 1000, To: to})
	}
	iv.mu.Unlock()
}

func (iv *intervals) fail(kind string) {
	if iv == nil {
		return
	}
	iv.mu.Lock()
	if b := iv.bucket(time.Now()); b != nil {
		b.errors[kind]++
	}
	iv.mu.Unlock()
}

// take removes interval k ([start, end)) and returns its report.
func (iv *intervals) take(k int, start, end time.Time) IntervalReport {
	iv.mu.Lock()
	b := iv.buckets[k]
	delete(iv.buckets, k)
	iv.next = k + 1
	iv.mu.Unlock()
	r := IntervalReport{Interval: k + 1, Start: start, End: end, Errors: map[string]int64{}, Workers: 1}
	if b != nil {
		r.Attempted, r.Accepted, r.Delivered, r.Errors = b.attempted, b.accepted, b.delivered, b.errors
		r.Deliver, r.Send201 = Summarize(b.deliver), Summarize(b.send201)
		r.DeliverHist, r.Send201Hist = ExportHist(b.deliver), ExportHist(b.send201)
		r.Slowest = slowestFirst(b.slow)
	}
	r.finish()
	return r
}

// run reports every interval of the window [start, end) as it ends; on
// cancellation it reports the interval under way up to now and returns.
// ready reads the number of ready sockets.
func (iv *intervals) run(ctx context.Context, ready func() int64) {
	for k := 0; ; k++ {
		s := iv.start.Add(time.Duration(k) * iv.every)
		if !s.Before(iv.end) {
			return
		}
		e := s.Add(iv.every)
		if e.After(iv.end) {
			e = iv.end
		}
		t := time.NewTimer(time.Until(e.Add(intervalGrace)))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			if now := time.Now(); now.After(s) {
				if now.Before(e) {
					e = now
				}
				r := iv.take(k, s, e)
				r.ReadySockets = ready()
				iv.onReport(r)
			}
			return
		}
		r := iv.take(k, s, e)
		r.ReadySockets = ready()
		iv.onReport(r)
	}
}

// MergeIntervals merges the reports of one interval from several workers:
// counts add up, histograms merge. The result carries no histograms.
func MergeIntervals(parts []IntervalReport) (IntervalReport, error) {
	var out IntervalReport
	out.Errors = map[string]int64{}
	var dlv, s201 []*HistSnapshot
	for i, p := range parts {
		if i == 0 {
			out.Interval, out.Start, out.End = p.Interval, p.Start, p.End
		}
		if p.End.After(out.End) {
			out.End = p.End
		}
		out.Attempted += p.Attempted
		out.Accepted += p.Accepted
		out.Delivered += p.Delivered
		addCounts(out.Errors, p.Errors)
		out.ReadySockets += p.ReadySockets
		out.Workers += max(p.Workers, 1)
		dlv = append(dlv, p.DeliverHist)
		s201 = append(s201, p.Send201Hist)
		out.Slowest = append(out.Slowest, p.Slowest...)
	}
	out.Slowest = slowestFirst(out.Slowest)
	h, err := MergeSnapshots(dlv...)
	if err != nil {
		return out, err
	}
	out.Deliver = Summarize(h)
	if h, err = MergeSnapshots(s201...); err != nil {
		return out, err
	}
	out.Send201 = Summarize(h)
	out.finish()
	return out, nil
}

// intervalWriter merges the workers' reports of each interval and writes
// one JSON line per interval, in order, once every worker has reported it.
type intervalWriter struct {
	w       io.Writer
	workers int
	next    int // the next interval number to write
	parts   map[int][]IntervalReport
	err     error
}

func newIntervalWriter(w io.Writer, workers int) *intervalWriter {
	return &intervalWriter{w: w, workers: workers, next: 1, parts: map[int][]IntervalReport{}}
}

func (iw *intervalWriter) add(r IntervalReport) {
	if iw == nil {
		return
	}
	if r.Interval < iw.next { // already written without this worker: write it alone
		next := iw.next
		iw.parts[r.Interval] = []IntervalReport{r}
		iw.write(r.Interval)
		iw.next = next
		return
	}
	iw.parts[r.Interval] = append(iw.parts[r.Interval], r)
	for len(iw.parts[iw.next]) >= iw.workers {
		iw.write(iw.next)
	}
}

// flush writes what is left (intervals some worker never reported), in
// order.
func (iw *intervalWriter) flush() error {
	if iw == nil {
		return nil
	}
	for _, k := range slices.Sorted(maps.Keys(iw.parts)) {
		iw.write(k)
	}
	return iw.err
}

func (iw *intervalWriter) write(k int) {
	parts := iw.parts[k]
	delete(iw.parts, k)
	iw.next = k + 1
	m, err := MergeIntervals(parts)
	if err != nil && iw.err == nil {
		iw.err = err
	}
	b, _ := json.Marshal(m)
	if _, err := iw.w.Write(append(b, '\n')); err != nil && iw.err == nil {
		iw.err = err
	}
}
