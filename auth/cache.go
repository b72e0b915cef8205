package auth

import (
	"hash/maphash"
	"strings"
	"sync"
	"time"
)

// cacheShards splits the cache so that concurrent Verify calls rarely meet
// on one lock. A power of two, so the shard is a mask of the hash.
const cacheShards = 64

// entryOverhead approximates what one entry costs beyond its key bytes (map
// slot, string header, entry), for the byte budget.
const entryOverhead = 64

// cache remembers verified tokens until they expire. Eviction is random: a
// full shard drops whichever entries map iteration yields first, which in Go
// starts at a random position. That is O(1) per insert, needs no list or
// clock hand, and for a cache of live tokens is as good as LRU: a token
// evicted by mistake costs one more signature check.
type cache struct {
	seed       maphash.Seed
	maxEntries int // per shard
	maxBytes   int // per shard
	shards     [cacheShards]cacheShard
}

type cacheShard struct {
	mu    sync.RWMutex
	m     map[string]cacheEntry
	bytes int
	_     [24]byte // keep neighbouring shards' locks off one cache line
}

type cacheEntry struct {
	userID int64
	until  time.Time // exp plus leeway: the first instant the token is refused
}

func newCache(entries, bytes int) *cache {
	c := &cache{
		seed:       maphash.MakeSeed(),
		maxEntries: max(1, entries/cacheShards),
		maxBytes:   max(MaxTokenBytes+entryOverhead, bytes/cacheShards),
	}
	for i := range c.shards {
		c.shards[i].m = make(map[string]cacheEntry)
	}
	return c
}

func (c *cache) shard(token string) *cacheShard {
	return &c.shards[maphash.String(c.seed, token)&(cacheShards-1)]
}

// get returns the user id of a cached token that is still valid at now.
func (c *cache) get(token string, now time.Time) (int64, bool) {
	s := c.shard(token)
	s.mu.RLock()
	e, ok := s.m[token]
	s.mu.RUnlock()
	if !ok {
		return 0, false
	}
	if !now.Before(e.until) {
		s.mu.Lock()
		if e, ok := s.m[token]; ok && !now.Before(e.until) {
			s.remove(token)
		}
		s.mu.Unlock()
		return 0, false
	}
	return e.userID, true
}

// put remembers a verified token, evicting others when its shard is full.
func (c *cache) put(token string, userID int64, until time.Time) {
	size := len(token) + entryOverhead
	s := c.shard(token)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[token]; ok {
		return
	}
	for k := range s.m {
		if len(s.m) < c.maxEntries && s.bytes+size <= c.maxBytes {
			break
		}
		s.remove(k)
	}
	// Clone so the cache does not pin a larger buffer the token was sliced
	// from (an HTTP header line, a URL).
	s.m[strings.Clone(token)] = cacheEntry{userID: userID, until: until}
	s.bytes += size
}

func (s *cacheShard) remove(token string) {
	delete(s.m, token)
	s.bytes -= len(token) + entryOverhead
}

// len reports the number of cached tokens, for tests.
func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
