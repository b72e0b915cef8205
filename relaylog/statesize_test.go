package relaylog

import (
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// countingSink is a raft.SnapshotSink that only counts bytes.
type countingSink struct{ n int64 }

func (s *countingSink) Write(p []byte) (int, error) { s.n += int64(len(p)); return len(p), nil }
func (s *countingSink) Close() error                { return nil }
func (s *countingSink) ID() string                  { return "count" }
func (s *countingSink) Cancel() error               { return nil }

var _ raft.SnapshotSink = (*countingSink)(nil)
var _ io.Writer = (*countingSink)(nil)

// BenchmarkStateGrowth applies sends among 10,000 users who all send and
// acknowledge at once (what the soak does) and reports the state machine's
// heap and snapshot size per 1,000 sends: with state bounded by users, both
// fall as the number of sends grows.
//
//	go test -tags hashicorpmetrics -run XXX -bench StateGrowth -benchtime 1x ./relaylog/
func BenchmarkStateGrowth(b *testing.B) {
	for _, sends := range []int{100_000, 400_000} {
		b.Run(fmt.Sprintf("sends=%d", sends), func(b *testing.B) {
			for b.Loop() {
				heap, snap := stateGrowth(sends)
				b.ReportMetric(float64(heap)/float64(sends)*1000, "heapB/1k-sends")
				b.ReportMetric(float64(snap)/float64(sends)*1000, "snapB/1k-sends")
				b.ReportMetric(float64(heap), "heapB")
				b.ReportMetric(float64(snap), "snapB")
			}
		})
	}
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func stateGrowth(sends int) (heap, snap int64) {
	const users = 10_000
	base := heapInUse()
	f := newFSM(0, 1, nil)
	rng := rand.New(rand.NewPCG(1, 2))
	content := string(make([]byte, 150))
	start := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	idx := uint64(0)
	reqs := make([]int64, users)
	const batch = 256
	cmds := make([]*command, 0, batch)
	for i := 0; i < sends; i += batch {
		cmds = cmds[:0]
		now := start.Add(time.Duration(i) * time.Millisecond / 2) // 2,000 sends/s
		for j := 0; j < batch && i+j < sends; j++ {
			from := rng.Int64N(users)
			to := rng.Int64N(users)
			reqs[from]++
			cmds = append(cmds, &command{kind: cmdSend, id: minIDAt(now), user: 1 + to, from: 1 + from, reqID: reqs[from], limit: 1 << 30,
				content: content, createdAt: now.Format("2006-01-02T15:04:05.000Z")})
		}
		idx++
		f.ApplyBatch([]*raft.Log{{Index: idx, Type: raft.LogCommand, Data: encodeEntry(nil, cmds)}})
		// Every recipient acknowledges what it got, as online users do.
		var acks []*command
		for u := int64(1); u <= users; u++ {
			if f.lastEvent(u) != 0 && rng.IntN(8) == 0 {
				acks = append(acks, &command{kind: cmdAck, user: u, upTo: f.lastEvent(u)})
			}
		}
		if len(acks) > 0 {
			idx++
			f.ApplyBatch([]*raft.Log{{Index: idx, Type: raft.LogCommand, Data: encodeEntry(nil, acks)}})
		}
	}
	heap = int64(heapInUse()) - int64(base)
	s, _ := f.Snapshot()
	var sink countingSink
	if err := s.Persist(&sink); err != nil {
		panic(err)
	}
	s.Release()
	runtime.KeepAlive(f)
	return heap, sink.n
}
