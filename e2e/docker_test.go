package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// docker runs the docker CLI and returns its trimmed stdout.
func docker(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return "", fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// dockerUsable says why Docker cannot run these tests, or "".
func dockerUsable() string {
	if os.Getenv("E2E_DOCKER") == "0" {
		return "E2E_DOCKER=0"
	}
	if _, err := exec.LookPath("docker"); err != nil {
		return "no docker CLI in PATH"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := docker(ctx, "info", "--format", "{{.ServerVersion}}"); err != nil {
		return "docker engine not usable: " + err.Error()
	}
	return ""
}

// dockerNode is one edgenode container.
type dockerNode struct {
	name, region, ip string
	hostAddr         string // 127.0.0.1:port published for the client API
	// adminAddr is the operator listener published on the host: in the
	// container it listens on :8081, no loopback address, so it speaks
	// mutual TLS only, and the URL says https.
	adminAddr string
	id        string
}

func (n *dockerNode) url() string { return "http://" + n.hostAddr }

// published reads the host ports Docker gave the node's two listeners.
func (n *dockerNode) published(ctx context.Context) error {
	client, err := docker(ctx, "port", n.name, "8080/tcp")
	if err != nil {
		return err
	}
	admin, err := docker(ctx, "port", n.name, "8081/tcp")
	if err != nil {
		return err
	}
	n.hostAddr = strings.Split(client, "\n")[0]
	n.adminAddr = "https://" + strings.Split(admin, "\n")[0]
	return nil
}

func errOrEmpty(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestDockerPartition runs three containers (regions eu, us, ap) built FROM
// scratch with the static binary on a private Docker network, cuts the
// node leading most shards off with `docker network disconnect` while the
// load runs through the host, checks that sends through the other two
// resume and nothing acknowledged is lost, reconnects it and checks that it
// catches up.
func TestDockerPartition(t *testing.T) {
	if testing.Short() {
		t.Skip("starts containers")
	}
	if why := dockerUsable(); why != "" {
		t.Skip("docker unavailable: " + why)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	run := fmt.Sprintf("edgenode-e2e-%d-%04x", os.Getpid(), rand.IntN(1<<16))
	must := func(out string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return out
	}

	// The image: the static binary FROM scratch.
	buildDir := t.TempDir()
	bin, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(buildDir, "edgenode"), bin, 0o755)
	os.WriteFile(filepath.Join(buildDir, "Dockerfile"), []byte("FROM scratch\nCOPY edgenode /edgenode\nENTRYPOINT [\"/edgenode\"]\n"), 0o644)
	image := run + ":test"
	start := time.Now()
	must(docker(ctx, "build", "-q", "-t", image, buildDir))
	t.Cleanup(func() { docker(context.Background(), "rmi", "-f", image) })
	t.Logf("image %s built in %v", image, time.Since(start).Round(time.Millisecond))

	// A private network with a subnet of its own, so that a node
	// reconnects with the address the others know.
	var subnet string
	for try := 0; ; try++ {
		subnet = fmt.Sprintf("10.%d.%d", 100+rand.IntN(100), rand.IntN(256))
		_, err := docker(ctx, "network", "create", "--driver", "bridge", "--subnet", subnet+".0/24", run)
		if err == nil {
			break
		}
		if try == 10 {
			t.Fatal(err)
		}
	}
	var nodes []*dockerNode
	t.Cleanup(func() {
		bg := context.Background()
		if t.Failed() || os.Getenv("E2E_KEEP_LOGS") != "" {
			// The whole logs go to a directory that outlives the test;
			// the test's output gets their last lines.
			keep := filepath.Join(os.TempDir(), fmt.Sprintf("edgenode-e2e-%s-%d", strings.ReplaceAll(t.Name(), "/", "_"), time.Now().Unix()))
			os.MkdirAll(keep, 0o755)
			for _, n := range nodes {
				logs, _ := exec.Command("docker", "logs", n.name).CombinedOutput()
				os.WriteFile(filepath.Join(keep, n.region+".log"), logs, 0o644)
				if t.Failed() {
					t.Logf("---- last lines of container %s (%s), all in %s ----\n%s", n.name, n.region, keep, lastLines(string(logs), 40))
				}
			}
		}
		for _, n := range nodes {
			docker(bg, "rm", "-f", "-v", n.name)
		}
		if _, err := docker(bg, "network", "rm", run); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})

	for i, region := range []string{"eu", "us", "ap"} {
		n := &dockerNode{name: run + "-" + region, region: region, ip: fmt.Sprintf("%s.%d", subnet, 11+i)}
		// --restart on-failure: Docker is the supervisor that starts a
		// crashed node again.
		args := []string{"run", "-d", "--restart", "on-failure:5", "--name", n.name, "--hostname", "edge-" + region,
			"--network", run, "--ip", n.ip, "-p", "127.0.0.1::8080", "-p", "127.0.0.1::8081",
			image,
			"--region", region, "--data-dir", "/data",
			"--http-addr", ":8080", "--admin-addr", ":8081", "--gossip-addr", ":7946", "--cluster-addr", ":7947",
			"--advertise-addr", n.ip,
			"--cluster-secret", clusterSecret, "--jwt-secret", jwtSecret,
			"--shards", strconv.Itoa(shardCount), "--send-rate", "1000", "--send-burst", "1000"}
		if i > 0 {
			args = append(args, "--join", nodes[0].ip+":7946")
		}
		nodes = append(nodes, n)
		must(docker(ctx, args...))
		if err := n.published(ctx); err != nil {
			t.Fatal(err)
		}
		waitFor(t, n.name+" answering /healthz", 30*time.Second, func() (bool, string) {
			code, err := httpGet(n.url() + "/healthz")
			return code == 200, fmt.Sprint(code, err)
		})
	}
	took := waitFor(t, "every shard with 3 voters in 3 regions and leaders on 2+ nodes", 90*time.Second, func() (bool, string) {
		return healthy(nodes[0].adminAddr, 3, 2, "")
	})
	t.Logf("3 containers formed the cluster %v after the last start", took.Round(time.Millisecond))
	ms, err := membersAt(nodes[0].adminAddr)
	if err != nil {
		t.Fatal(err)
	}
	// The views came over mutual TLS; plain HTTP, or TLS without a
	// certificate of the cluster's CA, gets nothing, token or not.
	plain := "http" + strings.TrimPrefix(nodes[0].adminAddr, "https") + "/v1/cluster/members"
	if resp, err := httpShort.Get(plain); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatalf("GET %s in plain HTTP: %s", plain, resp.Status)
		}
	}
	noCert := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	if resp, err := noCert.Get(nodes[0].adminAddr + "/v1/cluster/members"); err == nil {
		resp.Body.Close()
		t.Fatalf("GET /v1/cluster/members over TLS without a client certificate: %s", resp.Status)
	}
	for _, m := range ms {
		for _, n := range nodes {
			if m.Region == n.region {
				n.id = m.NodeID
			}
		}
	}

	checker := NewChecker(jwtSecret, shardCount)
	recipients := users(2001, 3)
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.url())
	}
	load := NewLoad(LoadOptions{URLs: urls, JWTSecret: jwtSecret, Shards: shardCount, Senders: seq(1001, 12), Recipients: recipients, Checker: checker})
	load.Start()
	loadStopped := false
	defer func() {
		if !loadStopped {
			load.Stop()
		}
	}()
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := load.WaitAcked(wctx, 300); err != nil {
		t.Fatal(err)
	}
	check := func(after string, via []*dockerNode) {
		t.Helper()
		var us []string
		for _, n := range via {
			us = append(us, n.url())
		}
		dctx, dcancel := context.WithTimeout(ctx, 90*time.Second)
		defer dcancel()
		problems := checker.Drain(dctx, us, recipients)
		t.Logf("check after %s: %s", after, checker.Summary())
		if len(problems) > 0 {
			t.Fatalf("SERVER BUG? the checker found %d problems after %s:\n%s", len(problems), after, strings.Join(problems, "\n"))
		}
	}
	runPhase := func(name string) {
		t.Helper()
		until := time.Now().Add(phase())
		want := checker.Acked() + 200
		waitFor(t, name+": load to go on", phase()+30*time.Second, func() (bool, string) {
			n := checker.Acked()
			return n >= want && time.Now().After(until), fmt.Sprintf("%d of %d; %s", n, want, load.Totals())
		})
	}
	check("warm-up", nodes)

	// Cut off the node leading most shards.
	victimID, led := mostLeader(stableShards(t, nodes[0].adminAddr))
	var victim *dockerNode
	var others []*dockerNode
	for _, n := range nodes {
		if n.id == victimID {
			victim = n
		} else {
			others = append(others, n)
		}
	}
	if victim == nil {
		t.Fatalf("leader %s is none of the containers", victimID)
	}
	// The fault counts from when the disconnect command returns: calls
	// answered while it runs may legitimately have committed before the
	// cut.
	must(docker(ctx, "network", "disconnect", run, victim.name))
	f := load.MarkFault(fmt.Sprintf("network disconnect of %s (%s, led %d of %d shards)", victim.name, victimID, len(led), shardCount), led)
	partitioned := time.Now()
	rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
	defer rcancel()
	if err := load.WaitResumed(rctx, f); err != nil {
		t.Fatal(err)
	}
	_, first, all := load.Resumed(f)
	t.Logf("FAILOVER %s", load.Report(f))
	if os.Getenv("E2E_TRACE") != "" {
		t.Logf("attempts after the fault:\n%s", load.Trace(f))
		for _, n := range others {
			ss, err := shardsAt(n.adminAddr)
			t.Logf("%s sees %s %v", n.name, fmtShards(ss), err)
		}
	}
	if all > 5*time.Second {
		t.Errorf("partition: sends to every affected shard resumed only after %v (first %v); the issue asks for 5s", all, first)
	}
	runPhase("partition")
	check("the partition of "+victim.name, others)
	waitFor(t, "the others to see "+victim.name+" not alive", 30*time.Second, func() (bool, string) {
		ms, err := membersAt(others[0].adminAddr)
		if err != nil {
			return false, err.Error()
		}
		for _, m := range ms {
			if m.NodeID == victimID {
				return m.Status != "alive", fmtMembers(ms)
			}
		}
		return false, fmtMembers(ms)
	})

	// Heal it: same address; it must catch up and lead again.
	cut := time.Since(partitioned)
	must(docker(ctx, "network", "connect", "--ip", victim.ip, run, victim.name))
	// Docker publishes the port anew on reconnect, often on another host
	// port: a client would find it again through GET /v1/edges or DNS.
	if err := victim.published(ctx); err != nil {
		t.Fatal(err)
	}
	for i, n := range nodes {
		if n == victim {
			load.SetURL(i, victim.url())
		}
	}
	back := func() (bool, string) {
		for _, n := range nodes {
			if ok, saw := healthy(n.adminAddr, 3, 2, victimID); !ok {
				return false, n.name + ": " + saw
			}
		}
		return true, ""
	}
	views := func() string {
		var out []string
		for _, n := range nodes {
			ms, err := membersAt(n.adminAddr)
			out = append(out, fmt.Sprintf("%s sees %s %v", n.region, fmtMembers(ms), errOrEmpty(err)))
		}
		return strings.Join(out, "; ")
	}
	for deadline := time.Now().Add(20 * time.Second); ; {
		ok, _ := back()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			restarts := must(docker(ctx, "inspect", "--format", "{{.RestartCount}}", victim.name))
			if victim == nodes[0] {
				t.Fatalf("SERVER BUG: %s was not healthy again (3 voters in 3 regions per shard, leading at least one) within 20s of the partition healing (it was cut off for %v): %s. It is the node the cluster was started from (no --join), so a restart cannot bring it back either.", victim.name, cut.Round(time.Millisecond), views())
			}
			t.Errorf("SERVER BUG: %s was not healthy again (3 voters in 3 regions per shard, leading at least one) within 20s of the partition healing (it was cut off for %v; Docker restarted it %s times): %s. Restarting the container as a workaround (its --join runs at start).", victim.name, cut.Round(time.Millisecond), restarts, views())
			must(docker(ctx, "restart", "-t", "30", victim.name))
			if err := victim.published(ctx); err != nil {
				t.Fatal(err)
			}
			for i, n := range nodes {
				if n == victim {
					load.SetURL(i, victim.url())
				}
			}
			waitFor(t, victim.name+" back after its restart", 90*time.Second, back)
			t.Logf("after the workaround restart: %s", views())
			break
		}
		time.Sleep(100 * time.Millisecond) // poll interval
	}
	took = time.Since(partitioned) - cut
	t.Logf("%s was cut off for %v; back in every shard and leading %v after the reconnect", victim.name, cut.Round(time.Millisecond), took.Round(time.Millisecond))
	runPhase("heal")
	load.Stop()
	loadStopped = true
	check("the heal of "+victim.name+" (drained through it)", []*dockerNode{victim})
	if restarts := must(docker(ctx, "inspect", "--format", "{{.RestartCount}}", victim.name)); restarts != "0" {
		t.Errorf("SERVER BUG: Docker restarted %s %s times after crashes; see its log", victim.name, restarts)
	}
	t.Logf("%s", load.Totals())
}
