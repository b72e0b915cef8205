package edgechat_test

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/edgenode/edgenode/edgechat"
	"github.com/edgenode/edgenode/wire"
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

// TestOwnMessagesAndReadsOnEveryInstallation (issue 17): what bob sends
// from his phone shows on his tablet in the conversation, and reading it
// on the phone clears the unread count on the tablet (and alice sees it
// read).
func TestOwnMessagesAndReadsOnEveryInstallation(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, filepath.Join(dir, "node"), "", "eu")
	a := newClient(t, dir, n.URL(), alice)
	phone := newClient(t, dir, n.URL(), bob, func(c *edgechat.Config) { c.DBPath = filepath.Join(dir, "phone", "chats.db") })
	tablet := newClient(t, dir, n.URL(), bob, func(c *edgechat.Config) { c.DBPath = filepath.Join(dir, "tablet", "chats.db") })
	for _, c := range []*testClient{a, phone, tablet} {
		c.Start()
	}
	waitFor(t, "all online", 10*time.Second, func() bool { return a.Connected() && phone.Connected() && tablet.Connected() })
	waitFor(t, "both of bob's devices linked", 10*time.Second, func() bool {
		l, err := phone.LinkedDevices()
		return err == nil && l.Len() == 2
	})
	if _, err := a.Send(bob, "hi bob"); err != nil {
		t.Fatal(err)
	}
	// Sends go out in the background: the reply is written once both of
	// bob's devices have alice's message, so the order is known.
	for _, c := range []*testClient{phone, tablet} {
		waitFor(t, "alice's message on each of bob's devices", 10*time.Second, func() bool { return contents(history(t, c, alice)) == "hi bob" })
	}
	if _, err := phone.Send(alice, "hi alice, from my phone"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*testClient{a, phone, tablet} {
		waitFor(t, "the whole conversation everywhere", 10*time.Second, func() bool {
			other := alice
			if c == a {
				other = bob
			}
			return contents(history(t, c, other)) == "hi bob,hi alice, from my phone"
		})
	}
	unread := func(c *testClient) int {
		chats, err := c.Chats()
		if err != nil || chats.Len() == 0 {
			return -1
		}
		return chats.Get(0).UnreadCount
	}
	if u := unread(tablet); u != 1 {
		t.Fatalf("tablet's unread count %d before any read, want 1", u)
	}
	if err := phone.MarkRead(alice); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the tablet's unread count cleared", 10*time.Second, func() bool { return unread(tablet) == 0 })
	waitFor(t, "alice sees READ", 10*time.Second, func() bool {
		h := history(t, a, bob)
		return len(h) == 2 && h[0].Status == edgechat.StatusRead
	})
}

// TestRevokedInstallationIsTold (issue 17): an installation the user
// unlinks from another one hears device_revoked (OnAuthFailed), goes
// offline and stays so, and gets no more messages; the other goes on.
func TestRevokedInstallationIsTold(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, filepath.Join(dir, "node"), "", "eu")
	a := newClient(t, dir, n.URL(), alice)
	phone := newClient(t, dir, n.URL(), bob, func(c *edgechat.Config) { c.DBPath = filepath.Join(dir, "phone", "chats.db") })
	lost := newClient(t, dir, n.URL(), bob, func(c *edgechat.Config) { c.DBPath = filepath.Join(dir, "lost", "chats.db") })
	a.Start()
	phone.Start()
	lost.Start()
	waitFor(t, "both of bob's devices linked", 10*time.Second, func() bool {
		l, err := phone.LinkedDevices()
		return err == nil && l.Len() == 2
	})
	if err := phone.UnlinkDevice(lost.DeviceID()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the lost installation told", 10*time.Second, func() bool {
		lost.rec.mu.Lock()
		defer lost.rec.mu.Unlock()
		return slices.Contains(lost.rec.auth, wire.CodeDeviceRevoked)
	})
	waitFor(t, "the lost installation offline", 10*time.Second, func() bool { return !lost.Connected() })
	if _, err := a.Send(bob, "after"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the phone gets the message", 10*time.Second, func() bool { return contents(history(t, phone, alice)) == "after" })
	if got := contents(history(t, lost, alice)); got != "" {
		t.Fatalf("the revoked installation got %q", got)
	}
	if lost.Connected() {
		t.Fatal("the revoked installation connected again")
	}
}
