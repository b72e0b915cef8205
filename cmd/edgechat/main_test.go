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
	"os"
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
	// This installation is linked, and marked as the one asking.
	if out := alice.ok("devices", "list"); !strings.Contains(out, "(this one)") || strings.Count(out, "\n") != 1 {
		t.Fatalf("devices list %q", out)
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

// tokenScript writes a --token-cmd script that records each reason it is
// run for in a file and prints tok.
func tokenScript(t *testing.T, tok string) (cmd, reasons string) {
	t.Helper()
	dir := t.TempDir()
	reasons = filepath.Join(dir, "reasons")
	cmd = filepath.Join(dir, "token.sh")
	script := fmt.Sprintf("#!/bin/sh\necho \"$EDGECHAT_TOKEN_REASON\" >> '%s'\necho '%s'\n", reasons, tok)
	if err := os.WriteFile(cmd, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return cmd, reasons
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// Two users on one --db: the second is told whose database it is not and
// about --switch-account (exit 2); with it the database is emptied for him
// and the message waiting for him arrives.
func TestOtherAccountDatabaseNeedsSwitchAccount(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, filepath.Join(dir, "node"), "127.0.0.1:0")
	alice := newUser(t, dir, n.URL(), 1)
	bob := newUser(t, dir, n.URL(), 2)
	bob.env["EDGECHAT_DB"] = alice.env["EDGECHAT_DB"]

	if out := alice.ok("send", "2", "waiting for you"); !strings.Contains(out, "me: waiting for you  ✓") {
		t.Fatalf("send printed %q", out)
	}
	code, out, errs := bob.run("sync")
	if code != 2 || out != "" || !strings.Contains(errs, "is not user 2's database") || !strings.Contains(errs, "other_account") ||
		!strings.Contains(errs, "--switch-account") || !strings.Contains(errs, "unsent messages are then lost") {
		t.Fatalf("bob on alice's database: %d %q %q", code, out, errs)
	}
	if out := bob.ok("sync", "--switch-account"); !strings.Contains(out, "synced: 1 conversation(s), 1 unread, 0 queued") {
		t.Fatalf("sync --switch-account printed %q", out)
	}
	if h := bob.history("1"); len(h) != 1 || h[0].Content != "waiting for you" || h[0].FromUserID != 1 {
		t.Fatalf("bob's history after the switch %+v", h)
	}
	// The database is bob's now: alice is the other account.
	if code, _, errs := alice.run("chats"); code != 2 || !strings.Contains(errs, "is not user 1's database") {
		t.Fatalf("alice after the switch: %d %q", code, errs)
	}
}

// An expired --token and a --token-cmd: send gets a 401, the SDK runs the
// command (reason unauthorized) and the message goes out with the fresh
// token. Without --token the command gives the first token (reason start).
func TestTokenCmdRefreshesAnExpiredToken(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, filepath.Join(dir, "node"), "127.0.0.1:0")
	alice := newUser(t, dir, n.URL(), 1)
	bob := newUser(t, dir, n.URL(), 2)
	expired, err := auth.Issue([]byte(jwtSecret), 1, time.Hour, time.Now().Add(-3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := auth.Issue([]byte(jwtSecret), 1, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	alice.env["EDGECHAT_TOKEN"] = expired
	script, reasons := tokenScript(t, fresh)

	code, out, errs := alice.run("send", "2", "with a fresh token", "--token-cmd", script)
	if code != 0 || !strings.Contains(out, "me: with a fresh token  ✓") || errs != "" {
		t.Fatalf("send with an expired token and --token-cmd: %d %q %q", code, out, errs)
	}
	if r := readFile(t, reasons); !strings.Contains(r, edgechat.TokenUnauthorized) {
		t.Fatalf("token command reasons %q", r)
	}
	alice.env["EDGECHAT_TOKEN_CMD"] = script
	h := alice.history("2")
	if len(h) != 1 || h[0].MessageID == 0 || h[0].Pending() || h[0].Status == edgechat.StatusFailed {
		t.Fatalf("alice's history %+v", h)
	}
	if out := alice.ok("sync", "--json"); !strings.Contains(out, `"pending": 0`) {
		t.Fatalf("alice's sync %s", out)
	}

	// bob has no token, only a command.
	bobTok := bob.env["EDGECHAT_TOKEN"]
	bobScript, bobReasons := tokenScript(t, bobTok)
	bob.env["EDGECHAT_TOKEN"] = ""
	bob.env["EDGECHAT_TOKEN_CMD"] = bobScript
	if out := bob.ok("sync"); !strings.Contains(out, "synced: 1 conversation(s), 1 unread, 0 queued") {
		t.Fatalf("bob's sync %q", out)
	}
	if r := readFile(t, bobReasons); r != edgechat.TokenStart+"\n" {
		t.Fatalf("bob's token command reasons %q", r)
	}
	if h := bob.history("1"); len(h) != 1 || h[0].Content != "with a fresh token" {
		t.Fatalf("bob's history %+v", h)
	}
	// No token at all.
	bob.env["EDGECHAT_TOKEN_CMD"] = ""
	if code, _, errs := bob.run("sync"); code != 1 || !strings.Contains(errs, "--token-cmd") {
		t.Fatalf("no token: %d %q", code, errs)
	}
}

func TestTokenCmdErrors(t *testing.T) {
	src := newCmdTokenSource(`printf '  %s\n\n' "$EDGECHAT_TOKEN_REASON"`)
	if tok, err := src.Token(edgechat.TokenExpiring); err != nil || tok != edgechat.TokenExpiring {
		t.Fatalf("token %q, %v", tok, err)
	}
	_, err := newCmdTokenSource(`head -c 1000 /dev/zero | tr '\0' x >&2; exit 3`).Token("start")
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "xxxx") || len(err.Error()) > 300 {
		t.Fatalf("failing command: %v", err)
	}
	if _, err := newCmdTokenSource(`echo no login >&2`).Token("start"); err == nil || !strings.Contains(err.Error(), "printed no token: no login") {
		t.Fatalf("empty output: %v", err)
	}
	if _, err := newCmdTokenSource(`echo two words`).Token("start"); err == nil {
		t.Fatal("two words accepted")
	}
	slow := newCmdTokenSource("sleep 20")
	slow.timeout = 100 * time.Millisecond
	start := time.Now()
	if _, err := slow.Token("start"); err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("slow command: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("slow command took %v", d)
	}
}

// syncBuffer is an io.Writer the test reads while run writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The interactive mode with an expired token and no --token-cmd: the
// screen says the server refused it and how to give another; /token does,
// and the connection comes up. /retry says how many it queued.
func TestInteractiveTokenRefusedThenSet(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, filepath.Join(dir, "node"), "127.0.0.1:0")
	alice := newUser(t, dir, n.URL(), 1)
	fresh := alice.env["EDGECHAT_TOKEN"]
	expired, err := auth.Issue([]byte(jwtSecret), 1, time.Hour, time.Now().Add(-3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	bobTok, err := auth.Issue([]byte(jwtSecret), 2, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	alice.env["EDGECHAT_TOKEN"] = expired

	stdin, typing := io.Pipe()
	t.Cleanup(func() { typing.Close() }) // ends the interactive mode if the test fails
	out := &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"chat"}, stdin, out, io.Discard, func(k string) string { return alice.env[k] })
	}()
	waitOut := func(what string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(out.String(), what) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in %q", what, out.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	typ := func(line string) {
		t.Helper()
		if _, err := io.WriteString(typing, line+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	waitOut("! the server refused the token [unauthenticated]")
	waitOut("/token JWT sets a new one")
	typ("/token " + bobTok)
	waitOut("token not set [other_account]")
	typ("/token " + fresh)
	waitOut("token set")
	waitOut("== Chats (online) ==")
	typ("/retry")
	waitOut("0 failed message(s) queued again")
	typ("/quit")
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d: %s", code, out.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("/quit did not end the interactive mode")
	}
}

func TestStatusMarks(t *testing.T) {
	m := &edgechat.Message{FromUserID: 1, ToUserID: 2, Content: "too late", Status: edgechat.StatusExpired, MessageID: 9}
	if line := formatMessage(m, 1); !strings.Contains(line, "me: too late  ✗ expired: never delivered") {
		t.Fatalf("expired message %q", line)
	}
	o, err := parse([]string{"--token-cmd", "get-token", "--switch-account", "sync"}, func(k string) string { return "" })
	if err != nil || o.tokenCmd != "get-token" || !o.switchAccount || strings.Join(o.args, " ") != "sync" {
		t.Fatalf("%+v %v", o, err)
	}
	o, _ = parse(nil, func(k string) string { return map[string]string{"EDGECHAT_TOKEN_CMD": "env-cmd"}[k] })
	if o.tokenCmd != "env-cmd" || o.switchAccount {
		t.Fatalf("%+v", o)
	}
}
