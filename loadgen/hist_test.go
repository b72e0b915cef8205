package loadgen

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"
)

func TestHistSnapshotRoundTripAndMerge(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	a, b, all := NewHist(), NewHist(), NewHist()
	for i := 0; i < 20000; i++ {
		d := time.Duration(r.ExpFloat64()*float64(3*time.Millisecond)) + 50*time.Microsecond
		if i%3 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
		all.Record(d)
	}
	a.Record(2 * time.Second) // a long tail in one part only
	all.Record(2 * time.Second)

	// Through JSON, as worker results travel.
	var snaps []*HistSnapshot
	for _, h := range []*Hist{a, b} {
		raw, err := json.Marshal(h.Snapshot())
		if err != nil {
			t.Fatal(err)
		}
		var s HistSnapshot
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatal(err)
		}
		snaps = append(snaps, &s)
	}
	merged, err := MergeSnapshots(append(snaps, nil)...)
	if err != nil {
		t.Fatal(err)
	}
	want, err := all.Snapshot().Import()
	if err != nil {
		t.Fatal(err)
	}
	if !merged.Equals(want) {
		t.Fatalf("merged histogram differs from recording everything in one")
	}
	got, exp := Summarize(merged), Summarize(want)
	if got != exp {
		t.Fatalf("summary %+v, want %+v", got, exp)
	}
	if got.Count != 20001 || got.Max < 1999 || got.Max > 2003 {
		t.Fatalf("count %d max %vms", got.Count, got.Max)
	}
	if !(got.P50 <= got.P90 && got.P90 <= got.P99 && got.P99 <= got.P999 && got.P999 <= got.Max) {
		t.Fatalf("percentiles not ordered: %+v", got)
	}
}

func TestHistClampsAndIntervals(t *testing.T) {
	h := NewHist()
	h.Record(-time.Second)   // clock step: clamped to the lowest value
	h.Record(24 * time.Hour) // beyond the range: clamped to the highest
	s := h.TakeInterval()
	if s.Count != 2 {
		t.Fatalf("interval count %d", s.Count)
	}
	if s := h.TakeInterval(); s.Count != 0 {
		t.Fatalf("interval not reset: %+v", s)
	}
	if s := Summarize(mustImport(t, h.Snapshot())); s.Count != 2 {
		t.Fatalf("cumulative count %d", s.Count)
	}
}

func TestHistSnapshotRejectsGarbage(t *testing.T) {
	for name, s := range map[string]*HistSnapshot{
		"negative index": {Lowest: 1, Highest: histHighest, SigFigs: 3, Counts: [][2]int64{{-1, 1}}},
		"beyond range":   {Lowest: 1, Highest: 1000, SigFigs: 3, Counts: [][2]int64{{1 << 20, 1}}},
		"negative count": {Lowest: 1, Highest: histHighest, SigFigs: 3, Counts: [][2]int64{{5, -3}}},
		"bad sigfigs":    {Lowest: 1, Highest: histHighest, SigFigs: 9},
	} {
		if _, err := s.Import(); err == nil {
			t.Errorf("%s: imported", name)
		}
	}
}

func mustImport(t *testing.T, s *HistSnapshot) *hdrHistogram {
	t.Helper()
	h, err := s.Import()
	if err != nil {
		t.Fatal(err)
	}
	return h
}
