package cluster

import (
	"context"
	"sort"

	"github.com/edgenode/edgenode/wire/nodewire"
)

// ShardInfo is one row of `edgenode shards`.
type ShardInfo struct {
	Shard  int      `json:"shard"`
	Leader string   `json:"leader"`
	Term   uint64   `json:"term"` // the raft term Leader is known in
	Voters []string `json:"voters"`
}

// Shards reports every shard's leader and voters, asking the leader when
// this node is not in a shard's configuration.
func (c *Cluster) Shards(ctx context.Context) []ShardInfo {
	out := make([]ShardInfo, c.log.Shards())
	for shard := range out {
		info := ShardInfo{Shard: shard, Voters: voters(c.shards.Config(shard))}
		info.Leader, info.Term = c.log.LeaderTerm(shard)
		if len(info.Voters) == 0 || info.Leader == "" {
			// A node removed from the shard keeps its last configuration and
			// knows no leader: take the first answer that names one, else
			// the first that names voters.
			for _, node := range c.routing.candidates(shard) {
				resp, err := c.transport.Call(ctx, node, shard, &nodewire.CallRequest{Op: nodewire.OpShardProgress})
				if err != nil || resp.Err != "" || len(resp.Voters) == 0 {
					continue
				}
				if resp.Leader != "" {
					info.Voters, info.Leader, info.Term = resp.Voters, resp.Leader, uint64(resp.At)
					break
				}
				if len(info.Voters) == 0 {
					info.Voters = resp.Voters
				}
			}
		}
		sort.Strings(info.Voters)
		if info.Voters == nil {
			info.Voters = []string{}
		}
		out[shard] = info
	}
	return out
}
