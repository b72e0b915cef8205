package edgechat_test

import (
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/edgenode/edgenode/auth"
	"github.com/edgenode/edgenode/edgechat"
)

// Two accounts on one DBPath (log out, log in as someone else): the second
// is refused with a typed error, or with WipeOtherAccount gets a fresh
// database; either way nothing the second sends acknowledges the first's
// cursor against the second's queue, so the message waiting for it
// arrives.
func TestAccountSwitchOnOneDBPathLosesNothing(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, filepath.Join(dir, "node"), "", "eu")
	const carol = 3
	dbPath := filepath.Join(dir, "phone", "chats.db")
	a := newClient(t, dir, n.URL(), alice)
	b := newClient(t, dir, n.URL(), bob, func(c *edgechat.Config) { c.DBPath = dbPath })
	if _, err := a.Send(bob, "hi bob"); err != nil {
		t.Fatal(err)
	}
	if err := a.Flush(5000); err != nil {
		t.Fatal(err)
	}
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := contents(history(t, b, alice)); got != "hi bob" {
		t.Fatalf("bob's history: %q", got)
	}
	b.Close() // bob logs out; his cursor stays in chats.db

	// A message waits for carol, queued after everything bob acknowledged.
	if _, err := a.Send(carol, "hi carol"); err != nil {
		t.Fatal(err)
	}
	if err := a.Flush(5000); err != nil {
		t.Fatal(err)
	}
	cfg := &edgechat.Config{ServerURL: n.URL(), Token: token(t, carol), DBPath: dbPath}
	if _, err := edgechat.Open(cfg); !errors.Is(err, edgechat.ErrOtherAccount) || edgechat.ErrorCode(err) != edgechat.CodeOtherAccount {
		t.Fatalf("carol opened bob's database: %v (code %q), want ErrOtherAccount", err, edgechat.ErrorCode(err))
	}
	// Bob's database is untouched by the refusal.
	b2 := newClient(t, dir, n.URL(), bob, func(c *edgechat.Config) { c.DBPath = dbPath })
	if got := contents(history(t, b2, alice)); got != "hi bob" {
		t.Fatalf("bob's history after carol's refused open: %q", got)
	}
	b2.Close()

	c := newClient(t, dir, n.URL(), carol, func(c *edgechat.Config) { c.DBPath = dbPath; c.WipeOtherAccount = true })
	if got := len(history(t, c, bob)) + len(history(t, c, alice)); got != 0 {
		t.Fatalf("carol sees %d of bob's messages after the wipe", got)
	}
	if err := c.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := contents(history(t, c, alice)); got != "hi carol" {
		t.Fatalf("carol's history: %q, want the message that waited for her", got)
	}
	// And bob, back on his own database elsewhere, still gets nothing lost.
	other := newClient(t, dir, n.URL(), bob, func(c *edgechat.Config) { c.DBPath = filepath.Join(dir, "tablet", "chats.db") })
	if err := other.Sync(); err != nil {
		t.Fatal(err)
	}
}

// When the socket drops, the contacts' live presence and typing are no
// longer known: they show offline and not typing, and the listener hears of
// it. A socket that closes clears them at once; one that goes half-open
// (the network vanished: no close, no pings) clears them when a ping is a
// tenth of the interval late, long before the read deadline gives up on
// the socket (2.5 intervals + 5 s).
func TestPresenceClearsWhenTheSocketDrops(t *testing.T) {
	for _, tc := range []struct {
		name string
		drop func(p *cutProxy)
	}{
		{"closed", func(p *cutProxy) { p.setDrop(true); p.closeAll() }},
		{"half-open", func(p *cutProxy) { p.setHang(true) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			// Clients reach the node through a proxy that can cut their
			// connections: GET /v1/edges names the proxy.
			proxy := newCutProxy(t, "")
			n := startNodeWith(t, filepath.Join(dir, "node"), "", "eu", []string{"--public-url", proxy.url()})
			proxy.backend = n.Addr().String()
			a := newClient(t, dir, proxy.url(), alice)
			b := newClient(t, dir, n.URL(), bob)
			// A conversation, so that each may see the other's presence.
			if _, err := b.Send(alice, "hi"); err != nil {
				t.Fatal(err)
			}
			if err := b.Flush(5000); err != nil {
				t.Fatal(err)
			}
			if err := a.Start(); err != nil {
				t.Fatal(err)
			}
			if err := b.Start(); err != nil {
				t.Fatal(err)
			}
			if err := a.WatchIDs([]int64{bob}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "bob online and typing to alice", 10*time.Second, func() bool {
				b.SetTyping(alice, true)
				ci := a.ContactInfo(bob)
				return ci.Online && ci.Typing
			})
			cut := time.Now()
			tc.drop(proxy) // the socket drops and cannot come back
			waitFor(t, "bob's presence cleared on alice's device", 10*time.Second, func() bool {
				ci := a.ContactInfo(bob)
				return !ci.Online && !ci.Typing
			})
			d := time.Since(cut)
			t.Logf("presence cleared %v after the socket dropped (ping interval 1 s)", d.Round(time.Millisecond))
			// The bound is the design's (a tenth of an interval past the
			// missed ping), doubled for a loaded machine; the read deadline
			// alone would take 7.5 s here.
			if d > 2*time.Second {
				t.Errorf("presence cleared %v after the socket dropped, more than two ping intervals", d)
			}
			if !a.rec.sawStatus(func(ci edgechat.ContactInfo) bool { return ci.UserID == bob && !ci.Online && !ci.Typing }) {
				t.Error("the listener was not told that bob's presence is no longer known")
			}
		})
	}
}

// tokenSource issues tokens for a user and records why it was asked.
type tokenSource struct {
	mu      sync.Mutex
	user    int64
	ttl     time.Duration
	fail    bool
	reasons []string
}

func (s *tokenSource) Token(reason string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reasons = append(s.reasons, reason)
	if s.fail {
		return "", errors.New("the login service says: log in again")
	}
	return auth.Issue([]byte(jwtSecret), s.user, s.ttl, time.Now())
}

func (s *tokenSource) asked(reason string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Contains(s.reasons, reason)
}

func expiredToken(t *testing.T, user int64) string {
	tok, err := auth.Issue([]byte(jwtSecret), user, time.Hour, time.Now().Add(-3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// An expired token is replaced through the TokenSource when the server
// refuses it: the queued messages go through and none burns its attempts.
func TestExpiredTokenIsRefreshedAndQueuedMessagesDelivered(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, filepath.Join(dir, "node"), "", "eu")
	src := &tokenSource{user: alice, ttl: time.Hour}
	a := newClient(t, dir, n.URL(), alice, func(c *edgechat.Config) {
		c.Token, c.TokenSource, c.MaxAttempts = expiredToken(t, alice), src, 2
	})
	for _, m := range []string{"one", "two", "three"} {
		if _, err := a.Send(bob, m); err != nil {
			t.Fatal(err)
		}
	}
	// Not started: the first send's 401 asks the source.
	if err := a.Flush(5000); err != nil {
		t.Fatal(err)
	}
	if !src.asked(edgechat.TokenUnauthorized) {
		t.Fatalf("the source was asked %v, want %q", src.reasons, edgechat.TokenUnauthorized)
	}
	if got := statuses(history(t, a, bob)); got != "SYNCED,SYNCED,SYNCED" {
		t.Fatalf("alice's messages after the refresh: %s", got)
	}
	b := newClient(t, dir, n.URL(), bob)
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := contents(history(t, b, alice)); got != "one,two,three" {
		t.Fatalf("bob got %q", got)
	}
}

// A started client asks the source before its token expires, and keeps
// its socket and sends working past the first token's end.
func TestTokenIsRefreshedBeforeItExpires(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, filepath.Join(dir, "node"), "", "eu")
	src := &tokenSource{user: alice, ttl: 3 * time.Second}
	a := newClient(t, dir, n.URL(), alice, func(c *edgechat.Config) { c.Token, c.TokenSource, c.UserID = "", src, alice })
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a token at start", 5*time.Second, func() bool { return src.asked(edgechat.TokenStart) })
	waitFor(t, "a token before the first expires", 10*time.Second, func() bool { return src.asked(edgechat.TokenExpiring) })
	if _, err := a.Send(bob, "still here"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the message accepted", 10*time.Second, func() bool { p, _ := a.PendingCount(); return p == 0 })
	if src.asked(edgechat.TokenUnauthorized) {
		t.Errorf("the server refused a token the client should have replaced in time: %v", src.reasons)
	}
}

// When no token can be had, the app hears of it once, queued messages
// wait (not FAILED, no attempt spent), and a token from SetToken sends
// them.
func TestAuthFailureWaitsForANewToken(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, filepath.Join(dir, "node"), "", "eu")
	src := &tokenSource{user: alice, ttl: time.Hour, fail: true}
	a := newClient(t, dir, n.URL(), alice, func(c *edgechat.Config) {
		c.Token, c.TokenSource, c.MaxAttempts = expiredToken(t, alice), src, 2
	})
	if _, err := a.Send(bob, "wait for me"); err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "OnAuthFailed", 10*time.Second, func() bool {
		a.rec.mu.Lock()
		defer a.rec.mu.Unlock()
		return len(a.rec.auth) > 0
	})
	if code := a.rec.auth[0]; code != edgechat.CodeTokenSource {
		t.Errorf("OnAuthFailed code %q, want %q", code, edgechat.CodeTokenSource)
	}
	// A few scheduler passes later the message still waits, no attempt spent.
	a.Flush(1000)
	for _, m := range history(t, a, bob) {
		if m.Status != edgechat.StatusPending || m.FailCount != 0 {
			t.Fatalf("a message waiting for a token: %+v", m)
		}
	}
	if err := a.SetToken(token(t, bob)); edgechat.ErrorCode(err) != edgechat.CodeOtherAccount {
		t.Fatalf("SetToken with bob's token: %v, want other_account", err)
	}
	if err := a.SetToken(token(t, alice)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the message accepted", 10*time.Second, func() bool { p, _ := a.PendingCount(); return p == 0 })
	waitFor(t, "the socket back", 10*time.Second, a.Connected)
}

// Pause closes the socket and sends nothing; Resume reconnects and sends
// what was written meanwhile; NetworkChanged redials at once.
func TestPauseResumeAndNetworkChanged(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, filepath.Join(dir, "node"), "", "eu")
	a := newClient(t, dir, n.URL(), alice)
	b := newClient(t, dir, n.URL(), bob)
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "alice connected", 10*time.Second, a.Connected)
	a.Pause()
	if a.Connected() {
		t.Fatal("connected after Pause")
	}
	if _, err := a.Send(bob, "written in the background"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Send(alice, "sent while alice was paused"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "bob's message accepted", 10*time.Second, func() bool { p, _ := b.PendingCount(); return p == 0 })
	if p, _ := a.PendingCount(); p != 1 {
		t.Fatalf("alice's pending while paused: %d, want 1 (nothing sent)", p)
	}
	if got := len(history(t, a, bob)); got != 1 {
		t.Fatalf("alice's history while paused holds %d entries, want her own 1", got)
	}
	if err := a.Resume(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "alice's message sent and bob's received after Resume", 10*time.Second, func() bool {
		p, _ := a.PendingCount()
		return p == 0 && len(history(t, a, bob)) == 2
	})
	a.rec.mu.Lock()
	before := len(a.rec.states)
	a.rec.mu.Unlock()
	a.NetworkChanged()
	waitFor(t, "a new socket after NetworkChanged", 10*time.Second, func() bool {
		a.rec.mu.Lock()
		defer a.rec.mu.Unlock()
		return slices.Contains(a.rec.states[before:], edgechat.ConnOnline)
	})
}

// Errors carry the codes of docs/API.md, so that an app can tell a 401
// from a 429 from Java or Swift.
func TestErrorCodes(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, filepath.Join(dir, "node"), "", "eu")
	a := newClient(t, dir, n.URL(), alice, func(c *edgechat.Config) { c.Token = expiredToken(t, alice) })
	_, err := a.FetchContactInfo(bob)
	if edgechat.ErrorCode(err) != "unauthenticated" || edgechat.ErrorStatus(err) != 401 {
		t.Errorf("an expired token without a source: %v: code %q status %d", err, edgechat.ErrorCode(err), edgechat.ErrorStatus(err))
	}
	if edgechat.IsTransient(err) {
		t.Error("a 401 is transient")
	}
	if edgechat.ErrorCode(edgechat.ErrClosed) != edgechat.CodeClosed || edgechat.ErrorCode(nil) != "" {
		t.Error("codes of the SDK's own errors")
	}
	a.Close()
	if _, err := a.Send(bob, "x"); edgechat.ErrorCode(err) == "" {
		t.Errorf("send on a closed client: %v", err)
	}
}

// A call to the server blocked on a network that does not answer ends as
// soon as the app calls Pause (or Close), with code canceled, instead of
// holding the app's thread for its whole timeout.
func TestPauseCancelsCallsInFlight(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, filepath.Join(dir, "node"), "", "eu")
	proxy := newCutProxy(t, n.Addr().String())
	a := newClient(t, dir, proxy.url(), alice)
	proxy.setHang(true) // requests go through, answers never come back
	done := make(chan error, 1)
	go func() { done <- a.Sync() }() // Sync's own timeout is 30 s
	waitFor(t, "Sync's request in flight", 10*time.Second, func() bool {
		proxy.mu.Lock()
		defer proxy.mu.Unlock()
		return len(proxy.conns) > 0
	})
	select {
	case err := <-done:
		t.Fatalf("Sync returned with no answer from the server: %v", err)
	default:
	}
	a.Pause()
	select {
	case err := <-done:
		if edgechat.ErrorCode(err) != edgechat.CodeCanceled {
			t.Fatalf("Sync after Pause: %v (code %q), want code canceled", err, edgechat.ErrorCode(err))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Sync still blocked 10 s after Pause")
	}
	// After Resume calls work again.
	proxy.setHang(false)
	if err := a.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := a.Sync(); err != nil {
		t.Fatalf("Sync after Resume: %v", err)
	}
}
