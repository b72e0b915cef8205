package edge

import (
	"context"
	"sync"
	"time"
)

// Presence, last seen and typing are private between users who share a
// conversation: a message in either direction within the retention period
// (Store.Shared), unless Options.OpenPresence. A user who shares none with
// the viewer looks like a user who never connected: offline, no
// lastConnectedAt, never typing; their typing to the viewer is dropped.
//
// Answers are cached per pair of users (the relation is symmetric) for a
// while: sharedTTL when shared, unsharedTTL when not, so that typing
// renewed every few seconds and repeated lookups rarely reach a shard. A
// send puts its pair in the cache as shared at once. The cache holds at
// most visibleStripes*visibleStripeCap pairs, a memory bound: a stripe that
// is full of live entries is emptied.
const (
	sharedTTL        = 5 * time.Minute
	unsharedTTL      = 10 * time.Second
	visibleStripes   = 64
	visibleStripeCap = 2048
)

type pairKey struct{ lo, hi int64 }

func pairOf(a, b int64) pairKey {
	if a > b {
		a, b = b, a
	}
	return pairKey{a, b}
}

type visibleEntry struct {
	until  int64 // Unix ns
	shared bool
}

type visibleCache struct {
	stripes [visibleStripes]struct {
		mu sync.Mutex
		m  map[pairKey]visibleEntry
	}
}

func newVisibleCache() *visibleCache {
	c := &visibleCache{}
	for i := range c.stripes {
		c.stripes[i].m = make(map[pairKey]visibleEntry)
	}
	return c
}

func (c *visibleCache) stripe(k pairKey) int {
	return int(uint64(k.lo*31+k.hi) % visibleStripes)
}

func (c *visibleCache) get(k pairKey, now int64) (shared, ok bool) {
	st := &c.stripes[c.stripe(k)]
	st.mu.Lock()
	e, ok := st.m[k]
	st.mu.Unlock()
	if !ok || now >= e.until {
		return false, false
	}
	return e.shared, true
}

func (c *visibleCache) put(k pairKey, shared bool, now int64) {
	ttl := unsharedTTL
	if shared {
		ttl = sharedTTL
	}
	st := &c.stripes[c.stripe(k)]
	st.mu.Lock()
	defer st.mu.Unlock()
	if _, ok := st.m[k]; !ok && len(st.m) >= visibleStripeCap {
		for k2, e := range st.m {
			if now >= e.until {
				delete(st.m, k2)
			}
		}
		if len(st.m) >= visibleStripeCap {
			clear(st.m)
		}
	}
	st.m[k] = visibleEntry{until: now + int64(ttl), shared: shared}
}

func (c *visibleCache) size() int {
	n := 0
	for i := range c.stripes {
		st := &c.stripes[i]
		st.mu.Lock()
		n += len(st.m)
		st.mu.Unlock()
	}
	return n
}

// visible reports, for each of users, whether viewer may see their
// presence and typing. fresh skips the cache (a conversation may just have
// started).
func (s *Server) visible(ctx context.Context, viewer int64, users []int64, fresh bool) ([]bool, error) {
	out := make([]bool, len(users))
	if s.opts.OpenPresence {
		for i := range out {
			out[i] = true
		}
		return out, nil
	}
	now := s.opts.Now().UnixNano()
	var ask []int64
	var at []int
	for i, u := range users {
		if u == viewer {
			out[i] = true
			continue
		}
		if !fresh {
			if shared, ok := s.visibleCache.get(pairOf(viewer, u), now); ok {
				out[i] = shared
				continue
			}
		}
		ask = append(ask, u)
		at = append(at, i)
	}
	if len(ask) == 0 {
		return out, nil
	}
	shared, err := s.log.Shared(ctx, viewer, ask)
	if err != nil {
		return nil, err
	}
	for j, i := range at {
		out[i] = shared[j]
		s.visibleCache.put(pairOf(viewer, ask[j]), shared[j], now)
	}
	return out, nil
}

// visibleOne is visible for one user; an error counts as not visible.
func (s *Server) visibleOne(ctx context.Context, viewer, user int64) (bool, error) {
	v, err := s.visible(ctx, viewer, []int64{user}, false)
	if err != nil {
		return false, err
	}
	return v[0], nil
}

// conversationStarted records that from just sent to to: the pair shares
// a conversation from now on, and from's sockets on this node that watch
// to without seeing them start to.
func (s *Server) conversationStarted(from, to int64) {
	if s.opts.OpenPresence || from == to {
		return
	}
	// Only a cached "not shared" needs correcting: without an entry, the
	// next lookup asks the shards, which know of the message.
	k := pairOf(from, to)
	now := s.opts.Now().UnixNano()
	if shared, ok := s.visibleCache.get(k, now); ok && !shared {
		s.visibleCache.put(k, true, now)
	}
	if s.hiddenSockets.Load() == 0 {
		return
	}
	for _, ses := range s.hub.Sessions(from) {
		if sk, ok := ses.(*socket); ok && sk.hiddenN.Load() > 0 {
			sk.unhide(to)
		}
	}
}
