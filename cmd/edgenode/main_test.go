package main_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/edgenode/edgenode/auth"
	"github.com/edgenode/edgenode/wire"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "edgenode-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "edgenode")
	out, err := exec.Command("go", "build", "-tags", "hashicorpmetrics", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	url  string
	dir  string
	logs *bytes.Buffer
	mu   *sync.Mutex
	done chan error
}

var urlRE = regexp.MustCompile(`url=(http://[0-9.:]+)`)

// startProc runs the real binary with HTTP on a free loopback port and waits
// until it is ready.
func startProc(t *testing.T, dataDir string, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = dataDir
	cmd.Env = append(os.Environ(), "EDGENODE_HTTP_ADDR=127.0.0.1:0", "EDGENODE_GOSSIP_ADDR=127.0.0.1:0", "EDGENODE_CLUSTER_ADDR=127.0.0.1:0")
	cmd.Env = append(cmd.Env, env...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, cmd: cmd, dir: dataDir, logs: &bytes.Buffer{}, mu: &sync.Mutex{}, done: make(chan error, 1)}
	urlCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.logs.WriteString(line + "\n")
			p.mu.Unlock()
			if m := urlRE.FindStringSubmatch(line); m != nil {
				select {
				case urlCh <- m[1]:
				default:
				}
			}
		}
	}()
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-p.done
		}
	})
	select {
	case p.url = <-urlCh:
	case err := <-p.done:
		t.Fatalf("edgenode exited: %v\n%s", err, p.logText())
	case <-time.After(20 * time.Second):
		t.Fatalf("edgenode did not start:\n%s", p.logText())
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(p.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("edgenode not ready:\n%s", p.logText())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *proc) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// token asks the binary itself for a token, as a user would.
func (p *proc) token(user int64) string {
	p.t.Helper()
	out, err := exec.Command(binary, "token", "--user", fmt.Sprint(user), "--data-dir", filepath.Join(p.dir, "data")).Output()
	if err != nil {
		p.t.Fatalf("edgenode token: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func (p *proc) request(method, path, tok string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, p.url+path, rd)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// drain reads a user's whole queue through GET /v1/messages.
func (p *proc) drain(tok string) []wire.Message {
	p.t.Helper()
	var out []wire.Message
	cursor := int64(0)
	for {
		code, b, err := p.request("GET", fmt.Sprintf("/v1/messages?lastSyncedMessage=%d&limit=500", cursor), tok, nil)
		if err != nil || code != 200 {
			p.t.Fatalf("sync: %d %s %v", code, b, err)
		}
		var r wire.SyncResponse
		json.Unmarshal(b, &r)
		out = append(out, r.Messages...)
		cursor = r.LastSyncedMessage
		if !r.HasMore {
			return out
		}
	}
}

// The README's first command: a node with no flags at all (the HTTP address
// comes from the environment only so that tests never collide on :8080).
func TestStartsWithNoFlags(t *testing.T) {
	dir := t.TempDir()
	p := startProc(t, dir, nil)
	for _, f := range []string{"node-id", "jwt-secret", "cluster-secret", "relaylog/relaylog.json"} {
		if _, err := os.Stat(filepath.Join(dir, "data", f)); err != nil {
			t.Errorf("data/%s: %v", f, err)
		}
	}
	code, b, err := p.request("POST", "/v1/messages", p.token(1), wire.NewMessageRequest{RequestID: 1, ToUserID: 2, Content: "hi", CreatedAt: "2026-11-27T10:20:08.123Z"})
	if err != nil || code != 201 {
		t.Fatalf("send: %d %s %v", code, b, err)
	}
	out, err := exec.Command(binary, "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "edgenode ") {
		t.Fatalf("version: %q %v", out, err)
	}
	// The health check of scratch images: 0 on a ready node, 1 otherwise.
	if out, err := exec.Command(binary, "health", "--addr", p.url).CombinedOutput(); err != nil || !strings.Contains(string(out), "ready") {
		t.Fatalf("health of a ready node: %q %v", out, err)
	}
	if out, err := exec.Command(binary, "health", "--addr", p.url, "--path", "/no-such-path").CombinedOutput(); err == nil {
		t.Fatalf("health of a 404 path succeeded: %q", out)
	}
	// Operators' gauges exist from the start.
	_, metrics, err := p.request("GET", "/metrics", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"edgenode_shards_led 16", "edgenode_shards_without_leader 0", "edgenode_queued_messages 1"} {
		if !strings.Contains(string(metrics), "\n"+m+"\n") {
			t.Errorf("metrics lack %q", m)
		}
	}
}

// SIGKILL while messages flow: after a restart every message answered 201 is
// still queued exactly once, and retries of acknowledged and unanswered
// requests create no duplicates.
func TestKillNineLosesNothingAcknowledged(t *testing.T) {
	dir := t.TempDir()
	p := startProc(t, dir, nil)
	const senders, recipients = 8, 10
	type key struct{ from, req int64 }
	var mu sync.Mutex
	acked := map[key]int64{}
	var unanswered []key
	toks := map[int64]string{}
	for u := int64(1); u <= senders; u++ {
		toks[u] = p.token(u)
	}
	for u := int64(100); u < 100+recipients; u++ {
		toks[u] = p.token(u)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for s := int64(1); s <= senders; s++ {
		wg.Add(1)
		go func(from int64) {
			defer wg.Done()
			for req := int64(1); ; req++ {
				select {
				case <-stop:
					return
				default:
				}
				code, b, err := p.request("POST", "/v1/messages", toks[from], wire.NewMessageRequest{RequestID: req, ToUserID: 100 + req%recipients, Content: fmt.Sprintf("%d/%d", from, req), CreatedAt: reqCreatedAt(req)})
				mu.Lock()
				if err == nil && code == 201 {
					var r wire.NewMessageResponse
					json.Unmarshal(b, &r)
					acked[key{from, req}] = r.Message.MessageID
				} else {
					unanswered = append(unanswered, key{from, req})
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}(s)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 400 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d sends acknowledged", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	close(stop)
	wg.Wait()
	t.Logf("%d acknowledged, %d unanswered when killed", len(acked), len(unanswered))

	p = startProc(t, dir, nil)
	// Retry every unanswered request, as the client's scheduler would.
	for _, k := range unanswered {
		code, b, err := p.request("POST", "/v1/messages", p.token(k.from), wire.NewMessageRequest{RequestID: k.req, ToUserID: 100 + k.req%recipients, Content: fmt.Sprintf("%d/%d", k.from, k.req), CreatedAt: reqCreatedAt(k.req)})
		if err != nil || code != 201 {
			t.Fatalf("retry: %d %s %v", code, b, err)
		}
	}
	// Retrying an acknowledged request answers the same id: the newest of
	// a sender, which the server remembers (its last 8 per shard).
	var newest key
	for k := range acked {
		if k.from == 1 && k.req > newest.req {
			newest = k
		}
	}
	for k, id := range map[key]int64{newest: acked[newest]} {
		code, b, _ := p.request("POST", "/v1/messages", toks[k.from], wire.NewMessageRequest{RequestID: k.req, ToUserID: 100 + k.req%recipients, Content: fmt.Sprintf("%d/%d", k.from, k.req), CreatedAt: reqCreatedAt(k.req)})
		var r wire.NewMessageResponse
		json.Unmarshal(b, &r)
		if code != 201 || r.Message.MessageID != id {
			t.Fatalf("retry of acknowledged %v: %d %s, want id %d", k, code, b, id)
		}
		break // one is enough here; all are checked through the queues below
	}
	seen := map[int64]bool{}
	byContent := map[string]int{}
	for u := int64(100); u < 100+recipients; u++ {
		for _, m := range p.drain(toks[u]) {
			if seen[m.MessageID] {
				t.Fatalf("message id %d twice", m.MessageID)
			}
			seen[m.MessageID] = true
			byContent[m.Content]++
		}
	}
	for k, id := range acked {
		if !seen[id] {
			t.Fatalf("acknowledged message %v (id %d) lost", k, id)
		}
	}
	for c, n := range byContent {
		if n != 1 {
			t.Fatalf("%q delivered %d times", c, n)
		}
	}
	if want := len(acked) + len(unanswered); len(seen) != want {
		t.Fatalf("%d messages queued, want %d", len(seen), want)
	}
}

func TestSIGTERMDrainsSockets(t *testing.T) {
	dir := t.TempDir()
	p := startProc(t, dir, nil)
	hdr := http.Header{"Authorization": {"Bearer " + p.token(1)}}
	conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(p.url, "http")+"/v1/socket/updates", hdr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, _, err := conn.ReadMessage(); err != nil { // ready
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _, err = conn.ReadMessage()
	if !websocket.IsCloseError(err, websocket.CloseServiceRestart) {
		t.Fatalf("socket closed with %v, want 1012", err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, p.logText())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("did not exit after SIGTERM")
	}
}

// `edgenode token` signs for the node it is configured like: a node that
// requires an issuer and an audience accepts its tokens, and says where it
// created secrets when no node has used the data dir yet.
func TestTokenHonoursIssuerAndAudience(t *testing.T) {
	dir := t.TempDir()
	const secret = "token-test-secret-0123456789abcdef0123"
	cmd := exec.Command(binary, "token", "--user", "7", "--jwt-secret", secret, "--jwt-issuer", "login", "--jwt-audience", "chat")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("edgenode token: %v", err)
	}
	tok := strings.TrimSpace(string(out))
	v, err := auth.NewVerifier(auth.Options{Secret: []byte(secret), Issuer: "login", Audience: "chat"})
	if err != nil {
		t.Fatal(err)
	}
	if user, err := v.Verify(tok); err != nil || user != 7 {
		t.Fatalf("a node requiring iss=login aud=chat: Verify = %d, %v", user, err)
	}
	other, _ := auth.NewVerifier(auth.Options{Secret: []byte(secret), Issuer: "someone-else"})
	if _, err := other.Verify(tok); err == nil {
		t.Fatal("a node requiring another issuer accepted the token")
	}

}

// token and join-token never create secrets: with none given and no node's
// data dir to read them from, they fail, name the data dir they looked in,
// and leave nothing behind (a secret they invented would match no node).
// Given a node's data dir, they print what the node uses.
func TestTokenAndJoinTokenCreateNothing(t *testing.T) {
	for _, sub := range []string{"token", "join-token"} {
		for _, existing := range []bool{false, true} {
			cwd := t.TempDir()
			dir := filepath.Join(cwd, "data")
			if existing {
				if err := os.Mkdir(dir, 0o700); err != nil {
					t.Fatal(err)
				}
			}
			args := []string{sub}
			if sub == "token" {
				args = append(args, "--user", "7")
			}
			cmd := exec.Command(binary, args...)
			cmd.Dir = cwd
			cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("%s with no node's data dir (existing dir: %v) succeeded: %s", sub, existing, out)
			}
			if !strings.Contains(string(out), dir) || !strings.Contains(string(out), "no node has run there") {
				t.Errorf("%s: the error does not name the data dir %s: %s", sub, dir, out)
			}
			ents, err := os.ReadDir(dir)
			if existing && (err != nil || len(ents) != 0) {
				t.Errorf("%s left %d files in %s (%v)", sub, len(ents), dir, err)
			}
			if !existing && !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s created %s (%v)", sub, dir, err)
			}
		}
	}
	// Against a node's data dir: the node's own secrets.
	dir := t.TempDir()
	p := startProc(t, dir, nil)
	data := filepath.Join(dir, "data")
	out, err := exec.Command(binary, "join-token", "--data-dir", data).Output()
	kept, _ := os.ReadFile(filepath.Join(data, "cluster-secret"))
	if err != nil || strings.TrimSpace(string(out)) == "" || strings.TrimSpace(string(out)) != strings.TrimSpace(string(kept)) {
		t.Fatalf("join-token of a node's data dir: %q %v, kept %q", out, err, kept)
	}
	code, b, err := p.request("GET", "/v1/messages?lastSyncedMessage=0", p.token(7), nil)
	if err != nil || code != 200 {
		t.Fatalf("a token from the node's data dir: %d %s %v", code, b, err)
	}
}

// reqCreatedAt is the createdAt of request req: a client's clock, later for
// every new message.
func reqCreatedAt(req int64) string {
	return time.Date(2026, 11, 27, 10, 20, 8, 0, time.UTC).Add(time.Duration(req) * time.Millisecond).Format("2006-01-02T15:04:05.000Z")
}

// runUntilExit runs the binary with env (over a clean environment) and
// returns its output once it exits, or fails if it is still running after
// 20 s.
func runUntilExit(t *testing.T, dir string, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "EDGENODE_GOSSIP_ADDR=127.0.0.1:0", "EDGENODE_CLUSTER_ADDR=127.0.0.1:0"}, env...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("edgenode %v did not exit:\n%s", args, out)
	}
	return string(out), err
}

// Without a JWT key a node checks tokens against a development secret in
// its data dir: only on a loopback address, unless --dev; never on a node
// of a cluster; and never one derived from the cluster secret.
func TestDevelopmentSecretStaysLocal(t *testing.T) {
	// A network address without --dev: refused before anything is
	// created. 192.0.2.1 (TEST-NET-1) is on no interface here: the test
	// serves no network, and a node that tried would fail to listen.
	dir := t.TempDir()
	out, err := runUntilExit(t, dir, []string{"EDGENODE_HTTP_ADDR=192.0.2.1:0"})
	if err == nil || !strings.Contains(out, "--dev") || !strings.Contains(out, "not a loopback address") {
		t.Fatalf("no JWT key on a network address: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the refused node left a data dir (%v)", err)
	}
	// A node joining a cluster, even with --dev.
	out, err = runUntilExit(t, t.TempDir(), []string{"EDGENODE_HTTP_ADDR=127.0.0.1:0", "EDGENODE_CLUSTER_SECRET=" + strings.Repeat("s", 40)}, "--dev", "--join", "127.0.0.1:1")
	if err == nil || !strings.Contains(out, "every node of a cluster needs the same one") {
		t.Fatalf("no JWT key with --join: %v\n%s", err, out)
	}

	// With --dev a network address passes: the node warns loudly, keeps a
	// secret and only then fails to listen on 192.0.2.1.
	dir = t.TempDir()
	out, err = runUntilExit(t, dir, []string{"EDGENODE_HTTP_ADDR=192.0.2.1:0"}, "--dev")
	if err == nil || !strings.Contains(out, "DEVELOPMENT MODE") || !strings.Contains(out, "listen on 192.0.2.1:0") {
		t.Fatalf("--dev on a network address: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "jwt-secret")); err != nil {
		t.Fatalf("--dev kept no development secret: %v", err)
	}

	// On loopback it serves with a secret of its own: two nodes given the
	// same cluster secret get different ones.
	const clusterSecret = "the-same-cluster-secret-0123456789abcdef"
	var secrets []string
	for i := 0; i < 2; i++ {
		dir := t.TempDir()
		p := startProc(t, dir, []string{"EDGENODE_CLUSTER_SECRET=" + clusterSecret})
		if !strings.Contains(p.logText(), "DEVELOPMENT MODE") {
			t.Fatalf("no warning of development mode:\n%s", p.logText())
		}
		code, b, err := p.request("GET", "/v1/messages", p.token(7), nil)
		if err != nil || code != 200 {
			t.Fatalf("a token from the development secret: %d %s %v", code, b, err)
		}
		s, err := os.ReadFile(filepath.Join(dir, "data", "jwt-secret"))
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, strings.TrimSpace(string(s)))
		p.cmd.Process.Kill()
		<-p.done
	}
	if secrets[0] == secrets[1] {
		t.Fatal("two nodes with the same cluster secret have the same development JWT secret: it is derived, not random")
	}
}
