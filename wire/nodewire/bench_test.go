package nodewire

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	"github.com/edgenode/edgenode/wire"
)

// One forwarded send as nodes exchange it: the call's frame written and
// read back (the binary node codec).
func BenchmarkNodeFrameSend(b *testing.B) {
	req := &CallRequest{Version: NodeProtocolVersion, Op: OpSend, Shard: 3, From: 42,
		Send: &wire.NewMessageRequest{RequestID: 9, ToUserID: 43, Content: strings.Repeat("x", 150), CreatedAt: "2026-11-27T10:20:08.123Z"}}
	var buf bytes.Buffer
	var got CallRequest
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf.Reset()
		if err := WriteNodeFrame(&buf, req); err != nil {
			b.Fatal(err)
		}
		if err := ReadNodeFrame(bufio.NewReaderSize(&buf, 1024), &got); err != nil {
			b.Fatal(err)
		}
	}
}
