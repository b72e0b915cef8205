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

// Leaders names the preferred leader of every shard: one of the shard's
// Target voters, chosen so that leadership spreads evenly over the nodes.
// Rendezvous scores alone leave it to chance (with 3 nodes and 4 shards, one
// node is everyone's favourite one time in 27); instead shards are taken in
// order and each goes to the voter leading the fewest shards so far, ties
// to the higher score. Every node computes the same answer from the same
// view. Nodes for which skip is true (draining) lead nothing.
func Leaders(shards int, alive []member.Member, skip func(node string) bool) []string {
	out := make([]string, shards)
	cands := make([][]string, shards)
	load := make(map[string]int, len(alive))
	for shard := range out {
		best := ""
		for _, id := range Target(shard, alive) { // best score first
			if skip != nil && skip(id) {
				continue
			}
			cands[shard] = append(cands[shard], id)
			if best == "" || load[id] < load[best] {
				best = id
			}
		}
		if best != "" {
			load[best]++
		}
		out[shard] = best
	}
	// Greedy order can leave a node two or more shards above another.
	// Shift leadership along a chain of shards (A's shard to B, one of B's
	// to C, ...) from a node to one leading at least two fewer, while such a
	// chain exists; each shift lowers the sum of squared loads, so this ends.
	for rebalance(out, cands, load) {
	}
	return out
}

// rebalance finds one chain of leadership moves from a most loaded node to
// a node leading at least two fewer shards, applies it and reports whether
// it found one (a breadth-first search over "node leads a shard of which
// that node is also a voter").
func rebalance(out []string, cands [][]string, load map[string]int) bool {
	nodes := make([]string, 0, len(load))
	for id := range load {
		nodes = append(nodes, id)
	}
	sort.Strings(nodes) // every node must find the same chain
	for _, src := range nodes {
		l := load[src]
		type step struct {
			from  string
			shard int
		}
		prev := map[string]step{src: {from: "", shard: -1}}
		queue := []string{src}
		for len(queue) > 0 {
			n := queue[0]
			queue = queue[1:]
			if load[n] <= l-2 {
				for cur := n; cur != src; {
					st := prev[cur]
					out[st.shard] = cur
					cur = st.from
				}
				load[src]--
				load[n]++
				return true
			}
			for shard, leader := range out {
				if leader != n {
					continue
				}
				for _, id := range cands[shard] {
					if _, seen := prev[id]; !seen {
						prev[id] = step{from: n, shard: shard}
						queue = append(queue, id)
					}
				}
			}
		}
	}
	return false
}
