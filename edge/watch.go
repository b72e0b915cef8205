package edge

import (
	"context"

	"github.com/edgenode/edgenode/relaylog"
	"github.com/edgenode/edgenode/wire"
)

// A socket's watch list (the watch frame) and what presence may show it.
// Users the client may see (visible) are watched in the hub; the others
// (hidden) are answered as never connected and are unhidden when a message
// between them and the socket's user goes out. The list is guarded by
// watchMu; hiddenN lets the writer skip the lock when nothing is hidden.

// watchCost is what a watch of n users takes from the user's call bucket:
// one, and one more per 100 users.
func watchCost(n int) float64 { return float64(1 + n/100) }

// watch replaces the socket's watch list. Up to 1000 statuses answer it: the
// hub's for users the client may see, "never connected" for the others; a
// newer watch's answer replaces one not yet written (it covers the new
// list).
func (sk *socket) watch(ids []int64) bool {
	s := sk.srv
	uniq := make([]int64, 0, len(ids))
	seen := make(map[int64]struct{}, len(ids))
	for _, u := range ids {
		if _, dup := seen[u]; !dup {
			seen[u] = struct{}{}
			uniq = append(uniq, u)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.CallTimeout)
	vis, err := s.visible(ctx, sk.user, uniq, false)
	cancel()
	if err != nil {
		return sk.sendError(apiError(err))
	}
	var shown []int64
	var hidden map[int64]struct{}
	for i, u := range uniq {
		if vis[i] {
			shown = append(shown, u)
			continue
		}
		if hidden == nil {
			hidden = make(map[int64]struct{})
		}
		hidden[u] = struct{}{}
	}
	sk.watchMu.Lock()
	if sk.watchDone {
		sk.watchMu.Unlock()
		return false
	}
	sk.watchShown, sk.hidden = shown, hidden
	sk.setHiddenLocked(len(hidden))
	sts := s.hub.Watch(sk, shown)
	sk.watchMu.Unlock()
	if len(hidden) > 0 { // in the order of the list
		known := make(map[int64]wire.ContactStatus, len(sts))
		for _, st := range sts {
			known[st.UserID] = st
		}
		sts = sts[:0]
		for _, u := range uniq {
			if st, ok := known[u]; ok {
				sts = append(sts, st)
			} else if _, ok := hidden[u]; ok {
				sts = append(sts, wire.ContactStatus{UserID: u})
			}
		}
	}
	sk.mu.Lock()
	sk.watchAns, sk.hasWatch = sts, true
	sk.mu.Unlock()
	sk.kick()
	return true
}

// setHiddenLocked records the number of hidden watch entries, and whether
// the socket counts among the server's sockets with some.
func (sk *socket) setHiddenLocked(n int) {
	was := sk.hiddenN.Swap(int32(n))
	switch {
	case was == 0 && n > 0:
		sk.srv.hiddenSockets.Add(1)
	case was > 0 && n == 0:
		sk.srv.hiddenSockets.Add(-1)
	}
}

// unhide starts watching u, hidden until now, when the socket's user and u
// have just started a conversation; the client gets u's status.
func (sk *socket) unhide(u int64) {
	if sk.hiddenN.Load() == 0 {
		return
	}
	sk.watchMu.Lock()
	if _, ok := sk.hidden[u]; !ok || sk.watchDone {
		sk.watchMu.Unlock()
		return
	}
	delete(sk.hidden, u)
	sk.setHiddenLocked(len(sk.hidden))
	sk.watchShown = append(sk.watchShown, u)
	sts := sk.srv.hub.Watch(sk, sk.watchShown)
	sk.watchMu.Unlock()
	for _, st := range sts {
		if st.UserID == u {
			sk.Status(st) // else it arrives from u's home
		}
	}
}

// unhideSenders unhides the senders of messages among evs (the socket is
// writing them: each sender shares a conversation with its user now).
func (sk *socket) unhideSenders(evs []relaylog.Event) {
	for i := range evs {
		if evs[i].Kind != relaylog.KindMessage || sk.hiddenN.Load() == 0 {
			continue
		}
		sk.watchMu.Lock()
		_, hidden := sk.hidden[evs[i].From]
		sk.watchMu.Unlock()
		if hidden {
			sk.srv.visibleCache.put(pairOf(sk.user, evs[i].From), true, sk.srv.opts.Now().UnixNano())
			sk.unhide(evs[i].From)
		}
	}
}
