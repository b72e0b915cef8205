package wire

import "testing"

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
