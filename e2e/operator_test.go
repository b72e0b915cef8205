package e2e

// Operator faults (issue "Safe under operator faults"): a damaged raft log,
// a cluster secret given only once or wrongly, and a data dir others could
// tamper with, each tried on the real binary.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// lastSegment is the newest segment file of a node's write-ahead log.
func lastSegment(t *testing.T, dataDir string) string {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dataDir, "relaylog", "wal", "*.wal"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("no WAL segment in %s: %v", dataDir, err)
	}
	slices.Sort(segs)
	return segs[len(segs)-1]
}

// written is len(b) without its trailing zeros (a segment is preallocated).
func written(b []byte) int {
	n := len(b)
	for n > 0 && b[n-1] == 0 {
		n--
	}
	return n
}

// refusedStart starts p, which must not start (because of what), and
// checks that the end of its log says why.
func refusedStart(t *testing.T, p *proc, what, says string) {
	t.Helper()
	if err := p.tryStart(); err == nil {
		p.stop()
		t.Fatalf("a node started with %s", what)
	}
	if !strings.Contains(p.tail(5), says) {
		t.Errorf("%s: the log does not say %q: %s", what, says, p.tail(5))
	}
}

// kill SIGKILLs p and waits for it to exit.
func kill(t *testing.T, p *proc) {
	t.Helper()
	p.signal(syscall.SIGKILL)
	if _, ok := p.wait(10 * time.Second); !ok {
		t.Fatalf("%s did not die of SIGKILL", p.name)
	}
}

// TestProcessDamagedWAL: one node of three has its raft log damaged while
// it is down. A record whose end never reached the disk (a power cut in
// the middle of the last write) is dropped silently and the node rejoins.
// A byte flipped in the middle of the last segment, with acknowledged
// records after it, stops the node with the documented message; after
// `edgenode repair-wal` it starts, catches up from the other two, and no
// message answered 201 is lost or duplicated.
func TestProcessDamagedWAL(t *testing.T) {
	c := startProcCluster(t, "eu", "us", "ap")
	c.startLoad()
	victim := c.procs[2]

	// 1. A torn last write: the last record's final bytes are zeros.
	kill(t, victim)
	seg := lastSegment(t, victim.dir)
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	end := written(b)
	clear(b[end-3 : end])
	if err := os.WriteFile(seg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	c.restart(victim)
	if !strings.Contains(victim.tail(400), "dropping the torn tail") {
		t.Errorf("%s started, but its log does not say it dropped a torn tail:\n%s", victim.name, victim.tail(30))
	}
	c.waitHealthy(victim.name+" back after a torn write", "")
	c.runPhase("torn tail")
	c.check("a torn tail on " + victim.name)

	// 2. A byte flipped inside a message in the middle of the last
	// segment: corruption, not a torn write.
	c.runPhase("more records in the new segment")
	kill(t, victim)
	seg = lastSegment(t, victim.dir)
	if b, err = os.ReadFile(seg); err != nil {
		t.Fatal(err)
	}
	end = written(b)
	var at []int
	for i := 0; ; {
		k := bytes.Index(b[i:end], []byte("e2e s"))
		if k < 0 {
			break
		}
		at = append(at, i+k)
		i += k + 1
	}
	if len(at) < 10 {
		t.Fatalf("only %d messages in %s (%d bytes written)", len(at), seg, end)
	}
	flip := at[len(at)/2] + 1 // the "2" of "e2e s...", inside the record
	b[flip] ^= 0x01
	if err := os.WriteFile(seg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := victim.tryStart(); err == nil {
		t.Fatalf("%s started on a raft log with a flipped byte at offset %d of %s", victim.name, flip, seg)
	}
	exitErr, _ := victim.wait(time.Second)
	var ee *exec.ExitError
	if !errors.As(exitErr, &ee) || ee.ExitCode() == 0 {
		t.Errorf("%s: exit %v, want a non-zero status", victim.name, exitErr)
	}
	log := victim.tail(20)
	for _, want := range []string{"corrupt record in " + seg, "edgenode repair-wal --data-dir " + victim.dir} {
		if !strings.Contains(log, want) {
			t.Errorf("%s's refusal does not say %q:\n%s", victim.name, want, log)
		}
	}
	t.Logf("%s refused to start in %v: %s", victim.name, time.Since(start).Round(time.Millisecond), lastLines(log, 3))

	out, err := exec.Command(binary, "repair-wal", "--data-dir", victim.dir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "cut the raft log") {
		t.Fatalf("edgenode repair-wal: %v\n%s", err, out)
	}
	t.Logf("repair-wal: %s", lastLines(string(out), 3))
	out, err = exec.Command(binary, "repair-wal", "--data-dir", victim.dir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "nothing cut") {
		t.Fatalf("edgenode repair-wal again: %v\n%s", err, out)
	}
	c.restart(victim)
	c.waitHealthy(victim.name+" back after repair-wal", "")
	c.runPhase("after repair-wal")
	c.finish()
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, " | ")
}

// alive reports whether the node at addr lists id as alive.
func aliveAt(addr, id string) (bool, string) {
	ms, err := membersAt(addr)
	if err != nil {
		return false, err.Error()
	}
	for _, m := range ms {
		if m.NodeID == id {
			return m.Status == "alive", fmtMembers(ms)
		}
	}
	return false, fmtMembers(ms)
}

// TestProcessClusterSecretKept: a node that joined with the secret in
// EDGENODE_CLUSTER_SECRET keeps it (0600 in its data dir) and rejoins after
// a restart without it; a node with a wrong secret exits non-zero within
// 60 s saying so.
func TestProcessClusterSecretKept(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real edgenode processes")
	}
	base := t.TempDir()
	a := newProc(t, base, "a-eu", "eu")
	a.start()
	t.Cleanup(a.stop)
	b := newProc(t, base, "b-us", "us")
	b.join, b.secretVia = a.gossipAddr(), "env"
	b.start()
	t.Cleanup(b.stop)
	waitFor(t, "a to see b alive", 30*time.Second, func() (bool, string) { return aliveAt(a.adminAddr(), b.id) })

	path := filepath.Join(b.dir, "cluster-secret")
	info, err := os.Lstat(path)
	kept, _ := os.ReadFile(path)
	if err != nil || !info.Mode().IsRegular() || info.Mode().Perm() != 0o600 || strings.TrimSpace(string(kept)) != clusterSecret {
		t.Fatalf("the secret from the environment is not kept in %s: %v %v %q", path, err, info, kept)
	}
	b.signal(syscall.SIGTERM)
	if err, ok := b.wait(45 * time.Second); !ok || err != nil {
		t.Fatalf("b after SIGTERM: exited %v, %v", ok, err)
	}
	b.secretVia = "none"
	b.start()
	waitFor(t, "a to see b alive again after its restart without the secret", 30*time.Second, func() (bool, string) { return aliveAt(a.adminAddr(), b.id) })

	w := newProc(t, base, "w-ap", "ap")
	w.join, w.secret = a.gossipAddr(), "a-wrong-cluster-secret-0123456789abcdef"
	start := time.Now()
	if err := w.tryStart(); err != nil && !strings.Contains(w.tail(50), "cluster secret does not match") {
		t.Fatal(err)
	}
	t.Cleanup(w.stop)
	exitErr, exited := w.wait(75*time.Second - time.Since(start))
	took := time.Since(start)
	if !exited {
		t.Fatalf("a node with a wrong secret still runs %v after its start:\n%s", took.Round(time.Second), w.tail(20))
	}
	var ee *exec.ExitError
	if !errors.As(exitErr, &ee) || ee.ExitCode() == 0 {
		t.Errorf("wrong secret: exit %v, want a non-zero status", exitErr)
	}
	if want := "cluster secret does not match the cluster at " + a.gossipAddr(); !strings.Contains(w.tail(20), want) {
		t.Errorf("wrong secret: the log does not say %q:\n%s", want, w.tail(20))
	}
	if took > 60*time.Second {
		t.Errorf("wrong secret: exited after %v, want within 60s", took.Round(time.Second))
	}
	t.Logf("a node with a wrong secret exited after %v: %s", took.Round(time.Millisecond), lastLines(w.tail(5), 1))
	if ok, saw := aliveAt(a.adminAddr(), b.id); !ok {
		t.Errorf("b is not alive at a after all this: %s", saw)
	}
}

// TestProcessDataDirChecked: a data dir another user could write, or a
// secret file that is a symbolic link, stops the node with a clear error;
// a link planted where the node writes its files is never followed; and
// everything the node writes is 0600 in 0700 dirs (files an older build
// left readable are tightened).
func TestProcessDataDirChecked(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real edgenode processes")
	}
	base := t.TempDir()
	target := filepath.Join(base, "attacker-file")
	if err := os.WriteFile(target, []byte("attacker\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// A world-writable data dir.
	ww := newProc(t, base, "world-writable", "eu")
	if err := os.MkdirAll(ww.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	os.Chmod(ww.dir, 0o777)
	refusedStart(t, ww, "a world-writable data dir", "writable by its group or others")

	// A planted link as the cluster secret.
	pl := newProc(t, base, "planted", "eu")
	os.MkdirAll(pl.dir, 0o700)
	os.Symlink(target, filepath.Join(pl.dir, "cluster-secret"))
	pl.secretVia = "none"
	refusedStart(t, pl, "a cluster-secret that is a symbolic link", "symbolic link")

	// Links planted where the node writes its files: removed, not followed.
	p := newProc(t, base, "links", "eu")
	os.MkdirAll(p.dir, 0o700)
	for _, f := range []string{"cluster-secret.tmp", "node-id.tmp", "jwt-secret.tmp"} {
		if err := os.Symlink(target, filepath.Join(p.dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	p.start()
	t.Cleanup(p.stop)
	if b, _ := os.ReadFile(target); string(b) != "attacker\n" {
		t.Fatalf("the node wrote through a planted link: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(p.dir, "cluster-secret")); strings.TrimSpace(string(b)) != clusterSecret {
		t.Fatalf("cluster-secret holds %q", b)
	}

	// Modes: every file 0600-like, every dir 0700-like.
	checkModes := func(when string) {
		t.Helper()
		filepath.WalkDir(p.dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			info, err := d.Info()
			if err != nil || d.Type()&fs.ModeSymlink != 0 {
				return nil
			}
			if info.Mode().Perm()&0o077 != 0 {
				t.Errorf("%s: %s is %04o, want no group or other permissions", when, path, info.Mode().Perm())
			}
			return nil
		})
	}
	checkModes("a new node")
	p.stop()
	old := filepath.Join(p.dir, "relaylog", "relaylog.json")
	os.Chmod(old, 0o644)
	os.Chmod(filepath.Join(p.dir, "relaylog"), 0o755)
	p.start()
	checkModes("a restart over files left 0644 in 0755 dirs")
	if !strings.Contains(p.tail(100), "removed group and other permissions") {
		t.Errorf("the restart did not say it tightened permissions:\n%s", p.tail(20))
	}
}

// appliedIndexes reads edgenode_raft_applied_index{shard} from a node.
func appliedIndexes(p *proc) (map[string]string, error) {
	resp, err := httpShort.Get(p.url() + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(l, `edgenode_raft_applied_index{shard="`)
		if !ok {
			continue
		}
		shard, v, ok := strings.Cut(rest, `"} `)
		if ok {
			out[shard] = v
		}
	}
	return out, nil
}

// TestProcessRecoverLostMajority: two of three nodes are lost for good, so
// every shard lost its majority. With the survivor stopped, `edgenode
// recover-shard --all` makes it the only voter of every shard; it starts,
// leads them all, two new nodes join and get replicas, and every message
// acknowledged before the loss (all of them on the survivor, which had
// applied every shard's log) is delivered exactly once.
func TestProcessRecoverLostMajority(t *testing.T) {
	c := startProcCluster(t, "eu", "us", "ap")
	c.startLoad()
	c.runPhase("before the loss")
	c.load.Stop()
	waitFor(t, "every node to have applied every shard's log", 30*time.Second, func() (bool, string) {
		var first map[string]string
		for _, p := range c.procs {
			a, err := appliedIndexes(p)
			if err != nil || len(a) != shardCount {
				return false, fmt.Sprintf("%s: %d shards, %v", p.name, len(a), err)
			}
			if first == nil {
				first = a
				continue
			}
			for s, v := range a {
				if first[s] != v {
					return false, fmt.Sprintf("shard %s: %s has %s, %s has %s", s, c.procs[0].name, first[s], p.name, v)
				}
			}
		}
		return true, ""
	})
	survivor := c.procs[0]
	for _, p := range c.procs[1:] {
		kill(t, p)
	}
	kill(t, survivor)

	out, err := exec.Command(binary, "recover-shard", "--all", "--data-dir", survivor.dir).CombinedOutput()
	if err != nil || strings.Count(string(out), "is now its only voter") != shardCount {
		t.Fatalf("edgenode recover-shard --all: %v\n%s", err, out)
	}
	t.Logf("recover-shard: %s", lastLines(string(out), 2))
	c.supervise(survivor)
	waitFor(t, survivor.name+" to lead every shard alone", 30*time.Second, func() (bool, string) {
		code, err := httpGet(survivor.url() + "/readyz")
		return code == 200, fmt.Sprint(code, err)
	})
	for i, r := range []string{"us", "ap"} {
		p := newProc(t, c.base, fmt.Sprintf("n%d-%s-new", 4+i, r), r)
		p.join = survivor.gossipAddr()
		c.procs = append(c.procs, p)
		p.start()
	}
	c.waitHealthy("three voters again on the survivor and two new nodes", "")
	c.check("the recovery of every shard from its last voter")
}

// TestProcessWipedVoterCannotElectAStaleLeader: the lost-volume scenario of
// the Kubernetes manifests (a fixed --node-id). B is cut off (SIGSTOP)
// while messages are committed on A and C; then A and C die, C's data dir
// is wiped and C restarts empty under its old node id, still a voter in
// every shard's configuration; B comes back. B lacks the newest messages
// and must not win any shard with the vote of an empty C: the shards stay
// without a leader until A returns. Then C is a new incarnation to the
// cluster: its old replica is demoted, and it is promoted again only after
// catching up. No message answered 201 is lost or duplicated.
func TestProcessWipedVoterCannotElectAStaleLeader(t *testing.T) {
	c := startProcCluster(t, "eu", "us", "ap")
	a, b, cc := c.procs[0], c.procs[1], c.procs[2]
	cc.fixedID = true
	c.startLoad()
	oldInc := incarnationAt(t, a, cc.id)

	b.signal(syscall.SIGSTOP)
	c.stopped[b] = true
	c.runPhase("B cut off: messages committed on A and C only")
	// The highest term of each shard before B resumes: B, paused, still
	// names the leader it last heard from, in an older term, until its
	// election timeout. Only a leader in a later term was elected since.
	before := map[int]uint64{}
	for _, p := range []*proc{a, cc} {
		ss, err := shardsAt(p.adminAddr())
		if err != nil {
			t.Fatalf("shards at %s: %v", p.name, err)
		}
		for _, s := range ss {
			before[s.Shard] = max(before[s.Shard], s.Term)
		}
	}
	kill(t, a)
	kill(t, cc)
	if err := os.RemoveAll(cc.dir); err != nil {
		t.Fatal(err)
	}
	cc.join = b.gossipAddr()
	b.signal(syscall.SIGCONT)
	delete(c.stopped, b)
	c.supervise(cc)

	// B and an empty C: no shard may get a leader. Watched for 20 raft
	// election timeouts (500 ms each).
	lostAt := time.Now()
	for time.Since(lostAt) < 10*time.Second {
		for _, p := range []*proc{b, cc} {
			if ss, err := shardsAt(p.adminAddr()); err == nil {
				for _, s := range ss {
					if s.Leader != "" && s.Term > before[s.Shard] {
						t.Fatalf("shard %d elected %s in term %d (was %d) with A down and C wiped (B lacks A's and C's last entries): %s", s.Shard, s.Leader, s.Term, before[s.Shard], fmtShards(ss))
					}
				}
			}
		}
		time.Sleep(250 * time.Millisecond) // poll interval of the watch
	}
	if !strings.Contains(cc.tail(400), "edgenode serving") {
		t.Fatalf("the wiped node did not start:\n%s", cc.tail(20))
	}

	// A returns with its data: it wins; C's old replica is demoted, C's new
	// incarnation is added as a non-voter and promoted once caught up.
	fromA, fromB := logSize(a), logSize(b)
	c.restart(a)
	c.waitHealthy("A back: every shard led again, C caught up", "")
	newInc := incarnationAt(t, a, cc.id)
	if newInc == "" || newInc == oldInc {
		t.Fatalf("C's incarnation after the wipe is %q (before: %q)", newInc, oldInc)
	}
	// Leaders log each step; every shard goes through demotion, re-adding
	// and promotion of C (3 nodes: C is a voter of every shard). Healthy
	// above cannot tell C's old replica from its new one (same node id), so
	// a shard whose election after A's return took longer may still be on
	// its way.
	steps := []string{"demoting the replica it lost", "adding the new incarnation of the node as non-voter", "promoting voter"}
	took := waitFor(t, "every shard to demote C's lost replica, add and promote its new one", 60*time.Second, func() (bool, string) {
		logs := logSince(a, fromA) + "\n" + logSince(b, fromB)
		var seen []string
		done := true
		for _, step := range steps {
			n := len(shardsLogged(logs, step, "node="+cc.id))
			seen = append(seen, fmt.Sprintf("%q in %d of %d shards", step, n, len(before)))
			done = done && n == len(before)
		}
		return done, strings.Join(seen, ", ")
	})
	t.Logf("every shard replaced C's replica %v after A was healthy", took.Round(time.Millisecond))
	c.runPhase("after A's return")
	c.finish()
}

// incarnationAt is node id's incarnation as p's members view shows it.
func incarnationAt(t *testing.T, p *proc, id string) string {
	t.Helper()
	ms, err := membersAt(p.adminAddr())
	if err != nil {
		t.Fatalf("members at %s: %v", p.name, err)
	}
	for _, m := range ms {
		if m.NodeID == id {
			return m.Inc
		}
	}
	t.Fatalf("%s does not list %s: %s", p.name, id, fmtMembers(ms))
	return ""
}

// logSize is the length of p's log so far.
func logSize(p *proc) int64 {
	fi, err := os.Stat(p.logPath)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logSince is p's log from byte off on.
func logSince(p *proc, off int64) string {
	b, _ := os.ReadFile(p.logPath)
	if off > int64(len(b)) {
		return ""
	}
	return string(b[off:])
}

// shardsLogged is the set of shards (their "shard=" field) of the lines of
// logs holding every one of parts.
func shardsLogged(logs string, parts ...string) map[string]bool {
	shards := map[string]bool{}
	for line := range strings.SplitSeq(logs, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if !all {
			continue
		}
		if _, rest, ok := strings.Cut(line, " shard="); ok {
			shard, _, _ := strings.Cut(rest, " ")
			shards[shard] = true
		}
	}
	return shards
}

// clusterIDOf reads the cluster id a node keeps in its data dir.
func clusterIDOf(p *proc) string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "cluster-id"))
	return strings.TrimSpace(string(b))
}

// TestProcessBlankNodeNeverStartsASecondCluster: with the flags the
// Kubernetes manifests give every pod (--bootstrap-expect 3, --join, a fixed
// node id), (1) the node with the lowest id has its data dir wiped and
// restarts unchanged, and (2) a new blank node whose id sorts first starts
// next to the running cluster. Neither bootstraps shards of its own: both
// see members of an existing cluster, join it and take its cluster id; the
// cluster stays one, and no acknowledged message is lost or duplicated.
func TestProcessBlankNodeNeverStartsASecondCluster(t *testing.T) {
	c := startProcCluster(t, "eu", "us", "ap")
	want := clusterIDOf(c.procs[0])
	if len(want) < 8 {
		t.Fatalf("the first node kept no cluster id (%q)", want)
	}
	waitFor(t, "every node to keep the cluster id", 30*time.Second, func() (bool, string) {
		for _, p := range c.procs {
			if got := clusterIDOf(p); got != want {
				return false, fmt.Sprintf("%s has %q, want %q", p.name, got, want)
			}
		}
		return true, ""
	})
	c.startLoad()

	// (1) The lowest node id, wiped, restarted as a pod would be.
	lowest := c.procs[0]
	for _, p := range c.procs {
		if p.id < lowest.id {
			lowest = p
		}
	}
	kill(t, lowest)
	if err := os.RemoveAll(lowest.dir); err != nil {
		t.Fatal(err)
	}
	lowest.fixedID = true
	lowest.extra = []string{"--bootstrap-expect", "3"}
	for _, p := range c.procs {
		if p != lowest {
			lowest.join = p.gossipAddr()
			break
		}
	}
	c.restart(lowest)
	c.waitHealthy(lowest.name+" back empty under its id: one cluster, every shard replicated", "")
	// The cluster can look healthy before the restarted node has decided
	// (it logs its decision a moment after it serves): wait for it.
	waitFor(t, lowest.name+" to decide to join", 30*time.Second, func() (bool, string) {
		log := lowest.tail(400)
		return strings.Contains(log, "joining it instead of bootstrapping") || strings.Contains(log, "bootstrapping the shards"), ""
	})
	if log := lowest.tail(400); strings.Contains(log, "bootstrapping the shards") {
		t.Fatalf("%s (wiped, --bootstrap-expect 3, lowest id) did not join the existing cluster:\n%s", lowest.name, lowest.tail(30))
	}
	waitFor(t, lowest.name+" to take the cluster's id", 30*time.Second, func() (bool, string) {
		got := clusterIDOf(lowest)
		return got == want, got
	})
	c.runPhase("after the wiped node's return")

	// (2) A new blank node whose id sorts before every other.
	fresh := newProc(t, c.base, "n4-eu-new", "eu")
	fresh.id, fresh.fixedID = "0-fresh", true
	fresh.extra = []string{"--bootstrap-expect", "3"}
	fresh.join = c.procs[1].gossipAddr()
	c.procs = append(c.procs, fresh)
	fresh.start()
	waitFor(t, "the new node to join the cluster", 30*time.Second, func() (bool, string) {
		got := clusterIDOf(fresh)
		return got == want, got
	})
	if log := fresh.tail(200); strings.Contains(log, "bootstrapping the shards") {
		t.Fatalf("the new node bootstrapped shards of its own:\n%s", fresh.tail(30))
	}
	for _, p := range c.live() {
		if ok, saw := aliveAt(p.adminAddr(), fresh.id); !ok {
			t.Errorf("%s does not list the new node alive: %s", p.name, saw)
		}
	}
	c.runPhase("with the new node")
	c.finish()
}
