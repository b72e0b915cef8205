package edge_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgenode/edgenode/edge"
	"github.com/edgenode/edgenode/relaylog"
	"github.com/edgenode/edgenode/wire"
)

// contactsOnly sets the defaults of presence and calls back.
func contactsOnly(eo *edge.Options, _ *relaylog.Options) {
	eo.OpenPresence, eo.CallRate, eo.CallBurst = false, 0, 0
}

func (h *harness) status(viewer, user int64) wire.ContactStatus {
	h.t.Helper()
	code, _, b := h.do("GET", "/v1/users/"+strconv.FormatInt(user, 10)+"/status", viewer, nil)
	if code != http.StatusOK {
		h.t.Fatalf("status of %d for %d: %d %s", user, viewer, code, b)
	}
	var st wire.ContactStatus
	if err := json.Unmarshal(b, &st); err != nil {
		h.t.Fatal(err)
	}
	return st
}

// Presence, last seen and typing are visible only between users who share
// a conversation: a stranger sees an online user as never connected, and
// the stranger's typing never reaches them. A first message makes both
// visible to each other, including on a socket that already watches.
func TestPresenceOnlyBetweenUsersWhoShareAConversation(t *testing.T) {
	h := start(t, contactsOnly)
	const alice, bob, mallory = 1, 2, 3
	aliceWS := h.dial(alice)
	h.dial(bob)
	malloryWS := h.dial(mallory)
	h.send(bob, alice, "hi alice")
	aliceWS.nextMessage()

	if st := h.status(mallory, alice); st.Online || st.LastConnectedAt != nil || st.Typing {
		t.Fatalf("a stranger sees alice as %+v, want never connected", st)
	}
	if st := h.status(bob, alice); !st.Online || st.LastConnectedAt == nil {
		t.Fatalf("bob, who wrote alice, sees her as %+v, want online", st)
	}
	if st := h.status(alice, bob); !st.Online {
		t.Fatalf("alice, whom bob wrote, sees him as %+v, want online", st)
	}

	// The stranger's typing, socket and REST, is dropped; bob's arrives,
	// and it is the first status alice's socket gets. (A socket handles
	// its frames in order: the watch is answered after the typing frame
	// was handled.)
	malloryWS.sendFrame(wire.TypeTyping, wire.TypingFrame{ToUserID: alice, Typing: true})
	malloryWS.sendFrame(wire.TypeWatch, wire.Watch{UserIDs: []int64{alice}})
	if st := malloryWS.nextStatus(); st.UserID != alice || st.Online || st.LastConnectedAt != nil {
		t.Fatalf("a stranger's watch of alice answers %+v, want never connected", st)
	}
	if code, _, b := h.do("POST", "/v1/conversations/1/typing", mallory, map[string]bool{"typing": true}); code != http.StatusNoContent {
		t.Fatalf("typing: %d %s", code, b)
	}
	if code, _, b := h.do("POST", "/v1/conversations/1/typing", bob, map[string]bool{"typing": true}); code != http.StatusNoContent {
		t.Fatalf("typing: %d %s", code, b)
	}
	if st := aliceWS.nextStatus(); st.UserID != bob || !st.Typing {
		t.Fatalf("alice's first status update is %+v, want bob typing", st)
	}

	// Mallory writes alice: the socket that watches her now sees her.
	h.send(mallory, alice, "hello, I am new")
	if st := malloryWS.nextStatus(); st.UserID != alice || !st.Online {
		t.Fatalf("after writing alice, mallory's watch gives %+v, want alice online", st)
	}
	if st := h.status(alice, mallory); !st.Online {
		t.Fatalf("alice sees mallory, who wrote her, as %+v", st)
	}
}

// With OpenPresence every user sees everyone's.
func TestOpenPresence(t *testing.T) {
	h := start(t, func(eo *edge.Options, _ *relaylog.Options) { eo.OpenPresence = true })
	h.dial(1)
	if st := h.status(3, 1); !st.Online {
		t.Fatalf("with open presence a stranger sees %+v, want online", st)
	}
}

// Status lookups, read marks, REST typing and watch frames share a per-user
// allowance; past it they answer 429 with Retry-After.
func TestCallsAreRateLimited(t *testing.T) {
	h := start(t, func(eo *edge.Options, _ *relaylog.Options) { eo.OpenPresence, eo.CallRate, eo.CallBurst = false, 1, 5 })
	for range 5 {
		h.status(3, 1)
	}
	code, hdr, b := h.do("GET", "/v1/users/1/status", 3, nil)
	if code != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" || decodeError(t, b).Code != wire.CodeRateLimited {
		t.Fatalf("sixth lookup at once: %d Retry-After=%q %s", code, hdr.Get("Retry-After"), b)
	}
	code, _, b = h.do("POST", "/v1/conversations/1/read", 3, wire.ReadRequest{UpToMessageID: 1})
	if code != http.StatusTooManyRequests {
		t.Fatalf("a read mark past the allowance: %d %s", code, b)
	}
	// Another user has an allowance of their own.
	h.status(4, 1)
	ws := h.dial(3)
	ws.sendFrame(wire.TypeWatch, wire.Watch{UserIDs: []int64{1}})
	f := ws.next(wire.TypeError)
	var e wire.ErrorDetail
	if err := json.Unmarshal(f.Payload, &e); err != nil || e.Code != wire.CodeRateLimited {
		t.Fatalf("a watch past the allowance: %s", f.Payload)
	}
}

// edgeState reads edgenode_edge_state_entries{kind} from /metrics.
func edgeState(h *harness, kind string) int {
	h.t.Helper()
	_, _, b := h.do("GET", "/metrics", 0, nil)
	prefix := `edgenode_edge_state_entries{kind="` + kind + `"} `
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				h.t.Fatalf("%s: %v", line, err)
			}
			return int(n)
		}
	}
	h.t.Fatalf("no %s in /metrics", prefix)
	return 0
}

// Rate-limit buckets are kept only for users active within about a
// minute: a node's limiter state is bounded by its active users, not by
// every user it ever served.
func TestRateBucketsOfIdleUsersAreForgotten(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	h := start(t, func(eo *edge.Options, _ *relaylog.Options) { eo.Now = clock })
	for u := int64(1); u <= 300; u++ {
		h.status(u, 1)
	}
	if n := edgeState(h, "rate_buckets"); n != 300 {
		t.Fatalf("%d rate buckets after 300 users called, want 300", n)
	}
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	// 64 users in a row touch every stripe of the limiter once.
	for u := int64(1001); u <= 1064; u++ {
		h.status(u, 1)
	}
	if n := edgeState(h, "rate_buckets"); n != 64 {
		t.Fatalf("%d rate buckets two minutes later, want the 64 users of the last minute", n)
	}
}
