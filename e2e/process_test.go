package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// procCluster is a cluster of edgenode processes on loopback with a load
// running against it.
type procCluster struct {
	t          *testing.T
	base       string
	procs      []*proc
	stopped    map[*proc]bool // SIGSTOPped, or down
	checker    *Checker
	load       *Load
	recipients []int64
}

// startProcCluster starts one node per region as a new user would: the
// first alone, the others with --join and the first's gossip address; then
// waits until every shard has three voters in three regions and leaders
// sit on at least two nodes.
func startProcCluster(t *testing.T, regions ...string) *procCluster {
	if testing.Short() {
		t.Skip("starts real edgenode processes")
	}
	c := &procCluster{t: t, base: t.TempDir(), stopped: map[*proc]bool{}}
	t.Cleanup(c.cleanup)
	start := time.Now()
	for i, r := range regions {
		p := newProc(t, c.base, fmt.Sprintf("n%d-%s", i+1, r), r)
		if i > 0 {
			p.join = c.procs[0].gossipAddr()
		}
		c.procs = append(c.procs, p)
		p.start()
		if i == 0 {
			waitFor(t, "the first node to serve alone (/readyz)", 30*time.Second, func() (bool, string) {
				code, err := httpGet(p.url() + "/readyz")
				return code == 200, fmt.Sprint(code, err)
			})
		}
	}
	took := waitFor(t, "every shard with 3 voters in 3 regions and leaders on 2+ nodes", 90*time.Second, func() (bool, string) {
		return healthy(c.procs[0].adminAddr(), 3, 2, "")
	})
	ss, _ := shardsAt(c.procs[0].adminAddr())
	t.Logf("%d nodes formed the cluster %v after the first start (%v after the last join): %s", len(regions), time.Since(start).Round(time.Millisecond), took.Round(time.Millisecond), fmtShards(ss))
	// Every node comes to the same picture. Right after forming, placement
	// moves leaders to their preferred voters, and a shard shows no leader
	// for the moment of each transfer: wait for it, within bounds.
	for _, p := range c.procs {
		waitFor(t, p.name+" to see every shard with 3 voters in 3 regions and leaders on 2+ nodes", 30*time.Second, func() (bool, string) {
			return healthy(p.adminAddr(), 3, 2, "")
		})
	}

	c.checker = NewChecker(jwtSecret, shardCount)
	c.recipients = users(2001, 3)
	var urls []string
	for _, p := range c.procs {
		urls = append(urls, p.url())
	}
	// Every sender and recipient has three devices, all of them away
	// until the checks (the docker and deploy tests use one default
	// device): each must get every message, and each of a sender's its
	// own sends.
	senders := seq(1001, 12)
	c.checker.Devices = []string{"phone", "tablet", "laptop"}
	lctx, lcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer lcancel()
	if err := c.checker.Link(lctx, urls, append(append([]int64(nil), senders...), c.recipients...)); err != nil {
		t.Fatal(err)
	}
	c.load = NewLoad(LoadOptions{
		URLs: urls, JWTSecret: jwtSecret, Shards: shardCount,
		Senders: senders, Recipients: c.recipients, Checker: c.checker,
	})
	return c
}

func (c *procCluster) cleanup() {
	for _, p := range c.procs {
		p.stop()
	}
	if !c.t.Failed() {
		return
	}
	keep := filepath.Join(os.TempDir(), fmt.Sprintf("edgenode-e2e-%s-%d", strings.ReplaceAll(c.t.Name(), "/", "_"), time.Now().Unix()))
	os.MkdirAll(keep, 0o755)
	for _, p := range c.procs {
		b, _ := os.ReadFile(p.logPath)
		os.WriteFile(filepath.Join(keep, filepath.Base(p.logPath)), b, 0o644)
		c.t.Logf("---- last lines of %s (%s, node %s) ----\n%s", p.name, p.region, p.id, p.tail(30))
	}
	c.t.Logf("node logs kept in %s", keep)
}

func (c *procCluster) byID(id string) *proc {
	for _, p := range c.procs {
		if p.id == id {
			return p
		}
	}
	c.t.Fatalf("no process has node id %q", id)
	return nil
}

// live are the nodes running and not stopped.
func (c *procCluster) live() []*proc {
	var out []*proc
	for _, p := range c.procs {
		if !c.stopped[p] && !p.exited() {
			out = append(out, p)
		}
	}
	return out
}

func (c *procCluster) liveURLs() []string {
	var out []string
	for _, p := range c.live() {
		out = append(out, p.url())
	}
	return out
}

func (c *procCluster) shards() []shardInfo {
	c.t.Helper()
	return stableShards(c.t, c.live()[0].adminAddr())
}

// check drains every recipient through the live nodes and fails the test
// on any broken promise.
func (c *procCluster) check(after string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	start := time.Now()
	problems := c.checker.Drain(ctx, c.liveURLs(), c.recipients)
	c.t.Logf("check after %s (drain took %v): %s", after, time.Since(start).Round(time.Millisecond), c.checker.Summary())
	if len(problems) > 0 {
		c.t.Fatalf("SERVER BUG? the checker found %d problems after %s:\n%s", len(problems), after, strings.Join(problems, "\n"))
	}
}

// fault marks a fault hitting the leaders of affected, injects it, waits
// until sends to those shards resume, and keeps the load running for a
// phase. It returns the fault with its measurements.
func (c *procCluster) fault(name string, affected []int, inject func()) *Fault {
	c.t.Helper()
	f := c.load.MarkFault(name, affected)
	inject()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.load.WaitResumed(ctx, f); err != nil {
		c.t.Fatalf("%s: %v", name, err)
	}
	_, first, all := c.load.Resumed(f)
	c.t.Logf("FAILOVER %s", c.load.Report(f))
	if os.Getenv("E2E_TRACE") != "" {
		c.t.Logf("attempts after %s:\n%s", name, c.load.Trace(f))
	}
	if len(affected) > 0 {
		switch {
		case all > 5*time.Second:
			c.t.Logf("attempts after %s:\n%s", name, c.load.Trace(f))
			c.t.Errorf("%s: sends to every affected shard resumed only after %v (first %v); the issue asks for 5s", name, all, first)
		case all > 2*time.Second:
			c.t.Logf("%s: resumed within 5s but over the 2s goal (%v)", name, all)
		}
	}
	c.runPhase(name)
	return f
}

// runPhase lets the load run for phase() and at least 200 more 201s.
func (c *procCluster) runPhase(name string) {
	c.t.Helper()
	until := time.Now().Add(phase())
	want := c.checker.Acked() + 200
	waitFor(c.t, name+": load to go on", phase()+30*time.Second, func() (bool, string) {
		n := c.checker.Acked()
		return n >= want && time.Now().After(until), fmt.Sprintf("%d of %d sends answered 201; %s", n, want, c.load.Totals())
	})
}

func (c *procCluster) waitHealthy(what string, mustLead string) {
	c.t.Helper()
	took := waitFor(c.t, what, 90*time.Second, func() (bool, string) {
		for _, p := range c.live() {
			if ok, saw := healthy(p.adminAddr(), 3, 2, mustLead); !ok {
				return false, p.name + ": " + saw
			}
		}
		return true, ""
	})
	c.t.Logf("%s after %v", what, took.Round(time.Millisecond))
}

// supervise starts p as a supervisor (systemd, Kubernetes) would: again
// when it crashes while starting, up to three times. Each crash is reported.
func (c *procCluster) supervise(p *proc) {
	c.t.Helper()
	for try := 1; ; try++ {
		err := p.tryStart()
		if err == nil {
			return
		}
		if try == 3 {
			c.t.Fatalf("%s crashed %d times while starting: %v", p.name, try, err)
		}
		c.t.Errorf("SERVER BUG: %s (node %s) crashed while (re)starting on its data dir; starting it again as a supervisor would. %v", p.name, p.id, err)
	}
}

// restart starts p again on its data dir with its original command line,
// as a supervisor would, and waits until it has rejoined: it sees every
// running node alive and they see it alive. Known server failures are
// reported as errors and worked around, so that the rest of the sequence
// still runs.
func (c *procCluster) restart(p *proc) {
	t := c.t
	t.Helper()
	c.supervise(p)
	rejoined := func() (bool, string) {
		var saw []string
		ok := true
		for _, q := range c.live() {
			ms, err := membersAt(q.adminAddr())
			if err != nil {
				return false, err.Error()
			}
			alive := map[string]bool{}
			for _, m := range ms {
				alive[m.NodeID] = m.Status == "alive"
			}
			want := []*proc{p}
			if q == p {
				want = c.live()
			}
			for _, w := range want {
				if !alive[w.id] {
					ok = false
				}
			}
			saw = append(saw, q.name+" sees "+fmtMembers(ms))
		}
		return ok, strings.Join(saw, "; ")
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, saw := rejoined()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			if p.join != "" {
				t.Fatalf("%s did not rejoin within 30s of its restart: %s", p.name, saw)
			}
			// The first node was started without --join; restarted the
			// same way it has nobody to gossip with, and the others
			// stopped probing it when they declared it dead.
			t.Errorf("SERVER BUG: %s (node %s), the node the cluster was started from (no --join), restarted after a failure with its original command line did not rejoin within 30s: %s. Restarting it with --join as a workaround.", p.name, p.id, saw)
			p.stop()
			for _, q := range c.live() {
				if q != p {
					p.join = q.gossipAddr()
					break
				}
			}
			c.supervise(p)
			deadline = time.Now().Add(30 * time.Second)
		}
		time.Sleep(100 * time.Millisecond) // poll interval
	}
}

func (c *procCluster) startLoad() {
	c.t.Helper()
	c.load.Start()
	c.t.Cleanup(func() {
		// Stop sends before the processes are killed, whatever happened.
		select {
		case <-c.load.stop:
		default:
			c.load.Stop()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.load.WaitAcked(ctx, 300); err != nil {
		c.t.Fatalf("load before any fault: %v", err)
	}
}

func (c *procCluster) finish() {
	c.t.Helper()
	c.load.Stop()
	c.check("the load stopped")
	c.t.Logf("%s", c.load.Totals())
}

// TestProcessThreeRegions runs the fault sequence on three
// processes in regions eu, us and ap: SIGKILL of the node leading most
// shards, its restart on the same data dir, SIGSTOP of a leader past the
// election timeout, and a graceful SIGTERM (and restart), with the checker
// after each.
func TestProcessThreeRegions(t *testing.T) {
	c := startProcCluster(t, "eu", "us", "ap")
	c.startLoad()
	c.check("warm-up")

	// SIGKILL the node leading most shards.
	victimID, led := mostLeader(c.shards())
	victim := c.byID(victimID)
	c.fault(fmt.Sprintf("SIGKILL %s (%s, led %d of %d shards)", victim.name, victimID, len(led), shardCount), led, func() {
		victim.signal(syscall.SIGKILL)
		if _, ok := victim.wait(10 * time.Second); !ok {
			t.Fatalf("%s did not die of SIGKILL", victim.name)
		}
	})
	c.check("SIGKILL of " + victim.name)

	// Restart it on the same data dir: it rejoins, catches up and leads
	// again.
	f := c.load.MarkFault("restart of "+victim.name, nil)
	c.restart(victim)
	c.waitHealthy(victim.name+" back: 3 voters in 3 regions, leading again", victim.id)
	c.runPhase("restart")
	t.Logf("REJOIN %s", c.load.Report(f))
	c.check("the restart of " + victim.name)

	// SIGSTOP a leader well past the election timeout (1s), then SIGCONT.
	frozenID, led := mostLeader(c.shards())
	frozen := c.byID(frozenID)
	frozenAt := time.Now()
	c.fault(fmt.Sprintf("SIGSTOP %s (%s, led %d shards)", frozen.name, frozenID, len(led)), led, func() {
		frozen.signal(syscall.SIGSTOP)
		c.stopped[frozen] = true
	})
	// Hold it stopped at least 3 election timeouts, so its peers are
	// certain to have moved on.
	waitFor(t, "3s since SIGSTOP", 10*time.Second, func() (bool, string) { return time.Since(frozenAt) > 3*time.Second, "" })
	frozen.signal(syscall.SIGCONT)
	delete(c.stopped, frozen)
	c.waitHealthy(frozen.name+" continued: healthy again", "")
	c.runPhase("SIGCONT")
	c.check("SIGSTOP/SIGCONT of " + frozen.name)

	// SIGTERM: leadership transfer, gossip leave, exit. The node is the
	// one the cluster was started from (no --join), so that its restart
	// below is the case a rolling restart cannot avoid.
	leaver := c.procs[0]
	leaverID := leaver.id
	led = ledBy(c.shards(), leaverID)
	c.fault(fmt.Sprintf("SIGTERM %s (%s, led %d shards)", leaver.name, leaverID, len(led)), led, func() {
		leaver.signal(syscall.SIGTERM)
		c.stopped[leaver] = true
	})
	exitErr, exited := leaver.wait(45 * time.Second)
	if !exited {
		t.Fatalf("%s still running 45s after SIGTERM", leaver.name)
	}
	if exitErr != nil {
		t.Errorf("%s exited after SIGTERM with %v; want status 0", leaver.name, exitErr)
	}
	waitFor(t, "the others to see "+leaver.name+" as left", 30*time.Second, func() (bool, string) {
		for _, p := range c.live() {
			ms, err := membersAt(p.adminAddr())
			if err != nil {
				return false, err.Error()
			}
			found := false
			for _, m := range ms {
				if m.NodeID == leaverID {
					found = m.Status == "left"
				}
			}
			if !found {
				return false, p.name + " sees " + fmtMembers(ms)
			}
		}
		return true, ""
	})
	c.check("SIGTERM of " + leaver.name)

	// And back, as a rolling restart would bring it.
	delete(c.stopped, leaver)
	c.restart(leaver)
	c.waitHealthy(leaver.name+" back after its leave", leaver.id)
	c.runPhase("restart after leave")
	c.finish()
}

// TestProcessFiveRegions: five nodes in regions a to e, one SIGKILL of the
// node leading most shards under load.
func TestProcessFiveRegions(t *testing.T) {
	c := startProcCluster(t, "a", "b", "c", "d", "e")
	c.startLoad()
	victimID, led := mostLeader(c.shards())
	victim := c.byID(victimID)
	c.fault(fmt.Sprintf("SIGKILL %s (%s, led %d of %d shards, 5 nodes)", victim.name, victimID, len(led), shardCount), led, func() {
		victim.signal(syscall.SIGKILL)
		if _, ok := victim.wait(10 * time.Second); !ok {
			t.Fatalf("%s did not die of SIGKILL", victim.name)
		}
		c.stopped[victim] = true
	})
	c.finish()
}
