package deploy_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/edgenode/edgenode/e2e"
)

// The compose cluster's services, in the order the rolling restart takes.
var services = []string{"eu-1", "eu-2", "us-1", "us-2", "ap-1", "ap-2"}

const (
	projectPrefix = "edgenode-deploytest-"
	testShards    = 8
)

func regionOf(svc string) string { return svc[:2] }

// composeCommand is docker-compose (v1, Debian) or the docker compose
// plugin, whichever is installed.
func composeCommand() []string {
	if p, err := exec.LookPath("docker-compose"); err == nil {
		return []string{p}
	}
	if exec.Command("docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	return nil
}

type cluster struct {
	t       *testing.T
	compose []string
	project string
	env     []string
	ports   map[string]int // service -> host port of its client API
	ids     map[string]string
}

func (c *cluster) url(svc string) string { return fmt.Sprintf("http://127.0.0.1:%d", c.ports[svc]) }

func (c *cluster) urls(svcs ...string) []string {
	var out []string
	for _, s := range svcs {
		out = append(out, c.url(s))
	}
	return out
}

func (c *cluster) cmd(ctx context.Context, args ...string) (string, error) {
	full := append(slices.Clone(c.compose[1:]), "-p", c.project, "-f", "compose/docker-compose.yml")
	cmd := exec.CommandContext(ctx, c.compose[0], append(full, args...)...)
	cmd.Env = c.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("compose %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

func (c *cluster) must(args ...string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := c.cmd(ctx, args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

func docker(args ...string) (string, error) {
	out, err := exec.Command("docker", args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// container is the id of a service's container.
func (c *cluster) container(svc string) string {
	c.t.Helper()
	id := c.must("ps", "-q", svc)
	if id == "" {
		c.t.Fatalf("no container for %s", svc)
	}
	return strings.Fields(id)[0]
}

// ---- what the cluster looks like through its own API ----

type memberView struct {
	NodeID, Region, Status string
}

type shardView struct {
	Shard  int
	Leader string
	Voters []string
}

var apiClient = &http.Client{Timeout: 5 * time.Second}

// view reads an operator view (members, shards) of a node as an operator
// would: `edgenode <what> --json` inside its container, which asks the
// node's operator listener on the container's loopback with the cluster
// secret of the container's environment.
func (c *cluster) view(svc, what string, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := c.cmd(ctx, "exec", "-T", svc, "/edgenode", what, "--json")
	if err != nil {
		return err
	}
	return json.Unmarshal([]byte(out), v)
}

// healthy says whether all six nodes are alive as every node in via sees
// them, every node answers /readyz, and every shard has a leader and three
// voters in three regions. A shard's leader and voters are taken from the
// leader's own view: a node that is no voter of a shard may show it without
// a leader until it has routed a call there.
func (c *cluster) healthy(via ...string) (bool, string) {
	for _, svc := range services {
		resp, err := apiClient.Get(c.url(svc) + "/readyz")
		if err != nil {
			return false, svc + " /readyz: " + err.Error()
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return false, svc + " /readyz: " + resp.Status
		}
	}
	region := map[string]string{}
	for _, svc := range via {
		var ms []memberView
		if err := c.view(svc, "members", &ms); err != nil {
			return false, err.Error()
		}
		alive := 0
		for _, m := range ms {
			region[m.NodeID] = m.Region
			if m.Status == "alive" {
				alive++
			}
		}
		if alive != len(services) {
			return false, fmt.Sprintf("%s sees %d alive: %+v", svc, alive, ms)
		}
	}
	led := map[int]shardView{} // shard -> the view of the node that says it leads it
	for _, svc := range services {
		var ss []shardView
		if err := c.view(svc, "shards", &ss); err != nil {
			return false, err.Error()
		}
		if len(ss) != testShards {
			return false, fmt.Sprintf("%s lists %d shards", svc, len(ss))
		}
		for _, s := range ss {
			if s.Leader == svc { // node ids are the service names
				led[s.Shard] = s
			}
		}
	}
	for shard := range testShards {
		s, ok := led[shard]
		if !ok {
			return false, fmt.Sprintf("no node says it leads shard %d", shard)
		}
		regions := map[string]bool{}
		for _, v := range s.Voters {
			regions[region[v]] = true
		}
		if len(s.Voters) != 3 || len(regions) != 3 {
			return false, fmt.Sprintf("shard %d: leader %s, voters %v", shard, s.Leader, s.Voters)
		}
	}
	return true, ""
}

// waitFor polls cond every 200ms until it holds or d passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		ok, saw := cond()
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > d {
			t.Fatalf("timed out after %v waiting for %s; last seen: %s", d, what, saw)
		}
		time.Sleep(200 * time.Millisecond) // poll interval of a deadline poll
	}
}

// shardLeaders maps node id -> the shards it says it leads.
func (c *cluster) shardLeaders() map[string][]int {
	c.t.Helper()
	out := map[string][]int{}
	for _, svc := range services {
		var ss []shardView
		if err := c.view(svc, "shards", &ss); err != nil {
			c.t.Fatal(err)
		}
		for _, s := range ss {
			if s.Leader == svc {
				out[svc] = append(out[svc], s.Shard)
			}
		}
	}
	return out
}

// ---- setup ----

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// removeStale takes down the projects of earlier runs whose test process
// is gone (killed before its cleanup ran).
func removeStale(t *testing.T, compose []string) {
	out, err := docker("ps", "-a", "--filter", "label=com.docker.compose.project", "--format", `{{.Label "com.docker.compose.project"}}`)
	if err != nil {
		return
	}
	seen := map[string]bool{}
	for _, p := range strings.Fields(out) {
		rest, ok := strings.CutPrefix(p, projectPrefix)
		if !ok || seen[p] {
			continue
		}
		seen[p] = true
		pid, err := strconv.Atoi(strings.Split(rest, "-")[0])
		if err != nil || pid <= 0 || syscall.Kill(pid, 0) == nil {
			continue // malformed, or its test still runs
		}
		t.Logf("removing the project %s left by a dead run", p)
		cmd := exec.Command(compose[0], append(slices.Clone(compose[1:]), "-p", p, "-f", "compose/docker-compose.yml", "down", "-v", "-t", "1")...)
		cmd.Env = append(os.Environ(), "EDGENODE_ENV_FILE=cluster.env.example")
		cmd.Run()
	}
}

// TestComposeCluster builds the image FROM scratch, brings the three-region
// compose cluster up, sends a message across regions with a WebSocket
// client, then under continuous load kills a whole region, brings it back,
// restarts every node in turn, and checks that every message answered 201
// reached its recipient exactly once and in order.
func TestComposeCluster(t *testing.T) {
	if os.Getenv("EDGENODE_DEPLOY_TEST") != "1" {
		t.Skip("brings up the compose cluster; set EDGENODE_DEPLOY_TEST=1 (make deploy-test)")
	}
	compose := composeCommand()
	if compose == nil {
		t.Fatal("neither docker-compose nor the docker compose plugin is installed (apt-get install docker-compose)")
	}
	if out, err := docker("info", "--format", "{{.ServerVersion}}"); err != nil {
		t.Fatalf("docker engine not usable: %v %s", err, out)
	}
	removeStale(t, compose)
	began := time.Now()

	var rnd [3]byte
	rand.Read(rnd[:])
	run := fmt.Sprintf("%s%d-%s", projectPrefix, os.Getpid(), hex.EncodeToString(rnd[:]))
	image := "edgenode-deploytest:" + strings.TrimPrefix(run, projectPrefix)

	// The image, as `make image` builds it: the static binary FROM scratch.
	if out, err := exec.Command("docker/build-image.sh", image).CombinedOutput(); err != nil {
		t.Fatalf("building the image: %v\n%s", err, out)
	} else {
		t.Logf("%s in %v", strings.TrimSpace(string(out)), time.Since(began).Round(time.Second))
	}
	t.Cleanup(func() { docker("rmi", "-f", image) })

	// The two secrets up.sh writes into cluster.env: the nodes share one
	// JWT secret, as every node of a cluster must.
	secret := func() string {
		var b [30]byte
		rand.Read(b[:])
		return base64.RawURLEncoding.EncodeToString(b[:])
	}
	clusterSecret, jwtSecret := secret(), secret()
	envFile := filepath.Join(t.TempDir(), "cluster.env")
	if err := os.WriteFile(envFile, []byte("EDGENODE_CLUSTER_SECRET="+clusterSecret+"\nEDGENODE_JWT_SECRET="+jwtSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var lim syscall.Rlimit
	nofile := uint64(1048576)
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil && lim.Max < nofile {
		nofile = lim.Max // a container cannot exceed the daemon's limit; ours stands in for it
	}
	c := &cluster{t: t, compose: compose, project: run, ports: map[string]int{}, ids: map[string]string{}}
	c.env = append(os.Environ(),
		"EDGENODE_IMAGE="+image, "EDGENODE_ENV_FILE="+envFile, "EDGENODE_BIND=127.0.0.1",
		"EDGENODE_SHARDS="+strconv.Itoa(testShards), "EDGENODE_NOFILE="+strconv.FormatUint(nofile, 10))
	for i, p := range freePorts(t, len(services)) {
		svc := services[i]
		c.ports[svc] = p
		c.env = append(c.env, fmt.Sprintf("%s_PORT=%d", strings.ToUpper(strings.ReplaceAll(svc, "-", "")), p))
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if t.Failed() {
			logs, _ := c.cmd(ctx, "logs", "--no-color", "--tail", "30")
			t.Logf("---- last lines of every node ----\n%s", logs)
		}
		if _, err := c.cmd(ctx, "down", "-v", "--remove-orphans", "-t", "5"); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		if out, _ := docker("ps", "-a", "-q", "--filter", "label=com.docker.compose.project="+run); out != "" {
			t.Errorf("cleanup left containers: %s", out)
		}
	})

	// ---- up ----
	start := time.Now()
	c.must("up", "-d")
	took := waitFor(t, "six nodes, every shard led with 3 voters in 3 regions", 3*time.Minute, func() (bool, string) {
		return c.healthy(services[0], services[5])
	})
	t.Logf("cluster up and placed %v after `up -d` (started %v)", took.Round(time.Millisecond), time.Since(start).Round(time.Second))
	var ms []memberView
	if err := c.view("eu-1", "members", &ms); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if !slices.Contains(services, m.NodeID) || regionOf(m.NodeID) != m.Region {
			t.Fatalf("member %+v: want node ids eu-1..ap-2 in their regions", m)
		}
	}
	// The operator views are not on the published client port at all.
	if resp, err := apiClient.Get(c.url("eu-1") + "/v1/cluster/members"); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET /v1/cluster/members on the client port: %s, want 404", resp.Status)
		}
	}
	for _, svc := range services {
		if st, _ := docker("inspect", "-f", "{{.Config.User}}", c.container(svc)); st != "65532:65532" {
			t.Errorf("%s runs as %q, want the non-root 65532:65532", svc, st)
		}
	}

	// ---- a message across regions, as apps send and receive it ----
	crossRegion(t, c)

	// ---- load through every node, a whole region down, back ----
	var recipients []int64
	seenShard := map[int]bool{}
	for u := int64(2001); len(recipients) < testShards; u++ {
		if s := e2e.ShardOf(u, testShards); !seenShard[s] {
			seenShard[s] = true
			recipients = append(recipients, u)
		}
	}
	var senders []int64
	for s := int64(1001); s < 1009; s++ {
		senders = append(senders, s)
	}
	checker := e2e.NewChecker(jwtSecret, testShards)
	load := e2e.NewLoad(e2e.LoadOptions{URLs: c.urls(services...), JWTSecret: jwtSecret, Shards: testShards,
		Senders: senders, Recipients: recipients, Checker: checker, Think: 20 * time.Millisecond})
	load.Start()
	loadRunning := true
	defer func() {
		if loadRunning {
			load.Stop()
		}
	}()
	acked := func(more int, within time.Duration) {
		t.Helper()
		want := checker.Acked() + more
		ctx, cancel := context.WithTimeout(context.Background(), within)
		defer cancel()
		if err := load.WaitAcked(ctx, want); err != nil {
			t.Fatal(err)
		}
	}
	check := func(after string, via ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		problems := checker.Drain(ctx, c.urls(via...), recipients)
		t.Logf("check after %s: %s", after, checker.Summary())
		if len(problems) > 0 {
			t.Fatalf("after %s, %d problems:\n%s", after, len(problems), strings.Join(problems, "\n"))
		}
	}
	acked(300, time.Minute)
	check("warm-up", services...)

	// ---- the metrics the dashboard and alerts read exist ----
	// Checked after traffic of every kind (sends, syncs, a socket opened,
	// fed and closed) and before restarts, since labelled series appear
	// only once used; the union of all nodes' /metrics.
	exported := map[string]bool{"up": true} // up is added by Prometheus
	for _, svc := range services {
		resp, err := apiClient.Get(c.url(svc) + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		exposition, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(exposition), "\n") {
			if line != "" && !strings.HasPrefix(line, "#") {
				exported[strings.FieldsFunc(line, func(r rune) bool { return r == '{' || r == ' ' })[0]] = true
			}
		}
	}
	// Push metrics appear once a node with APNs or FCM configured has sent
	// (the compose cluster has neither).
	pushMetrics := map[string]bool{"edgenode_push_requests_total": true}
	for _, file := range []string{"prometheus/alerts.yml", "grafana/edgenode.json"} {
		b, _ := os.ReadFile(file)
		for _, m := range metricRE.FindAllString(string(b), -1) {
			if !exported[m] && !pendingMetrics[m] && !pushMetrics[m] {
				t.Errorf("%s uses %s, which no running node exports", file, m)
			}
		}
	}

	// A region dies at once: SIGKILL to both eu containers.
	leaders := c.shardLeaders()
	affected := append(slices.Clone(leaders["eu-1"]), leaders["eu-2"]...)
	f := load.MarkFault("SIGKILL of region eu (eu-1, eu-2)", affected)
	for _, svc := range []string{"eu-1", "eu-2"} {
		c.must("kill", "-s", "SIGKILL", svc)
	}
	rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
	err := load.WaitResumed(rctx, f)
	rcancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("REGION DOWN %s", load.Report(f))
	acked(300, time.Minute)
	survivors := []string{"us-1", "us-2", "ap-1", "ap-2"}
	check("region eu down (drained through us and ap)", survivors...)
	waitFor(t, "us-1 to see eu-1 and eu-2 not alive", 30*time.Second, func() (bool, string) {
		var ms []memberView
		if err := c.view("us-1", "members", &ms); err != nil {
			return false, err.Error()
		}
		down := 0
		for _, m := range ms {
			if m.Region == "eu" && m.Status != "alive" {
				down++
			}
		}
		return down == 2, fmt.Sprintf("%+v", ms)
	})
	c.must("start", "eu-1", "eu-2")
	took = waitFor(t, "region eu back: six nodes, every shard with 3 voters in 3 regions", 3*time.Minute, func() (bool, string) {
		return c.healthy("eu-1", "us-1", "ap-1")
	})
	t.Logf("region eu back in every shard %v after its restart", took.Round(time.Millisecond))
	acked(300, time.Minute)
	check("region eu restarted", services...)

	// ---- a lost volume: ap-1 (the lowest node id, which bootstraps the
	// cluster) comes back empty with the manifests' unchanged environment
	// (--bootstrap-expect 6, the same node id) and must join the running
	// cluster, not start a second one ----
	c.must("stop", "-t", "40", "ap-1")
	c.must("rm", "-f", "ap-1")
	vol := ""
	vols, _ := docker("volume", "ls", "-q", "--filter", "label=com.docker.compose.project="+run)
	for _, v := range strings.Fields(vols) {
		if strings.HasSuffix(v, "_ap-1") {
			vol = v
		}
	}
	if vol == "" {
		t.Fatalf("no volume of ap-1 among %q", vols)
	}
	if out, err := docker("volume", "rm", vol); err != nil {
		t.Fatalf("removing ap-1's volume %s: %v %s", vol, err, out)
	}
	c.must("up", "-d", "ap-1")
	took = waitFor(t, "ap-1 back empty: six nodes, one cluster, every shard with 3 voters in 3 regions", 3*time.Minute, func() (bool, string) {
		return c.healthy("ap-1", "eu-1", "us-1")
	})
	t.Logf("ap-1 rejoined with an empty volume %v after its start", took.Round(time.Millisecond))
	if logs, _ := c.cmd(context.Background(), "logs", "--no-color", "ap-1"); strings.Contains(logs, "bootstrapping the shards") {
		t.Fatalf("ap-1 with an empty volume bootstrapped shards of its own:\n%s", logs)
	}
	acked(300, time.Minute)
	check("ap-1's volume lost and the node restarted unchanged", services...)

	// ---- rolling restart of every node under load ----
	for _, svc := range services {
		t0 := time.Now()
		c.must("restart", "-t", "40", svc)
		took := waitFor(t, svc+" back after its restart: six nodes, every shard placed", 3*time.Minute, func() (bool, string) {
			return c.healthy(svc, services[(slices.Index(services, svc)+2)%len(services)])
		})
		acked(100, time.Minute)
		t.Logf("rolling restart: %s restarted in %v, cluster healthy %v later", svc, time.Since(t0).Round(time.Millisecond)-took.Round(time.Millisecond), took.Round(time.Millisecond))
	}
	load.Stop()
	loadRunning = false
	check("the rolling restart (load stopped)", services...)
	t.Logf("%s", load.Totals())

	for _, svc := range services {
		if n, _ := docker("inspect", "-f", "{{.RestartCount}}", c.container(svc)); n != "0" {
			t.Errorf("%s crashed: Docker restarted it %s times", svc, n)
		}
	}
	t.Logf("whole run %v", time.Since(began).Round(time.Second))
}

// crossRegion: Bob holds a WebSocket on ap-1 with a token from ap-2's binary;
// Alice, with a token from eu-1's binary, sends through eu-1; Bob's socket
// gets the message and acknowledges it; Alice, syncing through us-2, gets
// the DELIVERED receipt.
func crossRegion(t *testing.T, c *cluster) {
	t.Helper()
	token := func(svc string, user int) string {
		// The token is stdout; stderr may carry a notice.
		cmd := exec.Command("docker", "exec", c.container(svc), "/edgenode", "token", "--user", strconv.Itoa(user))
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("edgenode token in %s: %v %s", svc, err, stderr.String())
		}
		return strings.TrimSpace(string(out))
	}
	alice, bob := token("eu-1", 1), token("ap-2", 2)
	const aliceID, bobID = 1, 2

	ws, resp, err := websocket.DefaultDialer.Dial(strings.Replace(c.url("ap-1"), "http", "ws", 1)+"/v1/socket/updates",
		http.Header{"Authorization": {"Bearer " + bob}})
	if err != nil {
		if resp != nil {
			body, _ := io.ReadAll(resp.Body)
			t.Fatalf("bob's socket on ap-1: %v: %s %s", err, resp.Status, body)
		}
		t.Fatalf("bob's socket on ap-1: %v", err)
	}
	defer ws.Close()
	type frame struct {
		Type    string          `json:"type"`
		ID      int64           `json:"id"`
		Payload json.RawMessage `json:"payload"`
	}
	read := func() frame {
		t.Helper()
		ws.SetReadDeadline(time.Now().Add(15 * time.Second))
		var f frame
		if err := ws.ReadJSON(&f); err != nil {
			t.Fatalf("bob's socket: %v", err)
		}
		return f
	}
	ready := read()
	var rp struct {
		UserID int64  `json:"userId"`
		Region string `json:"region"`
	}
	json.Unmarshal(ready.Payload, &rp)
	if ready.Type != "ready" || rp.UserID != bobID || rp.Region != "ap" {
		t.Fatalf("bob's first frame: %s %s, want ready for user 2 in region ap", ready.Type, ready.Payload)
	}

	body := fmt.Sprintf(`{"requestId":1,"toUserId":%d,"content":"hello from eu to ap","createdAt":"%s"}`, bobID, time.Now().UTC().Format("2006-01-02T15:04:05.000Z"))
	req, _ := http.NewRequest("POST", c.url("eu-1")+"/v1/messages", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+alice)
	sent := time.Now()
	resp, err = apiClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	rb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("alice's send through eu-1: %s %s", resp.Status, rb)
	}
	var created struct {
		Message struct {
			MessageID int64 `json:"messageId"`
		} `json:"message"`
	}
	json.Unmarshal(rb, &created)

	var got frame
	for got.Type != "new_message" {
		got = read()
	}
	var nm struct {
		Message struct {
			MessageID  int64  `json:"messageId"`
			FromUserID int64  `json:"fromUserId"`
			Content    string `json:"content"`
		} `json:"message"`
	}
	json.Unmarshal(got.Payload, &nm)
	if nm.Message.MessageID != created.Message.MessageID || nm.Message.FromUserID != aliceID || nm.Message.Content != "hello from eu to ap" {
		t.Fatalf("bob got %s, want message %d from alice", got.Payload, created.Message.MessageID)
	}
	t.Logf("CROSS-REGION: message %d sent through eu-1 reached bob's socket on ap-1 %v after the POST", created.Message.MessageID, time.Since(sent).Round(time.Millisecond))
	if err := ws.WriteJSON(map[string]any{"type": "ack", "payload": map[string]any{"upTo": got.ID}}); err != nil {
		t.Fatal(err)
	}

	waitFor(t, "alice's DELIVERED receipt through us-2", 20*time.Second, func() (bool, string) {
		req, _ := http.NewRequest("GET", c.url("us-2")+"/v1/messages", nil)
		req.Header.Set("Authorization", "Bearer "+alice)
		resp, err := apiClient.Do(req)
		if err != nil {
			return false, err.Error()
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var sr struct {
			Receipts []struct {
				Status     string  `json:"status"`
				MessageIDs []int64 `json:"messageIds"`
			} `json:"receipts"`
		}
		json.Unmarshal(b, &sr)
		for _, r := range sr.Receipts {
			if r.Status == "DELIVERED" && slices.Contains(r.MessageIDs, created.Message.MessageID) {
				return true, ""
			}
		}
		return false, string(b)
	})
}
