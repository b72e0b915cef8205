package relaylog

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"testing"
)

// TestLinkedCodecGolden pins the encodings of the device commands and of a
// version 5 snapshot (written only once some device state exists: without
// any, the snapshot stays version 4, which older builds read).
func TestLinkedCodecGolden(t *testing.T) {
	cmds := []*command{
		{kind: cmdLink, user: 2, dev: "phone", at: 99},
		{kind: cmdUnlink, user: 2, dev: "tablet"},
		{kind: cmdAckDevice, user: 2, upTo: 1 << 20, dev: "phone", at: 100},
	}
	const wantEntry = "01030b040570686f6e65c6010c04067461626c6574000d04808080010570686f6e65c801"
	b := encodeEntry(nil, cmds)
	if h := hex.EncodeToString(b); h != wantEntry {
		t.Errorf("entry encoded\n %s\nwant\n %s", h, wantEntry)
	}
	got, err := decodeEntry(b)
	if err != nil || len(got) != 3 || fmt.Sprintf("%+v", got[2]) != fmt.Sprintf("%+v", *cmds[2]) {
		t.Fatalf("decoded %+v, %v", got, err)
	}

	fm := newFSM(0, 4, nil)
	var touched []int64
	for _, c := range []*command{
		{kind: cmdLink, user: 2, dev: "phone", at: 5},
		{kind: cmdLink, user: 2, dev: "tablet", at: 6},
		{kind: cmdSend, id: 1 << 20, user: 2, from: 1, reqID: 7, content: "hi", createdAt: "x"},
		{kind: cmdAckDevice, user: 2, upTo: 1 << 20, dev: "phone", at: 7},
	} {
		if r := fm.apply(c, &touched); r.err != nil {
			t.Fatal(r.err)
		}
	}
	const wantSnap = "0580808001010400010180808001020402686901780102008080800101040e80808001f3ecd195f8cfeecd2d00000000010204808080010104808080010104020570686f6e65808080010e067461626c6574000c"
	snap, _ := fm.Snapshot()
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	if h := hex.EncodeToString(sink.Bytes()); h != wantSnap {
		t.Errorf("snapshot encoded\n %s\nwant\n %s", h, wantSnap)
	}
	again := newFSM(0, 4, nil)
	if err := again.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if d := again.depth(2); d != 0 {
		t.Fatalf("restored depth %d, want 0: the message was delivered to the phone", d)
	}
	if c, ok := again.cursorOf(2, "tablet"); !ok || c != 0 {
		t.Fatalf("restored tablet cursor %d %v", c, ok)
	}
}

// TestHeldEventsAreBounded: a queue keeps at most MaxHeldEvents events for
// a device that stays away while another acknowledges them; messages the
// user's devices got raise no EXPIRED receipt when they go.
func TestHeldEventsAreBounded(t *testing.T) {
	f := newFSM(0, 1, nil)
	var touched []int64
	apply := func(c command) result {
		t.Helper()
		r := f.apply(&c, &touched)
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r
	}
	apply(command{kind: cmdLink, user: 2, dev: "phone", at: 1})
	apply(command{kind: cmdLink, user: 2, dev: "away", at: 1})
	n := MaxHeldEvents + 5
	var last int64
	for i := 1; i <= n; i++ {
		last = apply(command{kind: cmdSend, id: int64(i) << 12, user: 2, from: 1, reqID: int64(i), content: "m", createdAt: fmt.Sprintf("2026-12-01T00:00:%02d.%03dZ", i/1000%60, i%1000)}).ev.ID
	}
	if d := f.depth(2); d != n {
		t.Fatalf("depth %d, want %d", d, n)
	}
	if r := apply(command{kind: cmdAckDevice, user: 2, dev: "phone", upTo: last, at: 2}); r.n != 5 {
		t.Fatalf("the phone's ack dropped %d events, want the 5 past MaxHeldEvents", r.n)
	}
	if evs, _ := f.pending(2, 0, 0); len(evs) != MaxHeldEvents {
		t.Fatalf("%d events held, want %d", len(evs), MaxHeldEvents)
	}
	if d := f.depth(2); d != 0 {
		t.Fatalf("depth %d after the phone took everything", d)
	}
	if msgs, _ := f.expiring(last+1, 100); len(msgs) != 0 {
		t.Fatalf("%d delivered messages would get EXPIRED receipts", len(msgs))
	}
	if users := f.awaitingPush(); len(users) != 0 {
		t.Fatalf("users %v await a push for delivered messages", users)
	}
}

// TestCopiesForOtherDevices: a sent copy and a read sync are queued only
// for a user with two linked devices; a read sync needs a message from the
// other user up to its mark, and a newer one replaces a queued one; both
// survive a snapshot (version 5) and their entries decode as encoded.
func TestCopiesForOtherDevices(t *testing.T) {
	f := newFSM(0, 1, nil)
	var touched []int64
	apply := func(c command) result {
		t.Helper()
		b := encodeEntry(nil, []*command{&c})
		cmds, err := decodeEntry(b)
		if err != nil || fmt.Sprintf("%+v", cmds[0]) != fmt.Sprintf("%+v", c) {
			t.Fatalf("entry of %+v decodes to %+v, %v", c, cmds, err)
		}
		r := f.apply(&c, &touched)
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r
	}
	copyOf := func(id int64) command {
		return command{kind: cmdSentCopy, id: id << 12, user: 2, from: 1, upTo: id << 12, content: "mine", createdAt: "x"}
	}
	apply(command{kind: cmdLink, user: 2, dev: "phone", at: 1})
	if r := apply(copyOf(10)); r.created {
		t.Fatal("a copy queued for a user with one device")
	}
	apply(command{kind: cmdLink, user: 2, dev: "tablet", at: 1})
	r := apply(copyOf(11))
	if !r.created || r.ev.Kind != KindSent || r.ev.UpTo != 11<<12 || r.ev.To != 1 || r.ev.From != 2 {
		t.Fatalf("copy = %+v", r)
	}
	// Read syncs: none without a message from user 1 to user 2.
	if r := apply(command{kind: cmdReadSync, id: 12 << 12, user: 2, from: 1, upTo: 5}); r.created {
		t.Fatal("a read sync without a conversation")
	}
	m := apply(command{kind: cmdSend, id: 13 << 12, user: 2, from: 1, reqID: 1, content: "hi", createdAt: "2026-12-01T00:00:00Z"}).ev
	if r := apply(command{kind: cmdReadSync, id: 14 << 12, user: 2, from: 1, upTo: m.ID + 1}); r.created {
		t.Fatal("a read sync past the newest message")
	}
	apply(command{kind: cmdReadSync, id: 15 << 12, user: 2, from: 1, upTo: m.ID - 1})
	apply(command{kind: cmdReadSync, id: 16 << 12, user: 2, from: 1, upTo: m.ID})
	evs, _ := f.pending(2, 0, 0)
	reads := 0
	for _, e := range evs {
		if e.Kind == KindReadSync {
			reads++
			if e.UpTo != m.ID {
				t.Fatalf("queued read sync up to %d, want the newer %d", e.UpTo, m.ID)
			}
		}
	}
	if reads != 1 || len(evs) != 3 {
		t.Fatalf("queue %+v: want the copy, the message, one read sync", evs)
	}
	if d := f.depth(2); d != 1 {
		t.Fatalf("depth %d: copies and read syncs counted as messages", d)
	}
	snap, _ := f.Snapshot()
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	if v := sink.Bytes()[0]; v != 5 {
		t.Fatalf("snapshot version %d, want 5", v)
	}
	g := newFSM(0, 1, nil)
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if got, _ := g.pending(2, 0, 0); fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", evs) {
		t.Fatalf("restored %+v, want %+v", got, evs)
	}
}

// TestDevicePushCodecGolden pins cmdDeviceOf, cmdRevoke and the version 6
// snapshot (written only once a push token is bound to a device or a
// device is revoked).
func TestDevicePushCodecGolden(t *testing.T) {
	c := &command{kind: cmdDeviceOf, user: 2, device: Device{Platform: "fcm", Token: "t", DeviceID: "tablet"}, at: 5}
	rv := &command{kind: cmdRevoke, user: 2, dev: "old", at: 6}
	const wantEntry = "010210040366636d017400000a067461626c65741104036f6c640c"
	b := encodeEntry(nil, []*command{c, rv})
	if h := hex.EncodeToString(b); h != wantEntry {
		t.Errorf("entry encoded\n %s\nwant\n %s", h, wantEntry)
	}
	got, err := decodeEntry(b)
	if err != nil || len(got) != 2 || fmt.Sprintf("%+v", got[0]) != fmt.Sprintf("%+v", *c) || fmt.Sprintf("%+v", got[1]) != fmt.Sprintf("%+v", *rv) {
		t.Fatalf("decoded %+v, %v", got, err)
	}

	fm := newFSM(0, 4, nil)
	var touched []int64
	for _, c := range []*command{
		{kind: cmdLink, user: 2, dev: "tablet", at: 5},
		c,
		{kind: cmdLink, user: 2, dev: "old", at: 5},
		rv,
	} {
		if r := fm.apply(c, &touched); r.err != nil {
			t.Fatal(r.err)
		}
	}
	const wantSnap = "060000000104010366636d017400000a00000000010401067461626c6574000a01040174067461626c6574010401036f6c640c"
	snap, _ := fm.Snapshot()
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	if h := hex.EncodeToString(sink.Bytes()); h != wantSnap {
		t.Errorf("snapshot encoded\n %s\nwant\n %s", h, wantSnap)
	}
	again := newFSM(0, 4, nil)
	if err := again.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if ds := again.devicesOf(2); len(ds) != 1 || ds[0].DeviceID != "tablet" || ds[0].RegisteredAt != 5 {
		t.Fatalf("restored tokens %+v", ds)
	}
	if !again.isRevoked(2, "old") || again.isRevoked(2, "tablet") {
		t.Fatal("restored revocations differ")
	}
}
