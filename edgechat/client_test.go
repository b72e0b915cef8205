package edgechat_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgenode/edgenode/edgechat"
	"github.com/edgenode/edgenode/node"
)

const alice, bob = int64(1001), int64(2002)

func TestTwoClientsChat(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, filepath.Join(dir, "node"), "", "eu")
	a := newClient(t, dir, n.URL(), alice)
	b := newClient(t, dir, n.URL(), bob)
	if err := b.WatchIDs([]int64{alice}); err != nil {
		t.Fatal(err)
	}
	a.Start()
	b.Start()
	waitFor(t, "both online", 10*time.Second, func() bool { return a.Connected() && b.Connected() })

	m, err := a.Send(bob, "hi bob")
	if err != nil {
		t.Fatal(err)
	}
	if m.Status != edgechat.StatusPending || m.RequestID == 0 || m.MessageID != 0 {
		t.Fatalf("stored message %+v", m)
	}
	// Shown at once, before the server answered or not.
	if h := history(t, a, bob); len(h) != 1 || h[0].Content != "hi bob" {
		t.Fatalf("alice's conversation right after send: %+v", h)
	}
	waitFor(t, "bob receives it", 10*time.Second, func() bool { return len(history(t, b, alice)) == 1 })
	// Presence is only between users who share a conversation: bob's
	// watch of alice showed her never connected until her message
	// arrived, and now shows her online.
	waitFor(t, "bob sees alice online", 10*time.Second, func() bool {
		return b.rec.sawStatus(func(ci edgechat.ContactInfo) bool { return ci.UserID == alice && ci.Online })
	})
	// The listener is told after the commit that history reads.
	waitFor(t, "bob's listener told", 10*time.Second, func() bool { return b.rec.changes(alice) > 0 })
	got := history(t, b, alice)[0]
	if got.Content != "hi bob" || got.FromUserID != alice || got.Status != edgechat.StatusDelivered || got.MessageID == 0 {
		t.Fatalf("bob got %+v", got)
	}
	chats, _ := b.Chats()
	if chats.Len() != 1 || chats.Get(0).UnreadCount != 1 || chats.Get(0).Contact.ID != alice {
		t.Fatalf("bob's chat list %+v", chats.Conversations())
	}
	waitFor(t, "alice sees DELIVERED", 10*time.Second, func() bool {
		h := history(t, a, bob)
		return len(h) == 1 && h[0].Status == edgechat.StatusDelivered && h[0].MessageID == got.MessageID
	})

	if err := b.MarkRead(alice); err != nil {
		t.Fatal(err)
	}
	if chats, _ := b.Chats(); chats.Get(0).UnreadCount != 0 {
		t.Fatalf("unread after MarkRead: %d", chats.Get(0).UnreadCount)
	}
	waitFor(t, "alice sees READ", 10*time.Second, func() bool {
		h := history(t, a, bob)
		return len(h) == 1 && h[0].Status == edgechat.StatusRead
	})

	// Typing reaches bob without a watch on his side being needed.
	if err := a.SetTyping(bob, true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "bob sees alice typing", 10*time.Second, func() bool { return b.ContactInfo(alice).Typing })

	// A reply, and the chat list puts the newest conversation first.
	if _, err := b.Send(alice, "hello alice"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "alice receives the reply", 10*time.Second, func() bool { return len(history(t, a, bob)) == 2 })
	if h := history(t, a, bob); contents(h) != "hi bob,hello alice" || h[0].MessageID >= h[1].MessageID {
		t.Fatalf("alice's conversation %+v", h)
	}

	// Alice leaves: bob sees her offline with a last-seen time.
	a.Close()
	waitFor(t, "bob sees alice offline", 10*time.Second, func() bool {
		ci := b.ContactInfo(alice)
		return !ci.Online && ci.LastConnectedAt != ""
	})
}

func TestOfflineRecipientSyncsOnStart(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, filepath.Join(dir, "node"), "", "eu")
	a := newClient(t, dir, n.URL(), alice)
	for _, s := range []string{"one", "two", "three"} {
		if _, err := a.Send(bob, s); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Flush(5000); err != nil {
		t.Fatal(err)
	}
	if p, _ := a.PendingCount(); p != 0 {
		t.Fatalf("%d still pending after flush", p)
	}

	// Bob was offline; he opens the app later: a REST sync brings it all.
	b := newClient(t, dir, n.URL(), bob)
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	if h := history(t, b, alice); contents(h) != "one,two,three" {
		t.Fatalf("bob after sync: %q", contents(h))
	}
	// The sync acknowledged them: alice gets DELIVERED receipts.
	if err := a.Sync(); err != nil {
		t.Fatal(err)
	}
	if h := history(t, a, bob); statuses(h) != "DELIVERED,DELIVERED,DELIVERED" {
		t.Fatalf("alice's statuses after bob synced: %s", statuses(h))
	}
	// Syncing again brings nothing twice.
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	if h := history(t, b, alice); len(h) != 3 {
		t.Fatalf("bob has %d after second sync", len(h))
	}
}

// The server is down while alice writes; her messages wait as PENDING, and
// are delivered exactly once, in order, when it is back.
func TestSendsWhileServerDownDeliveredOnceWhenBack(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	ndir := filepath.Join(dir, "node")
	n := startNode(t, ndir, addr, "eu")
	url := n.URL()
	a := newClient(t, dir, url, alice)
	a.Start()
	waitFor(t, "alice online", 10*time.Second, a.Connected)
	n.Shutdown(context.Background())
	waitFor(t, "alice notices the node is gone", 10*time.Second, func() bool { return !a.Connected() })

	for _, s := range []string{"while", "you", "were", "out"} {
		if _, err := a.Send(bob, s); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "a failed attempt", 10*time.Second, func() bool {
		h := history(t, a, bob)
		return len(h) == 4 && h[0].FailCount > 0
	})
	h := history(t, a, bob)
	if statuses(h) != "PENDING,PENDING,PENDING,PENDING" {
		t.Fatalf("offline statuses %s", statuses(h))
	}

	startNode(t, ndir, addr, "eu")
	waitFor(t, "everything accepted", 20*time.Second, func() bool {
		p, _ := a.PendingCount()
		return p == 0
	})
	b := newClient(t, dir, url, bob)
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := contents(history(t, b, alice)); got != "while,you,were,out" {
		t.Fatalf("bob got %q", got)
	}
}

// The server commits a message but its answer is lost; the retry with the
// same requestId gets the same message: no loss, no duplicate.
func TestAnswerLostMidSendNoDuplicate(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, filepath.Join(dir, "node"), "", "eu")
	proxy := newCutProxy(t, n.Addr().String())
	a := newClient(t, dir, proxy.url(), alice)
	proxy.setDrop(true)
	if _, err := a.Send(bob, "exactly once"); err != nil {
		t.Fatal(err)
	}
	if err := a.Flush(3000); err == nil {
		t.Fatal("flush succeeded through a proxy that drops answers")
	}
	h := history(t, a, bob)
	if len(h) != 1 || h[0].MessageID != 0 || h[0].FailCount != 1 {
		t.Fatalf("after the lost answer: %+v", h)
	}
	proxy.setDrop(false)
	if err := a.Flush(5000); err != nil {
		t.Fatal(err)
	}
	h = history(t, a, bob)
	if len(h) != 1 || h[0].MessageID == 0 || h[0].Status != edgechat.StatusSynced {
		t.Fatalf("after the retry: %+v", h)
	}
	b := newClient(t, dir, n.URL(), bob)
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	got := history(t, b, alice)
	if len(got) != 1 || got[0].MessageID != h[0].MessageID {
		t.Fatalf("bob got %+v, alice has %d", got, h[0].MessageID)
	}
}

// The process dies while a request is SENT: the timeout controller makes
// it FAILED once the send timeout has passed, and it is retried.
func TestRequestLeftSentByACrashIsRetried(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, filepath.Join(dir, "node"), "", "eu")
	proxy := newCutProxy(t, n.Addr().String())
	a := newClient(t, dir, proxy.url(), alice)
	proxy.setHang(true)
	m, _ := a.Send(bob, "survives a crash")
	a.Flush(300) // gives up while the request is on the wire, as a killed app would
	if r, _ := a.Request(m.RequestID); r == nil || r.Status != edgechat.RequestSent {
		t.Fatalf("request after the cut %+v", r)
	}
	a.Close()
	proxy.setHang(false)
	a2 := newClient(t, dir, proxy.url(), alice, func(c *edgechat.Config) { c.SendTimeoutMillis = 200 })
	// The server may have accepted it: a 409 request_expired would not
	// re-stamp it.
	if r, _ := a2.Request(m.RequestID); r == nil || r.Status != edgechat.RequestFailed || !r.MaybeAccepted {
		t.Fatalf("request after the timeout controller %+v", r)
	}
	waitFor(t, "the orphaned request retried", 10*time.Second, func() bool {
		a2.Flush(2000)
		p, _ := a2.PendingCount()
		return p == 0
	})
	b := newClient(t, dir, n.URL(), bob)
	b.Sync()
	if got := history(t, b, alice); contents(got) != "survives a crash" {
		t.Fatalf("bob got %q", contents(got))
	}
}

func TestOrderingPendingAfterAcknowledged(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, filepath.Join(dir, "node"), "", "eu")
	a := newClient(t, dir, n.URL(), alice)
	b := newClient(t, dir, n.URL(), bob)
	// Acknowledged messages in both directions.
	a.Send(bob, "a1")
	a.Flush(5000)
	b.Send(alice, "b1")
	b.Flush(5000)
	a.Send(bob, "a2")
	a.Flush(5000)
	// Two pending ones, written before bob's next reply arrives.
	a.Send(bob, "p1")
	a.Send(bob, "p2")
	b.Send(alice, "b2")
	b.Flush(5000)
	if err := a.Sync(); err != nil {
		t.Fatal(err)
	}
	h := history(t, a, bob)
	if got := contents(h); got != "a1,b1,a2,b2,p1,p2" {
		t.Fatalf("merged order %q", got)
	}
	for i := 1; i < 4; i++ {
		if h[i].MessageID <= h[i-1].MessageID {
			t.Fatalf("acknowledged messages not by id: %+v", h)
		}
	}
	if h[4].Status != edgechat.StatusPending || h[5].Status != edgechat.StatusPending || h[4].CreatedAt > h[5].CreatedAt {
		t.Fatalf("pending part %+v", h[4:])
	}
	// Once accepted they take their place by id, still after b2 since the
	// server assigns them later ids.
	a.Flush(5000)
	h = history(t, a, bob)
	if contents(h) != "a1,b1,a2,b2,p1,p2" || h[5].MessageID == 0 {
		t.Fatalf("after flush %+v", h)
	}
	chats, _ := a.Chats()
	if chats.Len() != 1 || chats.Get(0).LastMessageSummary != "p2" || !chats.Get(0).LastMessageFromMe {
		t.Fatalf("preview %+v", chats.Conversations())
	}
}

func TestPaginationKeyset(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, filepath.Join(dir, "node"), "", "eu")
	a := newClient(t, dir, n.URL(), alice)
	b := newClient(t, dir, n.URL(), bob)
	const total = 230
	for i := range total {
		if _, err := b.Send(alice, "m"+itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Flush(30000); err != nil {
		t.Fatal(err)
	}
	if err := a.Sync(); err != nil {
		t.Fatal(err)
	}
	a.Send(bob, "pending one") // not flushed: the newest page ends with it
	var pages [][]edgechat.Message
	before := int64(0)
	for {
		p, err := a.History(bob, before, 50)
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, p.Messages())
		if !p.HasMore {
			break
		}
		before = p.NextBefore
	}
	if len(pages) != 5 {
		t.Fatalf("%d pages", len(pages))
	}
	first := pages[0]
	if first[len(first)-1].Content != "pending one" || len(first) != 51 {
		t.Fatalf("newest page ends with %q (%d items)", first[len(first)-1].Content, len(first))
	}
	var all []edgechat.Message
	for i := len(pages) - 1; i >= 0; i-- {
		all = append(all, pages[i]...)
	}
	for i := range total {
		if all[i].Content != "m"+itoa(i) {
			t.Fatalf("item %d is %q", i, all[i].Content)
		}
	}
}

func TestEviction(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, filepath.Join(dir, "node"), "", "eu")
	a := newClient(t, dir, n.URL(), alice)
	b := newClient(t, dir, n.URL(), bob)
	carol := newClient(t, dir, n.URL(), 3003)
	b.Send(alice, "old from bob")
	b.Flush(5000)
	a.Sync()
	h := history(t, a, bob)
	cut := time.Now()
	// The cut must be after the first message's commit millisecond.
	waitFor(t, "clock past the first message", time.Second, func() bool { return time.Since(cut) > 5*time.Millisecond })
	cut = time.Now()
	b.Send(alice, "new from bob")
	b.Flush(5000)
	carol.Send(alice, strings.Repeat("x", 1000))
	carol.Flush(5000)
	a.Sync()
	a.Send(3003, "pending to carol")

	usage, err := a.Usage()
	if err != nil {
		t.Fatal(err)
	}
	if usage.Len() != 2 || usage.Get(0).ContactID != 3003 || usage.Get(0).Messages != 1 || usage.Get(0).Pending != 1 || usage.Get(1).Messages != 2 || usage.DatabaseBytes <= 0 {
		t.Fatalf("usage %+v", usage.Usage())
	}
	deleted, err := a.DeleteMessagesBefore(cut.UnixMilli())
	if err != nil {
		t.Fatal(err)
	}
	if deleted != 1 {
		t.Fatalf("deleted %d", deleted)
	}
	if got := contents(history(t, a, bob)); got != "new from bob" || h[0].Content != "old from bob" {
		t.Fatalf("after eviction %q", got)
	}
	if err := a.DeleteConversation(3003); err != nil {
		t.Fatal(err)
	}
	if got := history(t, a, 3003); len(got) != 0 {
		t.Fatalf("carol's conversation after delete: %+v", got)
	}
	chats, _ := a.Chats()
	if chats.Len() != 1 || chats.Get(0).Contact.ID != bob {
		t.Fatalf("chats after eviction %+v", chats.Conversations())
	}
}

func TestFailedForGoodThenResendOrDelete(t *testing.T) {
	dir := t.TempDir()
	down := freeAddr(t)
	a := newClient(t, dir, "http://"+down, alice, func(c *edgechat.Config) { c.MaxAttempts = 2; c.RetryBaseMillis = 20 })
	a.Start()
	m, _ := a.Send(bob, "doomed")
	waitFor(t, "FAILED for good", 10*time.Second, func() bool {
		h := history(t, a, bob)
		return len(h) == 1 && h[0].Status == edgechat.StatusFailed
	})
	r, err := a.Request(m.RequestID)
	if err != nil || r.FailCount != 2 || r.Status != edgechat.RequestFailed {
		t.Fatalf("request %+v %v", r, err)
	}
	// No more attempts once failed for good.
	if err := a.Resend(m.RequestID); err != nil {
		t.Fatal(err)
	}
	if h := history(t, a, bob); h[0].Status != edgechat.StatusPending {
		t.Fatalf("after resend %s", h[0].Status)
	}
	waitFor(t, "FAILED again", 10*time.Second, func() bool { return history(t, a, bob)[0].Status == edgechat.StatusFailed })
	if err := a.DeleteRequest(m.RequestID); err != nil {
		t.Fatal(err)
	}
	if h := history(t, a, bob); len(h) != 0 {
		t.Fatalf("after delete %+v", h)
	}

	// A message the server refuses (too large) fails for good at once.
	n := startNode(t, filepath.Join(dir, "node"), "", "eu")
	b := newClient(t, dir, n.URL(), bob)
	big, _ := b.Send(alice, strings.Repeat("y", 5000))
	b.Flush(5000)
	if r, _ := b.Request(big.RequestID); r == nil || r.FailCount != 1 || history(t, b, alice)[0].Status != edgechat.StatusFailed {
		t.Fatalf("refused request %+v", r)
	}
}

// The client picks an edge from GET /v1/edges; when that node goes away it
// reconnects to another and keeps receiving.
func TestReconnectToAnotherEdge(t *testing.T) {
	if testing.Short() {
		t.Skip("three nodes")
	}
	dir := t.TempDir()
	n1 := startNode(t, filepath.Join(dir, "n1"), "", "eu")
	gossip := n1.Members.GossipAddr()
	n2 := startNode(t, filepath.Join(dir, "n2"), "", "us", gossip)
	n3 := startNode(t, filepath.Join(dir, "n3"), "", "ap", gossip)
	nodes := []*node.Node{n1, n2, n3}
	waitFor(t, "three members", 20*time.Second, func() bool { return len(n1.Members.Alive()) == 3 })
	a := newClient(t, dir, n1.URL(), alice)
	b := newClient(t, dir, n1.URL(), bob)
	if err := b.RefreshEdges(); err != nil {
		t.Fatal(err)
	}
	if e := b.Edges(); e.Len() != 3 {
		t.Fatalf("edges %d", e.Len())
	}
	b.Start()
	waitFor(t, "bob online", 10*time.Second, b.Connected)
	first := b.CurrentEdge()
	var victim *node.Node
	for _, n := range nodes {
		if n.URL() == first {
			victim = n
		}
	}
	if victim == nil {
		t.Fatalf("bob's edge %s is none of the nodes", first)
	}
	waitFor(t, "every shard replicated", 30*time.Second, func() bool {
		ok := shardsReplicated(n1)
		if !ok {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			t.Logf("shards %+v", n1.Cluster.Shards(ctx))
			cancel()
			time.Sleep(time.Second)
		}
		return ok
	})
	// A drain closes sockets with 1012: the client goes to the next edge
	// at once.
	go victim.Shutdown(context.Background())
	waitFor(t, "bob reconnected elsewhere", 20*time.Second, func() bool { return b.Connected() && b.CurrentEdge() != first })
	var via string
	for _, n := range nodes {
		if n != victim {
			via = n.URL()
		}
	}
	a2 := newClient(t, filepath.Join(dir, "a2"), via, alice)
	_ = a
	if _, err := a2.Send(bob, "after failover"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "sent after failover", 20*time.Second, func() bool { a2.Flush(3000); p, _ := a2.PendingCount(); return p == 0 })
	waitFor(t, "bob receives after failover", 20*time.Second, func() bool { return contents(history(t, b, alice)) == "after failover" })
}

// shardsReplicated: every shard has three voters and a leader, so that
// losing one node keeps a quorum.
func shardsReplicated(n *node.Node) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for _, s := range n.Cluster.Shards(ctx) {
		if s.Leader == "" || len(s.Voters) != 3 {
			return false
		}
	}
	return true
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}
