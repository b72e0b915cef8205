package edge

import (
	"context"
	"time"

	"github.com/edgenode/edgenode/ratelimit"
)

// UsageReporter takes a node's usage (sends; and read marks, typing,
// status lookups and watch frames: calls) to the users' homes, which sum
// every node's, and answers the users over their allowance across the
// cluster.
type UsageReporter func(ctx context.Context, usage map[int64]ratelimit.Usage) (map[int64]ratelimit.Block, error)

// maxUsageUsers bounds the users counted between two reports: past it a
// report is sent early (RunUsage looks every tenth of the interval).
const maxUsageUsers = 100_000

// count records usage for the next report (with Options.Usage).
func (s *Server) count(user int64, sends, calls int) {
	if s.opts.Usage == nil {
		return
	}
	s.usageMu.Lock()
	s.addUsage(user, sends, calls)
	s.usageMu.Unlock()
}

// addUsage adds to user's count for the next report; usageMu is held.
func (s *Server) addUsage(user int64, sends, calls int) {
	if len(s.usage) == 0 {
		select {
		case s.usageWake <- struct{}{}:
		default:
		}
	}
	u := s.usage[user]
	u.Sends += sends
	u.Calls += calls
	s.usage[user] = u
}

// RunUsage reports this node's usage every Options.UsageInterval until ctx
// ends, and imposes the homes' blocks on this node's limiters: a user who
// spreads their calls over several nodes gets the allowance of one, plus
// what each node accepts before its next report. The usage of a failed
// report (a home slow to answer under load, a leader moving) is carried
// into the next one rather than dropped: a burst spread over nodes must
// not pass unseen because one report timed out. A report that failed
// after some homes counted it may count their part twice, which only
// blocks a user a little early.
func (s *Server) RunUsage(ctx context.Context) {
	if s.opts.Usage == nil {
		return
	}
	tick := time.NewTicker(s.opts.UsageInterval / 10)
	defer tick.Stop()
	last := time.Now()
	for {
		s.usageMu.Lock()
		idle := len(s.usage) == 0
		s.usageMu.Unlock()
		if idle { // asleep until there is usage to report
			tick.Stop()
			select {
			case <-ctx.Done():
				return
			case <-s.usageWake:
			}
			tick.Reset(s.opts.UsageInterval / 10)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s.usageMu.Lock()
		due := len(s.usage) > 0 && (time.Since(last) >= s.opts.UsageInterval || len(s.usage) >= maxUsageUsers)
		var usage map[int64]ratelimit.Usage
		if due {
			usage, s.usage = s.usage, make(map[int64]ratelimit.Usage)
		}
		s.usageMu.Unlock()
		if !due {
			continue
		}
		last = time.Now()
		rctx, cancel := context.WithTimeout(ctx, s.opts.UsageInterval)
		blocks, err := s.opts.Usage(rctx, usage)
		cancel()
		if err != nil {
			s.opts.Logger.Debug("usage report failed", "err", err)
			s.usageMu.Lock()
			for user, u := range usage {
				if _, ok := s.usage[user]; !ok && len(s.usage) >= maxUsageUsers {
					continue
				}
				s.addUsage(user, u.Sends, u.Calls)
			}
			s.usageMu.Unlock()
		}
		for user, b := range blocks {
			if !b.Sends.IsZero() {
				s.limiter.Block(user, b.Sends)
			}
			if !b.Calls.IsZero() {
				s.calls.Block(user, b.Calls)
			}
		}
	}
}

// allowSend takes a send from user's allowance on this node, counted for
// the next report.
func (s *Server) allowSend(user int64) (time.Duration, bool) {
	wait, ok := s.limiter.Allow(user)
	if ok {
		s.count(user, 1, 0)
	}
	return wait, ok
}

// allowCalls takes n calls (read marks, typing, status lookups; a watch
// counts watchCost) from user's allowance on this node.
func (s *Server) allowCalls(user int64, n float64) (time.Duration, bool) {
	wait, ok := s.calls.AllowN(user, n)
	if ok {
		s.count(user, 0, int(n))
	}
	return wait, ok
}
