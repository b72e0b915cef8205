package cluster

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/edgenode/edgenode/ratelimit"
	"github.com/edgenode/edgenode/relaylog"
	"github.com/edgenode/edgenode/wire/nodewire"
)

// Limits are a user's allowances across the cluster, as every node gives
// them on its own (edge.Options SendRate/SendBurst, CallRate/CallBurst).
// The user's home (the leader of the user's shard) sums what every node
// reports the user spent (Router.ReportUsage) in buckets of the same
// sizes, and answers who is over: those nodes then refuse the user until
// the bucket has a token again. The buckets are soft state of the home:
// a new leader starts them full.
type Limits struct {
	SendRate  float64
	SendBurst int
	CallRate  float64
	CallBurst int
}

// homeUsage holds the buckets of the users this node is home to.
type homeUsage struct {
	sends, calls *ratelimit.Limiter
}

func newHomeUsage(l Limits) *homeUsage {
	if l.SendRate <= 0 || l.SendBurst <= 0 || l.CallRate <= 0 || l.CallBurst <= 0 {
		return nil
	}
	return &homeUsage{sends: ratelimit.New(l.SendRate, l.SendBurst, nil), calls: ratelimit.New(l.CallRate, l.CallBurst, nil)}
}

// take records one node's report of a user's usage and says until when
// the user is blocked (zero times: not).
func (h *homeUsage) take(user int64, sends, calls int, now time.Time) (b ratelimit.Block) {
	if sends > 0 {
		if w := h.sends.Take(user, float64(sends)); w > 0 {
			b.Sends = now.Add(w)
		}
	}
	if calls > 0 {
		if w := h.calls.Take(user, float64(calls)); w > 0 {
			b.Calls = now.Add(w)
		}
	}
	return b
}

// usageCall answers OpUsage on the leader of req.Shard: IDs are (user,
// sends, calls) triples; each blocked user comes back as an event with
// From = user, UpTo = sends blocked until, By = calls blocked until (Unix
// ms, 0: not).
func (c *Cluster) usageCall(req *nodewire.CallRequest) *nodewire.CallResponse {
	l := c.log
	if req.Shard < 0 || req.Shard >= l.Shards() || len(req.IDs)%3 != 0 {
		return &nodewire.CallResponse{Err: nodewire.NodeErrBadRequest}
	}
	if !l.Serving(req.Shard) {
		return errorResponse(&relaylog.NotLeaderError{Shard: req.Shard, Leader: l.Leader(req.Shard)})
	}
	resp := &nodewire.CallResponse{}
	if c.usage == nil {
		return resp
	}
	now := time.Now()
	for i := 0; i < len(req.IDs); i += 3 {
		user := req.IDs[i]
		if l.ShardFor(user) != req.Shard {
			continue
		}
		if b := c.usage.take(user, int(req.IDs[i+1]), int(req.IDs[i+2]), now); b != (ratelimit.Block{}) {
			resp.Events = append(resp.Events, nodewire.NodeEvent{From: user, UpTo: unixMilli(b.Sends), By: unixMilli(b.Calls)})
		}
	}
	return resp
}

func unixMilli(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMilli(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// ReportUsage takes this node's usage to each user's home, every shard at
// once, and returns the users their homes block (edge.UsageReporter). A
// node of a version without the call answers bad_request: its users stay
// limited per node.
func (r *Router) ReportUsage(ctx context.Context, usage map[int64]ratelimit.Usage) (map[int64]ratelimit.Block, error) {
	byShard := make(map[int][]int64)
	for user, u := range usage {
		s := r.c.log.ShardFor(user)
		byShard[s] = append(byShard[s], user, int64(u.Sends), int64(u.Calls))
	}
	var mu sync.Mutex
	out := make(map[int64]ratelimit.Block)
	var errs []error
	var wg sync.WaitGroup
	for shard, ids := range byShard {
		wg.Go(func() {
			var local *nodewire.CallResponse
			req := &nodewire.CallRequest{Op: nodewire.OpUsage, Shard: shard, IDs: ids}
			resp, old, err := r.routeNewShard(ctx, shard, func() error {
				local = r.c.usageCall(req)
				return responseError(shard, local)
			}, req)
			if resp == nil && !old {
				resp = local
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case old:
			case err != nil:
				errs = append(errs, err)
			case resp != nil:
				for _, ev := range resp.Events {
					out[ev.From] = ratelimit.Block{Sends: fromMilli(ev.UpTo), Calls: fromMilli(ev.By)}
				}
			}
		})
	}
	wg.Wait()
	return out, errors.Join(errs...)
}
