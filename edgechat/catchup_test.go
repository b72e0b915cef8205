package edgechat_test

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// A client that (re)connects catches up on what waits for it through one
// path: each waiting message crosses the network once, not once on the
// socket and again in a REST sync.
func TestReconnectCatchUpFetchesEachMessageOnce(t *testing.T) {
	const waiting = 1000
	dir := t.TempDir()
	proxy := newCutProxy(t, "")
	n := startNodeWith(t, filepath.Join(dir, "node"), "", "eu", []string{"--public-url", proxy.url()})
	proxy.backend = n.Addr().String()
	a := newClient(t, dir, n.URL(), alice)
	for i := range waiting {
		if _, err := a.Send(bob, fmt.Sprintf("message %04d", i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "alice's messages accepted", time.Minute, func() bool {
		a.Flush(10000)
		p, _ := a.PendingCount()
		return p == 0
	})
	ids := map[int64]bool{}
	for _, m := range history(t, a, bob) {
		ids[m.MessageID] = true
	}
	b := newClient(t, dir, proxy.url(), bob)
	proxy.resetDownloaded() // alice's calls may have gone through it too
	start := time.Now()
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "bob has every message", time.Minute, func() bool { return len(history(t, b, alice)) == waiting })
	elapsed := time.Since(start)
	down := proxy.downloaded()
	twice := 0
	for id := range ids {
		if k := bytes.Count(down, fmt.Appendf(nil, `"messageId":%d,`, id)); k != 1 {
			twice++
			if twice < 2 {
				t.Errorf("message %d crossed the network %d times", id, k)
			}
		}
	}
	if twice > 0 {
		t.Errorf("%d of %d messages crossed the network more than once", twice, waiting)
	}
	t.Logf("catch-up of %d messages: %d bytes downloaded (%.0f per message) in %v", waiting, len(down), float64(len(down))/waiting, elapsed.Round(time.Millisecond))
}
