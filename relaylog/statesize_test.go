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

// BenchmarkStateCost measures the heap each kind of state costs, for the
// capacity arithmetic of docs/PERFORMANCE.md: a sender's entry with its 8
// records, the same entry once its records expired (floor only), and a
// user's last connection time.
//
//	go test -tags hashicorpmetrics -run XXX -bench StateCost -benchtime 1x ./relaylog/
func BenchmarkStateCost(b *testing.B) {
	const senders = 200_000
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for b.Loop() {
		base := heapInUse()
		f := newFSM(0, 1, nil)
		idx := uint64(0)
		for s := int64(1); s <= senders; s += 1000 {
			var cmds []*command
			for u := s; u < s+1000; u++ {
				for r := int64(0); r < IdempotencyPerSender; r++ {
					t := at.Add(time.Duration(r) * time.Millisecond)
					cmds = append(cmds, &command{kind: cmdSend, id: minIDAt(t), user: 1, from: u, reqID: r + 1, content: "x", createdAt: t.Format(time.RFC3339Nano)})
				}
			}
			idx++
			f.ApplyBatch([]*raft.Log{{Index: idx, Type: raft.LogCommand, Data: encodeEntry(nil, cmds)}})
			idx++
			f.ApplyBatch([]*raft.Log{{Index: idx, Type: raft.LogCommand, Data: encodeEntry(nil, []*command{{kind: cmdAck, user: 1, upTo: 1 << 52}})}})
		}
		full := heapInUse()
		b.ReportMetric(float64(int64(full)-int64(base))/senders, "B/sender-with-8-records")
		// Records past the window: only the floors stay.
		f.ApplyBatch([]*raft.Log{{Index: idx + 1, Type: raft.LogCommand, Data: encodeEntry(nil, []*command{{kind: cmdExpire, upTo: 1, at: minIDAt(at.Add(time.Hour))}})}})
		floors := heapInUse()
		b.ReportMetric(float64(int64(floors)-int64(base))/senders, "B/sender-floor-only")
		for u := int64(1); u <= senders; u++ {
			f.lastConn.set(u, at.UnixMilli())
		}
		conn := heapInUse()
		b.ReportMetric(float64(int64(conn)-int64(floors))/senders, "B/last-connected")
		runtime.KeepAlive(f)
	}
}
