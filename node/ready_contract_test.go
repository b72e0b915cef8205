package node_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgenode/edgenode/config"
	"github.com/edgenode/edgenode/node"
)

// logRecord is one logged line: its message, its attributes, and (for
// "edgenode ready") what /readyz answered at that moment.
type logRecord struct {
	msg    string
	attrs  map[string]string
	readyz int
}

// recorder is a slog.Handler keeping every record.
type recorder struct {
	mu      sync.Mutex
	records []logRecord
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) WithAttrs(as []slog.Attr) slog.Handler {
	return &recorderView{r: r, attrs: as}
}
func (r *recorder) WithGroup(string) slog.Handler { return r }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	return r.handle(rec, nil)
}

type recorderView struct {
	r     *recorder
	attrs []slog.Attr
}

func (v *recorderView) Enabled(context.Context, slog.Level) bool { return true }
func (v *recorderView) WithAttrs(as []slog.Attr) slog.Handler {
	return &recorderView{r: v.r, attrs: append(append([]slog.Attr(nil), v.attrs...), as...)}
}
func (v *recorderView) WithGroup(string) slog.Handler { return v }
func (v *recorderView) Handle(_ context.Context, rec slog.Record) error {
	return v.r.handle(rec, v.attrs)
}

func (r *recorder) handle(rec slog.Record, pre []slog.Attr) error {
	lr := logRecord{msg: rec.Message, attrs: map[string]string{}}
	for _, a := range pre {
		lr.attrs[a.Key] = a.Value.String()
	}
	rec.Attrs(func(a slog.Attr) bool {
		lr.attrs[a.Key] = a.Value.String()
		return true
	})
	if lr.msg == "edgenode ready" {
		// What a client asking now would get: the line must not come
		// before /readyz answers 200.
		if resp, err := http.Get(lr.attrs["url"] + "/readyz"); err == nil {
			lr.readyz = resp.StatusCode
			resp.Body.Close()
		}
	}
	r.mu.Lock()
	r.records = append(r.records, lr)
	r.mu.Unlock()
	return nil
}

func (r *recorder) find(msg string) []logRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []logRecord
	for _, lr := range r.records {
		if lr.msg == msg {
			out = append(out, lr)
		}
	}
	return out
}

func (r *recorder) index(msg string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, lr := range r.records {
		if lr.msg == msg {
			return i
		}
	}
	return -1
}

// "edgenode serving" says the API listens; "edgenode ready" follows, once,
// when /readyz answers 200 (writes are accepted).
func TestReadyLoggedOnceWhenReadyzAnswers200(t *testing.T) {
	rec := &recorder{}
	dir := t.TempDir()
	cfg, err := config.Load([]string{"--data-dir", dir, "--http-addr", "127.0.0.1:0", "--gossip-addr", "127.0.0.1:0",
		"--cluster-addr", "127.0.0.1:0", "--advertise-addr", "127.0.0.1", "--cluster-secret", clusterSecret,
		"--jwt-secret", jwtSecret, "--shards", "4"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.StartTuned(context.Background(), cfg, slog.New(rec), fastTuning)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown(context.Background())
	waitFor(t, `"edgenode ready" in the log`, 20*time.Second, func() bool { return len(rec.find("edgenode ready")) > 0 })
	ready := rec.find("edgenode ready")[0]
	if ready.readyz != 200 {
		t.Fatalf(`"edgenode ready" logged while /readyz answered %d`, ready.readyz)
	}
	if ready.attrs["url"] != n.URL() {
		t.Fatalf(`"edgenode ready" url=%q, want %q`, ready.attrs["url"], n.URL())
	}
	if s, r := rec.index("edgenode serving"), rec.index("edgenode ready"); s < 0 || s > r {
		t.Fatalf(`"edgenode serving" at %d, "edgenode ready" at %d: want serving first`, s, r)
	}
	// A client's send succeeds now.
	if code, _ := post(t, &testNode{Node: n}, 1, 2, 1, "hi"); code != 201 {
		t.Fatalf("send after ready: %d", code)
	}
	n.Shutdown(context.Background())
	if got := len(rec.find("edgenode ready")); got != 1 {
		t.Fatalf(`"edgenode ready" logged %d times`, got)
	}
}

// The cluster views are on the operator listener (loopback, plain HTTP, by
// default) and need the operator token; the client port does not know
// them. Paths not in canonical form are 404 in the error model, not
// redirects.
func TestNodeClusterViewsAndCanonicalPaths(t *testing.T) {
	n := startNode(t, t.TempDir(), "eu")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	opAddr, mutualTLS := n.OperatorAddr()
	if mutualTLS || !opAddr.(*net.TCPAddr).IP.IsLoopback() {
		t.Fatalf("operator listener %v (TLS %v), want plain HTTP on loopback by default", opAddr, mutualTLS)
	}
	op := "http://" + opAddr.String()
	get := func(base, method, path, authz string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, nil)
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	errCode := func(b []byte) string {
		var e struct {
			Error struct{ Code string } `json:"error"`
		}
		json.Unmarshal(b, &e)
		return e.Error.Code
	}
	for _, path := range []string{"/v1/cluster/members", "/v1/cluster/shards"} {
		// The cluster secret itself opens nothing: the operator token is
		// derived from it, so a captured request does not give it away.
		for _, authz := range []string{"", "Bearer " + tok(t, 1), "Bearer wrong-secret-0123456789abcdef-0123456", "Bearer " + clusterSecret} {
			code, b := get(op, "GET", path, authz)
			if code != 401 || errCode(b) != "unauthenticated" || strings.Contains(string(b), "127.0.0.1") {
				t.Fatalf("GET %s with %q: %d %s", path, authz, code, b)
			}
		}
		code, b := get(op, "GET", path, "Bearer "+node.OperatorToken(clusterSecret))
		if code != 200 || !strings.Contains(string(b), n.Config.NodeID) {
			t.Fatalf("GET %s with the operator token: %d %s", path, code, b)
		}
		if code, b := get(n.URL(), "GET", path, "Bearer "+node.OperatorToken(clusterSecret)); code != 404 || errCode(b) != "not_found" {
			t.Fatalf("GET %s on the client port: %d %s", path, code, b)
		}
		if code, b := get(op, "POST", path, "Bearer "+node.OperatorToken(clusterSecret)); code != 405 || errCode(b) != "method_not_allowed" {
			t.Fatalf("POST %s: %d %s", path, code, b)
		}
	}
	for _, path := range []string{"/v1/./edges", "/v1/users//status", "//readyz"} {
		if code, b := get(n.URL(), "GET", path, "Bearer "+node.OperatorToken(clusterSecret)); code != 404 || errCode(b) != "not_found" {
			t.Fatalf("GET %s: %d %s", path, code, b)
		}
	}
	for _, path := range []string{"//v1/cluster/members", "/v1/cluster/./shards", "//metrics"} {
		if code, b := get(op, "GET", path, "Bearer "+node.OperatorToken(clusterSecret)); code != 404 || errCode(b) != "not_found" {
			t.Fatalf("operator GET %s: %d %s", path, code, b)
		}
	}
}
