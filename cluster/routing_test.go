package cluster

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/edgenode/edgenode/cluster/member"
	"github.com/edgenode/edgenode/relaylog"
	"github.com/edgenode/edgenode/wire/nodewire"
)

// threeNodes: n1 (this node), n2, n3, alive, one region each.
func threeNodes() *fakeMembers {
	return newFakeMembers(node("n1", "a", member.StatusAlive), node("n2", "b", member.StatusAlive), node("n3", "c", member.StatusAlive))
}

func newTestRouting(log *fakeShards, ms *fakeMembers, t *fakeTransport) *routing {
	r := newRouting("n1", log, ms, t)
	r.noLeaderWait = 0 // no retries while a shard has no leader
	return r
}

var sendReq = &nodewire.CallRequest{Op: nodewire.OpSend}

// answering is a transport to which every node answers resp.
func answering(resp nodewire.CallResponse) *fakeTransport {
	return &fakeTransport{answer: func(context.Context, string, int, *nodewire.CallRequest) (*nodewire.CallResponse, error) {
		r := resp
		return &r, nil
	}}
}

// routeVia routes a send to user 1 (run locally by local, if served) and
// checks that it succeeded through the nodes want, in order.
func routeVia(t *testing.T, r *routing, tr *fakeTransport, local func() error, want ...string) {
	t.Helper()
	if _, err := r.route(context.Background(), 1, local, sendReq); err != nil {
		t.Fatal(err)
	}
	if got := tr.nodesCalled(nodewire.OpSend); !slices.Equal(got, want) {
		t.Fatalf("calls went to %v, want %v", got, want)
	}
}

func TestRoutingRunsLocallyWhereServed(t *testing.T) {
	log := newFakeShards(4)
	log.serving[2] = true
	tr := &fakeTransport{}
	r := newTestRouting(log, threeNodes(), tr)
	ran := false
	resp, err := r.route(context.Background(), 6, func() error { ran = true; return nil }, sendReq)
	if err != nil || resp != nil || !ran {
		t.Fatalf("route: resp %v err %v ran %v, want a local run", resp, err, ran)
	}
	if len(tr.sent()) != 0 {
		t.Fatalf("transport called: %v", tr.sent())
	}
}

func TestRoutingForwardsToTheLeader(t *testing.T) {
	log := newFakeShards(4)
	log.leader[1] = "n3"
	tr := &fakeTransport{answer: func(_ context.Context, node string, _ int, _ *nodewire.CallRequest) (*nodewire.CallResponse, error) {
		return &nodewire.CallResponse{N: 7}, nil
	}}
	r := newTestRouting(log, threeNodes(), tr)
	resp, err := r.route(context.Background(), 5, func() error { t.Fatal("ran locally"); return nil }, sendReq)
	if err != nil || resp == nil || resp.N != 7 {
		t.Fatalf("route: resp %v err %v", resp, err)
	}
	if got := tr.sent(); !slices.Equal(got, []sentCall{{"n3", 1, nodewire.OpSend}}) {
		t.Fatalf("calls %v, want one to n3 about shard 1", got)
	}
	if h := r.hint(1); h != "n3" {
		t.Fatalf("hint %q, want n3", h)
	}
}

func TestRoutingFollowsNotLeaderAnswers(t *testing.T) {
	log := newFakeShards(4)
	log.leader[1] = "n2" // stale: n2 names n9, a node gossip has not shown yet
	tr := &fakeTransport{answer: func(_ context.Context, node string, _ int, _ *nodewire.CallRequest) (*nodewire.CallResponse, error) {
		switch node {
		case "n2":
			return &nodewire.CallResponse{Err: nodewire.NodeErrNotLeader, Leader: "n9"}, nil
		case "n9":
			return &nodewire.CallResponse{}, nil
		}
		return &nodewire.CallResponse{Err: nodewire.NodeErrNotLeader}, nil
	}}
	r := newTestRouting(log, threeNodes(), tr)
	routeVia(t, r, tr, nil, "n2", "n9")
	if h := r.hint(1); h != "n9" {
		t.Fatalf("hint %q, want n9", h)
	}
}

func TestRoutingWithoutLeaderFailsNotLeader(t *testing.T) {
	for name, answer := range map[string]func(context.Context, string, int, *nodewire.CallRequest) (*nodewire.CallResponse, error){
		"unreachable": nil,
		"not leader": func(context.Context, string, int, *nodewire.CallRequest) (*nodewire.CallResponse, error) {
			return &nodewire.CallResponse{Err: nodewire.NodeErrNotLeader}, nil
		},
	} {
		t.Run(name, func(t *testing.T) {
			tr := &fakeTransport{answer: answer}
			r := newTestRouting(newFakeShards(4), threeNodes(), tr)
			_, err := r.route(context.Background(), 1, nil, sendReq)
			var nl *relaylog.NotLeaderError
			if !errors.As(err, &nl) || !errors.Is(err, relaylog.ErrNoLeader) || nl.Leader != "" || nl.Shard != 1 {
				t.Fatalf("err %v, want a NotLeaderError without leader for shard 1", err)
			}
			// Each of routeShard's 3 rounds tries each other live node
			// once: never this node, never more than maxHops.
			calls := tr.nodesCalled(nodewire.OpSend)
			if len(calls) == 0 || len(calls) > 3*maxHops || slices.Contains(calls, "n1") {
				t.Fatalf("calls %v", calls)
			}
		})
	}
}

func TestRoutingSkipsDeadNodes(t *testing.T) {
	log := newFakeShards(4)
	log.leader[1] = "n2"
	ms := newFakeMembers(node("n1", "a", member.StatusAlive), node("n2", "b", member.StatusDead), node("n3", "c", member.StatusAlive))
	tr := answering(nodewire.CallResponse{})
	routeVia(t, newTestRouting(log, ms, tr), tr, nil, "n3") // not n2: dead
}

func TestRoutingMapsRemoteErrors(t *testing.T) {
	log := newFakeShards(4)
	log.leader[1] = "n2"
	tr := &fakeTransport{answer: func(context.Context, string, int, *nodewire.CallRequest) (*nodewire.CallResponse, error) {
		return &nodewire.CallResponse{Err: nodewire.NodeErrQueueFull, Message: queueFullSender}, nil
	}}
	r := newTestRouting(log, threeNodes(), tr)
	if _, err := r.route(context.Background(), 1, nil, sendReq); !errors.Is(err, relaylog.ErrSenderShareFull) {
		t.Fatalf("err %v, want ErrSenderShareFull", err)
	}
	// An older leader that does not know a call answers bad_request.
	tr.answer = func(context.Context, string, int, *nodewire.CallRequest) (*nodewire.CallResponse, error) {
		return &nodewire.CallResponse{Err: nodewire.NodeErrBadRequest}, nil
	}
	resp, old, err := r.routeNewShard(context.Background(), 1, nil, sendReq)
	if !old || resp != nil || err != nil {
		t.Fatalf("routeNewShard: resp %v old %v err %v, want old", resp, old, err)
	}
}

func TestRoutingForwardsWhenLocalLosesLeadership(t *testing.T) {
	log := newFakeShards(4)
	log.serving[1] = true
	log.leader[1] = "n2"
	tr := answering(nodewire.CallResponse{})
	r := newTestRouting(log, threeNodes(), tr)
	routeVia(t, r, tr, func() error { return &relaylog.NotLeaderError{Shard: 1, Leader: "n2"} }, "n2")
}

// A call to a node that stops leading its shard mid-call is abandoned
// (watchCalls) and goes to the new leader.
func TestRoutingAbandonsCallsToFormerLeaders(t *testing.T) {
	log := newFakeShards(4)
	log.leader[1] = "n2"
	tr := &fakeTransport{answer: func(ctx context.Context, node string, _ int, _ *nodewire.CallRequest) (*nodewire.CallResponse, error) {
		if node == "n2" {
			<-ctx.Done() // a silent leader
			return nil, errRemote
		}
		return &nodewire.CallResponse{N: 3}, nil
	}}
	r := newTestRouting(log, threeNodes(), tr)
	stop := make(chan struct{})
	defer close(stop)
	go r.watchCalls(stop)
	time.AfterFunc(150*time.Millisecond, func() { log.setLeader(1, "n3") })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := r.route(ctx, 1, nil, sendReq)
	if err != nil || resp == nil || resp.N != 3 {
		t.Fatalf("route: resp %v err %v, want n3's answer", resp, err)
	}
	if got := tr.nodesCalled(nodewire.OpSend); !slices.Equal(got, []string{"n2", "n3"}) {
		t.Fatalf("calls went to %v", got)
	}
}

func TestRoutingCandidatesRankTheTarget(t *testing.T) {
	ms := newFakeMembers(node("n1", "a", member.StatusAlive), node("n2", "b", member.StatusAlive),
		node("n3", "c", member.StatusSuspect), node("n4", "a", member.StatusLeft))
	r := newTestRouting(newFakeShards(4), ms, &fakeTransport{})
	r.setHint(2, "n3")
	got := r.candidates(2)
	if len(got) == 0 || got[0] != "n3" || slices.Contains(got, "n1") || slices.Contains(got, "n4") || len(got) != 2 {
		t.Fatalf("candidates %v: want the hint first, the other live nodes, not self nor a left node", got)
	}
}
