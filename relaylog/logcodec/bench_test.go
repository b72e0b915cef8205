package logcodec

import (
	"bytes"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// A 250-byte command as the shared log stores write and read it.
var benchLog = raft.Log{Index: 4, Term: 2, Type: raft.LogCommand, Data: bytes.Repeat([]byte("x"), 250), AppendedAt: time.Unix(1700000000, 123456789)}

func BenchmarkAppendLog(b *testing.B) {
	buf := make([]byte, 0, MaxSize(&benchLog))
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendLog(buf[:0], &benchLog)
	}
}

func BenchmarkDecodeLog(b *testing.B) {
	enc := AppendLog(nil, &benchLog)
	var l raft.Log
	b.ReportAllocs()
	for b.Loop() {
		if err := DecodeLog(4, enc, &l); err != nil {
			b.Fatal(err)
		}
	}
}
