package cluster

import (
	"hash/fnv"
	"sort"
	"strconv"

	"github.com/edgenode/edgenode/cluster/member"
)

// Replicas is the number of voters a shard has once enough nodes are alive.
const Replicas = 3

// score is the rendezvous weight of node for shard.
func score(shard int, node string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(strconv.Itoa(shard)))
	h.Write([]byte{0})
	h.Write([]byte(node))
	// FNV's low bits mix poorly for similar keys; finish with a mixer.
	x := h.Sum64()
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// voterCount is the odd number of voters a shard should have with n nodes
// alive.
func voterCount(n int) int {
	if n >= Replicas {
		return Replicas
	}
	return 1
}

// Target is the ideal voter set of shard over the alive members: the
// highest-scoring node of each region first, then the highest-scoring of the
// rest, voterCount(len(alive)) of them, best first (the preferred leader).
func Target(shard int, alive []member.Member) []string {
	type cand struct {
		id, region string
		s          uint64
	}
	cs := make([]cand, 0, len(alive))
	for _, m := range alive {
		cs = append(cs, cand{m.NodeID, m.Region, score(shard, m.NodeID)})
	}
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].s != cs[j].s {
			return cs[i].s > cs[j].s
		}
		return cs[i].id < cs[j].id
	})
	n := voterCount(len(cs))
	out := make([]string, 0, n)
	used := make(map[string]bool)
	regions := make(map[string]bool)
	for _, c := range cs { // one per region first
		if len(out) == n {
			break
		}
		if !regions[c.region] {
			regions[c.region] = true
			used[c.id] = true
			out = append(out, c.id)
		}
	}
	for _, c := range cs {
		if len(out) == n {
			break
		}
		if !used[c.id] {
			used[c.id] = true
			out = append(out, c.id)
		}
	}
	// Best first: the preferred leader is the highest score of the chosen.
	sort.Slice(out, func(i, j int) bool { return score(shard, out[i]) > score(shard, out[j]) })
	return out
}
