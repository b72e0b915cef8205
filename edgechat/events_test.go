package edgechat_test

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/edgenode/edgenode/edgechat"
	"github.com/edgenode/edgenode/wire"
)

// changesSeen is every change r's listener got so far, in order.
func changesSeen(r *recorder) []edgechat.Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.all)
}

// matches says whether ch is want, comparing only the fields set in want
// (Kind always).
func matches(ch, want edgechat.Change) bool {
	return ch.Kind == want.Kind &&
		(want.ContactID == 0 || ch.ContactID == want.ContactID) &&
		(want.MessageID == 0 || ch.MessageID == want.MessageID) &&
		(want.RequestID == 0 || ch.RequestID == want.RequestID) &&
		(want.Status == "" || ch.Status == want.Status)
}

// waitChange waits until r's listener got a change matching want and
// returns the first such change and its place among r's changes.
func waitChange(t testing.TB, r *recorder, what string, want edgechat.Change) (int, edgechat.Change) {
	t.Helper()
	i := -1
	var got edgechat.Change
	defer func() {
		if i < 0 { // waitFor gave up
			t.Logf("changes so far:%s", kinds(r))
		}
	}()
	waitFor(t, what, 10*time.Second, func() bool {
		chs := changesSeen(r)
		i = slices.IndexFunc(chs, func(ch edgechat.Change) bool { return matches(ch, want) })
		if i >= 0 {
			got = chs[i]
		}
		return i >= 0
	})
	return i, got
}

// kinds lists r's changes so far, for failure messages.
func kinds(r *recorder) string {
	s := ""
	for _, ch := range changesSeen(r) {
		s += " " + ch.Kind + "/" + ch.Status
	}
	return s
}

func inOrder(t testing.TB, who string, idx ...int) {
	t.Helper()
	if !slices.IsSorted(idx) {
		t.Fatalf("%s: changes out of order: places %v", who, idx)
	}
}

// A message's life, as both listeners see it: each step is one precise
// change (message added, accepted, delivered, read), never a bare "the
// conversation changed".
func TestChangesFollowAMessage(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, filepath.Join(dir, "node"), "", "eu")
	a := newClient(t, dir, n.URL(), alice)
	b := newClient(t, dir, n.URL(), bob)
	a.Start()

	m, err := a.Send(bob, "hi bob")
	if err != nil {
		t.Fatal(err)
	}
	iAdded, _ := waitChange(t, a.rec, "alice's message_added", edgechat.Change{Kind: edgechat.ChangeMessageAdded, ContactID: bob, RequestID: m.RequestID, Status: edgechat.StatusPending})
	iAccepted, acc := waitChange(t, a.rec, "alice's message_accepted", edgechat.Change{Kind: edgechat.ChangeMessageAccepted, ContactID: bob, RequestID: m.RequestID})
	// Bob has not connected yet: nothing can have been delivered.
	if acc.MessageID == 0 || acc.Status != edgechat.StatusSynced {
		t.Fatalf("accepted %+v", acc)
	}
	if h := history(t, a, bob); len(h) != 1 || h[0].MessageID != acc.MessageID || h[0].Status != acc.Status {
		t.Fatalf("alice's conversation %+v after %+v", h, acc)
	}

	b.Start()
	_, got := waitChange(t, b.rec, "bob's message_added", edgechat.Change{Kind: edgechat.ChangeMessageAdded, ContactID: alice, MessageID: acc.MessageID})
	if got.Status != edgechat.StatusDelivered || got.RequestID != 0 {
		t.Fatalf("bob's change %+v", got)
	}
	if h := history(t, b, alice); len(h) != 1 || h[0].MessageID != got.MessageID || h[0].Status != got.Status {
		t.Fatalf("bob's conversation %+v after %+v", h, got)
	}
	iDelivered, _ := waitChange(t, a.rec, "alice's message_status DELIVERED", edgechat.Change{Kind: edgechat.ChangeMessageStatus, ContactID: bob, MessageID: acc.MessageID, Status: edgechat.StatusDelivered})

	if err := b.MarkRead(alice); err != nil {
		t.Fatal(err)
	}
	iRead, _ := waitChange(t, a.rec, "alice's message_status READ", edgechat.Change{Kind: edgechat.ChangeMessageStatus, ContactID: bob, MessageID: acc.MessageID, Status: edgechat.StatusRead})
	inOrder(t, "alice", iAdded, iAccepted, iDelivered, iRead)
	if h := history(t, a, bob); len(h) != 1 || h[0].Status != edgechat.StatusRead {
		t.Fatalf("alice's conversation after READ: %+v", h)
	}
	// Every change on alice's side named its message.
	for _, ch := range changesSeen(a.rec) {
		if ch.Kind == edgechat.ChangeConversation {
			t.Fatalf("alice got a bare %+v; all: %+v", ch, changesSeen(a.rec))
		}
	}
}

// Requests on the device: a draft is added, queued and removed; a send
// that fails for good turns FAILED, Resend makes it PENDING and it is then
// accepted; deleting the conversation removes it as a whole.
func TestChangesOfRequestsAndConversations(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, filepath.Join(dir, "node"), "", "eu")
	proxy := newAPIProxy(t, n.URL())
	proxy.setRule(func(req wire.NewMessageRequest, earlier []wire.NewMessageRequest) proxyAction {
		if req.Content == "doomed" && len(postsOf(earlier, "doomed")) == 0 {
			return answerUnavailable
		}
		return pass
	})
	// Not started: Flush sends, so that every step is the test's.
	a := newClient(t, dir, proxy.url(), alice, func(c *edgechat.Config) { c.MaxAttempts = 1 })

	d, err := a.SaveDraft(bob, "a draft")
	if err != nil {
		t.Fatal(err)
	}
	iDraft, _ := waitChange(t, a.rec, "draft added", edgechat.Change{Kind: edgechat.ChangeMessageAdded, ContactID: bob, RequestID: d.RequestID, Status: edgechat.StatusPending})
	if err := a.SendDraft(d.RequestID); err != nil {
		t.Fatal(err)
	}
	iQueued, _ := waitChange(t, a.rec, "draft queued", edgechat.Change{Kind: edgechat.ChangeMessageStatus, ContactID: bob, RequestID: d.RequestID, Status: edgechat.StatusPending})
	if err := a.DeleteRequest(d.RequestID); err != nil {
		t.Fatal(err)
	}
	iRemoved, _ := waitChange(t, a.rec, "draft removed", edgechat.Change{Kind: edgechat.ChangeMessageRemoved, ContactID: bob, RequestID: d.RequestID})

	f, err := a.Send(bob, "doomed")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Flush(5000); err == nil {
		t.Fatal("flush through a 503 succeeded")
	}
	iFailed, _ := waitChange(t, a.rec, "FAILED for good", edgechat.Change{Kind: edgechat.ChangeMessageStatus, ContactID: bob, RequestID: f.RequestID, Status: edgechat.StatusFailed})
	if h := history(t, a, bob); len(h) != 1 || h[0].Status != edgechat.StatusFailed {
		t.Fatalf("conversation after the failure: %+v", h)
	}
	if err := a.Resend(f.RequestID); err != nil {
		t.Fatal(err)
	}
	iResent, _ := waitChange(t, a.rec, "PENDING again", edgechat.Change{Kind: edgechat.ChangeMessageStatus, ContactID: bob, RequestID: f.RequestID, Status: edgechat.StatusPending})
	if err := a.Flush(5000); err != nil {
		t.Fatal(err)
	}
	iAccepted, acc := waitChange(t, a.rec, "accepted", edgechat.Change{Kind: edgechat.ChangeMessageAccepted, ContactID: bob, RequestID: f.RequestID, Status: edgechat.StatusSynced})
	if h := history(t, a, bob); len(h) != 1 || h[0].MessageID == 0 || h[0].MessageID != acc.MessageID {
		t.Fatalf("conversation %+v after %+v", h, acc)
	}

	if err := a.DeleteConversation(bob); err != nil {
		t.Fatal(err)
	}
	iGone, _ := waitChange(t, a.rec, "conversation removed", edgechat.Change{Kind: edgechat.ChangeConversationRemoved, ContactID: bob})
	if h := history(t, a, bob); len(h) != 0 {
		t.Fatalf("conversation after DeleteConversation: %+v", h)
	}
	inOrder(t, "alice", iDraft, iQueued, iRemoved, iFailed, iResent, iAccepted, iGone)
}
