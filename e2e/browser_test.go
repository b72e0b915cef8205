package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browserPage is a web app on another origin than the node: user B opens
// the WebSocket, user A sends B a message over REST (fetch, with a CORS
// preflight since it carries Authorization), B receives it on the socket
// and acknowledges it, and B's queue is then empty (REST again). The page
// puts its outcome in window.result.
const browserPage = `<!doctype html>
<html><body><script>
const q = new URLSearchParams(location.search);
const node = q.get("node"), tokA = q.get("a"), tokB = q.get("b");
const report = (r) => { window.result = JSON.stringify(r); };
(async () => {
  try {
    const ws = new WebSocket(node.replace(/^http/, "ws") + "/v1/socket/updates?access_token=" + tokB);
    const frames = [];
    let onFrame = null;
    ws.onmessage = (e) => { const f = JSON.parse(e.data); frames.push(f); if (onFrame) onFrame(f); };
    const next = (type) => new Promise((resolve, reject) => {
      const old = frames.find((f) => f.type === type);
      if (old) return resolve(old);
      onFrame = (f) => { if (f.type === type) resolve(f); };
      ws.onerror = () => reject(new Error("socket error"));
      ws.onclose = (e) => reject(new Error("socket closed " + e.code));
    });
    await next("ready");
    const sent = await fetch(node + "/v1/messages", {
      method: "POST",
      headers: {"Authorization": "Bearer " + tokA, "Content-Type": "application/json"},
      body: JSON.stringify({requestId: 1, toUserId: Number(q.get("to")), content: "hello from a browser", createdAt: new Date().toISOString()}),
    });
    if (sent.status !== 201) return report({stage: "send", status: sent.status, body: await sent.text()});
    const id = (await sent.json()).message.messageId;
    const got = await next("new_message");
    if (got.id !== id || got.payload.message.content !== "hello from a browser") return report({stage: "receive", frame: got, id});
    ws.send(JSON.stringify({type: "ack", payload: {upTo: got.id}}));
    for (let i = 0; i < 100; i++) {
      const r = await fetch(node + "/v1/messages", {headers: {"Authorization": "Bearer " + tokB}});
      if (r.status !== 200) return report({stage: "sync", status: r.status});
      const body = await r.json();
      if (body.messages.length === 0) return report({ok: true, id});
      await new Promise((res) => setTimeout(res, 100));
    }
    report({stage: "ack", error: "the message stayed in the queue after the ack"});
  } catch (e) {
    report({stage: "exception", error: String(e)});
  }
})();
</script></body></html>`

// refusedPage tries one REST call from an origin the node does not allow.
const refusedPage = `<!doctype html>
<html><body><script>
const q = new URLSearchParams(location.search);
fetch(q.get("node") + "/v1/messages", {headers: {"Authorization": "Bearer " + q.get("a")}})
  .then((r) => { window.result = JSON.stringify({status: r.status}); })
  .catch((e) => { window.result = JSON.stringify({refused: true, error: String(e)}); });
</script></body></html>`

func chromiumPath() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// servePage serves html at / on a loopback port of its own: an origin other
// than the node's.
func servePage(t *testing.T, html string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(html))
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// runPage loads pageURL in headless Chromium and waits for window.result.
func runPage(t *testing.T, browser context.Context, pageURL string) map[string]any {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(pageURL)); err != nil {
		t.Fatalf("page %s: %v", pageURL, err)
	}
	res, err := chromedp.Run(ctx, chromedp.Poll[string](`window.result`, chromedp.WithPollingTimeout(50*time.Second)))
	if err != nil {
		t.Fatalf("page %s: no result: %v", pageURL, err)
	}
	var out map[string]any
	if err := json.Unmarshal([]byte(res), &out); err != nil {
		t.Fatalf("page result %q: %v", res, err)
	}
	return out
}

// TestBrowserClient: a web app in a real browser (headless Chromium),
// loaded from another origin than the node's, sends over REST, receives
// over the WebSocket and acknowledges, with the node started with that
// origin in --allowed-origins (issue 13, row 12). A page from an origin the
// node does not list cannot call the API.
func TestBrowserClient(t *testing.T) {
	chrome := chromiumPath()
	if chrome == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("CI needs Chromium for the browser test (.ci/run installs Debian's chromium)")
		}
		t.Skip("no Chromium on this machine (apt-get install chromium)")
	}
	app := servePage(t, browserPage)
	other := servePage(t, refusedPage)
	p := startAlone(t, nil, "--allowed-origins", app)

	alloc, cancel := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.Flag("headless", true), chromedp.Flag("disable-gpu", true))...)
	defer cancel()
	browser, cancel := chromedp.NewContext(alloc)
	defer cancel()
	if err := chromedp.Do(browser); err != nil {
		t.Fatalf("starting %s: %v", chrome, err)
	}

	const a, b = 501, 502
	q := url.Values{"node": {p.url()}, "a": {Token(jwtSecret, a)}, "b": {Token(jwtSecret, b)}, "to": {fmt.Sprint(b)}}
	res := runPage(t, browser, app+"/?"+q.Encode())
	if res["ok"] != true {
		t.Fatalf("the web app on %s: %v", app, res)
	}
	t.Logf("web app on %s: sent, received and acknowledged message %.0f through %s", app, res["id"], p.url())

	res = runPage(t, browser, other+"/?"+q.Encode())
	if res["refused"] != true {
		t.Fatalf("a page on %s, not in --allowed-origins, called the API: %v", other, res)
	}
	t.Logf("page on %s (not allowed): %v", other, res["error"])
}
