package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/edgenode/edgenode/relaylog"
)

// fakeQueues is a homeLog: fakeShards plus users' queues.
type fakeQueues struct {
	*fakeShards
	qmu    sync.Mutex
	queues map[int64][]relaylog.Event
}

func newFakeQueues() *fakeQueues {
	return &fakeQueues{fakeShards: newFakeShards(1), queues: map[int64][]relaylog.Event{}}
}

func (f *fakeQueues) LastConnected(int64) (time.Time, bool) { return time.Time{}, false }

func (f *fakeQueues) LastEventID(user int64) int64 {
	f.qmu.Lock()
	defer f.qmu.Unlock()
	q := f.queues[user]
	if len(q) == 0 {
		return 0
	}
	return q[len(q)-1].ID
}

func (f *fakeQueues) Pending(_ context.Context, user, after int64, limit int) ([]relaylog.Event, bool, error) {
	f.qmu.Lock()
	defer f.qmu.Unlock()
	var out []relaylog.Event
	for _, ev := range f.queues[user] {
		if ev.ID > after {
			out = append(out, ev)
		}
	}
	if len(out) > limit {
		return out[:limit], true, nil
	}
	return out, false, nil
}

func (f *fakeQueues) push(user int64, ev relaylog.Event) {
	f.qmu.Lock()
	f.queues[user] = append(f.queues[user], ev)
	f.qmu.Unlock()
}

// subsNet connects subscriptions of named nodes over in-memory pipes.
type subsNet struct {
	mu    sync.Mutex
	nodes map[string]*subscriptions
}

func (n *subsNet) open(from string) func(context.Context, string) (net.Conn, error) {
	return func(_ context.Context, to string) (net.Conn, error) {
		n.mu.Lock()
		home := n.nodes[to]
		n.mu.Unlock()
		if home == nil {
			return nil, fmt.Errorf("no node %s", to)
		}
		a, b := net.Pipe()
		go home.serve(b, from, 0)
		return a, nil
	}
}

// seen records what a node's inbox delivered.
type seen struct {
	mu      sync.Mutex
	notify  []int64
	offers  []string // "user after ids"
	offline []int64
}

func (s *seen) get() (notify []int64, offers []string, offline []int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int64(nil), s.notify...), append([]string(nil), s.offers...), append([]int64(nil), s.offline...)
}

// read records what inbox delivers until ctx ends.
func (s *seen) read(ctx context.Context, inbox *Inbox) {
	for {
		batch := inbox.Next(ctx)
		if batch == nil {
			return
		}
		s.mu.Lock()
		for _, d := range batch {
			switch {
			case d.Kind == Wake && d.Events == nil:
				s.notify = append(s.notify, d.User)
			case d.Kind == Wake:
				ids := ""
				for _, ev := range d.Events {
					ids += fmt.Sprint(" ", ev.ID)
				}
				s.offers = append(s.offers, fmt.Sprint(d.User, " ", d.After, ids))
			case d.Kind == Offline:
				s.offline = append(s.offline, d.User)
			}
		}
		s.mu.Unlock()
	}
}

func (n *subsNet) add(t *testing.T, id string, log homeLog) (*subscriptions, *seen) {
	sn := &seen{}
	inbox := newInbox()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go sn.read(ctx, inbox)
	s := newSubscriptions(subsDeps{
		self: id, log: log, hint: func(int) string { return "" }, open: n.open(id),
		inbox: inbox, logger: slog.New(slog.DiscardHandler),
	})
	n.mu.Lock()
	if n.nodes == nil {
		n.nodes = map[string]*subscriptions{}
	}
	n.nodes[id] = s
	n.mu.Unlock()
	t.Cleanup(s.close)
	return s, sn
}

// edge adds node "edge", which sees home lead every user's shard.
func (n *subsNet) edge(t *testing.T, home string) (*fakeQueues, *subscriptions, *seen) {
	log := newFakeQueues()
	log.leader[0] = home
	s, sn := n.add(t, "edge", log)
	return log, s, sn
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); !ok(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSubscriptionRegistersAtHomeAndCommitsWakeTheEdge(t *testing.T) {
	var n subsNet
	homeLog := newFakeQueues()
	homeLog.serving[0] = true
	_, edge, edgeSeen := n.edge(t, "home")
	home, homeSeen := n.add(t, "home", homeLog)

	edge.set(7, true, true)
	eventually(t, "the registration at the home", func() bool { return home.remoteOnline(7) })
	// The first wake after registering carries no events: the edge pulls.
	eventually(t, "the first wake", func() bool { no, _, _ := edgeSeen.get(); return len(no) == 1 && no[0] == 7 })

	homeLog.push(7, relaylog.Event{ID: 1, To: 7})
	homeLog.push(7, relaylog.Event{ID: 2, To: 7})
	home.committed(7)
	eventually(t, "the events offered", func() bool { _, of, _ := edgeSeen.get(); return len(of) == 1 })
	if _, of, _ := edgeSeen.get(); of[0] != "7 0 1 2" {
		t.Fatalf("offered %q, want user 7's events 1 and 2 after 0", of[0])
	}
	homeLog.push(7, relaylog.Event{ID: 3, To: 7})
	home.committed(7)
	eventually(t, "the next event offered", func() bool { _, of, _ := edgeSeen.get(); return len(of) == 2 })
	if _, of, _ := edgeSeen.get(); of[1] != "7 2 3" {
		t.Fatalf("offered %q, want event 3 after 2", of[1])
	}
	home.committed(8) // nobody registered for 8
	// The last socket closes: the home sees the user go offline.
	edge.set(7, true, false)
	eventually(t, "the user offline at its home", func() bool { _, _, off := homeSeen.get(); return len(off) == 1 && off[0] == 7 })
	if home.remoteOnline(7) {
		t.Fatal("still registered")
	}
}

func TestSubscriptionFollowsAHomeChange(t *testing.T) {
	var n subsNet
	edgeLog, edge, edgeSeen := n.edge(t, "home1")
	home1, home1Seen := n.add(t, "home1", newFakeQueues())
	home2, _ := n.add(t, "home2", newFakeQueues())

	edge.set(7, true, true)
	eventually(t, "the registration at home1", func() bool { return home1.remoteOnline(7) })
	eventually(t, "home1's first wake", func() bool { no, _, _ := edgeSeen.get(); return len(no) == 1 })

	edgeLog.setLeader(0, "home2")
	edge.reconcileUser(7)
	eventually(t, "the registration at home2", func() bool { return home2.remoteOnline(7) })
	eventually(t, "the registration at home1 gone", func() bool { return !home1.remoteOnline(7) })
	eventually(t, "user offline at home1", func() bool { _, _, off := home1Seen.get(); return len(off) == 1 })
	// Each home's first wake.
	eventually(t, "two wakes", func() bool { no, _, _ := edgeSeen.get(); return len(no) == 2 })

	// The shard comes here: the local commit stream wakes the socket from
	// now on, and the edge wakes it once.
	edgeLog.mu.Lock()
	edgeLog.serving[0] = true
	edgeLog.mu.Unlock()
	edge.reconcileUser(7)
	eventually(t, "the registration at home2 gone", func() bool { return !home2.remoteOnline(7) })
	if no, _, _ := edgeSeen.get(); len(no) != 3 {
		t.Fatalf("wakes %v, want a third when the home came here", no)
	}
}

func TestSubscriptionReregistersAfterABrokenStream(t *testing.T) {
	var n subsNet
	_, edge, edgeSeen := n.edge(t, "home")
	home, homeSeen := n.add(t, "home", newFakeQueues())

	edge.set(7, true, true)
	eventually(t, "the registration", func() bool { return home.remoteOnline(7) })
	eventually(t, "the first wake", func() bool { no, _, _ := edgeSeen.get(); return len(no) == 1 })
	edge.mu.Lock()
	o := edge.out["home"]
	edge.mu.Unlock()
	o.kill()
	eventually(t, "the home dropping the edge", func() bool { _, _, off := homeSeen.get(); return len(off) == 1 })
	// The edge wakes the socket (it pulls from whoever leads now), then
	// registers again at the next reconcile.
	eventually(t, "a wake on the broken stream", func() bool { no, _, _ := edgeSeen.get(); return len(no) >= 2 })
	eventually(t, "the stream forgotten", func() bool { edge.mu.Lock(); defer edge.mu.Unlock(); return edge.out["home"] == nil })
	edge.reconcileUser(7)
	eventually(t, "the registration again", func() bool { return home.remoteOnline(7) })
}
