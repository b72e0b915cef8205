package edge_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/edgenode/edgenode/edge"
	"github.com/edgenode/edgenode/ratelimit"
	"github.com/edgenode/edgenode/relaylog"
)

// A usage report that fails (the user's home slow to answer) is not lost:
// its sends count in the next report, or a burst spread over nodes would
// pass the cluster-wide limit whenever a report times out.
func TestFailedUsageReportIsCarriedOver(t *testing.T) {
	var mu sync.Mutex
	var reports []map[int64]ratelimit.Usage
	h := start(t, func(eo *edge.Options, _ *relaylog.Options) {
		eo.UsageInterval = 20 * time.Millisecond
		eo.Usage = func(_ context.Context, usage map[int64]ratelimit.Usage) (map[int64]ratelimit.Block, error) {
			mu.Lock()
			defer mu.Unlock()
			reports = append(reports, usage)
			if len(reports) == 1 {
				return nil, errors.New("home did not answer in time")
			}
			return nil, nil
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go h.srv.RunUsage(ctx)
	const user = 31
	for range 3 {
		h.send(user, 32, "x")
	}
	eventually(t, "a second report after the failed one", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(reports) >= 2
	})
	mu.Lock()
	defer mu.Unlock()
	sent := 0
	for _, r := range reports[1:] {
		sent += r[user].Sends
	}
	if first := reports[0][user].Sends; first == 0 || sent < first {
		t.Fatalf("reports %v: the failed report's %d sends are not in the later ones", reports, first)
	}
}
