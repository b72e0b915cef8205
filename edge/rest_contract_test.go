package edge_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/edgenode/edgenode/auth"
	"github.com/edgenode/edgenode/edge"
	"github.com/edgenode/edgenode/presence"
	"github.com/edgenode/edgenode/relaylog"
	"github.com/edgenode/edgenode/wire"
)

// noRedirects is a client that shows redirects instead of following them.
var noRedirects = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       10 * time.Second,
}

// raw sends a request with the given headers (Authorization included, if
// wanted) and returns status, headers and body.
func raw(t *testing.T, method, url string, hdr http.Header, body io.Reader) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := noRedirects.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

// apiError checks that body is the API's error body with code, and returns
// its message.
func apiError(t *testing.T, what string, status int, hdr http.Header, body []byte, wantStatus int, wantCode string) string {
	t.Helper()
	if status != wantStatus {
		t.Fatalf("%s: status %d, want %d: %s", what, status, wantStatus, body)
	}
	if ct := hdr.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s: Content-Type %q", what, ct)
	}
	var e wire.ErrorBody
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Code != wantCode || e.Error.Message == "" {
		t.Fatalf("%s: body %s, want error code %s with a message", what, body, wantCode)
	}
	return e.Error.Message
}

// Paths that are not in canonical form get 404 in the error model, never a
// bodyless redirect (ServeMux's 307/301), whatever the method.
func TestUncleanPathsAre404NotRedirects(t *testing.T) {
	h := start(t, func(eo *edge.Options, _ *relaylog.Options) {
		eo.OperatorToken = "cluster-secret-0123456789abcdef-0123"
		eo.Cluster = map[string]http.Handler{"members": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("[]")) })}
	})
	tok := tokenFor(t, 1)
	for _, c := range []struct{ method, path string }{
		{"GET", "//v1/messages"},
		{"POST", "//v1/messages"},
		{"GET", "/v1/./edges"},
		{"GET", "/v1/users//status"},
		{"GET", "/v1/users/2//status"},
		{"GET", "/v1/../v1/edges"},
		{"GET", "/v1/edges/."},
		{"GET", "/v1/edges/.."},
		{"GET", "//healthz"},
		{"GET", "/./readyz"},
		{"DELETE", "/v1/devices/./abc"},
		{"GET", "/v1//socket/updates"},
	} {
		code, hdr, body := raw(t, c.method, h.url+c.path, bearer(tok), nil)
		apiError(t, c.method+" "+c.path, code, hdr, body, 404, wire.CodeNotFound)
		if loc := hdr.Get("Location"); loc != "" {
			t.Fatalf("%s %s: Location %q", c.method, c.path, loc)
		}
	}
	// The operator listener likewise.
	for _, p := range []string{"//v1/cluster/members", "/v1/./cluster/members", "//metrics", "/./readyz"} {
		code, hdr, body := raw(t, "GET", h.opURL+p, bearer(tok), nil)
		apiError(t, "operator GET "+p, code, hdr, body, 404, wire.CodeNotFound)
		if loc := hdr.Get("Location"); loc != "" {
			t.Fatalf("operator GET %s: Location %q", p, loc)
		}
	}
	// Canonical paths, a trailing slash included, are routed as before.
	if code, _, body := raw(t, "GET", h.url+"/v1/edges", bearer(tok), nil); code != 200 {
		t.Fatalf("GET /v1/edges: %d %s", code, body)
	}
	code, hdr, body := raw(t, "GET", h.url+"/v1/edges/", bearer(tok), nil)
	apiError(t, "GET /v1/edges/", code, hdr, body, 404, wire.CodeNotFound)
}

// A known path with a method it does not serve: 405, code
// method_not_allowed, and an Allow header.
func TestWrongMethodIs405MethodNotAllowed(t *testing.T) {
	h := start(t, func(eo *edge.Options, _ *relaylog.Options) {
		eo.OperatorToken = "cluster-secret-0123456789abcdef-0123"
		eo.Cluster = map[string]http.Handler{"shards": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("[]")) })}
	})
	tok := tokenFor(t, 1)
	for _, c := range []struct{ method, path, allow string }{
		{"DELETE", "/v1/messages", "GET, POST"},
		{"PUT", "/v1/messages", "GET, POST"},
		{"GET", "/v1/conversations/2/read", "POST"},
		{"GET", "/v1/conversations/2/typing", "POST"},
		{"POST", "/v1/users/2/status", "GET"},
		{"PUT", "/v1/devices", "GET, POST"},
		{"GET", "/v1/devices/abc", "DELETE"},
		{"POST", "/v1/edges", "GET"},
		{"POST", "/v1/socket/updates", "GET"},
		{"POST", "/healthz", "GET"},
		{"DELETE", "/readyz", "GET"},
		{"POST", "/metrics", "GET"},
		{"OPTIONS", "/v1/messages", "GET, POST"},
	} {
		code, hdr, body := raw(t, c.method, h.url+c.path, bearer(tok), nil)
		msg := apiError(t, c.method+" "+c.path, code, hdr, body, 405, edge.CodeMethodNotAllowed)
		if got := hdr.Get("Allow"); got != c.allow {
			t.Fatalf("%s %s: Allow %q, want %q", c.method, c.path, got, c.allow)
		}
		if !strings.Contains(msg, c.method) {
			t.Fatalf("%s %s: message %q does not name the method", c.method, c.path, msg)
		}
	}
	for _, c := range []struct{ method, path string }{
		{"POST", "/v1/cluster/shards"}, {"DELETE", "/v1/cluster/shards"}, {"POST", "/metrics"}, {"PUT", "/readyz"},
	} {
		code, hdr, body := raw(t, c.method, h.opURL+c.path, bearer(tok), nil)
		apiError(t, "operator "+c.method+" "+c.path, code, hdr, body, 405, edge.CodeMethodNotAllowed)
		if got := hdr.Get("Allow"); got != "GET" {
			t.Fatalf("operator %s %s: Allow %q, want GET", c.method, c.path, got)
		}
	}
}

// readyStore is a relay log whose readiness the test sets.
type readyStore struct {
	*relaylog.Log
	ready atomic.Bool
}

func (s *readyStore) Ready() bool { return s.ready.Load() }

// /readyz's 503 carries the status and the API's error, with Retry-After.
func TestReadyz503HasTheErrorModel(t *testing.T) {
	l, err := relaylog.Open(relaylog.Options{Dir: t.TempDir(), NodeID: "n1", Shards: 1, HeartbeatTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	v, err := auth.NewVerifier(auth.Options{Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	st := &readyStore{Log: l}
	srv := edge.New(edge.Options{NodeID: "n1", Log: st, Hub: presence.New(presence.Options{LastConnected: l.LastConnected}), Verifier: v})
	hts := httptest.NewServer(srv.Handler())
	defer hts.Close()

	check := func(wantStatus string) {
		t.Helper()
		code, hdr, body := raw(t, "GET", hts.URL+"/readyz", nil, nil)
		apiError(t, "readyz "+wantStatus, code, hdr, body, 503, wire.CodeUnavailable)
		var b struct {
			Status string `json:"status"`
		}
		json.Unmarshal(body, &b)
		if b.Status != wantStatus || hdr.Get("Retry-After") == "" {
			t.Fatalf("readyz: %s, Retry-After %q; want status %q and a Retry-After", body, hdr.Get("Retry-After"), wantStatus)
		}
		if srv.Ready() {
			t.Fatal("Ready() while /readyz answers 503")
		}
	}
	check("no leader for some shards")
	st.ready.Store(true)
	if code, _, body := raw(t, "GET", hts.URL+"/readyz", nil, nil); code != 200 || !strings.Contains(string(body), `"ready"`) || !srv.Ready() {
		t.Fatalf("ready: %d %s (Ready() = %v)", code, body, srv.Ready())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	srv.Drain(ctx)
	cancel()
	check("draining")
}

// 401 messages say why in a few words, never the verifier's or
// encoding/json's wording.
func TestUnauthenticatedMessagesAreShort(t *testing.T) {
	h := start(t, nil)
	exp := time.Now().Add(time.Hour).Unix()
	hs := func(c jwt.MapClaims) string { return signed(t, c, jwt.SigningMethodHS256, testSecret) }
	for _, c := range []struct {
		name, authz, want string // want: the exact message, or a prefix ending in "…"
	}{
		{"sub as a number", "Bearer " + hs(jwt.MapClaims{"sub": 1, "exp": exp}), "malformed token: sub must be a decimal user id string"},
		{"garbage", "Bearer abc.def.ghi", "malformed token…"},
		{"one segment", "Bearer abc", "malformed token…"},
		{"exp as a string", "Bearer " + hs(jwt.MapClaims{"sub": "1", "exp": "tomorrow"}), "malformed token…"},
		{"expired", "Bearer " + hs(jwt.MapClaims{"sub": "1", "exp": time.Now().Add(-time.Hour).Unix()}), "token expired"},
		{"wrong secret", "Bearer " + signed(t, jwt.MapClaims{"sub": "1", "exp": exp}, jwt.SigningMethodHS256, []byte("another secret of 32 bytes long!!")), "bad signature"},
		{"no token", "", "missing bearer token"},
	} {
		hdr := http.Header{}
		if c.authz != "" {
			hdr.Set("Authorization", c.authz)
		}
		for _, path := range []string{"/v1/messages", "/v1/socket/updates"} {
			code, rh, body := raw(t, "GET", h.url+path, hdr, nil)
			msg := apiError(t, c.name+" on "+path, code, rh, body, 401, wire.CodeUnauthenticated)
			if p, ok := strings.CutSuffix(c.want, "…"); ok && !strings.HasPrefix(msg, p) || !ok && msg != c.want {
				t.Errorf("%s on %s: message %q, want %q", c.name, path, msg, c.want)
			}
			for _, leak := range []string{"auth:", "json:", "Go ", "struct", "tokenClaims", "unauthenticated:"} {
				if strings.Contains(msg, leak) {
					t.Errorf("%s on %s: message %q leaks %q", c.name, path, msg, leak)
				}
			}
		}
	}
}

// A failed WebSocket handshake is answered in the error model with a short
// message, not gorilla/websocket's.
func TestSocketUpgradeFailuresHaveTheErrorModel(t *testing.T) {
	h := start(t, nil)
	url := h.url + "/v1/socket/updates"
	ws := func(extra map[string]string) http.Header {
		hdr := bearer(tokenFor(t, 1))
		hdr.Set("Connection", "Upgrade")
		hdr.Set("Upgrade", "websocket")
		hdr.Set("Sec-WebSocket-Version", "13")
		hdr.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		for k, v := range extra {
			hdr.Set(k, v)
		}
		return hdr
	}
	for _, c := range []struct {
		name string
		hdr  http.Header
		want string
	}{
		{"plain GET", bearer(tokenFor(t, 1)), "this endpoint needs a WebSocket upgrade"},
		{"no Upgrade header", ws(map[string]string{"Upgrade": "h2c"}), "this endpoint needs a WebSocket upgrade"},
		{"old version", ws(map[string]string{"Sec-WebSocket-Version": "8"}), "this endpoint needs WebSocket version 13 (Sec-WebSocket-Version: 13)"},
		{"bad key", ws(map[string]string{"Sec-WebSocket-Key": "short"}), "the WebSocket upgrade needs a valid Sec-WebSocket-Key header"},
	} {
		code, hdr, body := raw(t, "GET", url, c.hdr, nil)
		if msg := apiError(t, c.name, code, hdr, body, 400, wire.CodeInvalidArgument); msg != c.want {
			t.Errorf("%s: message %q, want %q", c.name, msg, c.want)
		}
	}
}

// Bodies over the limit get 413 in the error model, whether the client
// declared the length or streamed the body.
func TestOversizedBodiesHaveTheErrorModel(t *testing.T) {
	h := start(t, nil)
	big := `{"requestId":1,"toUserId":2,"content":"` + strings.Repeat("x", wire.MaxBodyBytes) + `","createdAt":"2026-11-27T10:20:08.123Z"}`
	for _, path := range []string{"/v1/messages", "/v1/devices", "/v1/conversations/2/read", "/v1/conversations/2/typing"} {
		code, hdr, body := raw(t, "POST", h.url+path, bearer(tokenFor(t, 3)), strings.NewReader(big))
		apiError(t, "declared length on "+path, code, hdr, body, 413, wire.CodeTooLarge)
		// A reader of unknown length: sent chunked.
		code, hdr, body = raw(t, "POST", h.url+path, bearer(tokenFor(t, 4)), io.MultiReader(strings.NewReader(big)))
		apiError(t, "chunked on "+path, code, hdr, body, 413, wire.CodeTooLarge)
	}
}

// A lone surrogate escape in a send is refused, not stored as U+FFFD; a
// valid pair is stored as its character.
func TestLoneSurrogateContentIsRefused(t *testing.T) {
	h := start(t, nil)
	const to = 77
	for i, content := range []string{`\ud800`, `\udfff`, `hi \ud83d`, `\ude00\ud83d`} {
		body := fmt.Sprintf(`{"requestId":%d,"toUserId":%d,"content":"%s","createdAt":"2026-11-27T10:20:08.123Z"}`, i+1, to, content)
		code, hdr, b := raw(t, "POST", h.url+"/v1/messages", bearer(tokenFor(t, 1)), strings.NewReader(body))
		if msg := apiError(t, content, code, hdr, b, 400, wire.CodeInvalidArgument); !strings.Contains(msg, "surrogate") {
			t.Errorf("%s: message %q does not name the surrogate", content, msg)
		}
	}
	body := `{"requestId":99,"toUserId":77,"content":"\ud83d\ude00 \u00e9","createdAt":"2026-11-27T10:20:08.123Z"}`
	if code, _, b := raw(t, "POST", h.url+"/v1/messages", bearer(tokenFor(t, 1)), strings.NewReader(body)); code != 201 {
		t.Fatalf("valid pair: %d %s", code, b)
	}
	code, _, b := h.do("GET", "/v1/messages", to, nil)
	var sr wire.SyncResponse
	if err := json.Unmarshal(b, &sr); code != 200 || err != nil {
		t.Fatalf("sync: %d %s", code, b)
	}
	if len(sr.Messages) != 1 || sr.Messages[0].Content != "😀 é" {
		t.Fatalf("queued %+v, want only the valid message as 😀 é", sr.Messages)
	}
}

// limit: any positive integer above 500 is clamped, even one beyond int64;
// zero, negative numbers and non-integers are 400.
func TestSyncLimitClampsHugeValues(t *testing.T) {
	h := start(t, nil)
	const to, n = 88, wire.MaxSyncLimit + 1
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			// One sender each: a sender with hundreds of sends in flight to
			// one shard would see later ones overtake earlier ones past
			// what the server remembers (409 request_expired).
			_, _, err := h.log.Send(ctx, int64(1000+i), wire.NewMessageRequest{RequestID: int64(i + 1), ToUserID: to, Content: "m", CreatedAt: createdAtOf(int64(i + 1))})
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, limit := range []string{"501", "100000", "9223372036854775807", "9223372036854775808", "100000000000000000000", "%2B100000000000000000000", strings.Repeat("9", 400)} {
		code, _, b := h.do("GET", "/v1/messages?limit="+limit, to, nil)
		var sr wire.SyncResponse
		if err := json.Unmarshal(b, &sr); code != 200 || err != nil {
			t.Fatalf("limit=%s: %d %.200s", limit, code, b)
		}
		if len(sr.Messages) != wire.MaxSyncLimit || !sr.HasMore {
			t.Fatalf("limit=%s: %d messages, hasMore %v; want %d and more", limit, len(sr.Messages), sr.HasMore, wire.MaxSyncLimit)
		}
	}
	for _, limit := range []string{"0", "-1", "-100000000000000000000", "abc", "1.5", "1e3", "0x10"} {
		code, hdr, b := h.do("GET", "/v1/messages?limit="+limit, to, nil)
		apiError(t, "limit="+limit, code, hdr, b, 400, wire.CodeInvalidArgument)
	}
}

// /v1/cluster/* is served on the operator listener only, and takes the
// operator token as bearer token, nothing else.
func TestClusterViewsNeedTheOperatorToken(t *testing.T) {
	const secret = "cluster-secret-0123456789abcdef-0123"
	view := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`[{"nodeId":"n1","addr":"10.1.2.3:7946"}]`))
	})
	h := start(t, func(eo *edge.Options, _ *relaylog.Options) {
		eo.OperatorToken = secret
		eo.Cluster = map[string]http.Handler{"members": view}
	})
	// The client listener does not know the path, token or not.
	for _, hdr := range []http.Header{nil, bearer(secret)} {
		code, rh, body := raw(t, "GET", h.url+"/v1/cluster/members", hdr, nil)
		apiError(t, "client listener", code, rh, body, 404, wire.CodeNotFound)
	}
	url := h.opURL + "/v1/cluster/members"
	for _, c := range []struct {
		name string
		hdr  http.Header
	}{
		{"no token", nil},
		{"a user's token", bearer(tokenFor(t, 1))},
		{"a wrong secret", bearer("not-the-secret-0123456789abcdef-01234")},
		{"the secret's prefix", bearer(secret[:len(secret)-1])},
		{"the secret with a suffix", bearer(secret + "x")},
		{"another scheme", http.Header{"Authorization": {"Basic " + secret}}},
	} {
		code, hdr, body := raw(t, "GET", url, c.hdr, nil)
		apiError(t, c.name, code, hdr, body, 401, wire.CodeUnauthenticated)
		if bytes.Contains(body, []byte("10.1.2.3")) {
			t.Fatalf("%s: the view leaked: %s", c.name, body)
		}
	}
	for _, authz := range []string{"Bearer " + secret, "bearer " + secret} {
		code, _, body := raw(t, "GET", url, http.Header{"Authorization": {authz}}, nil)
		if code != 200 || !bytes.Contains(body, []byte("10.1.2.3")) {
			t.Fatalf("%q: %d %s", authz, code, body)
		}
	}

	// No secret configured: nothing opens the views.
	h2 := start(t, func(eo *edge.Options, _ *relaylog.Options) {
		eo.Cluster = map[string]http.Handler{"members": view}
	})
	for _, hdr := range []http.Header{nil, bearer(""), {"Authorization": {"Bearer "}}, bearer(tokenFor(t, 1))} {
		code, rh, body := raw(t, "GET", h2.opURL+"/v1/cluster/members", hdr, nil)
		apiError(t, "no secret configured", code, rh, body, 401, wire.CodeUnauthenticated)
	}
}
