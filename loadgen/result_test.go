package loadgen

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func partResult(t *testing.T, lat []time.Duration, accepted int64) *Result {
	h := NewHist()
	for _, d := range lat {
		h.Record(d)
	}
	r := &Result{
		Mode: "open-loop", Procs: 1, Users: 1000, Senders: 500, WindowSeconds: 10,
		Connect: ConnectResult{Attempted: 1000, Ready: 999, Failed: 1, Errors: map[string]int64{"connect_timeout": 1}, Hist: h.Snapshot(), Seconds: 2},
		Sends: SendResult{Offered: 10000, Accepted: accepted, AcceptedInWin: accepted - 10, Delivered: accepted, Overload: 3,
			Send201Hist: h.Snapshot(), DeliverHist: h.Snapshot()},
		SocketDrops: 1,
		Errors:      map[string]int64{"overload": 3, "http_503_unavailable": 2},
	}
	// Through JSON, as a worker sends it.
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var out Result
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

func TestMergeResults(t *testing.T) {
	a := partResult(t, []time.Duration{time.Millisecond, 2 * time.Millisecond}, 9990)
	b := partResult(t, []time.Duration{3 * time.Millisecond, 400 * time.Millisecond}, 9000)
	m, err := Merge([]*Result{a, nil, b})
	if err != nil {
		t.Fatal(err)
	}
	if m.Procs != 2 || m.Users != 2000 || m.Senders != 1000 || m.WindowSeconds != 10 {
		t.Fatalf("%+v", m)
	}
	if m.Connect.Ready != 1998 || m.Connect.Failed != 2 || m.Connect.Errors["connect_timeout"] != 2 || m.Connect.TimeToReady.Count != 4 {
		t.Fatalf("connect %+v", m.Connect)
	}
	s := m.Sends
	if s.Offered != 20000 || s.Accepted != 18990 || s.AcceptedInWin != 18970 || s.Overload != 6 {
		t.Fatalf("sends %+v", s)
	}
	if s.AcceptedPerSec != 1897 || s.OfferedPerSec != 2000 || s.DeliverPerSec != 1899 {
		t.Fatalf("rates %+v", s)
	}
	if s.Send201.Count != 4 || s.Send201.Max < 399 || s.Send201.Max > 401 || s.Send201.P50 < 1.9 || s.Send201.P50 > 2.1 {
		t.Fatalf("merged latency %+v", s.Send201)
	}
	if m.Errors["overload"] != 6 || m.Errors["http_503_unavailable"] != 4 || m.SocketDrops != 2 {
		t.Fatalf("errors %+v drops %d", m.Errors, m.SocketDrops)
	}
	var text bytes.Buffer
	m.WriteText(&text)
	for _, want := range []string{"1998/2000 ready", "1897/s accepted", "http_503_unavailable=4", "p99.9"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, text.String())
		}
	}
}

func TestSumProgressAndLine(t *testing.T) {
	p := SumProgress([]Progress{
		{Phase: "measure", Ready: 1000, Dispatched: 2000, Accepted: 1990, P99Send: 4},
		{Phase: "measure", Ready: 999, Dispatched: 2100, Accepted: 2000, P99Send: 9},
	})
	if p.Ready != 1999 || p.Dispatched != 4100 || p.P99Send != 9 {
		t.Fatalf("%+v", p)
	}
	line := ProgressLine(12, p, Progress{Phase: "measure", Dispatched: 2100, Accepted: 1990}, 1, 2000, true)
	if !strings.Contains(line, "sent 2000/s 201 2000/s") || !strings.Contains(line, "ready 1999/2000") {
		t.Fatalf("line %q", line)
	}
}

// TestDeliveredOncePerDevice: with --devices N a send is delivered when
// the N-th device got it, not before, and a further copy is a duplicate.
func TestDeliveredOncePerDevice(t *testing.T) {
	var p pendingMap
	p.init()
	p.add(7, time.Now(), true, 42, 2)
	if _, last, ok := p.deliver(7); !ok || last {
		t.Fatalf("first device: ok=%v last=%v, want ok and not last", ok, last)
	}
	if e, last, ok := p.deliver(7); !ok || !last || e.to != 42 {
		t.Fatalf("second device: ok=%v last=%v to=%d", ok, last, e.to)
	}
	if _, _, ok := p.deliver(7); ok {
		t.Fatal("a third delivery of a two-device send was not taken for a duplicate")
	}
	if p.undelivered() != 0 {
		t.Fatal("the send is still pending")
	}
}
