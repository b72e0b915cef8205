package cluster

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/edgenode/edgenode/cluster/member"
	"github.com/edgenode/edgenode/wire/nodewire"
)

func TestDrainMarks(t *testing.T) {
	ms := threeNodes()
	ms.boots["n2"] = "boot1"
	d := &drainer{self: "n1", members: ms}
	if d.isDraining("n2") {
		t.Fatal("n2 draining before it said so")
	}
	d.mark("n2")
	if !d.isDraining("n2") || d.isDraining("n3") {
		t.Fatal("only n2 should be draining")
	}
	// Restarted since (a new boot id): it may lead again.
	ms.boots["n2"] = "boot2"
	if d.isDraining("n2") {
		t.Fatal("n2 draining after a restart")
	}
	// A mark expires after a minute.
	d.mark("n3")
	d.marks["n3"] = drainMark{at: time.Now().Add(-time.Minute)}
	if d.isDraining("n3") {
		t.Fatal("n3 draining after its mark expired")
	}
}

func TestDrainHandsOverLedShards(t *testing.T) {
	ms := newFakeMembers(node("n1", "a", member.StatusAlive), node("n2", "b", member.StatusAlive),
		node("n3", "c", member.StatusAlive), node("n4", "c", member.StatusDead))
	shards := newFakeShards(4)
	cfgs := []*fakeConfig{
		voterConfig("n1", "n2", "n3"), // led here: handed over
		voterConfig("n1"),             // led here, no other voter: kept
		voterConfig("n1", "n2", "n3"), // led elsewhere
		voterConfig("n1", "n2"),       // led here: handed over
	}
	cfgs[2].leading = false
	for shard, cfg := range cfgs {
		shards.leader[shard] = "n1"
		cfg.onTransfer = func(string) { shards.setLeader(shard, "n2") }
	}
	shards.leader[2] = "n3"
	tr := answering(nodewire.CallResponse{})
	d := &drainer{self: "n1", log: fakeConfigs{fakeShards: shards, cfgs: cfgs}, members: ms, transport: tr, logger: slog.New(slog.DiscardHandler)}
	d.drain(context.Background())
	told := tr.nodesCalled(nodewire.OpDraining)
	slices.Sort(told)
	if !slices.Equal(told, []string{"n2", "n3"}) {
		t.Fatalf("told %v, want every other live node", told)
	}
	for shard, want := range [][]string{{"transfer "}, nil, nil, {"transfer "}} {
		if got := cfgs[shard].recorded(); !slices.Equal(got, want) {
			t.Fatalf("shard %d: %q, want %q", shard, got, want)
		}
	}
}
