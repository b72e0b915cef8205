package edge_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/edgenode/edgenode/edge"
	"github.com/edgenode/edgenode/relaylog"
	"github.com/edgenode/edgenode/wire"
)

func signed(t *testing.T, claims jwt.MapClaims, method jwt.SigningMethod, key any) string {
	tok, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestEveryRESTError(t *testing.T) {
	h := start(t, func(eo *edge.Options, lo *relaylog.Options) {
		eo.SendRate, eo.SendBurst = 1, 3
		lo.MaxQueueDepth = 2
	})
	valid := `{"requestId":1,"toUserId":2,"content":"hi","createdAt":"2026-11-27T10:20:08.123Z"}`
	exp := time.Now().Add(-time.Hour).Unix()
	cases := []struct {
		name          string
		method, path  string
		authz         string // "" = token of user 1; "-" = none
		body          string
		status        int
		code          string
		wantRetryHint bool
	}{
		{"no token", "POST", "/v1/messages", "-", valid, 401, wire.CodeUnauthenticated, false},
		{"garbage token", "POST", "/v1/messages", "Bearer abc.def.ghi", valid, 401, wire.CodeUnauthenticated, false},
		{"expired token", "GET", "/v1/messages", "Bearer " + signed(t, jwt.MapClaims{"sub": "1", "exp": exp}, jwt.SigningMethodHS256, testSecret), "", 401, wire.CodeUnauthenticated, false},
		{"token without exp", "GET", "/v1/messages", "Bearer " + signed(t, jwt.MapClaims{"sub": "1"}, jwt.SigningMethodHS256, testSecret), "", 401, wire.CodeUnauthenticated, false},
		{"token with wrong secret", "GET", "/v1/messages", "Bearer " + signed(t, jwt.MapClaims{"sub": "1", "exp": time.Now().Add(time.Hour).Unix()}, jwt.SigningMethodHS256, []byte("another secret of 32 bytes long!!")), "", 401, wire.CodeUnauthenticated, false},
		{"malformed JSON", "POST", "/v1/messages", "", `{"requestId":`, 400, wire.CodeInvalidArgument, false},
		{"not an object", "POST", "/v1/messages", "", `[1,2]`, 400, wire.CodeInvalidArgument, false},
		{"missing content", "POST", "/v1/messages", "", `{"requestId":1,"toUserId":2,"createdAt":"2026-11-27T10:20:08.123Z"}`, 400, wire.CodeInvalidArgument, false},
		{"empty content", "POST", "/v1/messages", "", `{"requestId":1,"toUserId":2,"content":"","createdAt":"2026-11-27T10:20:08.123Z"}`, 400, wire.CodeInvalidArgument, false},
		{"content too long", "POST", "/v1/messages", "", `{"requestId":1,"toUserId":2,"content":"` + strings.Repeat("x", 4097) + `","createdAt":"2026-11-27T10:20:08.123Z"}`, 413, wire.CodeTooLarge, false},
		{"body too large", "POST", "/v1/messages", "", `{"requestId":1,"toUserId":2,"content":"` + strings.Repeat("x", 70000) + `","createdAt":"2026-11-27T10:20:08.123Z"}`, 413, wire.CodeTooLarge, false},
		{"toUserId zero", "POST", "/v1/messages", "", `{"requestId":1,"toUserId":0,"content":"x","createdAt":"2026-11-27T10:20:08.123Z"}`, 400, wire.CodeInvalidArgument, false},
		{"toUserId beyond 2^53", "POST", "/v1/messages", "", `{"requestId":1,"toUserId":9007199254740993,"content":"x","createdAt":"2026-11-27T10:20:08.123Z"}`, 400, wire.CodeInvalidArgument, false},
		{"toUserId a string", "POST", "/v1/messages", "", `{"requestId":1,"toUserId":"2","content":"x","createdAt":"2026-11-27T10:20:08.123Z"}`, 400, wire.CodeInvalidArgument, false},
		{"bad createdAt", "POST", "/v1/messages", "", `{"requestId":1,"toUserId":2,"content":"x","createdAt":"yesterday"}`, 400, wire.CodeInvalidArgument, false},
		{"bad cursor", "GET", "/v1/messages?lastSyncedMessage=abc", "", "", 400, wire.CodeInvalidArgument, false},
		{"zero limit", "GET", "/v1/messages?limit=0", "", "", 400, wire.CodeInvalidArgument, false},
		{"bad path id", "POST", "/v1/conversations/abc/read", "", `{"upToMessageId":1}`, 400, wire.CodeInvalidArgument, false},
		{"read without id", "POST", "/v1/conversations/2/read", "", `{}`, 400, wire.CodeInvalidArgument, false},
		{"typing not bool", "POST", "/v1/conversations/2/typing", "", `{"typing":"yes"}`, 400, wire.CodeInvalidArgument, false},
		{"bad platform", "POST", "/v1/devices", "", `{"platform":"sms","token":"abc"}`, 400, wire.CodeInvalidArgument, false},
		{"empty device token", "POST", "/v1/devices", "", `{"platform":"apns","token":""}`, 400, wire.CodeInvalidArgument, false},
		{"unknown route", "GET", "/v1/nope", "", "", 404, wire.CodeNotFound, false},
		{"wrong method", "DELETE", "/v1/messages", "", "", 405, edge.CodeMethodNotAllowed, false},
		{"status of bad id", "GET", "/v1/users/0/status", "", "", 400, wire.CodeInvalidArgument, false},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(c.method, h.url+c.path, strings.NewReader(c.body))
			switch c.authz {
			case "":
				// A user per case: every send attempt takes a rate token.
				req.Header.Set("Authorization", "Bearer "+tokenFor(t, int64(1000+i)))
			case "-":
			default:
				req.Header.Set("Authorization", c.authz)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var buf bytes.Buffer
			_, _ = buf.ReadFrom(resp.Body)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.status, buf.String())
			}
			if e := decodeError(t, buf.Bytes()); e.Code != c.code || e.Message == "" {
				t.Fatalf("error %+v, want code %s", e, c.code)
			}
		})
	}

	t.Run("rate limited with Retry-After", func(t *testing.T) {
		var code int
		var hdr http.Header
		var body []byte
		for i := 0; i < 10 && code != 429; i++ {
			code, hdr, body = h.do("POST", "/v1/messages", 7, map[string]any{"requestId": 100 + i, "toUserId": 8 + i, "content": "x", "createdAt": "2026-11-27T10:20:08.123Z"})
		}
		if code != 429 || hdr.Get("Retry-After") == "" || decodeError(t, body).Code != wire.CodeRateLimited {
			t.Fatalf("got %d %v %s", code, hdr, body)
		}
	})

	t.Run("recipient queue full", func(t *testing.T) {
		var code int
		var hdr http.Header
		var body []byte
		for i, from := range []int64{20, 21, 22} {
			code, hdr, body = h.do("POST", "/v1/messages", from, map[string]any{"requestId": i + 1, "toUserId": 30, "content": "x", "createdAt": "2026-11-27T10:20:08.123Z"})
		}
		if code != 429 || hdr.Get("Retry-After") == "" || decodeError(t, body).Code != wire.CodeRateLimited {
			t.Fatalf("got %d %v %s", code, hdr, body)
		}
	})
}

func TestSocketErrors(t *testing.T) {
	h := start(t, func(eo *edge.Options, _ *relaylog.Options) {
		eo.MaxConnsPerUser = 2
		eo.AllowedOrigins = []string{"https://chat.example.com"}
	})

	t.Run("no token", func(t *testing.T) {
		_, resp, err := h.dialRaw(0, nil)
		if err == nil || resp == nil || resp.StatusCode != 401 {
			t.Fatalf("err=%v resp=%v", err, resp)
		}
	})
	t.Run("access_token query parameter", func(t *testing.T) {
		conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(h.url, "http")+"/v1/socket/updates?access_token="+tokenFor(t, 5), nil)
		if err != nil {
			t.Fatal(err)
		}
		c := &wsClient{t: t, conn: conn}
		c.next(wire.TypeReady)
		conn.Close()
	})
	t.Run("origin not allowed", func(t *testing.T) {
		_, resp, err := h.dialRaw(1, http.Header{"Origin": {"https://evil.example.com"}})
		if err == nil || resp == nil || resp.StatusCode != 403 {
			t.Fatalf("err=%v resp=%v", err, resp)
		}
	})
	t.Run("origin allowed", func(t *testing.T) {
		c, _, err := h.dialRaw(6, http.Header{"Origin": {"https://chat.example.com"}})
		if err != nil {
			t.Fatal(err)
		}
		c.next(wire.TypeReady)
		c.conn.Close()
	})
	t.Run("too many sockets", func(t *testing.T) {
		h.dial(3)
		h.dial(3)
		_, resp, err := h.dialRaw(3, nil)
		if err == nil || resp == nil || resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("err=%v resp=%v", err, resp)
		}
	})
	t.Run("bad frames get error events and keep the socket", func(t *testing.T) {
		c := h.dial(4)
		for _, frame := range []string{`nope`, `{"type":"ack","payload":{"upTo":-1}}`, `{"type":"launch","payload":{}}`, `{"type":"watch","payload":{"userIds":[` + strings.Repeat("1,", 1000) + `1]}}`} {
			c.conn.WriteMessage(websocket.TextMessage, []byte(frame))
			f := c.next(wire.TypeError)
			if !strings.Contains(string(f.Payload), `"code"`) {
				t.Fatalf("error payload %s", f.Payload)
			}
		}
		// A full watch list is answered status by status, socket kept.
		ids := make([]int64, wire.MaxWatch)
		for i := range ids {
			ids[i] = int64(i + 1)
		}
		c.sendFrame(wire.TypeWatch, wire.Watch{UserIDs: ids})
		for i := range ids {
			if st := c.nextStatus(); st.UserID != ids[i] {
				t.Fatalf("status %d of watch = %+v", i, st)
			}
		}
	})
	t.Run("frame too large closes with 1009", func(t *testing.T) {
		c := h.dial(8)
		c.conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"watch","payload":{"userIds":[`+strings.Repeat("1,", 40000)+`1]}}`))
		c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			_, _, err := c.conn.ReadMessage()
			if err != nil {
				if !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
					t.Fatalf("closed with %v, want 1009", err)
				}
				return
			}
		}
	})
}

func TestMissedPingsMakeUserOffline(t *testing.T) {
	h := start(t, func(eo *edge.Options, _ *relaylog.Options) { eo.PingInterval = 50 * time.Millisecond })
	alice := h.dial(1)
	alice.sendFrame(wire.TypeWatch, wire.Watch{UserIDs: []int64{2}})
	alice.nextStatus()
	bob := h.dial(2)
	if st := alice.nextStatus(); !st.Online {
		t.Fatalf("%+v", st)
	}
	// Bob's client stops reading, so it never answers pings.
	_ = bob
	// Alice keeps reading (answering pings) and sees bob go offline.
	st := alice.nextStatus()
	if st.UserID != 2 || st.Online || st.LastConnectedAt == nil {
		t.Fatalf("%+v", st)
	}
}

func TestDrainClosesSocketsWithServiceRestart(t *testing.T) {
	h := start(t, nil)
	c := h.dial(1)
	go h.srv.Drain(t.Context())
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, _, err := c.conn.ReadMessage()
		if err != nil {
			if !websocket.IsCloseError(err, websocket.CloseServiceRestart) {
				t.Fatalf("closed with %v, want 1012", err)
			}
			break
		}
	}
	code, hdr, _ := h.do("GET", "/readyz", 0, nil)
	if code != 503 {
		t.Fatalf("readyz while draining = %d", code)
	}
	if _, resp, err := h.dialRaw(1, nil); err == nil || resp.StatusCode != 503 || hdr == nil {
		t.Fatalf("dial while draining: %v %v", err, resp)
	}
}

func TestHealthReadyMetrics(t *testing.T) {
	h := start(t, nil)
	h.send(1, 2, "x")
	for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ready", "/metrics": "edgenode_sends_total"} {
		code, _, b := h.do("GET", path, 0, nil)
		if code != 200 || !strings.Contains(string(b), want) {
			t.Fatalf("%s: %d %s", path, code, b)
		}
		// The operator listener serves the same.
		code, _, b = raw(t, "GET", h.opURL+path, nil, nil)
		if code != 200 || !strings.Contains(string(b), want) {
			t.Fatalf("operator %s: %d %s", path, code, b)
		}
	}
	// Sockets have latency histograms: each write of frames, and how long
	// a socket stayed open once it closes.
	c := h.dial(2)
	c.nextMessage()
	c.conn.Close()
	eventually(t, "socket histograms on /metrics", func() bool {
		_, _, b := h.do("GET", "/metrics", 0, nil)
		m := string(b)
		return strings.Contains(m, "edgenode_socket_duration_seconds_count 1\n") &&
			strings.Contains(m, "edgenode_socket_write_seconds_bucket") &&
			!strings.Contains(m, "edgenode_socket_write_seconds_count 0\n")
	})
}
