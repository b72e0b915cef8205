package edgechat

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/edgenode/edgenode/wire"
)

// edgeSet picks the edge node the client talks to: the one with the lowest
// measured round trip among those GET /v1/edges lists, then the next one
// when it fails. The configured server URL stays a candidate, so that a
// client whose edges all moved can still find the cluster.
type edgeSet struct {
	seed string
	http *http.Client

	mu    sync.Mutex
	list  []Edge // best first
	index int
}

func newEdgeSet(seed string, hc *http.Client) *edgeSet {
	seed = strings.TrimRight(seed, "/")
	return &edgeSet{seed: seed, http: hc, list: []Edge{{URL: seed, RTTMillis: -1}}}
}

// current is the base URL to use now.
func (e *edgeSet) current() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.list[e.index%len(e.list)].URL
}

// failed moves to the next edge if base is still the current one.
func (e *edgeSet) failed(base string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.list[e.index%len(e.list)].URL == base {
		e.index = (e.index + 1) % len(e.list)
	}
}

func (e *edgeSet) snapshot() *EdgeList {
	e.mu.Lock()
	defer e.mu.Unlock()
	return &EdgeList{items: append([]Edge(nil), e.list...)}
}

// refresh asks any reachable candidate for the edge list, measures the
// round trip to each edge (GET /healthz, concurrently) and orders them.
func (e *edgeSet) refresh(ctx context.Context, token string) error {
	e.mu.Lock()
	candidates := []string{}
	for i := range e.list {
		candidates = append(candidates, e.list[(e.index+i)%len(e.list)].URL)
	}
	e.mu.Unlock()
	if !contains(candidates, e.seed) {
		candidates = append(candidates, e.seed)
	}
	var listed []wire.Edge
	var lastErr error
	for _, base := range candidates {
		got, err := e.fetch(ctx, base, token)
		if err == nil {
			listed = got
			break
		}
		lastErr = err
	}
	if listed == nil {
		return lastErr
	}
	edges := make([]Edge, 0, len(listed)+1)
	for _, le := range listed {
		edges = append(edges, Edge{NodeID: le.NodeID, Region: le.Region, URL: strings.TrimRight(le.URL, "/"), RTTMillis: -1})
	}
	if !containsEdge(edges, e.seed) {
		edges = append(edges, Edge{URL: e.seed, RTTMillis: -1})
	}
	var wg sync.WaitGroup
	for i := range edges {
		wg.Add(1)
		go func(ed *Edge) {
			defer wg.Done()
			ed.RTTMillis = e.measure(ctx, ed.URL)
		}(&edges[i])
	}
	wg.Wait()
	sort.SliceStable(edges, func(i, j int) bool {
		a, b := edges[i].RTTMillis, edges[j].RTTMillis
		if (a < 0) != (b < 0) {
			return b < 0
		}
		return a < b
	})
	e.mu.Lock()
	e.list, e.index = edges, 0
	e.mu.Unlock()
	return nil
}

func (e *edgeSet) fetch(ctx context.Context, base, token string) ([]wire.Edge, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/edges", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := e.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &APIError{Status: resp.StatusCode}
	}
	var out []wire.Edge
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	return out, nil
}

// measure is the best of two round trips to /healthz, in ms (at least 0),
// or -1 when the edge did not answer. The first request pays for the
// connection set-up, which a long-lived client pays once.
func (e *edgeSet) measure(ctx context.Context, base string) int64 {
	best := int64(-1)
	for range 2 {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		start := time.Now()
		req, _ := http.NewRequestWithContext(cctx, http.MethodGet, base+"/healthz", nil)
		resp, err := e.http.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		cancel()
		if err != nil || resp.StatusCode != http.StatusOK {
			return best
		}
		if d := time.Since(start).Milliseconds(); best < 0 || d < best {
			best = d
		}
	}
	return best
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func containsEdge(list []Edge, url string) bool {
	for _, x := range list {
		if x.URL == url {
			return true
		}
	}
	return false
}
