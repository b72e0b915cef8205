package edgechat_test

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

	"github.com/hashicorp/memberlist"

	"github.com/edgenode/edgenode/auth"
	"github.com/edgenode/edgenode/config"
	"github.com/edgenode/edgenode/edgechat"
	"github.com/edgenode/edgenode/node"
	"github.com/edgenode/edgenode/wire"
)

const jwtSecret = "jwt-secret-for-client-tests-0123456789"
const clusterSecret = "cluster-secret-for-client-tests-0123456789"

var fastTuning = node.Tuning{
	Member: func(c *memberlist.Config) {
		c.ProbeInterval = 200 * time.Millisecond
		c.ProbeTimeout = 100 * time.Millisecond
		c.SuspicionMult = 2
		c.GossipInterval = 50 * time.Millisecond
		c.PushPullInterval = time.Second
	},
	DeadGrace:      time.Second,
	ReconcileEvery: 300 * time.Millisecond,
	RaftHeartbeat:  300 * time.Millisecond,
}

// startNode starts a real edgenode on loopback. httpAddr "" picks a port.
func startNode(t testing.TB, dir, httpAddr, region string, join ...string) *node.Node {
	t.Helper()
	return startNodeWith(t, dir, httpAddr, region, nil, join...)
}

// startNodeWith is startNode with extra flags.
func startNodeWith(t testing.TB, dir, httpAddr, region string, extra []string, join ...string) *node.Node {
	t.Helper()
	if httpAddr == "" {
		httpAddr = "127.0.0.1:0"
	}
	args := []string{"--data-dir", dir, "--region", region, "--http-addr", httpAddr, "--admin-addr", "127.0.0.1:0",
		"--gossip-addr", "127.0.0.1:0", "--cluster-addr", "127.0.0.1:0", "--advertise-addr", "127.0.0.1",
		"--cluster-secret", clusterSecret, "--jwt-secret", jwtSecret, "--shards", "2",
		"--send-rate", "1000", "--send-burst", "1000", "--ping-interval", "1s"}
	args = append(args, extra...)
	if len(join) > 0 {
		args = append(args, "--join", strings.Join(join, ","))
	}
	cfg, err := config.Load(args, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.StartTuned(context.Background(), cfg, nil, fastTuning)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Kill() })
	if len(join) == 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := n.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

func token(t testing.TB, user int64) string {
	s, err := auth.Issue([]byte(jwtSecret), user, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// recorder is a Listener that counts notifications, for waiting on them.
type recorder struct {
	mu       sync.Mutex
	convs    map[int64]int
	all      []edgechat.Change
	statuses []edgechat.ContactInfo
	states   []string
	auth     []string // codes of OnAuthFailed
}

func (r *recorder) OnChanges(l *edgechat.ChangeList) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.convs == nil {
		r.convs = map[int64]int{}
	}
	for i := range l.Len() {
		ch := l.Get(i)
		r.convs[ch.ContactID]++
		r.all = append(r.all, *ch)
	}
}

func (r *recorder) OnAuthFailed(code, _ string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.auth = append(r.auth, code)
}

func (r *recorder) OnContactStatus(ci *edgechat.ContactInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.statuses = append(r.statuses, *ci)
}

func (r *recorder) OnConnectionChanged(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.states = append(r.states, s)
}

func (r *recorder) changes(id int64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.convs[id]
}

func (r *recorder) sawStatus(f func(edgechat.ContactInfo) bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.statuses {
		if f(s) {
			return true
		}
	}
	return false
}

type testClient struct {
	*edgechat.Client
	rec *recorder
	cfg edgechat.Config
}

// newClient opens a client for user on a real SQLite file in dir.
func newClient(t testing.TB, dir, server string, user int64, tweak ...func(*edgechat.Config)) *testClient {
	t.Helper()
	cfg := edgechat.Config{ServerURL: server, Token: token(t, user), DBPath: filepath.Join(dir, fmt.Sprintf("user%d", user), "chats.db"),
		RetryBaseMillis: 100, RetryMaxMillis: 1000, ReconnectBaseMillis: 50, ReconnectMaxMillis: 500, SendTimeoutMillis: 3000}
	for _, f := range tweak {
		f(&cfg)
	}
	c, err := edgechat.Open(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	c.SetListener(rec)
	t.Cleanup(func() { c.Close() })
	return &testClient{Client: c, rec: rec, cfg: cfg}
}

func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func history(t testing.TB, c *testClient, contact int64) []edgechat.Message {
	t.Helper()
	var all []edgechat.Message
	before := int64(0)
	for {
		page, err := c.History(contact, before, 100)
		if err != nil {
			t.Fatal(err)
		}
		all = append(page.Messages(), all...)
		if !page.HasMore {
			return all
		}
		before = page.NextBefore
	}
}

func contents(ms []edgechat.Message) string {
	var parts []string
	for _, m := range ms {
		parts = append(parts, m.Content)
	}
	return strings.Join(parts, ",")
}

func statuses(ms []edgechat.Message) string {
	var parts []string
	for _, m := range ms {
		parts = append(parts, m.Status)
	}
	return strings.Join(parts, ",")
}

// freeAddr reserves a loopback port, for a node restarted on the same
// address.
func freeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// cutProxy forwards TCP to a backend and can drop every response, which
// looks to the client like a server that died after committing.
type cutProxy struct {
	ln      net.Listener
	backend string
	mu      sync.Mutex
	drop    bool
	hang    bool
	conns   []net.Conn
	down    bytes.Buffer // every byte passed from the backend to clients
}

func newCutProxy(t testing.TB, backend string) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, backend: backend}
	t.Cleanup(func() { ln.Close(); p.closeAll() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *cutProxy) url() string { return "http://" + p.ln.Addr().String() }

func (p *cutProxy) setDrop(d bool) {
	p.mu.Lock()
	p.drop = d
	p.mu.Unlock()
}

// setHang makes answers vanish without closing the connection: a call in
// flight hangs until the client gives up.
func (p *cutProxy) setHang(h bool) {
	p.mu.Lock()
	p.hang = h
	p.mu.Unlock()
}

// resetDownloaded forgets the bytes passed so far.
func (p *cutProxy) resetDownloaded() {
	p.mu.Lock()
	p.down.Reset()
	p.mu.Unlock()
}

// downloaded is every byte passed from the backend since the last reset.
func (p *cutProxy) downloaded() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Clone(p.down.Bytes())
}

func (p *cutProxy) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *cutProxy) serve(c net.Conn) {
	b, err := net.Dial("tcp", p.backend)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, c, b)
	p.mu.Unlock()
	go func() { io.Copy(b, c); b.Close() }()
	buf := make([]byte, 32<<10)
	for {
		n, err := b.Read(buf)
		if n > 0 {
			p.mu.Lock()
			drop, hang := p.drop, p.hang
			p.mu.Unlock()
			if hang {
				continue
			}
			if drop {
				// The request went through; its answer never arrives.
				c.Close()
				b.Close()
				return
			}
			p.mu.Lock()
			p.down.Write(buf[:n])
			p.mu.Unlock()
			if _, werr := c.Write(buf[:n]); werr != nil {
				b.Close()
				return
			}
		}
		if err != nil {
			c.Close()
			return
		}
	}
}

// apiProxy is an HTTP server in front of a real node (httputil.ReverseProxy)
// that lets a test choose what happens to each POST /v1/messages: passed
// to the node, or answered in a way the node only answers in rarer cases
// (409 request_expired after 24 h, a 503, a lost answer, a hang). It
// records every POST it gets.
type apiProxy struct {
	srv *httptest.Server
	rp  *httputil.ReverseProxy

	mu    sync.Mutex
	posts []wire.NewMessageRequest
	rule  func(req wire.NewMessageRequest, earlier []wire.NewMessageRequest) proxyAction
}

type proxyAction int

const (
	pass              proxyAction = iota // to the node, and its answer back
	answerExpired                        // 409 request_expired; the node never sees it
	answerRateLimited                    // 429 with Retry-After: 1; the node never sees it
	answerUnavailable                    // 503; the node never sees it
	loseAnswer                           // the node commits it; the connection closes before the answer
	hang                                 // the node never sees it; no answer until the client gives up
)

func newAPIProxy(t testing.TB, backend string) *apiProxy {
	u, err := url.Parse(backend)
	if err != nil {
		t.Fatal(err)
	}
	p := &apiProxy{rp: httputil.NewSingleHostReverseProxy(u)}
	p.srv = httptest.NewServer(p)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *apiProxy) url() string { return p.srv.URL }

// setRule decides the fate of each POST from the request and the POSTs
// before it; nil passes everything.
func (p *apiProxy) setRule(f func(req wire.NewMessageRequest, earlier []wire.NewMessageRequest) proxyAction) {
	p.mu.Lock()
	p.rule = f
	p.mu.Unlock()
}

// sent is every POST /v1/messages so far, in the order they arrived.
func (p *apiProxy) sent() []wire.NewMessageRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]wire.NewMessageRequest(nil), p.posts...)
}

func (p *apiProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/v1/edges" {
		// No other edge: the client stays behind the proxy.
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, "[]")
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != "/v1/messages" {
		p.rp.ServeHTTP(w, r)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	var req wire.NewMessageRequest
	json.Unmarshal(body, &req)
	p.mu.Lock()
	earlier := append([]wire.NewMessageRequest(nil), p.posts...)
	p.posts = append(p.posts, req)
	rule := p.rule
	p.mu.Unlock()
	act := pass
	if rule != nil {
		act = rule(req, earlier)
	}
	refuse := func(status int, e *wire.Error) {
		w.Header().Set("Content-Type", "application/json")
		if e.RetryAfter > 0 {
			w.Header().Set("Retry-After", e.RetryAfterSeconds())
		}
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(e.Body())
	}
	switch act {
	case answerExpired:
		refuse(http.StatusConflict, wire.Errorf(wire.CodeRequestExpired, "too old to be checked: it may already have been accepted"))
	case answerRateLimited:
		refuse(http.StatusTooManyRequests, &wire.Error{Code: wire.CodeRateLimited, Message: "queue full", RetryAfter: time.Second})
	case answerUnavailable:
		refuse(http.StatusServiceUnavailable, &wire.Error{Code: wire.CodeUnavailable, Message: "no leader", RetryAfter: time.Second})
	case loseAnswer:
		p.rp.ServeHTTP(httptest.NewRecorder(), r)
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
		}
	case hang:
		<-r.Context().Done()
	default:
		p.rp.ServeHTTP(w, r)
	}
}

// postsOf are the POSTs among ps that carry content.
func postsOf(ps []wire.NewMessageRequest, content string) []wire.NewMessageRequest {
	var out []wire.NewMessageRequest
	for _, p := range ps {
		if p.Content == content {
			out = append(out, p)
		}
	}
	return out
}
