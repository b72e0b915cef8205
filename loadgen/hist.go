package loadgen

import (
	"errors"
	"fmt"
	"sync"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Histograms record microseconds from 1 µs to 5 minutes with 3 significant
// digits (0.1% resolution).
const (
	histLowest  = 1
	histHighest = int64(5 * time.Minute / time.Microsecond)
	histSigFigs = 3
)

func newHDR() *hdrhistogram.Histogram {
	return hdrhistogram.New(histLowest, histHighest, histSigFigs)
}

// Hist is a latency histogram safe for concurrent use. Next to the
// cumulative histogram it keeps one for the current progress interval.
type Hist struct {
	mu       sync.Mutex
	all      *hdrhistogram.Histogram
	interval *hdrhistogram.Histogram
}

// NewHist returns an empty histogram.
func NewHist() *Hist {
	return &Hist{all: newHDR(), interval: newHDR()}
}

func toMicros(d time.Duration) int64 {
	v := int64(d / time.Microsecond)
	if v < histLowest {
		v = histLowest
	}
	if v > histHighest {
		v = histHighest
	}
	return v
}

// Record adds one latency.
func (h *Hist) Record(d time.Duration) {
	v := toMicros(d)
	h.mu.Lock()
	_ = h.all.RecordValue(v)
	_ = h.interval.RecordValue(v)
	h.mu.Unlock()
}

// Snapshot exports the cumulative histogram.
func (h *Hist) Snapshot() *HistSnapshot {
	h.mu.Lock()
	defer h.mu.Unlock()
	return ExportHist(h.all)
}

// TakeInterval summarises the values recorded since the previous call and
// starts a new interval.
func (h *Hist) TakeInterval() Summary {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := Summarize(h.interval)
	h.interval.Reset()
	return s
}

// HistSnapshot is a histogram in a form that survives JSON: its geometry
// and its non-zero counts as [index, count] pairs.
type HistSnapshot struct {
	Lowest  int64      `json:"lowest"`
	Highest int64      `json:"highest"`
	SigFigs int64      `json:"sigFigs"`
	Unit    string     `json:"unit"`
	Counts  [][2]int64 `json:"counts"`
}

// ExportHist converts h to a sparse snapshot.
func ExportHist(h *hdrhistogram.Histogram) *HistSnapshot {
	s := h.Export()
	out := &HistSnapshot{Lowest: s.LowestTrackableValue, Highest: s.HighestTrackableValue, SigFigs: s.SignificantFigures, Unit: "us", Counts: [][2]int64{}}
	for i, c := range s.Counts {
		if c != 0 {
			out.Counts = append(out.Counts, [2]int64{int64(i), c})
		}
	}
	return out
}

// Import rebuilds the histogram, validating the snapshot first.
func (s *HistSnapshot) Import() (*hdrhistogram.Histogram, error) {
	if s == nil {
		return newHDR(), nil
	}
	n := 0
	for _, p := range s.Counts {
		if p[0] < 0 || p[0] > 1<<24 {
			return nil, fmt.Errorf("histogram snapshot: bad index %d", p[0])
		}
		n = max(n, int(p[0])+1)
	}
	counts := make([]int64, n)
	for _, p := range s.Counts {
		counts[p[0]] += p[1]
	}
	snap := &hdrhistogram.Snapshot{
		LowestTrackableValue:  s.Lowest,
		HighestTrackableValue: s.Highest,
		SignificantFigures:    s.SigFigs,
		Counts:                counts,
	}
	if err := snap.Validate(); err != nil {
		return nil, fmt.Errorf("histogram snapshot: %w", err)
	}
	return hdrhistogram.Import(snap), nil
}

// MergeSnapshots merges any number of snapshots (nil ones are skipped) into
// one histogram with the standard geometry.
func MergeSnapshots(snaps ...*HistSnapshot) (*hdrhistogram.Histogram, error) {
	out := newHDR()
	for _, s := range snaps {
		if s == nil {
			continue
		}
		h, err := s.Import()
		if err != nil {
			return nil, err
		}
		if dropped := out.Merge(h); dropped != 0 {
			return nil, errors.New("histogram merge dropped values outside the range")
		}
	}
	return out, nil
}

// Summary is what the report prints of a histogram, in milliseconds.
type Summary struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"meanMs"`
	P50   float64 `json:"p50Ms"`
	P90   float64 `json:"p90Ms"`
	P99   float64 `json:"p99Ms"`
	P999  float64 `json:"p999Ms"`
	Max   float64 `json:"maxMs"`
}

// Summarize computes the percentiles of h (recorded in microseconds).
func Summarize(h *hdrhistogram.Histogram) Summary {
	if h.TotalCount() == 0 {
		return Summary{}
	}
	ms := func(us int64) float64 { return float64(us) / 1000 }
	v := h.ValueAtPercentilesSlice([]float64{50, 90, 99, 99.9})
	return Summary{
		Count: h.TotalCount(),
		Mean:  h.Mean() / 1000,
		P50:   ms(v[0]),
		P90:   ms(v[1]),
		P99:   ms(v[2]),
		P999:  ms(v[3]),
		Max:   ms(h.Max()),
	}
}

type hdrHistogram = hdrhistogram.Histogram
