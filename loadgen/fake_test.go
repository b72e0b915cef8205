package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgenode/edgenode/wire"
	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
)

const testSecret = "test-secret-0123456789abcdef012345"

// fakeNode implements the slice of API.md the load generator uses: the
// socket (ready, new_message, ack) and POST /v1/messages. Every failEvery-th
// send answers 503 unavailable; it delivers before it answers 201, so the
// delivery races the response.
type fakeNode struct {
	t         *testing.T
	failEvery int64

	mu        sync.Mutex
	cond      *sync.Cond
	socks     map[int64]*fakeSock
	nextID    int64
	sends     int64
	delivered map[int64]int64 // user → highest id delivered
	acked     map[int64]int64 // user → highest ack
	badAcks   []string
	sources   map[string]bool
	idem      map[[2]int64]bool
}

type fakeSock struct {
	mu sync.Mutex
	c  *websocket.Conn
}

func newFakeNode(t *testing.T) (*fakeNode, *httptest.Server) {
	f := &fakeNode{t: t, socks: map[int64]*fakeSock{}, delivered: map[int64]int64{}, acked: map[int64]int64{}, sources: map[string]bool{}, idem: map[[2]int64]bool{}}
	f.cond = sync.NewCond(&f.mu)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/socket/updates", f.socket)
	mux.HandleFunc("POST /v1/messages", f.send)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeNode) user(r *http.Request) (int64, bool) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return 0, false
	}
	var claims jwt.RegisteredClaims
	_, err := jwt.ParseWithClaims(tok, &claims, func(*jwt.Token) (any, error) { return []byte(testSecret), nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired())
	if err != nil {
		return 0, false
	}
	id, err := strconv.ParseInt(claims.Subject, 10, 64)
	return id, err == nil
}

func writeErr(w http.ResponseWriter, e *wire.Error) {
	w.Header().Set("Content-Type", "application/json")
	if e.Code == wire.CodeUnavailable {
		w.Header().Set("Retry-After", e.RetryAfterSeconds())
	}
	w.WriteHeader(e.Status())
	_ = json.NewEncoder(w).Encode(e.Body())
}

func (f *fakeNode) socket(w http.ResponseWriter, r *http.Request) {
	uid, ok := f.user(r)
	if !ok {
		writeErr(w, wire.Errorf(wire.CodeUnauthenticated, "bad token"))
		return
	}
	c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
	if err != nil {
		return
	}
	s := &fakeSock{c: c}
	// Registered before ready goes out (under the socket's write lock), so
	// a send that follows ready is never missed.
	s.mu.Lock()
	host, _, _ := strings.Cut(r.RemoteAddr, ":")
	f.mu.Lock()
	f.socks[uid] = s
	f.sources[host] = true
	f.mu.Unlock()
	_ = c.WriteMessage(websocket.TextMessage, wire.EncodeEvent(wire.TypeReady, wire.Ready{UserID: uid, NodeID: "fake", Region: "test", HeartbeatMs: 25000}))
	s.mu.Unlock()
	for {
		_, data, err := c.ReadMessage()
		if err != nil {
			break
		}
		var fr wire.Frame
		var ack wire.Ack
		if json.Unmarshal(data, &fr) != nil || fr.Type != wire.TypeAck || json.Unmarshal(fr.Payload, &ack) != nil {
			f.mu.Lock()
			f.badAcks = append(f.badAcks, string(data))
			f.mu.Unlock()
			continue
		}
		f.mu.Lock()
		if ack.UpTo > f.delivered[uid] || ack.UpTo <= f.acked[uid] {
			f.badAcks = append(f.badAcks, "user "+strconv.FormatInt(uid, 10)+": "+string(data))
		}
		f.acked[uid] = max(f.acked[uid], ack.UpTo)
		f.cond.Broadcast()
		f.mu.Unlock()
	}
	f.mu.Lock()
	if f.socks[uid] == s {
		delete(f.socks, uid)
	}
	f.mu.Unlock()
}

func (f *fakeNode) send(w http.ResponseWriter, r *http.Request) {
	uid, ok := f.user(r)
	if !ok {
		writeErr(w, wire.Errorf(wire.CodeUnauthenticated, "bad token"))
		return
	}
	body, _ := io.ReadAll(r.Body)
	var req wire.NewMessageRequest
	if err := json.Unmarshal(body, &req); err != nil || req.RequestID <= 0 || req.ToUserID <= 0 || req.ToUserID == uid || req.Content == "" {
		writeErr(w, wire.Invalid("bad request %s", body))
		return
	}
	if _, err := time.Parse(wire.TimeLayout, req.CreatedAt); err != nil {
		writeErr(w, wire.Invalid("createdAt %q", req.CreatedAt))
		return
	}
	f.mu.Lock()
	f.sends++
	if f.failEvery > 0 && f.sends%f.failEvery == 0 {
		f.mu.Unlock()
		writeErr(w, &wire.Error{Code: wire.CodeUnavailable, Message: "no leader", RetryAfter: time.Second})
		return
	}
	if f.idem[[2]int64{uid, req.RequestID}] {
		f.mu.Unlock()
		writeErr(w, wire.Invalid("requestId reused"))
		return
	}
	f.idem[[2]int64{uid, req.RequestID}] = true
	f.nextID++
	m := wire.Message{MessageID: f.nextID, FromUserID: uid, ToUserID: req.ToUserID, Content: req.Content, Status: wire.StatusDelivered, CreatedAt: req.CreatedAt}
	s := f.socks[req.ToUserID]
	if s != nil {
		f.delivered[req.ToUserID] = max(f.delivered[req.ToUserID], m.MessageID)
	}
	f.mu.Unlock()
	if s != nil {
		s.mu.Lock()
		_ = s.c.WriteMessage(websocket.TextMessage, wire.AppendNewMessageEvent(nil, &m))
		s.mu.Unlock()
	}
	m.Status = wire.StatusSynced
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(wire.NewMessageResponse{Message: m, FromMessageRequestID: req.RequestID})
}

// waitAcked waits until every user acknowledged the highest id delivered to it.
func (f *fakeNode) waitAcked(t *testing.T) {
	t.Helper()
	timer := time.AfterFunc(10*time.Second, func() {
		f.mu.Lock()
		f.cond.Broadcast()
		f.mu.Unlock()
	})
	defer timer.Stop()
	deadline := time.Now().Add(10 * time.Second)
	f.mu.Lock()
	defer f.mu.Unlock()
	for {
		missing := 0
		for u, d := range f.delivered {
			if f.acked[u] != d {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d users never acknowledged their last event", missing)
		}
		f.cond.Wait()
	}
}

func fakeConfig(url string) Config {
	c := DefaultConfig()
	c.Targets = []string{url}
	c.JWTSecret = testSecret
	c.Users = 40
	c.Senders = "20"
	c.Rate = 400
	c.MaxInflight = 100
	c.ConnectRate = 0
	c.Warmup = Duration(100 * time.Millisecond)
	c.Duration = Duration(500 * time.Millisecond)
	c.Drain = Duration(5 * time.Second)
	c.Settle = 0
	return c
}

func TestCoordinateOpenLoopAgainstFakeNode(t *testing.T) {
	f, srv := newFakeNode(t)
	f.failEvery = 25
	cfg := fakeConfig(srv.URL)
	cfg.Procs = 2                    // in-process workers, each from its own loopback address
	cfg.CPUPIDs = []int{os.Getpid()} // the fake node runs in this process
	var log bytes.Buffer
	res, err := Coordinate(context.Background(), cfg, InProcess, &log)
	if err != nil {
		t.Fatal(err)
	}
	if c := res.ServerCPU; c == nil || c.Cores <= 0 || c.MicrosPerSend <= 0 || len(c.PIDs) != 1 {
		t.Fatalf("servers' CPU: %+v, want this process's CPU over the timeline and per send", c)
	}
	if res.Connect.Ready != 40 || res.Connect.Failed != 0 || res.Connect.TimeToReady.Count != 40 {
		t.Fatalf("connect: %+v", res.Connect)
	}
	s := res.Sends
	// 400/s for 0.5 s: 200 sends scheduled in the window (±1 per worker at the edges).
	if s.Offered < 198 || s.Offered > 202 {
		t.Fatalf("offered %d, want about 200", s.Offered)
	}
	if s.Accepted+s.Failed+s.Overload != s.Offered {
		t.Fatalf("accepted %d + failed %d + overload %d != offered %d", s.Accepted, s.Failed, s.Overload, s.Offered)
	}
	if s.Failed == 0 || res.Errors["http_503_unavailable"] == 0 || res.ErrorSamples["http_503_unavailable"] == "" {
		t.Fatalf("the fake's 503s were not reported: %+v %+v", s, res.Errors)
	}
	if s.Delivered != s.Accepted || s.Undelivered != 0 || s.Deliver.Count != s.Accepted || s.Send201.Count != s.Accepted {
		t.Fatalf("deliveries: %+v", s)
	}
	if res.SocketDrops != 0 || res.ForeignFrames != 0 || res.DuplicateMsgs != 0 {
		t.Fatalf("drops %d foreign %d dups %d", res.SocketDrops, res.ForeignFrames, res.DuplicateMsgs)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.sources["127.0.0.2"] || !f.sources["127.0.0.3"] || f.sources["127.0.0.1"] {
		t.Fatalf("sockets came from %v, want 127.0.0.2 and 127.0.0.3", f.sources)
	}
	if len(f.badAcks) > 0 {
		t.Fatalf("bad acks: %q", f.badAcks)
	}
	if !strings.Contains(log.String(), "ready 40/40") && !strings.Contains(log.String(), "ready") {
		t.Logf("progress log:\n%s", log.String())
	}
}

func TestWorkerAcksEveryEvent(t *testing.T) {
	for _, mode := range []string{AckBatch, AckEvent, AckInterval} {
		t.Run(mode, func(t *testing.T) {
			f, srv := newFakeNode(t)
			cfg := fakeConfig(srv.URL)
			cfg.Ack = mode
			cfg.AckEvery = Duration(2 * time.Millisecond)
			cfg.Rate = 0 // closed loop
			cfg.Concurrency = 8
			cfg.Warmup = 0
			cfg.Duration = Duration(200 * time.Millisecond)
			w, err := NewWorker(cfg.Split(0, time.Now().UnixMicro()))
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			w.Connect(context.Background())
			w.Run(context.Background(), time.Now())
			f.waitAcked(t)
			r := w.Result()
			if r.Mode != "closed-loop" || r.Sends.Accepted == 0 || r.Sends.Delivered != r.Sends.Accepted || len(r.Errors) != 0 {
				t.Fatalf("result %+v errors %v", r.Sends, r.Errors)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if len(f.badAcks) > 0 {
				t.Fatalf("bad acks: %q", f.badAcks)
			}
		})
	}
}

func TestConnectFailuresAreCounted(t *testing.T) {
	_, srv := newFakeNode(t)
	cfg := fakeConfig(srv.URL)
	cfg.JWTSecret = "not-the-node-secret-0123456789abcdef"
	cfg.Idle = true
	cfg.Users = 5
	w, err := NewWorker(cfg.Split(0, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Connect(context.Background())
	c := w.ConnectResult()
	if c.Ready != 0 || c.Failed != 5 || c.Errors["connect_http_401_unauthenticated"] != 5 {
		t.Fatalf("%+v", c)
	}
}
