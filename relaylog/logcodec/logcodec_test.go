package logcodec

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestGolden pins the encoding: sharedlog bolt files and walstore segments
// written before this package existed hold exactly these bytes.
func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		log  raft.Log
		want string
	}{
		{
			raft.Log{Index: 42, Term: 300, Type: raft.LogCommand, Data: []byte("hello"), Extensions: []byte("ext"), AppendedAt: time.Unix(1700000000, 123456789)},
			"01ac02000180c49fd50c959aef3a0668656c6c6f04657874",
		},
		{
			raft.Log{Index: 1, Term: 1, Type: raft.LogNoop},
			"010101000000",
		},
		{
			raft.Log{Index: 2, Term: 1<<63 + 5, Type: raft.LogConfiguration, Data: []byte{}, Extensions: []byte{}, AppendedAt: time.Unix(-5, 999999999)},
			"0185808080808080808001050109ff93ebdc030101",
		},
	} {
		got := AppendLog(nil, &tc.log)
		if h := hex.EncodeToString(got); h != tc.want {
			t.Errorf("index %d: encoded %s, want %s", tc.log.Index, h, tc.want)
		}
		want, _ := hex.DecodeString(tc.want)
		var l raft.Log
		if err := DecodeLog(tc.log.Index, want, &l); err != nil {
			t.Fatalf("index %d: decode golden: %v", tc.log.Index, err)
		}
		if !reflect.DeepEqual(l, tc.log) {
			t.Errorf("index %d: decoded golden %+v, want %+v", tc.log.Index, l, tc.log)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	now := time.Now()
	logs := []*raft.Log{
		{Index: 1, Term: 1, Type: raft.LogConfiguration, Data: []byte("config"), AppendedAt: now},
		{Index: 2, Term: 1, Type: raft.LogNoop},                                          // nil Data, zero time
		{Index: 3, Term: 2, Type: raft.LogCommand, Data: []byte{}, Extensions: []byte{}}, // empty, not nil
		{Index: 4, Term: 2, Type: raft.LogCommand, Data: bytes.Repeat([]byte("x"), 250), Extensions: []byte("ext-v1"), AppendedAt: now.Add(time.Nanosecond)},
		{Index: 5, Term: 1<<63 + 12345, Type: raft.LogBarrier, Extensions: []byte{0, 1, 2}, AppendedAt: time.Unix(-5, 999999999)},
		{Index: 1 << 40, Term: 3, Type: raft.LogType(200), Data: make([]byte, 70000), AppendedAt: time.Date(2300, 1, 2, 3, 4, 5, 6, time.Local)},
	}
	prefix := []byte("prefix")
	for _, want := range logs {
		enc := AppendLog(append([]byte{}, prefix...), want)
		if !bytes.Equal(enc[:len(prefix)], prefix) {
			t.Fatalf("index %d: AppendLog changed dst's bytes", want.Index)
		}
		enc = enc[len(prefix):]
		if len(enc) > MaxSize(want) {
			t.Fatalf("index %d: encoded %d bytes, MaxSize %d", want.Index, len(enc), MaxSize(want))
		}
		var got raft.Log
		if err := DecodeLog(want.Index, enc, &got); err != nil {
			t.Fatalf("index %d: %v", want.Index, err)
		}
		w := *want
		w.AppendedAt = w.AppendedAt.Round(0) // no monotonic reading
		if !reflect.DeepEqual(got, w) {
			t.Fatalf("index %d: got %+v, want %+v", want.Index, got, w)
		}
		if !got.AppendedAt.Equal(want.AppendedAt) {
			t.Fatalf("index %d: AppendedAt %v, want %v", want.Index, got.AppendedAt, want.AppendedAt)
		}
		// The decoded log does not alias the encoding.
		clear(enc)
		if !reflect.DeepEqual(got, w) {
			t.Fatalf("index %d: decoded log changed with its input", want.Index)
		}
	}
	// Data and Extensions share one allocation; appending to Data must not
	// overwrite Extensions.
	var got raft.Log
	if err := DecodeLog(4, AppendLog(nil, logs[3]), &got); err != nil {
		t.Fatal(err)
	}
	_ = append(got.Data, "clobber"...)
	if string(got.Extensions) != "ext-v1" {
		t.Fatalf("Extensions clobbered by append to Data: %q", got.Extensions)
	}
}

func TestDecodeCorrupt(t *testing.T) {
	l := &raft.Log{Index: 4, Term: 2, Type: raft.LogCommand, Data: bytes.Repeat([]byte("x"), 250), Extensions: []byte("ext-v1"), AppendedAt: time.Now()}
	enc := AppendLog(nil, l)
	t.Logf("250-byte command with 6-byte extension encodes to %d bytes", len(enc))
	var got raft.Log
	for i := 0; i < len(enc); i++ {
		if err := DecodeLog(4, enc[:i], &got); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated to %d bytes: %v, want ErrCorrupt", i, err)
		}
	}
	if err := DecodeLog(4, append(enc, 0), &got); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("trailing byte: %v, want ErrCorrupt", err)
	}
	bad := append([]byte{}, enc...)
	bad[0] = 99
	if err := DecodeLog(4, bad, &got); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("unknown version: %v, want ErrCorrupt", err)
	}
	// Nanoseconds out of range, in an otherwise valid encoding.
	bad = binary.AppendUvarint([]byte{1, 1, 0, 1, 2}, 1e9)
	bad = append(bad, 0, 0)
	if err := DecodeLog(1, []byte{1, 1, 0, 1, 2, 0, 0, 0}, &got); err != nil {
		t.Fatalf("same encoding with 0 ns: %v", err)
	}
	if err := DecodeLog(1, bad, &got); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("bad nanoseconds %x: %v, want ErrCorrupt", bad, err)
	}
}
