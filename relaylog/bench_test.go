package relaylog

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func BenchmarkIDGen(b *testing.B) {
	g := newIDGen(16, time.Now)
	b.ReportAllocs()
	for b.Loop() {
		g.next(3)
	}
}

// BenchmarkFSMApplyBatch: applying one raft entry of 256 sends (decode and
// state changes), per command.
func BenchmarkFSMApplyBatch(b *testing.B) {
	content := string(make([]byte, 150))
	cmds := make([]*command, 256)
	var entries [][]byte
	for e := 0; e < 64; e++ {
		for i := range cmds {
			cmds[i] = &command{kind: cmdSend, id: int64(e*256+i+1) << 12, user: int64(i % 50), from: int64(1000 + i), reqID: int64(e*256 + i), limit: 1 << 30, content: content, createdAt: "2026-11-27T10:20:08.123Z"}
		}
		entries = append(entries, encodeEntry(nil, cmds))
	}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		f := newFSM(0, 16, nil)
		logs := make([]*raft.Log, len(entries))
		for i, e := range entries {
			logs[i] = &raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: e}
		}
		f.ApplyBatch(logs)
		n += len(entries) * len(cmds)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/command")
}

func BenchmarkEncodeEntry(b *testing.B) {
	content := string(make([]byte, 150))
	cmds := make([]*command, 256)
	for i := range cmds {
		cmds[i] = &command{kind: cmdSend, id: int64(i+1) << 12, user: int64(i), from: 7, reqID: int64(i), limit: 10000, content: content, createdAt: "2026-11-27T10:20:08.123Z"}
	}
	buf := make([]byte, 0, 64<<10)
	b.ReportAllocs()
	for b.Loop() {
		buf = encodeEntry(buf, cmds)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(cmds)), "ns/command")
}

var _ = fmt.Sprint
