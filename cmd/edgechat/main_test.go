package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgenode/edgenode/auth"
	"github.com/edgenode/edgenode/config"
	"github.com/edgenode/edgenode/edgechat"
	"github.com/edgenode/edgenode/node"
	"github.com/edgenode/edgenode/wire"
)

const jwtSecret = "jwt-secret-for-edgechat-tests-0123456789"

func startNode(t *testing.T, dir, addr string) *node.Node {
	t.Helper()
	cfg, err := config.Load([]string{"--data-dir", dir, "--http-addr", addr, "--admin-addr", "127.0.0.1:0", "--gossip-addr", "127.0.0.1:0",
		"--cluster-addr", "127.0.0.1:0", "--advertise-addr", "127.0.0.1", "--jwt-secret", jwtSecret, "--shards", "2"}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.Start(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Kill() })
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := n.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return n
}

// user runs edgechat as one person, with its own database.
type user struct {
	t   *testing.T
	env map[string]string
}

func newUser(t *testing.T, dir, server string, id int64) *user {
	tok, err := auth.Issue([]byte(jwtSecret), id, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &user{t: t, env: map[string]string{"EDGECHAT_SERVER": server, "EDGECHAT_TOKEN": tok, "EDGECHAT_DB": filepath.Join(dir, tok[len(tok)-8:]+".db")}}
}

func (u *user) run(args ...string) (code int, stdout, stderr string) {
	return u.runIn("", args...)
}

// runIn runs edgechat with stdin, e.g. lines typed in the interactive mode.
func (u *user) runIn(stdin string, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, strings.NewReader(stdin), &out, &errb, func(k string) string { return u.env[k] })
	return code, out.String(), errb.String()
}

func (u *user) ok(args ...string) string {
	u.t.Helper()
	code, out, errs := u.run(args...)
	if code != 0 {
		u.t.Fatalf("edgechat %v: exit %d: %s", args, code, errs)
	}
	return out
}

func (u *user) history(with string) []edgechat.Message {
	u.t.Helper()
	var ms []edgechat.Message
	out := u.ok("history", with, "--json")
	if err := json.Unmarshal([]byte(out), &ms); err != nil {
		u.t.Fatalf("history --json: %v: %s", err, out)
	}
	return ms
}

func TestTwoPeopleChatThroughTheNetworkCut(t *testing.T) {
	dir := t.TempDir()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	n := startNode(t, filepath.Join(dir, "node"), addr)
	alice := newUser(t, dir, n.URL(), 1)
	bob := newUser(t, dir, n.URL(), 2)

	if out := alice.ok("send", "2", "hello", "bob"); !strings.Contains(out, "me: hello bob  ✓") {
		t.Fatalf("send printed %q", out)
	}
	h := bob.history("1")
	if len(h) != 1 || h[0].Content != "hello bob" || h[0].Status != "DELIVERED" || h[0].FromUserID != 1 {
		t.Fatalf("bob's history %+v", h)
	}
	var chats []edgechat.ConversationPreview
	if err := json.Unmarshal([]byte(bob.ok("chats", "--json")), &chats); err != nil {
		t.Fatal(err)
	}
	if len(chats) != 1 || chats[0].Contact.ID != 1 || chats[0].UnreadCount != 1 || chats[0].LastMessageSummary != "hello bob" {
		t.Fatalf("bob's chats %+v", chats)
	}
	bob.ok("read", "1")
	if h := alice.history("2"); len(h) != 1 || h[0].Status != "READ" {
		t.Fatalf("alice after bob read %+v", h)
	}
	if out := bob.ok("--json", "chats"); !strings.Contains(out, `"unreadCount": 0`) {
		t.Fatalf("chats after read %s", out)
	}

	// The network is cut: alice's message is stored and queued.
	n.Shutdown(context.Background())
	code, out, errs := alice.run("send", "2", "are you there?")
	if code != 0 || !strings.Contains(errs, "queued") || !strings.Contains(out, "…") {
		t.Fatalf("offline send: %d %q %q", code, out, errs)
	}
	h = alice.history("2")
	if len(h) != 2 || h[1].Status != "PENDING" || h[1].MessageID != 0 || h[1].RequestID == 0 {
		t.Fatalf("offline history %+v", h)
	}
	// Restored: any command delivers what is queued, once.
	n2 := startNode(t, filepath.Join(dir, "node"), addr)
	_ = n2
	alice.ok("sync")
	alice.ok("chats")
	h = bob.history("1")
	if len(h) != 2 || h[1].Content != "are you there?" {
		t.Fatalf("bob after the cut %+v", h)
	}
	if out := bob.ok("history", "1"); !strings.Contains(out, "1: are you there?") {
		t.Fatalf("plain history %q", out)
	}

	if out := alice.ok("devices", "add", "--platform", "fcm", "tok-123"); !strings.Contains(out, "registered") {
		t.Fatalf("devices add %q", out)
	}
	alice.ok("devices", "rm", "tok-123")
	if code, _, _ := alice.run("devices", "add", "tok"); code == 0 {
		t.Fatal("devices add without --platform succeeded")
	}
}

func TestParseFlagsAnywhere(t *testing.T) {
	o, err := parse([]string{"--server=http://x", "history", "7", "--before", "99", "--limit", "5", "--json"}, func(string) string { return "env" })
	if err != nil {
		t.Fatal(err)
	}
	if o.server != "http://x" || o.token != "env" || o.before != 99 || o.limit != 5 || !o.json || strings.Join(o.args, " ") != "history 7" {
		t.Fatalf("%+v", o)
	}
	if _, err := parse([]string{"--limit"}, func(string) string { return "" }); err == nil {
		t.Fatal("missing value accepted")
	}
	if _, err := parse([]string{"--nope"}, func(string) string { return "" }); err == nil {
		t.Fatal("unknown flag accepted")
	}
}

// An attempt without a known outcome (a 503) then a 409 request_expired:
// the message is shown failed, expired; /resend asks first and the second
// /resend sends it again, as a new message.
func TestExpiredMessageShownAndResendAsksFirst(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, filepath.Join(dir, "node"), "127.0.0.1:0")
	nodeURL, _ := url.Parse(n.URL())
	rp := httputil.NewSingleHostReverseProxy(nodeURL)
	var mu sync.Mutex
	var first int64
	tries := 0
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/edges" {
			io.WriteString(w, "[]") // stay behind the proxy
			return
		}
		if r.Method == http.MethodPost && r.URL.Path == "/v1/messages" {
			b, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(b))
			var req wire.NewMessageRequest
			json.Unmarshal(b, &req)
			mu.Lock()
			if first == 0 {
				first = req.RequestID
			}
			mine := req.RequestID == first
			if mine {
				tries++
			}
			try := tries
			mu.Unlock()
			if mine {
				e := wire.Errorf(wire.CodeUnavailable, "no leader") // outcome unknown
				if try > 1 {
					e = wire.Errorf(wire.CodeRequestExpired, "too old to be checked") // the server forgot it
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(e.Status())
				json.NewEncoder(w).Encode(e.Body())
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	defer proxy.Close()
	alice := newUser(t, dir, proxy.URL, 1)
	bob := newUser(t, dir, n.URL(), 2)

	code, out, errs := alice.run("send", "2", "did you get this?")
	if code != 0 || !strings.Contains(errs, "queued") || !strings.Contains(out, "…") {
		t.Fatalf("send after a 503: %d %q %q", code, out, errs)
	}
	// The next command retries it: 409.
	if out := alice.ok("history", "2"); !strings.Contains(out, "me: did you get this?  ! failed (expired: it may have been delivered already)") {
		t.Fatalf("history after the 409 %q", out)
	}
	h := alice.history("2")
	if len(h) != 1 || h[0].Status != edgechat.StatusFailed || !h[0].Expired || h[0].RequestID != first {
		t.Fatalf("alice's history %+v", h)
	}
	resend := fmt.Sprintf("/resend %d\n", first)
	code, out, errs = alice.runIn(resend, "chat", "2")
	if code != 0 || !strings.Contains(out, fmt.Sprintf("/resend %d sends it again, it may show twice", first)) ||
		!strings.Contains(out, fmt.Sprintf("message %d may have been delivered already: /resend %d again", first, first)) {
		t.Fatalf("one /resend: %d %q %q", code, out, errs)
	}
	if h := alice.history("2"); len(h) != 1 || !h[0].Expired {
		t.Fatalf("one /resend sent it: %+v", h)
	}
	if code, out, errs := alice.runIn(resend+resend, "chat", "2"); code != 0 {
		t.Fatalf("two /resends: %d %q %q", code, out, errs)
	}
	h = alice.history("2")
	if len(h) != 1 || h[0].MessageID == 0 || h[0].Expired {
		t.Fatalf("alice after the resend %+v", h)
	}
	if h := bob.history("1"); len(h) != 1 || h[0].Content != "did you get this?" {
		t.Fatalf("bob got %+v", h)
	}
}
