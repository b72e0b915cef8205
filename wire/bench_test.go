package wire

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

var sendBody = []byte(`{"requestId":123456789,"toUserId":987654,"content":"` + string(make150()) + `","createdAt":"2026-11-27T10:20:08.123Z"}`)

func make150() []byte {
	b := make([]byte, 150)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return b
}

func BenchmarkDecodeNewMessageRequest(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(sendBody)))
	for b.Loop() {
		if _, err := DecodeNewMessageRequest(sendBody, 0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendNewMessageEvent(b *testing.B) {
	m := Message{MessageID: 116969063862277, FromUserID: 1, ToUserID: 2, Content: string(make150()), Status: StatusDelivered, CreatedAt: "2026-11-27T10:20:08.123Z"}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendNewMessageEvent(buf[:0], &m)
	}
}

func BenchmarkDecodeAckFrame(b *testing.B) {
	f := []byte(`{"type":"ack","payload":{"upTo":116969063862277}}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeClientFrame(f); err != nil {
			b.Fatal(err)
		}
	}
}

// A typing frame takes the general decoder (encoding/json and the strict
// key check), unlike an ack.
func BenchmarkDecodeTypingFrame(b *testing.B) {
	f := []byte(`{"type":"typing","payload":{"toUserId":42,"typing":true}}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeClientFrame(f); err != nil {
			b.Fatal(err)
		}
	}
}

// One forwarded send as nodes exchange it: the call's frame written and
// read back (the binary node codec).
func BenchmarkNodeFrameSend(b *testing.B) {
	req := &CallRequest{Version: NodeProtocolVersion, Op: OpSend, Shard: 3, From: 42,
		Send: &NewMessageRequest{RequestID: 9, ToUserID: 43, Content: strings.Repeat("x", 150), CreatedAt: "2026-11-27T10:20:08.123Z"}}
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
