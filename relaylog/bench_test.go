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

// BenchmarkFSMApplyFullLists: sends to users whose conversation lists are
// full (MaxPairsPerUser senders each) from senders with all their
// idempotency records, the steady state of a busy shard; per command.
func BenchmarkFSMApplyFullLists(b *testing.B) {
	const users = 64
	f := newFSM(0, 16, nil)
	idx := uint64(0)
	reqID := int64(0)
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	batch := func(n int) []*raft.Log {
		cmds := make([]*command, n)
		for i := range cmds {
			reqID++
			t := at.Add(time.Duration(reqID) * time.Microsecond)
			user := reqID % users
			cmds[i] = &command{kind: cmdSend, id: minIDAt(t), user: user, from: 1000 + (reqID/users)%(2*MaxPairsPerUser), reqID: reqID,
				limit: 1 << 30, content: "hello there", createdAt: t.Format(time.RFC3339Nano)}
		}
		idx++
		return []*raft.Log{{Index: idx, Type: raft.LogCommand, Data: encodeEntry(nil, cmds)}}
	}
	for f.contacts.len() < users*MaxPairsPerUser {
		f.ApplyBatch(batch(256))
	}
	logs := make([][]*raft.Log, b.N) // new sends each: a replayed one would be a retry
	for i := range logs {
		logs[i] = batch(256)
	}
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for i := 0; i < b.N; i++ {
		f.ApplyBatch(logs[i])
		n += 256
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/command")
}

// BenchmarkDecodeEntry: decoding one raft entry of 256 sends, per command.
func BenchmarkDecodeEntry(b *testing.B) {
	content := string(make([]byte, 150))
	cmds := make([]*command, 256)
	for i := range cmds {
		cmds[i] = &command{kind: cmdSend, id: int64(i+1) << 12, user: int64(i), from: 7, reqID: int64(i), limit: 10000, content: content, createdAt: "2026-11-27T10:20:08.123Z"}
	}
	entry := encodeEntry(nil, cmds)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeEntry(entry); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(cmds)), "ns/command")
}
