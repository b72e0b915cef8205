package edge_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/edgenode/edgenode/auth"
	"github.com/edgenode/edgenode/edge"
	"github.com/edgenode/edgenode/internal/relaytest"
	"github.com/edgenode/edgenode/presence"
	"github.com/edgenode/edgenode/relaylog"
	"github.com/edgenode/edgenode/wire"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

type harness struct {
	t   *testing.T
	url string
	// opURL is the operator listener's (Server.OperatorHandler).
	opURL string
	log   *relaylog.Log
	srv   *edge.Server
	hts   *httptest.Server
}

func start(t *testing.T, mod func(*edge.Options, *relaylog.Options)) *harness {
	t.Helper()
	lo := relaytest.Options(t.TempDir())
	// Presence is open and calls unlimited here: most tests are about
	// presence's mechanics and the API's answers; privacy_test.go tests
	// the defaults.
	eo := edge.Options{NodeID: "n1", Region: "test", SendBurst: 1000, SendRate: 1000, OpenPresence: true, CallRate: 1e6, CallBurst: 1e6}
	if mod != nil {
		mod(&eo, &lo)
	}
	l := relaytest.Open(t, lo)
	hub := presence.New(presence.Options{LastConnected: l.LastConnected})
	fanCtx, stopFan := context.WithCancel(context.Background())
	t.Cleanup(stopFan)
	go l.Commits().Run(fanCtx, hub.Committed, nil)
	if eo.Verifier == nil { // a test may bring its own
		v, err := auth.NewVerifier(auth.Options{Secret: testSecret})
		if err != nil {
			t.Fatal(err)
		}
		eo.Verifier = v
	}
	eo.Log, eo.Hub = l, hub
	srv := edge.New(eo)
	hts := httptest.NewServer(srv.Handler())
	ops := httptest.NewServer(srv.OperatorHandler())
	h := &harness{t: t, url: hts.URL, opURL: ops.URL, log: l, srv: srv, hts: hts}
	t.Cleanup(func() {
		ops.Close()
		dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
		srv.Drain(dctx)
		dcancel()
		hts.Close()
		l.Close()
	})
	return h
}

func tokenFor(t *testing.T, user int64) string {
	tok, err := auth.Issue(testSecret, user, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// do sends a request as user (0: no token) and returns status, headers and body.
func (h *harness) do(method, path string, user int64, body any) (int, http.Header, []byte) {
	h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, h.url+path, rd)
	if user != 0 {
		req.Header.Set("Authorization", "Bearer "+tokenFor(h.t, user))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, out
}

var reqSeq int64

// createdAtOf is the createdAt of request seq: a client's clock, later for
// every new message.
func createdAtOf(seq int64) string {
	return time.Date(2026, 11, 27, 10, 20, 8, 0, time.UTC).Add(time.Duration(seq) * time.Millisecond).Format("2006-01-02T15:04:05.000Z")
}

func (h *harness) send(from, to int64, content string) wire.NewMessageResponse {
	h.t.Helper()
	reqSeq++
	code, _, body := h.do("POST", "/v1/messages", from, wire.NewMessageRequest{RequestID: reqSeq, ToUserID: to, Content: content, CreatedAt: createdAtOf(reqSeq)})
	if code != http.StatusCreated {
		h.t.Fatalf("send: %d %s", code, body)
	}
	var r wire.NewMessageResponse
	if err := json.Unmarshal(body, &r); err != nil {
		h.t.Fatal(err)
	}
	return r
}

type wsClient struct {
	t     *testing.T
	conn  *websocket.Conn
	ready wire.Ready
}

func (h *harness) dial(user int64) *wsClient {
	h.t.Helper()
	c, resp, err := h.dialRaw(user, nil)
	if err != nil {
		h.t.Fatalf("dial: %v (%v)", err, resp)
	}
	f := c.next("ready")
	if err := json.Unmarshal(f.Payload, &c.ready); err != nil {
		h.t.Fatal(err)
	}
	return c
}

func (h *harness) dialRaw(user int64, hdr http.Header) (*wsClient, *http.Response, error) {
	if hdr == nil {
		hdr = http.Header{}
	}
	if user != 0 {
		hdr.Set("Authorization", "Bearer "+tokenFor(h.t, user))
	}
	conn, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(h.url, "http")+"/v1/socket/updates", hdr)
	if err != nil {
		return nil, resp, err
	}
	c := &wsClient{t: h.t, conn: conn}
	h.t.Cleanup(func() { conn.Close() })
	return c, resp, nil
}

// next reads frames until one of type typ arrives (skipping others), or
// fails the test after 5 seconds.
func (c *wsClient) next(typ string) wire.Frame {
	c.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.conn.SetReadDeadline(deadline)
		_, data, err := c.conn.ReadMessage()
		if err != nil {
			c.t.Fatalf("waiting for %q: %v", typ, err)
		}
		var f wire.Frame
		if err := json.Unmarshal(data, &f); err != nil {
			c.t.Fatalf("bad frame %s: %v", data, err)
		}
		if f.Type == typ {
			return f
		}
	}
}

func (c *wsClient) sendFrame(typ string, payload any) {
	c.t.Helper()
	p, _ := json.Marshal(payload)
	b, _ := json.Marshal(wire.Frame{Type: typ, Payload: p})
	if err := c.conn.WriteMessage(websocket.TextMessage, b); err != nil {
		c.t.Fatal(err)
	}
}

func (c *wsClient) nextMessage() (int64, wire.Message) {
	c.t.Helper()
	f := c.next(wire.TypeNewMessage)
	var p struct {
		Message wire.Message `json:"message"`
	}
	if err := json.Unmarshal(f.Payload, &p); err != nil {
		c.t.Fatal(err)
	}
	return f.ID, p.Message
}

func (c *wsClient) nextReceipt(typ string) wire.Receipt {
	c.t.Helper()
	f := c.next(typ)
	var r wire.Receipt
	if err := json.Unmarshal(f.Payload, &r); err != nil {
		c.t.Fatal(err)
	}
	if f.ID != r.ID {
		c.t.Fatalf("frame id %d != receipt id %d", f.ID, r.ID)
	}
	return r
}

func (c *wsClient) nextStatus() wire.ContactStatus {
	c.t.Helper()
	f := c.next(wire.TypeContactStatusUpdate)
	var s wire.ContactStatus
	if err := json.Unmarshal(f.Payload, &s); err != nil {
		c.t.Fatal(err)
	}
	return s
}

// eventually polls cond until it holds or 5 seconds pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func decodeError(t *testing.T, body []byte) wire.ErrorDetail {
	t.Helper()
	var e wire.ErrorBody
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Code == "" {
		t.Fatalf("not an API error body: %s", body)
	}
	return e.Error
}
