package edgechat_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/edgenode/edgenode/edgechat"
)

// TestTwoInstallationsOfOneUser (issue 17): bob's phone and tablet (two
// databases) each get every message alice sends, whichever takes it first,
// including one sent while the tablet was closed; each keeps its device id
// across restarts, and the server lists both.
func TestTwoInstallationsOfOneUser(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, filepath.Join(dir, "node"), "", "eu")
	a := newClient(t, dir, n.URL(), alice)
	phone := newClient(t, dir, n.URL(), bob, func(c *edgechat.Config) { c.DBPath = filepath.Join(dir, "phone", "chats.db") })
	tabletDB := filepath.Join(dir, "tablet", "chats.db")
	tablet := newClient(t, dir, n.URL(), bob, func(c *edgechat.Config) { c.DBPath = tabletDB })
	if phone.DeviceID() == "" || phone.DeviceID() == tablet.DeviceID() {
		t.Fatalf("device ids %q and %q", phone.DeviceID(), tablet.DeviceID())
	}
	a.Start()
	phone.Start()
	tablet.Start()
	waitFor(t, "all online", 10*time.Second, func() bool { return a.Connected() && phone.Connected() && tablet.Connected() })
	waitFor(t, "both of bob's devices linked", 10*time.Second, func() bool {
		l, err := phone.LinkedDevices()
		return err == nil && l.Len() == 2
	})

	for _, s := range []string{"one", "two"} {
		if _, err := a.Send(bob, s); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []*testClient{phone, tablet} {
		waitFor(t, "both messages on each device", 10*time.Second, func() bool { return contents(history(t, c, alice)) == "one,two" })
	}

	// The tablet is closed while a third message comes: it gets it when
	// it starts again, with the same device id.
	id := tablet.DeviceID()
	tablet.Close()
	if _, err := a.Send(bob, "three"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the phone gets the third", 10*time.Second, func() bool { return contents(history(t, phone, alice)) == "one,two,three" })
	tablet = newClient(t, dir, n.URL(), bob, func(c *edgechat.Config) { c.DBPath = tabletDB })
	if tablet.DeviceID() != id {
		t.Fatalf("tablet's device id after a restart %q, was %q", tablet.DeviceID(), id)
	}
	tablet.Start()
	waitFor(t, "the tablet gets the third after its restart", 10*time.Second, func() bool {
		return contents(history(t, tablet, alice)) == "one,two,three"
	})
	l, err := tablet.LinkedDevices()
	if err != nil || l.Len() != 2 {
		t.Fatalf("linked devices: %v, %v", l, err)
	}
	current := 0
	for i := range l.Len() {
		if d := l.Get(i); d.Current {
			current++
			if d.DeviceID != id {
				t.Fatalf("current device %q, want the tablet's %q", d.DeviceID, id)
			}
		}
	}
	if current != 1 {
		t.Fatalf("%d devices marked current", current)
	}
}
