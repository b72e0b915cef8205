package edgechat_test

import (
	"errors"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgenode/edgenode/edgechat"
	"github.com/edgenode/edgenode/wire"
)

// A request the server answers 409 request_expired to, that no attempt can
// have got into the server, is re-stamped (fresh requestId, createdAt now)
// and sent again at once, before the recipient's later requests: the
// recipient gets it exactly once, in the order written.
func TestExpiredRequestNeverAcceptedIsRestampedAndSentOnce(t *testing.T) {
	for _, tc := range []struct {
		name string
		// fate of the POSTs of "first", in order; later ones pass.
		fate []proxyAction
	}{
		{"409 at the first attempt", []proxyAction{answerExpired}},
		{"409 after a 429", []proxyAction{answerRateLimited, answerExpired}},
		// The fresh key's first answer is a 503 (maybe accepted): its
		// retry must still go before "second".
		{"409 then 503 on the fresh key", []proxyAction{answerExpired, answerUnavailable}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			n := startNode(t, filepath.Join(dir, "node"), "", "eu")
			proxy := newAPIProxy(t, n.URL())
			proxy.setRule(func(req wire.NewMessageRequest, earlier []wire.NewMessageRequest) proxyAction {
				if i := len(postsOf(earlier, req.Content)); req.Content == "first" && i < len(tc.fate) {
					return tc.fate[i]
				}
				return pass
			})
			a := newClient(t, dir, proxy.url(), alice)
			first, err := a.Send(bob, "first")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := a.Send(bob, "second"); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "everything accepted", 20*time.Second, func() bool {
				a.Flush(5000)
				for _, m := range history(t, a, bob) {
					if m.Status == edgechat.StatusFailed || m.Expired {
						t.Fatalf("a request that cannot have been accepted failed: %+v", m)
					}
				}
				p, _ := a.PendingCount()
				return p == 0
			})

			posts := proxy.sent()
			firsts := postsOf(posts, "first")
			if len(firsts) != len(tc.fate)+1 {
				t.Fatalf("%d POSTs of first, want %d: %+v", len(firsts), len(tc.fate)+1, posts)
			}
			restamped := firsts[len(firsts)-1]
			if firsts[0].RequestID != first.RequestID || firsts[0].CreatedAt != first.CreatedAt {
				t.Fatalf("first attempt %+v, stored %+v", firsts[0], first)
			}
			if restamped.RequestID == first.RequestID || restamped.CreatedAt < first.CreatedAt {
				t.Fatalf("not re-stamped: %+v after %+v", restamped, firsts[0])
			}
			// One at a time per recipient, in written order: nothing of
			// "second" went out before "first" was accepted.
			for i, p := range posts {
				if p.Content == "second" && i < len(posts)-1 {
					t.Fatalf("second sent before first was done: %+v", posts)
				}
			}
			h := history(t, a, bob)
			if contents(h) != "first,second" || h[0].MessageID == 0 || h[0].MessageID >= h[1].MessageID || h[0].CreatedAt != restamped.CreatedAt {
				t.Fatalf("alice's conversation %+v, re-stamped %+v", h, restamped)
			}
			if _, err := a.Request(first.RequestID); !errors.Is(err, edgechat.ErrNotFound) {
				t.Fatalf("request after acceptance: %v", err)
			}
			b := newClient(t, dir, n.URL(), bob)
			if err := b.Sync(); err != nil {
				t.Fatal(err)
			}
			if got := history(t, b, alice); contents(got) != "first,second" || got[0].MessageID != h[0].MessageID {
				t.Fatalf("bob got %+v", got)
			}
		})
	}
}

// A request whose earlier attempt may have been accepted (no answer, a
// timeout, a 5xx) and that then gets 409 request_expired is FAILED for
// good, expired. Resend re-stamps it and it is accepted; when the lost
// attempt did reach the node, the recipient then has it twice, which is
// why the app asks the user first.
func TestExpiredRequestMaybeAcceptedFailsAndResendRestamps(t *testing.T) {
	for _, tc := range []struct {
		name        string
		first       proxyAction
		sendTimeout int64
		copies      string // what bob ends with
	}{
		{"answer lost after the node stored it", loseAnswer, 3000, "maybe,maybe"},
		{"timeout before the node saw it", hang, 1500, "maybe"},
		{"503", answerUnavailable, 3000, "maybe"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			n := startNode(t, filepath.Join(dir, "node"), "", "eu")
			proxy := newAPIProxy(t, n.URL())
			a := newClient(t, dir, proxy.url(), alice, func(c *edgechat.Config) { c.SendTimeoutMillis = tc.sendTimeout })
			m, err := a.Send(bob, "maybe")
			if err != nil {
				t.Fatal(err)
			}
			proxy.setRule(func(req wire.NewMessageRequest, earlier []wire.NewMessageRequest) proxyAction {
				if req.RequestID != m.RequestID {
					return pass
				}
				if len(earlier) == 0 {
					return tc.first
				}
				return answerExpired // the server forgot it
			})

			if err := a.Flush(5000); err == nil {
				t.Fatal("first flush succeeded")
			}
			r, err := a.Request(m.RequestID)
			if err != nil || r.Status != edgechat.RequestFailed || !r.MaybeAccepted || r.Expired || r.FailCount != 1 {
				t.Fatalf("after an attempt with unknown outcome: %+v %v", r, err)
			}
			err = a.Flush(3000)
			if ae, ok := err.(*edgechat.APIError); !ok || ae.Status != http.StatusConflict || ae.Code != wire.CodeRequestExpired {
				t.Fatalf("second flush: %v", err)
			}
			r, _ = a.Request(m.RequestID)
			if r == nil || r.Status != edgechat.RequestFailed || !r.Expired || r.WireRequestID != m.RequestID || r.FailCount != 2 {
				t.Fatalf("after 409: %+v", r)
			}
			h := history(t, a, bob)
			if len(h) != 1 || h[0].Status != edgechat.StatusFailed || !h[0].Expired || h[0].RequestID != m.RequestID {
				t.Fatalf("conversation after 409: %+v", h)
			}
			// FAILED for good: nothing more is sent on its own.
			before := len(proxy.sent())
			a.Flush(3000)
			if got := len(proxy.sent()); got != before {
				t.Fatalf("an expired request was sent again without Resend (%d POSTs, then %d)", before, got)
			}

			if err := a.Resend(m.RequestID); err != nil {
				t.Fatal(err)
			}
			r, _ = a.Request(m.RequestID)
			if r == nil || r.Status != edgechat.RequestPending || r.Expired || r.MaybeAccepted || r.WireRequestID == m.RequestID ||
				r.WireCreatedAt < m.CreatedAt || r.CreatedAt != m.CreatedAt {
				t.Fatalf("after Resend: %+v", r)
			}
			if h := history(t, a, bob); len(h) != 1 || h[0].Status != edgechat.StatusPending || h[0].Expired {
				t.Fatalf("conversation after Resend: %+v", h)
			}
			if err := a.Flush(5000); err != nil {
				t.Fatal(err)
			}
			posts := proxy.sent()
			if last := posts[len(posts)-1]; last.RequestID != r.WireRequestID || last.CreatedAt != r.WireCreatedAt {
				t.Fatalf("resent as %+v, want the re-stamped key of %+v", last, r)
			}
			h = history(t, a, bob)
			if len(h) < 1 || h[len(h)-1].MessageID == 0 || h[len(h)-1].CreatedAt != r.WireCreatedAt {
				t.Fatalf("alice after the resend: %+v", h)
			}
			if p, _ := a.PendingCount(); p != 0 {
				t.Fatalf("%d pending", p)
			}
			b := newClient(t, dir, n.URL(), bob)
			if err := b.Sync(); err != nil {
				t.Fatal(err)
			}
			if got := contents(history(t, b, alice)); got != tc.copies {
				t.Fatalf("bob got %q, want %q", got, tc.copies)
			}
		})
	}
}

// A fresh key refused too (a clock far behind the server's) is not
// re-stamped in a loop: each pass re-stamps once, then counts a failed
// attempt, and MaxAttempts ends it as an ordinary failure, not expired.
func TestExpiredAgainAfterRestampBacksOff(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, filepath.Join(dir, "node"), "", "eu")
	proxy := newAPIProxy(t, n.URL())
	proxy.setRule(func(wire.NewMessageRequest, []wire.NewMessageRequest) proxyAction { return answerExpired })
	a := newClient(t, dir, proxy.url(), alice, func(c *edgechat.Config) { c.MaxAttempts = 2 })
	m, _ := a.Send(bob, "never")
	a.Flush(3000)
	posts := proxy.sent()
	r, _ := a.Request(m.RequestID)
	if len(posts) != 2 || posts[0].RequestID != m.RequestID || posts[1].RequestID == m.RequestID ||
		r == nil || r.FailCount != 1 || r.Expired || r.MaybeAccepted || r.WireRequestID != posts[1].RequestID {
		t.Fatalf("after one pass: %+v, request %+v", posts, r)
	}
	if h := history(t, a, bob); h[0].Status != edgechat.StatusPending {
		t.Fatalf("a retry is scheduled, shown as %s", h[0].Status)
	}
	a.Flush(3000)
	r, _ = a.Request(m.RequestID)
	if got := len(proxy.sent()); got != 4 || r == nil || r.FailCount != 2 || r.Expired {
		t.Fatalf("after two passes: %d POSTs, request %+v", got, r)
	}
	if h := history(t, a, bob); h[0].Status != edgechat.StatusFailed || h[0].Expired {
		t.Fatalf("after MaxAttempts %+v", h[0])
	}
}
