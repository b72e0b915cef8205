package nodewire

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"reflect"
	"slices"
	"testing"

	"github.com/edgenode/edgenode/wire"
)

func nodeFrames() []any {
	return []any{
		&CallRequest{Version: NodeProtocolVersion, Op: OpSend, Shard: 7, From: 42,
			Send: &wire.NewMessageRequest{RequestID: 9, ToUserID: 43, Content: "héllo ✓", CreatedAt: "2026-11-27T10:20:08.123Z"}},
		&CallRequest{Version: 1, Op: OpDeviceAdd, User: -1, Device: &wire.DeviceRequest{Platform: "apns", Token: "t", Topic: "app", Sandbox: true}, IDs: []int64{1, -2, 1 << 52}},
		&CallRequest{Op: OpPending, User: 5, After: 123, Limit: 256},
		&CallRequest{Op: OpAckDevices, Acks: []DeviceAck{{User: 5, Device: "phone", UpTo: 1 << 40}, {User: -6, UpTo: 7}}},
		&CallResponse{Codes: []string{"", NodeErrRevoked}},
		&CallResponse{Flags: []bool{true}, Codes: []string{NodeErrNotLeader}},
		&CallResponse{Err: NodeErrNotLeader, Leader: "n2", Message: "m"},
		&CallResponse{Flags: []bool{true, false, true}},
		&CallResponse{Events: []NodeEvent{
			{ID: 1, Kind: 1, From: 2, To: 3, Content: "x", CreatedAt: "c"},
			{ID: 4, Kind: 2, By: 5, MessageIDs: []int64{1, 2}},
			{ID: 6, Kind: 3, By: 7, UpTo: 8},
		}, Created: true, More: true, N: 3, At: -4, Found: true, Index: 1 << 40, Voters: []string{"a", "b"}},
		&SubscribeFrame{Op: SubStatus, User: 1, Shard: 2, From: 3, Online: true, LastSeen: 4, Typing: true, Origin: "n1"},
		&SubscribeFrame{Op: SubEvents, User: 5, After: 77, Events: []NodeEvent{{ID: 78, Kind: 1, From: 2, To: 5, Content: "hi", CreatedAt: "c"}, {ID: 79, Kind: 2, By: 9, MessageIDs: []int64{3}}}},
		&SubscribeFrame{Op: SubDevice, User: 5, Device: "tablet-1"},
		&HeartbeatBatch{Beats: []Heartbeat{
			{ID: 1, Shard: 3, To: "ab12", ProtocolVersion: 3, HeaderID: []byte("n1"), HeaderAddr: []byte("n1@x"), Term: 9},
			{ID: 2, Term: 1},
		}},
		&HeartbeatAnswer{ID: 2, ProtocolVersion: 3, HeaderID: []byte("n2"), Term: 9, LastLog: 1 << 33, Success: true, NoRetryBackoff: true},
		&HeartbeatAnswer{ID: 5, Err: "another incarnation"},
	}
}

// Every node frame survives the binary form unchanged.
func TestNodeFramesRoundTrip(t *testing.T) {
	for _, f := range nodeFrames() {
		var buf bytes.Buffer
		if err := WriteNodeFrame(&buf, f); err != nil {
			t.Fatal(err)
		}
		if buf.Bytes()[1] != nodeBinaryTag {
			t.Fatalf("%T not written in binary form", f)
		}
		got := reflect.New(reflect.TypeOf(f).Elem()).Interface()
		if err := ReadNodeFrame(bufio.NewReader(&buf), got); err != nil {
			t.Fatalf("%T: %v", f, err)
		}
		if !reflect.DeepEqual(got, f) {
			t.Fatalf("round trip\n got %+v\nwant %+v", got, f)
		}
	}
}

// TestNodeFramesGolden pins the binary form: nodes of different versions
// exchange these bytes during a rolling upgrade. Each of nodeFrames() is
// written as exactly this frame (length prefix included).
func TestNodeFramesGolden(t *testing.T) {
	golden := []string{
		"390271020473656e640e00540112560a68c3a96c6c6f20e29c9318323032362d31312d32375431303a32303a30382e3132335a00000000000000",
		"2f0271020a6465766963655f6164640001000000000000010461706e7301740361707001000302038080808080808010",
		"180271000770656e64696e67000a0000f60100800400000000",
		"2b0271000b61636b5f646576696365730000000000000000000000020a0570686f6e658080808080400b000e",
		"1f027200000000000000000000000002000e6465766963655f7265766f6b6564",
		"1b027200000000000000000000000101010a6e6f745f6c6561646572",
		"1a02720a6e6f745f6c6561646572016d026e320000000000000000",
		"110272000000000000000000000003010001",
		"3502720000000302010406017801630000000802000000000a020204000c03000000000e001001010607018080808080200201610162",
		"14027306737461747573020406010801026e310000",
		"2b0273066576656e74730a0000000000009a01029c0101040a02686901630000009e01020000000012010600",
		"1b0273066465766963650a0000000000000000087461626c65742d31",
		"1b0268020106046162313206036e31056e3140780902000000000001",
		"110261020006036e32000980808080200101",
		"1e02610513616e6f7468657220696e6361726e6174696f6e00000000000000",
	}
	frames := nodeFrames()
	if len(frames) != len(golden) {
		t.Fatalf("%d frames, %d golden encodings", len(frames), len(golden))
	}
	for i, f := range frames {
		var buf bytes.Buffer
		if err := WriteNodeFrame(&buf, f); err != nil {
			t.Fatal(err)
		}
		if h := hex.EncodeToString(buf.Bytes()); h != golden[i] {
			t.Errorf("%T #%d encoded\n %s\nwant\n %s", f, i, h, golden[i])
		}
	}
	var buf bytes.Buffer
	WriteTaggedFrame(&buf, 300, frames[2])
	if h, want := hex.EncodeToString(buf.Bytes()), "1aac020271000770656e64696e67000a0000f60100800400000000"; h != want {
		t.Errorf("tagged frame encoded %s, want %s", h, want)
	}
}

// JSON frames, the protocol's first form, are still read.
func TestNodeFramesReadJSON(t *testing.T) {
	want := CallRequest{Version: 1, Op: OpAck, User: 3, UpTo: 99}
	b, _ := json.Marshal(want)
	var buf bytes.Buffer
	buf.WriteByte(byte(len(b)))
	buf.Write(b)
	var got CallRequest
	if err := ReadNodeFrame(bufio.NewReader(&buf), &got); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, %v", got, err)
	}
}

// A frame cut short or padded is an error, never a panic or a silent
// partial decode; a frame of one kind is not read as another. (A field
// added later is written only when set, for older readers: a frame cut
// exactly before it reads as the frame without it.)
func TestNodeFramesRejectDamage(t *testing.T) {
	for _, f := range nodeFrames() {
		var buf bytes.Buffer
		WriteNodeFrame(&buf, f)
		payload := buf.Bytes()[1:]
		var without []any // the frame without its later fields, last ones first
		switch r := f.(type) {
		case *CallResponse:
			c := *r
			if c.Codes != nil {
				c.Codes = nil
				if c.Flags != nil {
					d := c
					without = append(without, &d)
				}
			}
			if c.Flags != nil || r.Codes != nil {
				c.Flags = nil
				without = append(without, &c)
			}
		case *CallRequest:
			if r.Acks != nil {
				c := *r
				c.Acks = nil
				without = append(without, &c)
			}
		}
		for cut := 2; cut < len(payload); cut++ {
			got := reflect.New(reflect.TypeOf(f).Elem()).Interface()
			if err := ReadNodeFrame(bufio.NewReader(bytes.NewReader(append([]byte{byte(cut)}, payload[:cut]...))), got); err == nil && !slices.ContainsFunc(without, func(w any) bool { return reflect.DeepEqual(got, w) }) {
				t.Fatalf("%T cut to %d bytes decoded as %+v", f, cut, got)
			}
		}
		padded := append(append([]byte{byte(len(payload) + 1)}, payload...), 0)
		got := reflect.New(reflect.TypeOf(f).Elem()).Interface()
		if err := ReadNodeFrame(bufio.NewReader(bytes.NewReader(padded)), got); err == nil {
			t.Fatalf("%T with a trailing byte decoded", f)
		}
	}
	var buf bytes.Buffer
	WriteNodeFrame(&buf, &SubscribeFrame{Op: SubUser, User: 1})
	if err := ReadNodeFrame(bufio.NewReader(&buf), &CallRequest{}); err == nil {
		t.Fatal("a subscribe frame decoded as a call request")
	}
}

func FuzzReadNodeFrameKinds(f *testing.F) {
	for _, fr := range nodeFrames() {
		var buf bytes.Buffer
		WriteNodeFrame(&buf, fr)
		f.Add(buf.Bytes())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, v := range []any{&CallRequest{}, &CallResponse{}, &SubscribeFrame{}, &HeartbeatBatch{}, &HeartbeatAnswer{}} {
			_ = ReadNodeFrame(bufio.NewReader(bytes.NewReader(b)), v)
		}
	})
}

func FuzzReadNodeFrame(f *testing.F) {
	var buf bytes.Buffer
	WriteNodeFrame(&buf, CallRequest{Version: 1, Op: OpSend, User: 2, Send: &wire.NewMessageRequest{RequestID: 1, ToUserID: 2, Content: "x", CreatedAt: "2026-11-27T10:20:08.123Z"}})
	WriteNodeFrame(&buf, SubscribeFrame{Op: SubUser, User: 9})
	f.Add(buf.Bytes())
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bufio.NewReader(bytes.NewReader(b))
		for i := 0; i < 4; i++ {
			var req CallRequest
			if ReadNodeFrame(r, &req) != nil {
				return
			}
		}
	})
}
