package relaylog

import (
	"bytes"
	"io"
	"testing"
)

// FuzzDecodeEntry: raft entries come from other nodes; no byte string may
// crash a replica, and what decodes must re-encode to the same commands.
func FuzzDecodeEntry(f *testing.F) {
	f.Add(encodeEntry(nil, []*command{
		{kind: cmdSend, id: 1 << 20, user: 2, from: 1, reqID: 7, limit: 10, content: "hi", createdAt: "2026-11-27T10:20:08.123Z"},
		{kind: cmdDelivered, id: 2 << 20, user: 1, from: 2, ids: []int64{5, 9, 4}},
		{kind: cmdRead, id: 3 << 20, user: 1, from: 2, upTo: 9},
		{kind: cmdAck, user: 2, upTo: 9},
		{kind: cmdDevice, user: 2, device: Device{Platform: "apns", Token: "t", Topic: "x", Sandbox: true}, at: 5},
		{kind: cmdDeviceRemove, user: 2, device: Device{Token: "t"}},
		{kind: cmdLastConnected, user: 2, at: 99},
		{kind: cmdExpire, upTo: 1, at: 2},
		{kind: cmdExpired, id: 4 << 20, user: 1, from: 2, ids: []int64{5, 9}},
	}))
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		cmds, err := decodeEntry(b)
		if err != nil {
			return
		}
		ptrs := make([]*command, len(cmds))
		for i := range cmds {
			ptrs[i] = &cmds[i]
		}
		again, err := decodeEntry(encodeEntry(nil, ptrs))
		if err != nil || len(again) != len(cmds) {
			t.Fatalf("re-encoding failed: %v", err)
		}
		// Applying whatever decoded must not panic either.
		fm := newFSM(0, 4, nil)
		var touched []int64
		for i := range cmds {
			fm.apply(&cmds[i], &touched)
		}
	})
}

// FuzzRestore: a corrupt snapshot is an error, never a crash.
func FuzzRestore(f *testing.F) {
	fm := newFSM(0, 4, nil)
	var touched []int64
	fm.apply(&command{kind: cmdSend, id: 1 << 20, user: 2, from: 1, reqID: 7, content: "hi", createdAt: "x"}, &touched)
	fm.apply(&command{kind: cmdDevice, user: 2, device: Device{Platform: "fcm", Token: "t"}}, &touched)
	fm.apply(&command{kind: cmdLastConnected, user: 2, at: 99}, &touched)
	fm.apply(&command{kind: cmdRead, id: 2 << 20, user: 1, from: 2, upTo: 9}, &touched)
	fm.apply(&command{kind: cmdExpired, id: 3 << 20, user: 1, from: 2, ids: []int64{1 << 20}}, &touched)
	snap, _ := fm.Snapshot()
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		f.Fatal(err)
	}
	f.Add(sink.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = newFSM(0, 4, nil).Restore(io.NopCloser(bytes.NewReader(b)))
	})
}

type memSink struct{ bytes.Buffer }

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { return nil }
func (s *memSink) Close() error  { return nil }
