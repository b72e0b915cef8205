package main_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// runIn runs the binary in dir with only env as EDGENODE_ settings (the
// developer's own are left out) and returns stdout, stderr and the error.
func runIn(t *testing.T, dir string, env []string, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "EDGENODE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

var operatorRE = regexp.MustCompile(`msg="operator listener" addr=(\S+) tls=false`)

// operatorAddr is the address of p's operator listener, from its log.
func operatorAddr(t *testing.T, p *proc) string {
	t.Helper()
	m := operatorRE.FindStringSubmatch(p.logText())
	if m == nil {
		t.Fatalf("no plain-HTTP \"operator listener\" line in the log:\n%s", p.logText())
	}
	return m[1]
}

// `edgenode members` and `edgenode shards` ask the node's operator
// listener with the operator token of the cluster secret, found where the
// node finds it, and create nothing when they find none.
func TestInspectSendsTheClusterSecret(t *testing.T) {
	dir := t.TempDir()
	p := startProc(t, dir, nil)
	secretB, err := os.ReadFile(filepath.Join(dir, "data", "cluster-secret"))
	if err != nil {
		t.Fatal(err)
	}
	secret := strings.TrimSpace(string(secretB))
	addr := operatorAddr(t, p)

	// The views are closed without the token, and the client port does
	// not serve them at all.
	for _, path := range []string{"/v1/cluster/members", "/v1/cluster/shards"} {
		for base, want := range map[string]int{"http://" + addr: 401, p.url: 404} {
			resp, err := http.Get(base + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Fatalf("GET %s%s without a token: %s, want %d", base, path, resp.Status, want)
			}
		}
	}

	elsewhere := t.TempDir()
	for _, c := range []struct {
		name string
		dir  string
		env  []string
		args []string
	}{
		{"the node's data dir (cwd)", dir, nil, nil},
		{"--data-dir", elsewhere, nil, []string{"--data-dir", filepath.Join(dir, "data")}},
		{"--cluster-secret", elsewhere, nil, []string{"--cluster-secret", secret}},
		{"EDGENODE_CLUSTER_SECRET", elsewhere, []string{"EDGENODE_CLUSTER_SECRET=" + secret}, nil},
		{"EDGENODE_DATA_DIR", elsewhere, []string{"EDGENODE_DATA_DIR=" + filepath.Join(dir, "data")}, nil},
	} {
		out, errOut, err := runIn(t, c.dir, c.env, append([]string{"members", "--addr", addr, "--json"}, c.args...)...)
		var ms []struct{ NodeID, Status string }
		if err != nil || json.Unmarshal([]byte(out), &ms) != nil || len(ms) != 1 || ms[0].Status != "alive" {
			t.Fatalf("members with %s: %v\nstdout %s\nstderr %s", c.name, err, out, errOut)
		}
		out, errOut, err = runIn(t, c.dir, c.env, append([]string{"shards", "--addr", addr}, c.args...)...)
		if err != nil || !strings.HasPrefix(out, "SHARD") || strings.Count(out, "\n") < 2 {
			t.Fatalf("shards table with %s: %v\nstdout %s\nstderr %s", c.name, err, out, errOut)
		}
	}

	// No secret anywhere: a clear error, and no data dir created.
	empty := t.TempDir()
	for _, what := range []string{"members", "shards"} {
		out, errOut, err := runIn(t, empty, nil, what, "--addr", addr)
		if err == nil || !strings.Contains(errOut, "--cluster-secret") || !strings.Contains(errOut, "EDGENODE_CLUSTER_SECRET") {
			t.Fatalf("%s without a secret: %v\nstdout %s\nstderr %s", what, err, out, errOut)
		}
		if entries, _ := os.ReadDir(empty); len(entries) != 0 {
			t.Fatalf("%s without a secret created %v", what, entries)
		}
	}
	// A wrong secret: the node refuses it, and the error says what to pass.
	out, errOut, err := runIn(t, empty, []string{"EDGENODE_CLUSTER_SECRET=not-this-cluster-0123456789abcdef-012"}, "members", "--addr", addr)
	if err == nil || !strings.Contains(errOut, "401") || !strings.Contains(errOut, "--cluster-secret") {
		t.Fatalf("members with a wrong secret: %v\nstdout %s\nstderr %s", err, out, errOut)
	}
	// Without --addr, where the node's own settings put the listener
	// (--admin-addr here, as EDGENODE_ADMIN_ADDR).
	out, errOut, err = runIn(t, dir, []string{"EDGENODE_ADMIN_ADDR=" + addr}, "members", "--json")
	if err != nil || !strings.Contains(out, `"alive"`) {
		t.Fatalf("members at the configured --admin-addr: %v\nstdout %s\nstderr %s", err, out, errOut)
	}
	// Or a URL.
	out, errOut, err = runIn(t, dir, nil, "shards", "--addr", "http://"+addr+"/")
	if err != nil || !strings.HasPrefix(out, "SHARD") {
		t.Fatalf("shards at a URL: %v\nstdout %s\nstderr %s", err, out, errOut)
	}
	// Never the secret in clear text to another machine: refused before
	// any connection (192.0.2.1 is TEST-NET-1, which nothing answers).
	for _, what := range []string{"members", "shards"} {
		_, errOut, err := runIn(t, empty, nil, what, "--addr", "http://192.0.2.1:8081", "--cluster-secret", secret)
		if err == nil || !strings.Contains(errOut, "refusing to send the operator token in clear text") {
			t.Fatalf("%s over plain HTTP to a remote address: %v\n%s", what, err, errOut)
		}
	}
	// Other arguments are still checked.
	if _, errOut, err := runIn(t, empty, nil, "members", "--addr", addr, "--cluster-secret", secret, "--no-such-flag", "x"); err == nil || !strings.Contains(errOut, "no-such-flag") {
		t.Fatalf("members with an unknown flag: %v %s", err, errOut)
	}
}

// The log says "edgenode ready" once the node takes writes, after
// "edgenode serving".
func TestLogSaysReady(t *testing.T) {
	p := startProc(t, t.TempDir(), nil)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.logText(), "edgenode ready") {
		if time.Now().After(deadline) {
			t.Fatalf("no \"edgenode ready\" line:\n%s", p.logText())
		}
		time.Sleep(20 * time.Millisecond)
	}
	logs := p.logText()
	if s, r := strings.Index(logs, "edgenode serving"), strings.Index(logs, "edgenode ready"); s < 0 || s > r {
		t.Fatalf("want \"edgenode serving\" before \"edgenode ready\":\n%s", logs)
	}
	if !strings.Contains(logs[strings.Index(logs, "edgenode ready"):], "url="+p.url) {
		t.Fatalf("the ready line lacks url=%s:\n%s", p.url, logs)
	}
}

// --version is the version subcommand; neither takes arguments.
func TestVersionFlag(t *testing.T) {
	dir := t.TempDir()
	want, _, err := runIn(t, dir, nil, "version")
	if err != nil || !strings.HasPrefix(want, "edgenode ") {
		t.Fatalf("version: %q %v", want, err)
	}
	got, errOut, err := runIn(t, dir, nil, "--version")
	if err != nil || got != want {
		t.Fatalf("--version: %q (stderr %q) %v, want %q", got, errOut, err, want)
	}
	for _, args := range [][]string{{"version", "extra"}, {"--version", "extra"}, {"version", "--json"}} {
		out, errOut, err := runIn(t, dir, nil, args...)
		if err == nil || out != "" || !strings.Contains(errOut, "no arguments") {
			t.Fatalf("%v: stdout %q stderr %q err %v; want an error", args, out, errOut, err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("version created %v", entries)
	}
}
