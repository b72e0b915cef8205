package join

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgenode/edgenode/cluster/member"
)

// fakeMembers is a membership view the tests set.
type fakeMembers struct {
	mu       sync.Mutex
	members  []member.Member
	cluster  string
	setErr   error
	sets     []string
	rejoined [][]string
}

func (f *fakeMembers) Members() []member.Member {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.members)
}

func (f *fakeMembers) Alive() []member.Member {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []member.Member
	for _, m := range f.members {
		if m.Status == member.StatusAlive {
			out = append(out, m)
		}
	}
	return out
}

func (f *fakeMembers) Cluster() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cluster
}

func (f *fakeMembers) SetCluster(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sets = append(f.sets, id)
	if f.setErr != nil {
		return f.setErr
	}
	f.cluster = id
	return nil
}

func (f *fakeMembers) Rejoin(addrs []string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rejoined = append(f.rejoined, slices.Clone(addrs))
	return len(addrs), nil
}

// fakeShards counts bootstraps.
type fakeShards struct {
	mu         sync.Mutex
	ready      bool
	bootErr    error
	bootstraps int
}

func (s *fakeShards) Ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready
}

func (s *fakeShards) Bootstrap() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bootstraps++
	return s.bootErr
}

func mem(id string, st member.Status, addr, cluster string) member.Member {
	return member.Member{Meta: member.Meta{NodeID: id, Cluster: cluster}, Status: st, GossipAddr: addr}
}

func newKeeper(t *testing.T, self string, f *fakeMembers) (*Keeper, string) {
	t.Helper()
	dir := t.TempDir()
	return New(Options{NodeID: self, DataDir: dir, Members: f, Logger: slog.New(slog.DiscardHandler)}), dir
}

func readPeersFile(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, PeersFile))
	if err != nil {
		t.Fatal(err)
	}
	var addrs []string
	if err := json.Unmarshal(b, &addrs); err != nil {
		t.Fatalf("peers file %q: %v", b, err)
	}
	return addrs
}

func keptClusterID(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, ClusterIDFile))
	if errors.Is(err, os.ErrNotExist) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestPeersFileRoundTrip(t *testing.T) {
	f := &fakeMembers{members: []member.Member{
		mem("a", member.StatusAlive, "10.0.0.1:7946", ""), // self
		mem("c", member.StatusDead, "10.0.0.3:7946", ""),
		mem("b", member.StatusAlive, "10.0.0.2:7946", ""),
		mem("d", member.StatusLeft, "10.0.0.4:7946", ""),
		mem("e", member.StatusSuspect, "", ""),
		mem("f", member.StatusAlive, "10.0.0.2:7946", ""), // same address as b
	}}
	k, dir := newKeeper(t, "a", f)
	k.RememberPeers()
	// Others that have not left, with an address, sorted, once each.
	want := []string{"10.0.0.2:7946", "10.0.0.3:7946"}
	if got := readPeersFile(t, dir); !slices.Equal(got, want) {
		t.Fatalf("peers file %v, want %v", got, want)
	}
	// Given first, in order, then the remembered ones they lack.
	got := Addrs(dir, []string{"seed:7946", "10.0.0.3:7946"})
	if want := []string{"seed:7946", "10.0.0.3:7946", "10.0.0.2:7946"}; !slices.Equal(got, want) {
		t.Fatalf("Addrs = %v, want %v", got, want)
	}
	if got := Addrs(dir, nil); !slices.Equal(got, want) {
		t.Fatalf("Addrs without --join = %v, want %v", got, want)
	}

	// Alone (every other member left): what it knew is kept.
	f.members = []member.Member{mem("a", member.StatusAlive, "10.0.0.1:7946", ""), mem("b", member.StatusLeft, "10.0.0.2:7946", "")}
	k.RememberPeers()
	if got := readPeersFile(t, dir); !slices.Equal(got, want) {
		t.Fatalf("peers file after everyone left %v, want %v kept", got, want)
	}
	// A change is saved.
	f.members = []member.Member{mem("g", member.StatusAlive, "10.0.0.9:7946", "")}
	k.RememberPeers()
	if got := readPeersFile(t, dir); !slices.Equal(got, []string{"10.0.0.9:7946"}) {
		t.Fatalf("peers file after a change %v", got)
	}
}

func TestPeersFileUnchangedIsNotRewritten(t *testing.T) {
	f := &fakeMembers{members: []member.Member{mem("b", member.StatusAlive, "10.0.0.2:7946", "")}}
	k, dir := newKeeper(t, "a", f)
	k.RememberPeers()
	path := filepath.Join(dir, PeersFile)
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	k.RememberPeers()
	if st, err := os.Stat(path); err != nil || !st.ModTime().Equal(old) {
		t.Fatalf("an unchanged peers file was rewritten (%v, %v)", st.ModTime(), err)
	}
}

func TestPeersFileBounds(t *testing.T) {
	var ms []member.Member
	for i := range MaxPeers + 10 {
		ms = append(ms, mem(fmt.Sprintf("n%03d", i), member.StatusAlive, fmt.Sprintf("10.0.%d.%d:7946", i/200, i%200), ""))
	}
	k, dir := newKeeper(t, "self", &fakeMembers{members: ms})
	k.RememberPeers()
	saved := readPeersFile(t, dir)
	if len(saved) != MaxPeers || !slices.IsSorted(saved) {
		t.Fatalf("saved %d addresses (sorted: %v), want the first %d", len(saved), slices.IsSorted(saved), MaxPeers)
	}

	// A file with more addresses than the bound gives MaxPeers of them.
	path := filepath.Join(dir, PeersFile)
	var many []string
	for i := range MaxPeers * 2 {
		many = append(many, fmt.Sprintf("h%d:1", i))
	}
	b, _ := json.Marshal(many)
	os.WriteFile(path, b, 0o600)
	if got := Addrs(dir, []string{"seed:1"}); len(got) != 1+MaxPeers || got[0] != "seed:1" || got[1] != "h0:1" {
		t.Fatalf("Addrs from a long file: %d addresses, starting %v", len(got), got[:2])
	}

	// Too large, malformed, or missing: nothing remembered.
	huge := `["` + strings.Repeat("x", maxPeersFileBytes) + `"]`
	for name, content := range map[string]string{"too large": huge, "malformed": "{not json", "not strings": "[1,2]"} {
		os.WriteFile(path, []byte(content), 0o600)
		if got := Addrs(dir, []string{"seed:1"}); !slices.Equal(got, []string{"seed:1"}) {
			t.Errorf("%s peers file: Addrs = %.60v, want only the given", name, got)
		}
	}
	if got := Addrs(t.TempDir(), nil); len(got) != 0 {
		t.Errorf("no peers file: Addrs = %v", got)
	}
}

func TestDecideBootstrap(t *testing.T) {
	alive := func(ids ...string) []member.Member {
		var out []member.Member
		for _, s := range ids {
			id, cluster, _ := strings.Cut(s, "@") // "b@k1": b, of cluster k1
			out = append(out, mem(id, member.StatusAlive, "", cluster))
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		self   string
		alive  []member.Member
		expect int
		want   bootstrapDecision
	}{
		{"too few", "a", alive("a", "b"), 3, bootstrapDecision{action: wait}},
		{"none", "a", nil, 3, bootstrapDecision{action: wait}},
		{"lowest bootstraps", "a", alive("b", "a", "c"), 3, bootstrapDecision{action: bootstrap}},
		{"more than expected", "a", alive("a", "b", "c", "d"), 3, bootstrapDecision{action: bootstrap}},
		{"not the lowest", "b", alive("a", "b", "c"), 3, bootstrapDecision{action: stayJoiner}},
		{"a member of a cluster", "a", alive("a", "b@k1", "c"), 3, bootstrapDecision{action: joinExisting, member: "b", cluster: "k1"}},
		{"own id is no cluster", "a", alive("a@k1", "b", "c"), 3, bootstrapDecision{action: bootstrap}},
	} {
		if got := decideBootstrap(tc.self, tc.alive, tc.expect); got != tc.want {
			t.Errorf("%s: decideBootstrap = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func aliveSet(ids ...string) []member.Member {
	var out []member.Member
	for _, id := range ids {
		out = append(out, mem(id, member.StatusAlive, id+":7946", ""))
	}
	return out
}

func TestBootstrapWhenExpectedLowestBootstraps(t *testing.T) {
	f := &fakeMembers{members: aliveSet("a", "b")}
	k, dir := newKeeper(t, "a", f)
	shards := &fakeShards{}
	if k.bootstrapStep(shards, 3) {
		t.Fatal("decided with 2 of 3 nodes alive")
	}
	f.members = aliveSet("a", "b", "c")
	if !k.bootstrapStep(shards, 3) {
		t.Fatal("not decided with 3 of 3 alive")
	}
	if shards.bootstraps != 1 {
		t.Fatalf("bootstrapped %d times, want 1", shards.bootstraps)
	}
	id := keptClusterID(t, dir)
	if id == "" || !slices.Equal(f.sets, []string{id}) {
		t.Fatalf("cluster id kept %q, gossiped %v", id, f.sets)
	}
}

func TestBootstrapWhenExpectedOthersStayJoiners(t *testing.T) {
	f := &fakeMembers{members: aliveSet("a", "b", "c")}
	k, dir := newKeeper(t, "b", f)
	shards := &fakeShards{}
	if !k.bootstrapStep(shards, 3) {
		t.Fatal("not decided")
	}
	if shards.bootstraps != 0 || len(f.sets) != 0 || keptClusterID(t, dir) != "" {
		t.Fatalf("a node without the lowest id bootstrapped %d times, set %v", shards.bootstraps, f.sets)
	}
}

func TestBootstrapWhenExpectedJoinsAnExistingCluster(t *testing.T) {
	// This node has the lowest id but a member already belongs to a
	// cluster (this node's data dir was wiped): it joins, never bootstraps.
	f := &fakeMembers{members: aliveSet("a", "b", "c")}
	f.members[2].Cluster = "k1"
	k, dir := newKeeper(t, "a", f)
	shards := &fakeShards{ready: true}
	if !k.bootstrapStep(shards, 3) {
		t.Fatal("not decided")
	}
	if shards.bootstraps != 0 {
		t.Fatal("bootstrapped beside an existing cluster")
	}
	if id := keptClusterID(t, dir); id != "k1" || !slices.Equal(f.sets, []string{"k1"}) {
		t.Fatalf("adopted %q, gossiped %v; want k1", id, f.sets)
	}
}

func TestBootstrapFailureKeepsNoClusterID(t *testing.T) {
	f := &fakeMembers{members: aliveSet("a", "b")}
	k, dir := newKeeper(t, "a", f)
	shards := &fakeShards{bootErr: errors.New("disk full")}
	if !k.bootstrapStep(shards, 2) {
		t.Fatal("a failed bootstrap is retried")
	}
	if len(f.sets) != 0 || keptClusterID(t, dir) != "" {
		t.Fatalf("a failed bootstrap kept a cluster id (%v)", f.sets)
	}
}

func TestBootstrapWhenExpectedLoop(t *testing.T) {
	f := &fakeMembers{members: aliveSet("a", "b")}
	k, _ := newKeeper(t, "a", f)
	shards := &fakeShards{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { k.BootstrapWhenExpected(ctx, shards, 2); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("BootstrapWhenExpected did not return once expect nodes were alive")
	}
	if shards.bootstraps != 1 {
		t.Fatalf("bootstrapped %d times", shards.bootstraps)
	}
	// Waiting, it ends with ctx.
	f.members = aliveSet("a")
	done = make(chan struct{})
	go func() { k.BootstrapWhenExpected(ctx, shards, 2); close(done) }()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("BootstrapWhenExpected outlived its context")
	}
}

func TestAdoptCluster(t *testing.T) {
	withClusters := func(clusters map[string]string, ids ...string) *fakeMembers {
		f := &fakeMembers{members: aliveSet(ids...)}
		for i := range f.members {
			f.members[i].Cluster = clusters[f.members[i].NodeID]
		}
		return f
	}
	t.Run("one id among the members", func(t *testing.T) {
		f := withClusters(map[string]string{"b": "k1", "c": "k1"}, "a", "b", "c")
		k, dir := newKeeper(t, "a", f)
		k.AdoptCluster(&fakeShards{})
		if id := keptClusterID(t, dir); id != "k1" || f.Cluster() != "k1" {
			t.Fatalf("kept %q, gossips %q; want k1", id, f.Cluster())
		}
	})
	t.Run("members disagree", func(t *testing.T) {
		f := withClusters(map[string]string{"b": "k1", "c": "k2"}, "a", "b", "c")
		k, dir := newKeeper(t, "a", f)
		k.AdoptCluster(&fakeShards{ready: true})
		if id := keptClusterID(t, dir); id != "" || len(f.sets) != 0 {
			t.Fatalf("joined %q (%v) of two clusters", id, f.sets)
		}
	})
	t.Run("has one already", func(t *testing.T) {
		f := withClusters(map[string]string{"b": "k1"}, "a", "b")
		f.cluster = "k0"
		k, dir := newKeeper(t, "a", f)
		k.AdoptCluster(&fakeShards{ready: true})
		if len(f.sets) != 0 || keptClusterID(t, dir) != "" {
			t.Fatalf("replaced its cluster id: %v", f.sets)
		}
	})
	t.Run("no member has one: the lowest makes one once ready", func(t *testing.T) {
		f := withClusters(nil, "a", "b")
		k, dir := newKeeper(t, "a", f)
		shards := &fakeShards{}
		k.AdoptCluster(shards)
		if len(f.sets) != 0 {
			t.Fatal("made a cluster id before every shard had a leader")
		}
		shards.ready = true
		k.AdoptCluster(shards)
		if id := keptClusterID(t, dir); id == "" || !slices.Equal(f.sets, []string{id}) {
			t.Fatalf("kept %q, gossiped %v", id, f.sets)
		}
	})
	t.Run("no member has one: others wait", func(t *testing.T) {
		f := withClusters(nil, "a", "b")
		k, _ := newKeeper(t, "b", f)
		k.AdoptCluster(&fakeShards{ready: true})
		if len(f.sets) != 0 {
			t.Fatalf("a node without the lowest id made a cluster id: %v", f.sets)
		}
	})
}

func TestRejoinDead(t *testing.T) {
	f := &fakeMembers{members: []member.Member{
		mem("a", member.StatusAlive, "10.0.0.1:7946", ""),
		mem("b", member.StatusDead, "10.0.0.2:7946", ""),
		mem("c", member.StatusLeft, "10.0.0.3:7946", ""),
		mem("d", member.StatusDead, "", ""),
		mem("e", member.StatusDead, "10.0.0.5:7946", ""),
	}}
	k, _ := newKeeper(t, "a", f)
	k.RejoinDead()
	if want := [][]string{{"10.0.0.2:7946", "10.0.0.5:7946"}}; !slices.EqualFunc(f.rejoined, want, slices.Equal) {
		t.Fatalf("rejoined %v, want %v", f.rejoined, want)
	}
	f.members = f.members[:1]
	k.RejoinDead()
	if len(f.rejoined) != 1 {
		t.Fatalf("contacted someone with no dead member: %v", f.rejoined)
	}
}

func TestClusterID(t *testing.T) {
	dir := t.TempDir()
	if id, err := ClusterID(dir, false, nil); err != nil || id != "" {
		t.Fatalf("joining node: ClusterID = %q, %v; want none", id, err)
	}
	id, err := ClusterID(dir, true, nil)
	if err != nil || len(id) != 16 || keptClusterID(t, dir) != id {
		t.Fatalf("new cluster: ClusterID = %q, %v; kept %q", id, err, keptClusterID(t, dir))
	}
	if again, err := ClusterID(dir, true, nil); err != nil || again != id {
		t.Fatalf("restart: ClusterID = %q, %v; want the kept %q", again, err, id)
	}
}

func TestHost(t *testing.T) {
	for _, tc := range []struct{ advertise, bind, want string }{
		{"node1.example", ":7946", "node1.example"},
		{"10.1.2.3:9999", "127.0.0.1:0", "10.1.2.3"},
		{"", "192.168.1.5:7946", "192.168.1.5"},
		{"", "[fd00::1]:7946", "fd00::1"},
	} {
		if got := Host(tc.advertise, tc.bind); got != tc.want {
			t.Errorf("Host(%q, %q) = %q, want %q", tc.advertise, tc.bind, got, tc.want)
		}
	}
	// Bound to every interface: some address of this host, never empty.
	for _, bind := range []string{":7946", "0.0.0.0:7946", "[::]:7946", ""} {
		if got := Host("", bind); got == "" || net.ParseIP(got) == nil {
			t.Errorf("Host(\"\", %q) = %q, want an IP", bind, got)
		}
	}
	if got := Advertised("", "127.0.0.1:0", "127.0.0.1:45678"); got != "127.0.0.1:45678" {
		t.Errorf("Advertised = %q, want the bound port", got)
	}
	if got := Advertised("fd00::2", ":0", "[::]:4433"); got != "[fd00::2]:4433" {
		t.Errorf("Advertised = %q", got)
	}
}

func TestPickIP(t *testing.T) {
	ips := func(s ...string) []net.IP {
		var out []net.IP
		for _, a := range s {
			out = append(out, net.ParseIP(a))
		}
		return out
	}
	for _, tc := range []struct {
		ips  []net.IP
		want string
	}{
		{ips("8.8.8.8", "fd00::1", "10.0.0.7"), "10.0.0.7"},
		{ips("8.8.8.8", "fd00::1"), "fd00::1"},
		{ips("2001:db8::1", "8.8.8.8"), "8.8.8.8"},
		{ips("2001:db8::1", "fe80::1"), "2001:db8::1"},
		{ips("fe80::1", "169.254.1.1"), ""},
	} {
		if got := pickIP(tc.ips); got != tc.want {
			t.Errorf("pickIP(%v) = %q, want %q", tc.ips, got, tc.want)
		}
	}
}
