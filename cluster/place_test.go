package cluster

import (
	"fmt"
	"slices"
	"testing"

	"github.com/edgenode/edgenode/cluster/member"
)

func members(regions ...string) []member.Member {
	out := make([]member.Member, len(regions))
	for i, r := range regions {
		out[i] = member.Member{Meta: member.Meta{NodeID: fmt.Sprintf("node-%02d", i), Region: r}}
	}
	return out
}

func TestTargetSpreadsRegionsAndStaysOdd(t *testing.T) {
	for n := 1; n <= 7; n++ {
		regs := make([]string, n)
		for i := range regs {
			regs[i] = fmt.Sprintf("r%d", i%3)
		}
		ms := members(regs...)
		for shard := 0; shard < 64; shard++ {
			tg := Target(shard, ms)
			want := 1
			if n >= 3 {
				want = 3
			}
			if len(tg) != want {
				t.Fatalf("%d nodes, shard %d: %d voters, want %d", n, shard, len(tg), want)
			}
			if n >= 3 {
				seen := map[string]bool{}
				for _, id := range tg {
					for _, m := range ms {
						if m.NodeID == id {
							seen[m.Region] = true
						}
					}
				}
				if len(seen) != 3 {
					t.Fatalf("%d nodes, shard %d: voters %v span %d regions", n, shard, tg, len(seen))
				}
			}
			if again := Target(shard, append([]member.Member(nil), ms...)); fmt.Sprint(again) != fmt.Sprint(tg) {
				t.Fatal("target not deterministic")
			}
		}
	}
}

func TestTargetSpreadsPreferredLeaders(t *testing.T) {
	ms := members("eu", "us", "ap", "eu", "us", "ap")
	leaders := map[string]int{}
	for shard := 0; shard < 256; shard++ {
		leaders[Target(shard, ms)[0]]++
	}
	for _, m := range ms {
		if c := leaders[m.NodeID]; c < 256/6/2 {
			t.Fatalf("node %s is preferred leader of only %d of 256 shards: %v", m.NodeID, c, leaders)
		}
	}
}

// Adding a node moves only some shards' targets (rendezvous hashing).
func TestTargetMovesLittleWhenANodeJoins(t *testing.T) {
	before := members("eu", "us", "ap", "eu", "us")
	after := members("eu", "us", "ap", "eu", "us", "ap")
	moved := 0
	for shard := 0; shard < 256; shard++ {
		a, b := Target(shard, before), Target(shard, after)
		in := map[string]bool{}
		for _, id := range a {
			in[id] = true
		}
		for _, id := range b {
			if !in[id] {
				moved++
			}
		}
	}
	if moved > 256 {
		t.Fatalf("%d voter moves for one joining node across 256 shards", moved)
	}
}

// Leaders spreads leadership evenly whatever the node ids hash to, names only
// voters of the shard, and skips draining nodes.
func TestLeadersAreBalanced(t *testing.T) {
	for _, tc := range []struct {
		regions []string
		shards  int
		maxDiff int
	}{
		{[]string{"eu", "us", "ap"}, 4, 1},
		{[]string{"eu", "us", "ap"}, 16, 1},
		{[]string{"eu", "us", "ap", "eu", "us"}, 16, 1},
		{[]string{"eu", "us", "ap", "eu", "us", "ap"}, 256, 1},
	} {
		for seed := 0; seed < 50; seed++ {
			ms := make([]member.Member, len(tc.regions))
			for i, r := range tc.regions {
				ms[i] = member.Member{Meta: member.Meta{NodeID: fmt.Sprintf("n%d-%d", seed, i), Region: r}}
			}
			leaders := Leaders(tc.shards, ms, nil)
			rev := append([]member.Member(nil), ms...)
			slices.Reverse(rev)
			if again := Leaders(tc.shards, rev, nil); !slices.Equal(again, leaders) {
				t.Fatalf("leaders depend on the order of the member list")
			}
			load := map[string]int{}
			for shard, id := range leaders {
				in := false
				for _, v := range Target(shard, ms) {
					in = in || v == id
				}
				if !in {
					t.Fatalf("shard %d: leader %q is not one of its voters %v", shard, id, Target(shard, ms))
				}
				load[id]++
			}
			lo, hi := tc.shards, 0
			for _, m := range ms {
				lo, hi = min(lo, load[m.NodeID]), max(hi, load[m.NodeID])
			}
			if hi-lo > tc.maxDiff {
				t.Fatalf("%d nodes, %d shards, seed %d: leaders per node %v", len(ms), tc.shards, seed, load)
			}
			skip := ms[0].NodeID
			for shard, id := range Leaders(tc.shards, ms, func(n string) bool { return n == skip }) {
				if id == skip || id == "" {
					t.Fatalf("shard %d led by %q while %s drains", shard, id, skip)
				}
			}
		}
	}
}
