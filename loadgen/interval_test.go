package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestCoordinateReportsIntervals(t *testing.T) {
	f, srv := newFakeNode(t)
	f.failEvery = 25
	cfg := fakeConfig(srv.URL)
	cfg.Procs = 2
	cfg.Duration = Duration(600 * time.Millisecond)
	cfg.ReportEvery = Duration(250 * time.Millisecond) // 250, 250 and a last 100 ms
	var log, reports bytes.Buffer
	res, err := CoordinateWithReports(context.Background(), cfg, InProcess, &log, &reports)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.WorkerFailures) > 0 {
		t.Fatalf("worker failures: %q", res.WorkerFailures)
	}
	var lines []IntervalReport
	sc := bufio.NewScanner(&reports)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "Hist") {
			t.Fatalf("a report line carries histograms: %s", sc.Text())
		}
		var r IntervalReport
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%v: %s", err, sc.Text())
		}
		lines = append(lines, r)
	}
	if len(lines) != 3 {
		t.Fatalf("%d report lines, want 3:\n%s", len(lines), reports.String())
	}
	var attempted, accepted, delivered, failed503 int64
	for i, r := range lines {
		want := 250 * time.Millisecond
		if i == 2 {
			want = 100 * time.Millisecond
		}
		if r.Interval != i+1 || r.Workers != 2 || r.End.Sub(r.Start) != want {
			t.Fatalf("line %d: interval %d, %d workers, %v long", i, r.Interval, r.Workers, r.End.Sub(r.Start))
		}
		if i > 0 && !r.Start.Equal(lines[i-1].End) {
			t.Fatalf("line %d starts at %v, the previous ended at %v", i, r.Start, lines[i-1].End)
		}
		if r.Attempted == 0 || r.Accepted == 0 || r.Delivered == 0 || r.ReadySockets != 40 {
			t.Fatalf("line %d: %+v", i, r)
		}
		if r.Deliver.Count != r.Delivered || r.Send201.Count != r.Accepted || r.Deliver.P50 <= 0 || r.Deliver.P99 < r.Deliver.P50 || r.Deliver.Max < r.Deliver.P99 {
			t.Fatalf("line %d latencies: deliver %+v send201 %+v", i, r.Deliver, r.Send201)
		}
		var sum int64
		for _, v := range r.Errors {
			sum += v
		}
		if sum != r.ErrorCount || r.AcceptedPerSec != float64(r.Accepted)/want.Seconds() {
			t.Fatalf("line %d: errors %v total %d, %.1f accepted/s", i, r.Errors, r.ErrorCount, r.AcceptedPerSec)
		}
		attempted += r.Attempted
		accepted += r.Accepted
		delivered += r.Delivered
		failed503 += r.Errors["http_503_unavailable"]
	}
	// The intervals tile the window: every send scheduled in it is in one of them.
	if attempted != res.Sends.Offered || accepted != res.Sends.AcceptedInWin {
		t.Fatalf("intervals: %d attempted, %d accepted; the window: %d offered, %d accepted inside it",
			attempted, accepted, res.Sends.Offered, res.Sends.AcceptedInWin)
	}
	if failed503 == 0 || failed503 > res.Errors["http_503_unavailable"] {
		t.Fatalf("503s: %d in the intervals, %d in the run", failed503, res.Errors["http_503_unavailable"])
	}
	if delivered == 0 || delivered > accepted+res.Sends.Offered {
		t.Fatalf("delivered %d", delivered)
	}
}

func TestNoIntervalReportsByDefault(t *testing.T) {
	_, srv := newFakeNode(t)
	cfg := fakeConfig(srv.URL)
	cfg.Duration = Duration(200 * time.Millisecond)
	var log, reports bytes.Buffer
	res, err := CoordinateWithReports(context.Background(), cfg, InProcess, &log, &reports)
	if err != nil {
		t.Fatal(err)
	}
	if reports.Len() != 0 {
		t.Fatalf("reports without --report-every: %s", reports.String())
	}
	b, _ := json.Marshal(res)
	if strings.Contains(string(b), "reportEvery") {
		t.Fatalf("the result's config names reportEvery: %s", b)
	}
}

func TestIntervalsAttributeEventsByTime(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	iv := newIntervals(time.Minute)
	iv.window(start, start.Add(150*time.Second))
	at := func(s float64) time.Time { return start.Add(time.Duration(s * float64(time.Second))) }

	iv.attempt(at(-1)) // warm-up: not counted
	iv.attempt(at(0))
	iv.attempt(at(59.9))
	iv.accept(at(59.99), 5*time.Millisecond)
	iv.deliver(at(30), 7*time.Millisecond, 5)
	iv.deliver(at(61), 100*time.Millisecond, 6) // in the second interval
	iv.attempt(at(150))                         // after the window: not counted

	r := iv.take(0, start, at(60))
	if r.Interval != 1 || r.Attempted != 2 || r.Accepted != 1 || r.Delivered != 1 || r.Seconds != 60 {
		t.Fatalf("first interval %+v", r)
	}
	if r.Deliver.Count != 1 || r.Deliver.Max < 6.99 || r.Deliver.Max > 7.01 || r.Send201.P50 < 4.99 || r.Send201.P50 > 5.01 {
		t.Fatalf("first interval latencies %+v %+v", r.Deliver, r.Send201)
	}
	// A send stamped in the first interval that is counted after it was
	// reported goes to the oldest interval still open.
	iv.attempt(at(10))
	r2 := iv.take(1, at(60), at(120))
	if r2.Attempted != 1 || r2.Delivered != 1 || r2.Deliver.P99 < 99.9 || r2.Deliver.P99 > 100.1 {
		t.Fatalf("second interval %+v", r2)
	}
	if r3 := iv.take(2, at(120), at(150)); r3.Attempted != 0 || r3.Seconds != 30 || r3.Errors == nil {
		t.Fatalf("third interval %+v", r3)
	}

	m, err := MergeIntervals([]IntervalReport{r, r2})
	if err != nil {
		t.Fatal(err)
	}
	if m.Workers != 2 || m.Attempted != 3 || m.Deliver.Count != 2 || m.Deliver.Max < 99.9 || m.DeliverHist != nil {
		t.Fatalf("merged %+v", m)
	}
}

func TestIntervalWriterWaitsForEveryWorker(t *testing.T) {
	var out bytes.Buffer
	iw := newIntervalWriter(&out, 2)
	t0 := time.Unix(1000, 0)
	rep := func(k int, attempted int64) IntervalReport {
		return IntervalReport{Interval: k, Start: t0.Add(time.Duration(k-1) * time.Second), End: t0.Add(time.Duration(k) * time.Second), Attempted: attempted, Workers: 1}
	}
	iw.add(rep(1, 1))
	iw.add(rep(2, 2))
	if out.Len() != 0 {
		t.Fatalf("written before the second worker reported: %s", out.String())
	}
	iw.add(rep(1, 10))
	iw.add(rep(3, 3)) // the second worker never reports 2 and 3
	if err := iw.flush(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var r IntervalReport
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%d/%d/%d", r.Interval, r.Attempted, r.Workers))
	}
	if strings.Join(got, " ") != "1/11/2 2/2/1 3/3/1" {
		t.Fatalf("lines (interval/attempted/workers): %v", got)
	}
}

// TestIntervalsListTheSlowestDeliveries: each report lists its
// SlowestPerInterval slowest deliveries with send time and recipient,
// slowest first, and merging keeps the slowest of all workers.
func TestIntervalsListTheSlowestDeliveries(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	iv := newIntervals(time.Minute)
	iv.window(start, start.Add(time.Minute))
	for i := range 100 {
		lat := time.Duration(i+1) * time.Millisecond
		iv.deliver(start.Add(time.Second+lat), lat, int64(1000+i))
	}
	r := iv.take(0, start, start.Add(time.Minute))
	if len(r.Slowest) != SlowestPerInterval {
		t.Fatalf("%d slowest, want %d", len(r.Slowest), SlowestPerInterval)
	}
	for i, d := range r.Slowest {
		want := 100 - i
		if d.LatencyMs != float64(want) || d.To != int64(1000+want-1) || !d.Sent.Equal(start.Add(time.Second)) {
			t.Fatalf("slowest[%d] = %+v, want %d ms to %d sent at %v", i, d, want, 1000+want-1, start.Add(time.Second))
		}
	}
	other := IntervalReport{Interval: 1, Start: start, End: r.End, Slowest: []SlowDelivery{{Sent: start, LatencyMs: 500, To: 7}}}
	m, err := MergeIntervals([]IntervalReport{r, other})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Slowest) != SlowestPerInterval || m.Slowest[0].To != 7 || m.Slowest[1].LatencyMs != 100 || m.Slowest[SlowestPerInterval-1].LatencyMs != 82 {
		t.Fatalf("merged slowest %+v", m.Slowest)
	}
}
