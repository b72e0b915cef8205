package member

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

const testSecret = "test-cluster-secret-of-at-least-32-bytes"

// TestMain fails the run if goroutines started by the tests outlive them.
func TestMain(m *testing.M) {
	before := runtime.NumGoroutine()
	code := m.Run()
	if code == 0 {
		if err := waitGoroutines(before, 10*time.Second); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// waitGoroutines polls until at most n goroutines run.
func waitGoroutines(n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		got := runtime.NumGoroutine()
		if got <= n {
			return nil
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			return fmt.Errorf("goroutine leak: %d running, want <= %d\n%s", got, n, buf)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fast shortens memberlist's timings so that a failure is detected in well
// under a second, with enough slack for -race on two cores.
// fast gossips quickly, but with probe timeouts a loaded CI box (the e2e
// tests run beside these) still meets: an 80 ms probe timeout made
// healthy nodes suspect while three-process e2e tests ran.
func fast(c *memberlist.Config) {
	c.ProbeInterval = 300 * time.Millisecond
	c.ProbeTimeout = 250 * time.Millisecond
	c.GossipInterval = 20 * time.Millisecond
	c.PushPullInterval = 500 * time.Millisecond
	c.SuspicionMult = 4
	c.TCPTimeout = time.Second
	c.GossipToTheDeadTime = 2 * time.Second
	c.DeadNodeReclaimTime = 10 * time.Millisecond
}

type nodeOpt func(*Options)

func withJoin(addrs ...string) nodeOpt { return func(o *Options) { o.Join = addrs } }

// testNode starts a membership on a free loopback port and shuts it down at
// the end of the test.
func testNode(t *testing.T, id string, opts ...nodeOpt) *Membership {
	t.Helper()
	o := Options{
		Meta: Meta{
			NodeID:      id,
			Region:      "region-" + id,
			HTTPURL:     "http://" + id + ".example:8080",
			ClusterAddr: id + ".example:7947",
			Version:     "test",
		},
		BindAddr: "127.0.0.1:0",
		Secret:   testSecret,
		Tuning:   fast,
		Logger:   testLogger(t, id),
	}
	for _, f := range opts {
		f(&o)
	}
	m, err := Start(o)
	if err != nil {
		t.Fatalf("start %s: %v", id, err)
	}
	t.Cleanup(func() {
		if err := m.Shutdown(); err != nil {
			t.Errorf("shutdown %s: %v", id, err)
		}
	})
	return m
}

// testLogger writes to the test log when -v is given, keeping quiet runs quiet.
func testLogger(t *testing.T, id string) *slog.Logger {
	if !testing.Verbose() {
		return nil
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})).With("test_node", id)
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func statusOn(m *Membership, id string) Status {
	mb, ok := m.Get(id)
	if !ok {
		return ""
	}
	return mb.Status
}

func waitStatus(t *testing.T, id string, want Status, on ...*Membership) {
	t.Helper()
	for _, m := range on {
		waitFor(t, 10*time.Second, fmt.Sprintf("%s to see %s %s", m.self, id, want), func() bool {
			return statusOn(m, id) == want
		})
	}
}

func aliveIDs(m *Membership) string {
	var ids []string
	for _, mb := range m.Alive() {
		ids = append(ids, mb.NodeID)
	}
	return strings.Join(ids, ",")
}

// cluster3 starts a, b, c; b joins a and c joins b, so c learns a by gossip.
func cluster3(t *testing.T, opts ...nodeOpt) (a, b, c *Membership) {
	t.Helper()
	a = testNode(t, "a", opts...)
	b = testNode(t, "b", append(opts, withJoin(a.GossipAddr()))...)
	c = testNode(t, "c", append(opts, withJoin(b.GossipAddr()))...)
	waitAllSeeAlive(t, a, b, c)
	return a, b, c
}

// waitAllSeeAlive waits up to 30 s until every one of ms sees exactly ms
// alive, and fails with every node's view if not.
func waitAllSeeAlive(t *testing.T, ms ...*Membership) {
	t.Helper()
	var ids []string
	for _, m := range ms {
		ids = append(ids, m.self)
	}
	slices.Sort(ids)
	want := strings.Join(ids, ",")
	deadline := time.Now().Add(30 * time.Second)
	for _, m := range ms {
		for aliveIDs(m) != want {
			if time.Now().After(deadline) {
				t.Fatalf("timed out after 30s waiting for %s to see %s alive; views: %s", m.self, want, views(ms...))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// views describes what each membership sees, for failure messages.
func views(ms ...*Membership) string {
	var b strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&b, "[%s joined=%v:", m.self, m.Joined())
		for _, mb := range m.Members() {
			fmt.Fprintf(&b, " %s=%s since %s", mb.NodeID, mb.Status, mb.Since.Format("15:04:05.000"))
		}
		b.WriteString("] ")
	}
	return b.String()
}

func TestJoinSeesAllAliveWithMeta(t *testing.T) {
	a, b, c := cluster3(t)
	for _, m := range []*Membership{a, b, c} {
		if !m.Joined() {
			t.Errorf("%s: Joined() = false", m.self)
		}
		ms := m.Members()
		if len(ms) != 3 {
			t.Fatalf("%s: %d members, want 3", m.self, len(ms))
		}
		for i, id := range []string{"a", "b", "c"} {
			got := ms[i]
			want := Meta{NodeID: id, Region: "region-" + id, HTTPURL: "http://" + id + ".example:8080",
				ClusterAddr: id + ".example:7947", Version: "test"}
			if got.Meta != want || got.Status != StatusAlive || got.Since.IsZero() {
				t.Errorf("%s sees %+v, want meta %+v alive", m.self, got, want)
			}
		}
		if local := m.LocalNode(); local.NodeID != m.self || local.Status != StatusAlive {
			t.Errorf("%s: LocalNode() = %+v", m.self, local)
		}
	}
	// Every node advertises the address it is bound to, and others see it.
	for _, m := range []*Membership{a, b, c} {
		if got := m.LocalNode().GossipAddr; got != m.GossipAddr() {
			t.Errorf("%s advertises %s, bound to %s", m.self, got, m.GossipAddr())
		}
		if mb, _ := a.Get(m.self); mb.GossipAddr != m.GossipAddr() {
			t.Errorf("a sees %s at %s, want %s", m.self, mb.GossipAddr, m.GossipAddr())
		}
	}
	if _, ok := a.Get("nobody"); ok {
		t.Error("Get(nobody) found a member")
	}
}

func TestStartedAloneIsJoined(t *testing.T) {
	a := testNode(t, "a")
	if !a.Joined() {
		t.Fatal("a node started without Join must report Joined")
	}
	if ids := aliveIDs(a); ids != "a" {
		t.Fatalf("alive = %q, want a", ids)
	}
}

func TestGracefulLeaveIsLeft(t *testing.T) {
	logs := &recorder{}
	a, b, c := cluster3(t, func(o *Options) {
		if o.Meta.NodeID != "c" {
			o.Logger = slog.New(logs)
		}
	})
	cSince := mustGet(t, a, "c").Since
	if err := c.Leave(5 * time.Second); err != nil {
		t.Fatalf("leave: %v", err)
	}
	if st := c.LocalNode().Status; st != StatusLeft {
		t.Errorf("c sees itself %s, want left", st)
	}
	if err := c.Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, "c", StatusLeft, a, b)
	if got := mustGet(t, a, "c"); got.Since.Before(cSince) {
		t.Errorf("Since went backwards: %v before %v", got.Since, cSince)
	}
	waitFor(t, 5*time.Second, "a to see a,b alive", func() bool { return aliveIDs(a) == "a,b" })
	if len(a.Members()) != 3 {
		t.Errorf("a no longer lists c: %+v", a.Members())
	}
	// The leave intent goes out before memberlist's leave message, so the
	// others never show c as dead on the way.
	if n := logs.count("member: node dead"); n != 0 {
		t.Errorf("a or b saw c dead %d times before left", n)
	}
	if err := c.Leave(time.Second); !errors.Is(err, ErrShutdown) {
		t.Errorf("leave after shutdown: %v, want ErrShutdown", err)
	}
}

func TestShutdownWithoutLeaveIsDead(t *testing.T) {
	a, b, c := cluster3(t)
	if err := c.Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, "c", StatusDead, a, b)
	waitFor(t, 5*time.Second, "b to see a,b alive", func() bool { return aliveIDs(b) == "a,b" })
	if len(a.Members()) != 3 {
		t.Errorf("a forgot the dead node too early: %+v", a.Members())
	}
}

// Observers with a huge suspicion multiplier never declare the stopped node
// dead, so the suspect status must show.
func TestUnansweredProbesMakeSuspect(t *testing.T) {
	slowDeath := func(o *Options) {
		o.Tuning = func(c *memberlist.Config) { fast(c); c.SuspicionMult = 1000 }
	}
	a, b, c := cluster3(t, slowDeath)
	if err := c.Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, "c", StatusSuspect, a, b)
	waitFor(t, 5*time.Second, "a to see a,b alive", func() bool { return aliveIDs(a) == "a,b" })
}

func TestRestartWithSameNodeIDIsAliveAgain(t *testing.T) {
	for _, sameAddr := range []bool{false, true} {
		t.Run(fmt.Sprintf("same_addr=%v", sameAddr), func(t *testing.T) {
			a, b, c := cluster3(t)
			addr := c.GossipAddr()
			if err := c.Shutdown(); err != nil {
				t.Fatal(err)
			}
			waitStatus(t, "c", StatusDead, a, b)
			deadSince := mustGet(t, a, "c").Since

			c2 := testNode(t, "c", withJoin(a.GossipAddr()), func(o *Options) {
				o.Meta.ClusterAddr = "c-restarted.example:7947"
				if sameAddr {
					o.BindAddr = addr
				}
			})
			for _, m := range []*Membership{a, b} {
				waitFor(t, 10*time.Second, m.self+" to see c back with its new meta", func() bool {
					mb, _ := m.Get("c")
					return mb.Status == StatusAlive && mb.ClusterAddr == "c-restarted.example:7947" &&
						mb.GossipAddr == c2.GossipAddr()
				})
			}
			waitFor(t, 10*time.Second, "c to see a,b,c alive", func() bool { return aliveIDs(c2) == "a,b,c" })
			if got := mustGet(t, a, "c").Since; got.Before(deadSince) {
				t.Errorf("Since %v is before the death at %v", got, deadSince)
			}
		})
	}
}

func TestWrongSecretCannotJoin(t *testing.T) {
	a := testNode(t, "a")
	logs := &recorder{}
	b := testNode(t, "b", withJoin(a.GossipAddr()), func(o *Options) {
		o.Secret = "another-cluster-secret-of-32-bytes!!"
		o.Logger = slog.New(logs)
	})
	waitFor(t, 10*time.Second, "b's join to fail twice", func() bool { return logs.count("member: join failed") >= 2 })
	if b.Joined() {
		t.Error("b joined with the wrong secret")
	}
	if _, ok := a.Get("b"); ok {
		t.Error("a lists b")
	}
	if ids := aliveIDs(b); ids != "b" {
		t.Errorf("b sees alive %q, want only b", ids)
	}
}

func TestJoinRetriesUntilSeedStarts(t *testing.T) {
	addr := freeAddr(t)
	logs := &recorder{}
	b := testNode(t, "b", withJoin(addr), func(o *Options) { o.Logger = slog.New(logs) })
	waitFor(t, 5*time.Second, "b's first join attempt to fail", func() bool { return logs.count("member: join failed") >= 1 })
	if b.Joined() {
		t.Fatal("b joined with nothing listening")
	}
	a := testNode(t, "a", func(o *Options) { o.BindAddr = addr })
	waitFor(t, 10*time.Second, "b to join a on retry", b.Joined)
	for _, m := range []*Membership{a, b} {
		waitFor(t, 10*time.Second, m.self+" to see a,b alive", func() bool { return aliveIDs(m) == "a,b" })
	}
}

// TestJoinGoesOnAfterAnotherNodeJoinedIt: b's seed a is not up yet when c
// joins b. b must go on trying a, or {a} and {b, c} stay two clusters for
// good (b used to stop as soon as any node had contacted it).
func TestJoinGoesOnAfterAnotherNodeJoinedIt(t *testing.T) {
	addr := freeAddr(t)
	logs := &recorder{}
	b := testNode(t, "b", withJoin(addr), func(o *Options) { o.Logger = slog.New(logs) })
	waitFor(t, 5*time.Second, "b's first join attempt to fail", func() bool { return logs.count("member: join failed") >= 1 })
	c := testNode(t, "c", withJoin(b.GossipAddr()))
	waitFor(t, 10*time.Second, "b and c to see each other", func() bool { return aliveIDs(b) == "b,c" && aliveIDs(c) == "b,c" })
	a := testNode(t, "a", func(o *Options) { o.BindAddr = addr })
	waitAllSeeAlive(t, a, b, c)
}

// WaitChange returns after each change of the members (coalesced), and a
// change made before anyone waits is kept for the first wait.
func TestWaitChange(t *testing.T) {
	var changes atomic.Int32
	watch := func(m *Membership) {
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		go func() {
			for m.WaitChange(ctx) {
				changes.Add(1)
			}
		}()
	}
	a := testNode(t, "a")
	// The local node's own arrival happened before this first wait.
	watch(a)
	waitFor(t, 5*time.Second, "a change for the local node", func() bool { return changes.Load() >= 1 })
	before := changes.Load()
	b := testNode(t, "b", withJoin(a.GossipAddr()))
	waitFor(t, 10*time.Second, "a to see b", func() bool { return statusOn(a, "b") == StatusAlive })
	waitFor(t, 5*time.Second, "a change after b joined", func() bool { return changes.Load() > before })
	before = changes.Load()
	if err := b.Leave(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, "b", StatusLeft, a)
	waitFor(t, 5*time.Second, "a change after b left", func() bool { return changes.Load() > before })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if a.WaitChange(ctx) {
		t.Error("WaitChange on an ended context reported a change")
	}
}

// book is an AddressBook that remembers what it was told.
type book struct {
	mu    sync.Mutex
	addrs map[string]string
}

func (b *book) SetAddr(id, addr string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if addr == "" {
		delete(b.addrs, id)
	} else {
		b.addrs[id] = addr
	}
}

func (b *book) get(id string) (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	addr, ok := b.addrs[id]
	return addr, ok
}

// The address book learns every member's mesh address, and forgets it
// with the member.
func TestForgetsDeadAfter24h(t *testing.T) {
	var offset atomic.Int64
	addrs := &book{addrs: map[string]string{}}
	clock := func(o *Options) {
		o.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
		o.Addresses = addrs
	}
	a := testNode(t, "a", clock)
	b := testNode(t, "b", withJoin(a.GossipAddr()))
	waitStatus(t, "b", StatusAlive, a)
	if addr, _ := addrs.get("b"); addr != "b.example:7947" {
		t.Fatalf("address book has b at %q, want its ClusterAddr", addr)
	}
	if err := b.Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, "b", StatusDead, a)
	offset.Store(int64(23 * time.Hour))
	if _, ok := a.Get("b"); !ok {
		t.Fatal("b forgotten before 24h")
	}
	offset.Store(int64(ForgetAfter + time.Minute))
	if _, ok := a.Get("b"); ok {
		t.Fatal("b still listed after 24h")
	}
	if ms := a.Members(); len(ms) != 1 || ms[0].NodeID != "a" {
		t.Fatalf("members = %+v, want only a", ms)
	}
	if addr, ok := addrs.get("b"); ok {
		t.Fatalf("address book still has forgotten b at %q", addr)
	}
}

func TestStartValidates(t *testing.T) {
	ok := Options{Meta: Meta{NodeID: "x"}, Secret: testSecret, BindAddr: "127.0.0.1:0"}
	cases := []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"no node id", func(o *Options) { o.Meta.NodeID = "" }, "NodeID is required"},
		{"no secret", func(o *Options) { o.Secret = "" }, "Secret is required"},
		{"bad profile", func(o *Options) { o.Profile = "moon" }, "not lan or wan"},
		{"meta too big", func(o *Options) { o.Meta.HTTPURL = strings.Repeat("u", 600) }, "meta exceeds"},
		{"bad bind", func(o *Options) { o.BindAddr = "127.0.0.1" }, "bind address"},
		{"bad advertise", func(o *Options) { o.AdvertiseAddr = "no-such-host.invalid" }, "cannot resolve"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			tc.edit(&o)
			m, err := Start(o)
			if err == nil {
				m.Shutdown()
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestProfilesAndAdvertise(t *testing.T) {
	var seen *memberlist.Config
	m := testNode(t, "w", func(o *Options) {
		o.Profile = "wan"
		o.AdvertiseAddr = "localhost"
		o.Tuning = func(c *memberlist.Config) { seen = c }
	})
	wan := memberlist.DefaultWANConfig()
	if seen.ProbeInterval != wan.ProbeInterval || seen.SuspicionMult != wan.SuspicionMult {
		t.Errorf("wan profile: probe %v mult %d, want %v %d", seen.ProbeInterval, seen.SuspicionMult, wan.ProbeInterval, wan.SuspicionMult)
	}
	if seen.AdvertiseAddr != "127.0.0.1" {
		t.Errorf("advertise %q, want localhost resolved to 127.0.0.1", seen.AdvertiseAddr)
	}
	if got := m.LocalNode().GossipAddr; got != m.GossipAddr() {
		t.Errorf("advertised %s, bound %s", got, m.GossipAddr())
	}
}

func TestGossipKey(t *testing.T) {
	k1, err := gossipKey(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := gossipKey(testSecret)
	k3, _ := gossipKey(testSecret + "x")
	if len(k1) != 32 || !bytes.Equal(k1, k2) || bytes.Equal(k1, k3) || bytes.Contains(k1, []byte(testSecret[:8])) {
		t.Fatalf("gossip key: len %d, stable %v, differs %v", len(k1), bytes.Equal(k1, k2), !bytes.Equal(k1, k3))
	}
}

func TestShutdownTwiceAndLeaveAlone(t *testing.T) {
	m := testNode(t, "solo")
	if err := m.Leave(time.Second); err != nil {
		t.Fatalf("leave with no peers: %v", err)
	}
	if err := m.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := m.Shutdown(); err != nil {
		t.Fatalf("second shutdown: %v", err)
	}
}

func mustGet(t *testing.T, m *Membership, id string) Member {
	t.Helper()
	mb, ok := m.Get(id)
	if !ok {
		t.Fatalf("%s does not list %s", m.self, id)
	}
	return mb
}

// freeAddr returns a loopback address whose port was free for TCP and UDP a
// moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		u, err := net.ListenPacket("udp", addr)
		l.Close()
		if err == nil {
			u.Close()
			return addr
		}
	}
	t.Fatal("no free port")
	return ""
}

// recorder is a slog.Handler that keeps record messages.
type recorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	r.msgs = append(r.msgs, rec.Message)
	r.mu.Unlock()
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

func (r *recorder) count(msg string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs {
		if m == msg {
			n++
		}
	}
	return n
}

// A wrong secret ends the join loop with Refused (the node exits),
// naming the address, once SecretMismatchFor has passed.
func TestWrongSecretIsReported(t *testing.T) {
	a := testNode(t, "a")
	b := testNode(t, "b", withJoin(a.GossipAddr()), func(o *Options) {
		o.Secret = "another-cluster-secret-of-32-bytes!!"
		o.SecretMismatchFor = 2 * time.Second
	})
	select {
	case err := <-b.Refused():
		if want := "cluster secret does not match the cluster at " + a.GossipAddr(); !strings.Contains(err.Error(), want) {
			t.Fatalf("Refused: %v, want %q", err, want)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("nothing refused 30s after a join with a wrong secret")
	}
}

// A join address that does not answer is not a wrong secret: the loop goes
// on (the seed may start later).
func TestUnreachableSeedIsNotRefused(t *testing.T) {
	l, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.LocalAddr().String()
	l.Close()
	logs := &recorder{}
	b := testNode(t, "b", withJoin(addr), func(o *Options) {
		o.SecretMismatchFor = time.Millisecond
		o.Logger = slog.New(logs)
	})
	waitFor(t, 20*time.Second, "three failed joins", func() bool { return logs.count("member: join failed") >= 3 })
	select {
	case err := <-b.Refused():
		t.Fatalf("refused for an address that does not answer: %v", err)
	default:
	}
}

// Nodes of two clusters (different cluster ids) never see each other, in
// either direction; a node without an id joins and can take one.
func TestOtherClusterIsRefused(t *testing.T) {
	withCluster := func(id string) nodeOpt { return func(o *Options) { o.Meta.Cluster = id } }
	a := testNode(t, "a", withCluster("cluster-one"))
	b := testNode(t, "b", withCluster("cluster-two"), withJoin(a.GossipAddr()))
	c := testNode(t, "c", withJoin(a.GossipAddr())) // no id yet
	waitAllSeeAlive(t, a, c)
	if got := mustGet(t, c, "a").Cluster; got != "cluster-one" {
		t.Fatalf("c sees a's cluster %q", got)
	}
	if err := c.SetCluster("cluster-one"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a to see c's cluster id", func() bool {
		m, ok := a.Get("c")
		return ok && m.Cluster == "cluster-one"
	})
	// b tried to join a: refused both ways, for as long as we look (a
	// few push/pull rounds of 500ms and gossip intervals).
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range []*Membership{a, c} {
			if _, ok := m.Get("b"); ok {
				t.Fatalf("%s lists b, a node of another cluster: %s", m.self, views(a, b, c))
			}
		}
		for _, id := range []string{"a", "c"} {
			if mm, ok := b.Get(id); ok && mm.Status == StatusAlive {
				t.Fatalf("b sees %s alive: %s", id, views(a, b, c))
			}
		}
		time.Sleep(100 * time.Millisecond) // poll interval of the watch
	}
}

// Each ack carries the sender's clock: a node whose clock runs an hour
// ahead sees a skew of about -1h, the others about 0.
func TestClockSkew(t *testing.T) {
	ahead := func(o *Options) { o.Now = func() time.Time { return time.Now().Add(time.Hour) } }
	a := testNode(t, "a")
	b := testNode(t, "b", withJoin(a.GossipAddr()))
	c := testNode(t, "c", withJoin(a.GossipAddr()), ahead)
	waitAllSeeAlive(t, a, b, c)
	// Every node measures each other within a few probe rounds; until
	// then a node may have measured only one peer.
	waitFor(t, 20*time.Second, "c to see a skew of -1h and a and b about 0", func() bool {
		s, ok := c.ClockSkew()
		if !ok || (s+time.Hour).Abs() > 2*time.Second {
			return false
		}
		for _, m := range []*Membership{a, b} {
			if s, ok := m.ClockSkew(); !ok || s.Abs() > 2*time.Second {
				return false
			}
		}
		return true
	})
}
