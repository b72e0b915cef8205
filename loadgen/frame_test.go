package loadgen

import (
	"strings"
	"testing"

	"github.com/edgenode/edgenode/wire"
)

func TestParseFrameFastMatchesSlow(t *testing.T) {
	content := string(appendContent(nil, 0x1234567890abc, 150))
	if len(content) != 150 || !strings.HasPrefix(content, "0001234567890abc") {
		t.Fatalf("content %q", content)
	}
	frames := [][]byte{
		wire.AppendNewMessageEvent(nil, &wire.Message{MessageID: 77, FromUserID: 1, ToUserID: 2, Content: content, Status: wire.StatusDelivered, CreatedAt: "2026-11-27T10:20:08.123Z"}),
		wire.AppendNewMessageEvent(nil, &wire.Message{MessageID: 78, FromUserID: 1, ToUserID: 2, Content: "hello <world>", Status: wire.StatusDelivered, CreatedAt: "x"}),
		wire.AppendReceiptEvent(nil, &wire.Receipt{ID: 79, Status: wire.StatusDelivered, ByUserID: 2, MessageIDs: []int64{77, 78}, At: "x"}),
		wire.AppendReceiptEvent(nil, &wire.Receipt{ID: 80, Status: wire.StatusRead, ByUserID: 2, UpToMessageID: 78, At: "x"}),
	}
	want := []serverFrame{
		{Type: wire.TypeNewMessage, ID: 77, Nonce: 0x1234567890abc},
		{Type: wire.TypeNewMessage, ID: 78, Nonce: -1},
		{Type: wire.TypeMessageDelivered, ID: 79, Nonce: -1},
		{Type: wire.TypeMessageRead, ID: 80, Nonce: -1},
	}
	for i, b := range frames {
		fast, ok := parseFast(b)
		if !ok {
			t.Fatalf("frame %d not parsed by the fast path: %s", i, b)
		}
		slow, err := parseSlow(b)
		if err != nil {
			t.Fatal(err)
		}
		if fast != want[i] || slow != want[i] {
			t.Errorf("frame %d: fast %+v slow %+v want %+v", i, fast, slow, want[i])
		}
	}
}

func TestParseFrameOtherShapes(t *testing.T) {
	// Field order the fast path does not expect still parses.
	f, err := parseFrame([]byte(`{"id":5,"payload":{"message":{"content":"000000000000000a...."}},"type":"new_message"}`))
	if err != nil || f.Type != wire.TypeNewMessage || f.ID != 5 || f.Nonce != 10 {
		t.Fatalf("%+v %v", f, err)
	}
	f, err = parseFrame(wire.EncodeEvent(wire.TypeReady, wire.Ready{UserID: 1000001, NodeID: "n1", HeartbeatMs: 25000}))
	if err != nil || f.Type != wire.TypeReady || f.Ready == nil || f.Ready.UserID != 1000001 || f.ID != 0 {
		t.Fatalf("%+v %v", f, err)
	}
	f, err = parseFrame(wire.EncodeEvent(wire.TypeError, wire.ErrorDetail{Code: "invalid_argument", Message: "x"}))
	if err != nil || f.Type != wire.TypeError || f.Code != "invalid_argument" {
		t.Fatalf("%+v %v", f, err)
	}
	s := "x"
	f, err = parseFrame(wire.AppendContactStatusEvent(nil, &wire.ContactStatus{UserID: 3, Online: true, LastConnectedAt: &s}))
	if err != nil || f.Type != wire.TypeContactStatusUpdate || f.ID != 0 {
		t.Fatalf("%+v %v", f, err)
	}
	if _, err := parseFrame([]byte(`not json`)); err == nil {
		t.Fatal("garbage parsed")
	}
}

func TestNonceRejectsForeignContent(t *testing.T) {
	for _, c := range []string{"", "short", "000000000000000G....", "ffffffffffffffff"} {
		if n := parseNonce([]byte(c)); n != -1 {
			t.Errorf("%q → %d", c, n)
		}
	}
}

func TestParseVmRSS(t *testing.T) {
	n, err := parseVmRSS([]byte("Name:\tedgenode\nVmPeak:\t  900 kB\nVmRSS:\t   123456 kB\nThreads: 9\n"))
	if err != nil || n != 123456 {
		t.Fatalf("%d %v", n, err)
	}
	if _, err := parseVmRSS([]byte("Name: x\n")); err == nil {
		t.Fatal("no error without VmRSS")
	}
}

func TestParseStatCPU(t *testing.T) {
	stat := "19662 (edge node) S 1 19662 1 0 -1 4194560 5000 0 0 0 1234 566 0 0 20 0 12 0 100 2476652 63412 18446744073709551615\n"
	got, err := parseStatCPU([]byte(stat))
	if err != nil || got != 18 {
		t.Fatalf("%v %v, want 18 s", got, err)
	}
}
