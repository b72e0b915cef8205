package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// `edgenode members` and `edgenode shards` as an operator runs them against
// a node: they work with the cluster secret, and the views they read are
// closed to anyone without it.
func TestInspectMembersShardsNeedClusterSecret(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real edgenode process")
	}
	p := newProc(t, t.TempDir(), "solo", "eu")
	t.Cleanup(p.stop)
	p.start()
	waitFor(t, "the node to serve alone (/readyz)", 30*time.Second, func() (bool, string) {
		code, err := httpGet(p.url() + "/readyz")
		return code == 200, fmt.Sprint(code, err)
	})

	// With the secret (harness inspect: EDGENODE_CLUSTER_SECRET).
	ms, err := membersAt(p.adminAddr())
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].NodeID != p.id || ms[0].Status != "alive" || ms[0].Region != "eu" {
		t.Fatalf("members: %+v, want %s alive in eu", ms, p.id)
	}
	ss, err := shardsAt(p.adminAddr())
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) != shardCount {
		t.Fatalf("shards: %s, want %d", fmtShards(ss), shardCount)
	}

	// The table form, with the secret as a flag.
	run := func(env []string, args ...string) (string, string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, binary, args...)
		cmd.Dir = t.TempDir() // no data dir of any node here
		cmd.Env = append(cleanEnv(), env...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if _, serr := os.Stat(filepath.Join(cmd.Dir, "data")); serr == nil {
			t.Errorf("edgenode %s created a data dir", strings.Join(args, " "))
		}
		return stdout.String(), stderr.String(), err
	}
	out, errOut, err := run(nil, "members", "--addr", p.adminAddr(), "--cluster-secret", clusterSecret)
	if err != nil || !strings.Contains(out, "NODE") || !strings.Contains(out, p.id) {
		t.Fatalf("members with --cluster-secret: %v\nstdout %s\nstderr %s", err, out, errOut)
	}

	// Without any secret: a clear error, and nothing created.
	for _, what := range []string{"members", "shards"} {
		out, errOut, err := run(nil, what, "--addr", p.adminAddr())
		if err == nil || !strings.Contains(errOut, "--cluster-secret") || !strings.Contains(errOut, "EDGENODE_CLUSTER_SECRET") {
			t.Fatalf("%s without a secret: %v\nstdout %s\nstderr %s", what, err, out, errOut)
		}
	}
	// A wrong secret: refused by the node.
	out, errOut, err = run([]string{"EDGENODE_CLUSTER_SECRET=not-the-cluster-secret-0123456789abcdef"}, "shards", "--addr", p.adminAddr())
	if err == nil || !strings.Contains(errOut, "401") {
		t.Fatalf("shards with a wrong secret: %v\nstdout %s\nstderr %s", err, out, errOut)
	}

	// The endpoints themselves, without a token: 401 in the API's error model.
	for _, path := range []string{"/v1/cluster/members", "/v1/cluster/shards"} {
		resp, err := httpShort.Get("http://" + p.adminAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		json.Unmarshal(body, &e)
		if resp.StatusCode != 401 || e.Error.Code != "unauthenticated" || strings.Contains(string(body), "127.0.0.1") {
			t.Fatalf("GET %s without a token: %d %s", path, resp.StatusCode, body)
		}
	}
}

// cleanEnv is this process's environment without EDGENODE_ settings, so
// that a developer's own cannot leak into what a test checks.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "EDGENODE_") {
			out = append(out, kv)
		}
	}
	return out
}
