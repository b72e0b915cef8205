package relaylog_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/edgenode/edgenode/relaylog"
)

// Push marks say which messages a user was already alerted of; they survive
// restarts and snapshots so that a new leader does not alert again.
func TestPushMarksSurviveRestart(t *testing.T) {
	for _, snap := range []bool{false, true} {
		t.Run(fmt.Sprintf("snapshot=%v", snap), func(t *testing.T) {
			dir := t.TempDir()
			l := openLog(t, dir, nil)
			ctx := context.Background()
			// Only users with a push token await a push.
			for _, u := range []int64{10, 11} {
				if err := l.RegisterDevice(ctx, u, relaylog.Device{Platform: "fcm", Token: fmt.Sprint("tok", u)}); err != nil {
					t.Fatal(err)
				}
			}
			a1 := send(t, l, 1, 10, 1, "one")
			a2 := send(t, l, 1, 10, 2, "two")
			b1 := send(t, l, 1, 11, 3, "three")
			if st := l.PushState(10); st.Unread != 2 || st.Latest.ID != a2.ID || st.Latest.Content != "two" || st.Pushed != 0 {
				t.Fatalf("push state = %+v", st)
			}
			if err := l.MarkPushed(ctx, 10, a2.ID); err != nil {
				t.Fatal(err)
			}
			// An older mark does not move it back.
			if err := l.MarkPushed(ctx, 10, a1.ID); err != nil {
				t.Fatal(err)
			}
			if snap {
				if err := l.Snapshot(); err != nil {
					t.Fatal(err)
				}
			}
			l.Close()
			l = openLog(t, dir, func(o *relaylog.Options) { o.Shards = 0 })
			defer l.Close()
			if st := l.PushState(10); st.Pushed != a2.ID || st.Unread != 2 {
				t.Fatalf("after restart push state = %+v", st)
			}
			if got := awaiting(l); !slices.Equal(got, []int64{11}) {
				t.Fatalf("awaiting push = %v, want [11] (b1 %d)", got, b1.ID)
			}
			// A new message makes the user await a push again.
			send(t, l, 2, 10, 1, "four")
			if got := awaiting(l); !slices.Equal(got, []int64{10, 11}) {
				t.Fatalf("awaiting push = %v, want [10 11]", got)
			}
		})
	}
}

func awaiting(l *relaylog.Log) []int64 {
	var out []int64
	for s := 0; s < l.Shards(); s++ {
		out = append(out, l.AwaitingPush(s)...)
	}
	slices.Sort(out)
	return out
}

// A token the provider rejected is removed only if it was not registered
// again since the push that found it dead.
func TestRemoveDeviceIfUnchanged(t *testing.T) {
	l := openLog(t, t.TempDir(), nil)
	defer l.Close()
	ctx := context.Background()
	if err := l.RegisterDevice(ctx, 5, relaylog.Device{Platform: "fcm", Token: "t1"}); err != nil {
		t.Fatal(err)
	}
	old := l.Devices(5)[0].RegisteredAt
	if err := l.RemoveDeviceIfUnchanged(ctx, 5, "t1", old-1); err != nil {
		t.Fatal(err)
	}
	if len(l.Devices(5)) != 1 {
		t.Fatal("a token registered after the push was removed")
	}
	if err := l.RemoveDeviceIfUnchanged(ctx, 5, "t1", old); err != nil {
		t.Fatal(err)
	}
	if d := l.Devices(5); len(d) != 0 {
		t.Fatalf("dead token kept: %+v", d)
	}
}

// TestPushPerDevice: a push token bound to a linked device follows that
// device's cursor: it awaits an alert for what its device lacks even when
// another device acknowledged it, with that device's own count; a token
// of a device that has everything awaits nothing. Bindings survive
// restarts and snapshots, and unlinking a device removes its tokens.
func TestPushPerDevice(t *testing.T) {
	for _, snap := range []bool{false, true} {
		t.Run(fmt.Sprintf("snapshot=%v", snap), func(t *testing.T) {
			dir := t.TempDir()
			l := openLog(t, dir, nil)
			ctx := context.Background()
			link(t, l, 2, "phone")
			link(t, l, 2, "tablet")
			for _, d := range []relaylog.Device{
				{Platform: "apns", Token: "phone-tok", DeviceID: "phone"},
				{Platform: "fcm", Token: "tablet-tok", DeviceID: "tablet"},
			} {
				if err := l.RegisterDevice(ctx, 2, d); err != nil {
					t.Fatal(err)
				}
			}
			m1 := send(t, l, 1, 2, 1, "one")
			m2 := send(t, l, 1, 2, 2, "two")
			ackDev(t, l, 2, "phone", m2.ID)
			if st := l.PushState(2); st.Unread != 0 {
				t.Fatalf("user push state = %+v: the phone has both", st)
			}
			if !l.PushDue(2) {
				t.Fatal("no push due while the tablet lacks two messages")
			}
			if snap {
				if err := l.Snapshot(); err != nil {
					t.Fatal(err)
				}
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l = openLog(t, dir, nil)
			defer l.Close()
			if st := l.DevicePushState(2, "tablet"); st.Unread != 2 || st.Latest.ID != m2.ID {
				t.Fatalf("tablet push state = %+v, want 2 unread up to %d", st, m2.ID)
			}
			if st := l.DevicePushState(2, "phone"); st.Unread != 0 {
				t.Fatalf("phone push state = %+v, want nothing", st)
			}
			for _, d := range l.Devices(2) {
				if want := strings.TrimSuffix(d.Token, "-tok"); d.DeviceID != want {
					t.Fatalf("token %s bound to %q after restart, want %q", d.Token, d.DeviceID, want)
				}
			}
			if got := awaiting(l); !slices.Equal(got, []int64{2}) {
				t.Fatalf("awaiting push = %v, want [2]", got)
			}
			ackDev(t, l, 2, "tablet", m1.ID)
			if st := l.DevicePushState(2, "tablet"); st.Unread != 1 || st.Latest.ID != m2.ID {
				t.Fatalf("tablet push state = %+v, want 1 unread", st)
			}
			if err := l.MarkPushed(ctx, 2, m2.ID); err != nil {
				t.Fatal(err)
			}
			if l.PushDue(2) {
				t.Fatal("push due after the mark")
			}
			// Revoking the tablet removes its token, not the phone's.
			if found, err := l.Unlink(ctx, 2, "tablet"); err != nil || !found {
				t.Fatalf("unlink = %v, %v", found, err)
			}
			if ds := l.Devices(2); len(ds) != 1 || ds[0].Token != "phone-tok" {
				t.Fatalf("tokens after unlinking the tablet = %+v", ds)
			}
		})
	}
}
