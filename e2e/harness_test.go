package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	clusterSecret = "e2e-cluster-secret-0123456789abcdef-0123"
	jwtSecret     = "e2e-jwt-secret-0123456789abcdef-0123456"
	shardCount    = 8
)

// binary is the edgenode binary TestMain built for this run.
var binary string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if testingShort() {
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "edgenode-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "edgenode")
	start := time.Now()
	// Static, like a release build, so that the same file runs in a FROM
	// scratch container.
	cmd := exec.Command(goTool(), "build", "-tags", "hashicorpmetrics", "-o", binary, "./cmd/edgenode")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: building edgenode: %v\n%s", err, out)
		return 1
	}
	fmt.Fprintf(os.Stderr, "e2e: built %s in %v\n", binary, time.Since(start).Round(time.Millisecond))
	return m.Run()
}

func testingShort() bool {
	for _, a := range os.Args[1:] {
		if a == "-test.short" || a == "-test.short=true" {
			return true
		}
	}
	return false
}

// goTool is the go command: go test puts its own GOROOT/bin first in PATH
// (Go 1.19+), so the tests build with the toolchain that runs them.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "go"
}

// soak is E2E_SOAK=1: longer load phases (make soak-faults).
func soak() bool { return os.Getenv("E2E_SOAK") != "" && os.Getenv("E2E_SOAK") != "0" }

// phase is how long load runs after a fault has been recovered from.
func phase() time.Duration {
	if soak() {
		return 2 * time.Minute
	}
	return 2 * time.Second
}

// ---- ports ----

var portsMu sync.Mutex
var portsGiven = map[int]bool{}

// freePort is a loopback port free for both TCP and UDP (gossip uses both),
// never handed out twice in this process. It is taken below the kernel's
// ephemeral range (ip_local_port_range): a node restarted on its ports
// must find them free, and a port of that range can be taken meanwhile by
// any outgoing connection on the host (a rolling restart once failed with
// "bind: address already in use" on its operator port that way).
func freePort(t *testing.T) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	lo, hi := 20000, ephemeralLow()
	for range 1000 {
		port := lo + rand.IntN(hi-lo)
		if portsGiven[port] {
			continue
		}
		tl, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		ul, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		tl.Close()
		if err != nil {
			continue
		}
		ul.Close()
		portsGiven[port] = true
		return port
	}
	t.Fatal("no free port")
	return 0
}

// ephemeralLow is the first port of the kernel's ephemeral range (32768
// when it cannot be read, Linux's default).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	var lo, hi int
	if n, _ := fmt.Sscan(string(b), &lo, &hi); n != 2 || lo <= 21000 {
		return 32768
	}
	return lo
}

// ---- waiting ----

// waitFor polls cond every 100ms until it holds or d passes; cond's string
// says what it saw, for the failure message.
func waitFor(t *testing.T, what string, d time.Duration, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(d)
	for {
		ok, saw := cond()
		if ok {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last seen: %s", d, what, saw)
		}
		time.Sleep(100 * time.Millisecond) // poll interval of a deadline poll
	}
}

// ---- inspection through the binary ----

type shardInfo struct {
	Shard  int      `json:"shard"`
	Leader string   `json:"leader"`
	Term   uint64   `json:"term"`
	Voters []string `json:"voters"`
}

type memberInfo struct {
	NodeID string `json:"nodeId"`
	Region string `json:"region"`
	Status string `json:"status"`
	Addr   string `json:"addr"`
	Inc    string `json:"incarnation"`
}

// inspect runs `edgenode <what> --addr addr --json`, as an operator would,
// against a node's operator listener (addr), with the cluster secret in
// the environment (the views need it).
func inspect(addr, what string, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, what, "--addr", addr, "--json")
	cmd.Env = append(os.Environ(), "EDGENODE_CLUSTER_SECRET="+clusterSecret)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("edgenode %s --addr %s: %v: %s", what, addr, err, strings.TrimSpace(stderr.String()))
	}
	if err := json.Unmarshal(stdout.Bytes(), out); err != nil {
		return fmt.Errorf("edgenode %s --addr %s printed %q: %v", what, addr, stdout.String(), err)
	}
	return nil
}

func shardsAt(addr string) ([]shardInfo, error) {
	var ss []shardInfo
	err := inspect(addr, "shards", &ss)
	return ss, err
}

func membersAt(addr string) ([]memberInfo, error) {
	var ms []memberInfo
	err := inspect(addr, "members", &ms)
	return ms, err
}

func fmtShards(ss []shardInfo) string {
	var b strings.Builder
	for _, s := range ss {
		fmt.Fprintf(&b, "[%d leader=%s term=%d voters=%s] ", s.Shard, orNone(s.Leader), s.Term, strings.Join(s.Voters, ","))
	}
	return b.String()
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func fmtMembers(ms []memberInfo) string {
	var parts []string
	for _, m := range ms {
		parts = append(parts, fmt.Sprintf("%s/%s=%s", m.NodeID, m.Region, m.Status))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// healthy: as seen from addr, every shard has a leader and want voters, in
// want distinct regions, all of them alive members; leaders sit on at least
// minLeaderNodes nodes; mustLead (if set) leads at least one shard.
func healthy(addr string, want, minLeaderNodes int, mustLead string) (bool, string) {
	ms, err := membersAt(addr)
	if err != nil {
		return false, err.Error()
	}
	region := map[string]string{}
	alive := map[string]bool{}
	for _, m := range ms {
		region[m.NodeID] = m.Region
		alive[m.NodeID] = m.Status == "alive"
	}
	ss, err := shardsAt(addr)
	if err != nil {
		return false, err.Error()
	}
	saw := fmt.Sprintf("members %s; shards %s", fmtMembers(ms), fmtShards(ss))
	if len(ss) != shardCount {
		return false, saw
	}
	leaders := map[string]int{}
	for _, s := range ss {
		if s.Leader == "" || len(s.Voters) != want {
			return false, saw
		}
		regions := map[string]bool{}
		for _, v := range s.Voters {
			if !alive[v] {
				return false, saw
			}
			regions[region[v]] = true
		}
		if len(regions) != want {
			return false, saw
		}
		leaders[s.Leader]++
	}
	if len(leaders) < minLeaderNodes {
		return false, saw
	}
	if mustLead != "" && leaders[mustLead] == 0 {
		return false, saw
	}
	return true, saw
}

// stableShards polls addr until two answers 1s apart name the same leaders
// (placement hands leadership to preferred voters for a while after a
// change), so that a fault aimed at a leader hits the shards it names.
func stableShards(t *testing.T, addr string) []shardInfo {
	t.Helper()
	var prev []shardInfo
	var last []shardInfo
	waitFor(t, "stable shard leaders at "+addr, 30*time.Second, func() (bool, string) {
		ss, err := shardsAt(addr)
		if err != nil {
			return false, err.Error()
		}
		same := prev != nil && len(prev) == len(ss)
		for i := range ss {
			if same && (prev[i].Leader != ss[i].Leader || ss[i].Leader == "") {
				same = false
			}
		}
		prev, last = ss, ss
		if !same {
			time.Sleep(time.Second) // the second look comes a second later
		}
		return same, fmtShards(ss)
	})
	return last
}

// mostLeader is the node leading the most shards, and those shards.
func mostLeader(ss []shardInfo) (string, []int) {
	by := map[string][]int{}
	for _, s := range ss {
		if s.Leader != "" {
			by[s.Leader] = append(by[s.Leader], s.Shard)
		}
	}
	best := ""
	for id, sh := range by {
		if best == "" || len(sh) > len(by[best]) || len(sh) == len(by[best]) && id < best {
			best = id
		}
	}
	return best, by[best]
}

func ledBy(ss []shardInfo, node string) []int {
	var out []int
	for _, s := range ss {
		if s.Leader == node {
			out = append(out, s.Shard)
		}
	}
	return out
}

// users picks per shard perShard user ids from base up, so that load
// reaches every shard.
func users(base int64, perShard int) []int64 {
	count := map[int]int{}
	var out []int64
	for u := base; len(out) < perShard*shardCount; u++ {
		if s := ShardOf(u, shardCount); count[s] < perShard {
			count[s]++
			out = append(out, u)
		}
	}
	return out
}

func seq(from int64, n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = from + int64(i)
	}
	return out
}

// ---- processes ----

// proc is one edgenode process on loopback.
type proc struct {
	t                         *testing.T
	name, region, dir         string
	httpPort, gossip, cluster int
	adminPort                 int // the operator listener's
	logPath                   string
	join                      string
	id                        string // node id, read from the data dir
	// How the node gets its cluster secret: "" or "flag" (--cluster-secret),
	// "env" (EDGENODE_CLUSTER_SECRET) or "none"; secret overrides the
	// cluster's.
	secretVia, secret string
	// fixedID passes --node-id (the id it had), as the Kubernetes
	// manifests pass the pod name.
	fixedID bool
	extra   []string // more flags
	wrap    []string // a command the node runs under (prlimit ... --)

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	runs int
}

func newProc(t *testing.T, base, name, region string) *proc {
	return &proc{
		t: t, name: name, region: region, dir: filepath.Join(base, name),
		httpPort: freePort(t), gossip: freePort(t), cluster: freePort(t), adminPort: freePort(t),
		logPath: filepath.Join(base, name+".log"),
	}
}

func (p *proc) httpAddr() string   { return fmt.Sprintf("127.0.0.1:%d", p.httpPort) }
func (p *proc) adminAddr() string  { return fmt.Sprintf("127.0.0.1:%d", p.adminPort) }
func (p *proc) url() string        { return "http://" + p.httpAddr() }
func (p *proc) gossipAddr() string { return fmt.Sprintf("127.0.0.1:%d", p.gossip) }

// start runs the node as an operator would: the region, the addresses, the
// two secrets and (but for the first node) --join.
func (p *proc) start() {
	p.t.Helper()
	if err := p.tryStart(); err != nil {
		p.t.Fatal(err)
	}
}

// tryStart starts the process and waits until it answers /healthz; an
// error means it exited first (or never answered).
func (p *proc) tryStart() error {
	t := p.t
	t.Helper()
	args := []string{
		"--region", p.region, "--data-dir", p.dir,
		"--http-addr", p.httpAddr(), "--admin-addr", p.adminAddr(), "--gossip-addr", p.gossipAddr(),
		"--cluster-addr", fmt.Sprintf("127.0.0.1:%d", p.cluster), "--advertise-addr", "127.0.0.1",
		"--jwt-secret", jwtSecret,
		"--shards", strconv.Itoa(shardCount),
		// The load driver's senders are few and fast; the default per-user
		// rate (50/s) is for people.
		"--send-rate", "1000", "--send-burst", "1000",
	}
	if p.join != "" {
		args = append(args, "--join", p.join)
	}
	if p.fixedID && p.id != "" {
		args = append(args, "--node-id", p.id)
	}
	args = append(args, p.extra...)
	secret := clusterSecret
	if p.secret != "" {
		secret = p.secret
	}
	env := append(os.Environ(), "GOMAXPROCS=2")
	switch p.secretVia {
	case "", "flag":
		args = append(args, "--cluster-secret", secret)
	case "env":
		env = append(env, "EDGENODE_CLUSTER_SECRET="+secret)
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.runs++
	fmt.Fprintf(logf, "==== e2e: start #%d: edgenode %s\n", p.runs, strings.Join(args, " "))
	cmd := exec.Command(binary, args...)
	if len(p.wrap) > 0 {
		cmd = exec.Command(p.wrap[0], append(append(p.wrap[1:len(p.wrap):len(p.wrap)], binary), args...)...)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = env
	if err := cmd.Start(); err != nil {
		p.mu.Unlock()
		t.Fatal(err)
	}
	done := make(chan struct{})
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		logf.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
	for deadline := time.Now().Add(20 * time.Second); ; {
		if p.exited() {
			p.mu.Lock()
			err := p.err
			p.mu.Unlock()
			return fmt.Errorf("%s exited while starting (%v); its log ends:\n%s", p.name, err, p.tail(25))
		}
		if code, _ := httpGet(p.url() + "/healthz"); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not answering /healthz 20s after its start; its log ends:\n%s", p.name, p.tail(25))
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
	if p.id == "" {
		b, err := os.ReadFile(filepath.Join(p.dir, "node-id"))
		if err != nil {
			t.Fatalf("%s: node id: %v", p.name, err)
		}
		p.id = strings.TrimSpace(string(b))
	}
	return nil
}

func (p *proc) exited() bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	select {
	case <-done:
		return true
	default:
		return false
	}
}

func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	if err := cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("%s: %v: %v", p.name, sig, err)
	}
}

// wait blocks until the process exits (or d passes) and returns its exit
// error.
func (p *proc) wait(d time.Duration) (error, bool) {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	select {
	case <-done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.err, true
	case <-time.After(d):
		return nil, false
	}
}

// stop kills the process if it runs (continuing it first if stopped).
func (p *proc) stop() {
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	if cmd == nil || p.exited() {
		return
	}
	cmd.Process.Signal(syscall.SIGCONT)
	cmd.Process.Kill()
	p.wait(10 * time.Second)
}

func (p *proc) tail(n int) string {
	b, _ := os.ReadFile(p.logPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

var httpShort = &http.Client{Timeout: 2 * time.Second}

func httpGet(url string) (int, error) {
	resp, err := httpShort.Get(url)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
