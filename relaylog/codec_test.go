package relaylog

import (
	"bytes"
	"encoding/hex"
	"io"
	"testing"
)

// TestCodecGolden pins the encodings of raft entries and snapshots: every
// replica's log and snapshots hold exactly these bytes, and replicas of
// different versions read each other's.
func TestCodecGolden(t *testing.T) {
	cmds := []*command{
		{kind: cmdSend, id: 1 << 20, user: 2, from: 1, reqID: 7, limit: 10, content: "hi", createdAt: "2026-11-27T10:20:08.123Z"},
		{kind: cmdDelivered, id: 2 << 20, user: 1, from: 2, ids: []int64{5, 9, 4}},
		{kind: cmdRead, id: 3 << 20, user: 1, from: 2, upTo: 9},
		{kind: cmdAck, user: 2, upTo: 9},
		{kind: cmdDevice, user: 2, device: Device{Platform: "apns", Token: "t", Topic: "x", Sandbox: true}, at: 5},
		{kind: cmdDeviceRemove, user: 2, device: Device{Token: "t"}},
		{kind: cmdLastConnected, user: 2, at: 99},
		{kind: cmdExpire, upTo: 1, at: 2},
		{kind: cmdPushed, user: 3, upTo: 4},
		{kind: cmdExpired, id: 4 << 20, user: 1, from: 2, ids: []int64{5, 9, -3, 1 << 40}},
	}
	const wantEntry = "010a018080800104020e1402686918323032362d31312d32375431303a32303a30382e3132335a02808080020204030a0809038080800302041204041205040461706e7301740178010a06040001740000000704c6010802040906080a808080040204040a0817868080808040"
	if h := hex.EncodeToString(encodeEntry(nil, cmds)); h != wantEntry {
		t.Errorf("entry encoded\n %s\nwant\n %s", h, wantEntry)
	}
	// Snapshots of states with one key per table (tables are maps: with
	// more, the order of keys in a snapshot varies).
	for i, tc := range []struct {
		cmds []*command
		want string
	}{
		{[]*command{
			{kind: cmdSend, id: 1 << 20, user: 2, from: 1, reqID: 7, content: "hi", createdAt: "x"},
			{kind: cmdDevice, user: 2, device: Device{Platform: "fcm", Token: "t", Sandbox: true}},
			{kind: cmdLastConnected, user: 2, at: 99},
		}, "0480808001010400010180808001020402686901780102008080800101040e80808001f3ecd195f8cfeecd2d000104010366636d01740001000104c6010001020480808001"},
		{[]*command{
			{kind: cmdRead, id: 2 << 20, user: 1, from: 2, upTo: 9},
			{kind: cmdExpired, id: 3 << 20, user: 1, from: 2, ids: []int64{1 << 20, 5, 1 << 30}},
		}, "048080800301020002038080800204120480808003040380808001f5ff7ff6ffffff070000000102041200"},
	} {
		fm := newFSM(0, 4, nil)
		var touched []int64
		for _, c := range tc.cmds {
			fm.apply(c, &touched)
		}
		snap, _ := fm.Snapshot()
		var sink memSink
		if err := snap.Persist(&sink); err != nil {
			t.Fatal(err)
		}
		if h := hex.EncodeToString(sink.Bytes()); h != tc.want {
			t.Errorf("snapshot %d encoded\n %s\nwant\n %s", i, h, tc.want)
		}
		// What restores from it snapshots to the same bytes.
		want, _ := hex.DecodeString(tc.want)
		again := newFSM(0, 4, nil)
		if err := again.Restore(io.NopCloser(bytes.NewReader(want))); err != nil {
			t.Fatalf("snapshot %d: restore: %v", i, err)
		}
		snap, _ = again.Snapshot()
		sink.Reset()
		if err := snap.Persist(&sink); err != nil {
			t.Fatal(err)
		}
		if h := hex.EncodeToString(sink.Bytes()); h != tc.want {
			t.Errorf("snapshot %d restored and taken again\n %s\nwant\n %s", i, h, tc.want)
		}
	}
}
