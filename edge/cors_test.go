package edge_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/edgenode/edgenode/edge"
	"github.com/edgenode/edgenode/relaylog"
)

// TestCORS: a browser app on an origin in --allowed-origins can call the
// REST API (preflight answered, CORS headers on answers, errors included);
// another origin is refused 403, preflight and all; a request without an
// Origin (a native app) gets no CORS headers.
func TestCORS(t *testing.T) {
	h := start(t, func(eo *edge.Options, _ *relaylog.Options) {
		eo.AllowedOrigins = []string{"https://app.example"}
	})
	do := func(method, path, origin string, hdr map[string]string, body string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, h.url+path, strings.NewReader(body))
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	preflight := map[string]string{"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization, content-type"}

	resp := do("OPTIONS", "/v1/messages", "https://app.example", preflight, "")
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "POST") ||
		!strings.Contains(strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers")), "authorization") {
		t.Fatalf("preflight from an allowed origin: %d %v", resp.StatusCode, resp.Header)
	}
	if resp := do("OPTIONS", "/v1/messages", "https://evil.example", preflight, ""); resp.StatusCode != 403 || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("preflight from another origin: %d %v", resp.StatusCode, resp.Header)
	}

	auth := map[string]string{"Authorization": "Bearer " + tokenFor(t, 1), "Content-Type": "application/json"}
	body := `{"requestId":1,"toUserId":2,"content":"from a browser","createdAt":"2026-11-27T10:20:08.123Z"}`
	resp = do("POST", "/v1/messages", "https://app.example", auth, body)
	if resp.StatusCode != 201 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" || !strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "Retry-After") {
		t.Fatalf("send from an allowed origin: %d %v", resp.StatusCode, resp.Header)
	}
	// Errors carry the headers too, so that the page can read them.
	resp = do("GET", "/v1/messages", "https://app.example", nil, "")
	if resp.StatusCode != 401 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Fatalf("401 to an allowed origin: %d %v", resp.StatusCode, resp.Header)
	}
	resp = do("POST", "/v1/messages", "https://evil.example", auth, strings.Replace(body, `"requestId":1`, `"requestId":2`, 1))
	if resp.StatusCode != 403 {
		t.Fatalf("send from another origin: %d", resp.StatusCode)
	}
	code, _, b := h.do("GET", "/v1/messages", 2, nil)
	if code != 200 || strings.Count(string(b), `"content"`) != 1 {
		t.Fatalf("the refused origin's send was stored, or the allowed one's not: %d %s", code, b)
	}
	if resp := do("GET", "/v1/messages", "", map[string]string{"Authorization": "Bearer " + tokenFor(t, 2)}, ""); resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("CORS headers without an Origin: %v", resp.Header)
	}
}
