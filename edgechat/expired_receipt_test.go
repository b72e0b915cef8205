package edgechat_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/edgenode/edgenode/edgechat"
	"github.com/edgenode/edgenode/wire"
)

// statusExpired is the status of an EXPIRED receipt on the wire.
const statusExpired = "EXPIRED"

// expiredOf are the message ids of r's message_status EXPIRED changes.
func expiredOf(r *recorder) []int64 {
	var ids []int64
	for _, ch := range changesSeen(r) {
		if ch.Kind == edgechat.ChangeMessageStatus && ch.Status == edgechat.StatusExpired {
			ids = append(ids, ch.MessageID)
		}
	}
	return ids
}

// A message to a recipient who never connects is dropped by the server at
// the end of its retention period; the sender's device learns it from the
// EXPIRED receipt (through the socket when online, or the next sync) and
// shows the message EXPIRED.
func TestMessageExpiresUndelivered(t *testing.T) {
	for _, online := range []bool{false, true} {
		t.Run("online="+strconv.FormatBool(online), func(t *testing.T) {
			dir := t.TempDir()
			n := startNodeWith(t, filepath.Join(dir, "node"), "", "eu", []string{"--retention", "2s"})
			a := newClient(t, dir, n.URL(), alice)
			m, err := a.Send(bob, "never read")
			if err != nil {
				t.Fatal(err)
			}
			if err := a.Flush(5000); err != nil {
				t.Fatal(err)
			}
			h := history(t, a, bob)
			if len(h) != 1 || h[0].MessageID == 0 || h[0].Status != edgechat.StatusSynced {
				t.Fatalf("alice's conversation after the send: %+v", h)
			}
			id := h[0].MessageID
			if online {
				a.Start()
				waitFor(t, "alice online", 10*time.Second, a.Connected)
			}
			// The node expires by itself once a minute; a test runs it.
			waitFor(t, "the message to expire on alice's device", 15*time.Second, func() bool {
				if err := n.Expire(context.Background()); err != nil {
					t.Logf("expire: %v", err)
				}
				if !online {
					// Right after the expiry: the receipt itself is an
					// event that the short retention drops next time.
					if err := a.Sync(); err != nil {
						t.Logf("sync: %v", err)
					}
				}
				h := history(t, a, bob)
				return len(h) == 1 && h[0].Status == edgechat.StatusExpired
			})
			// The listener hears of the change after the database has it.
			waitFor(t, "the EXPIRED change reported", 5*time.Second, func() bool { return len(expiredOf(a.rec)) > 0 })
			if ids := expiredOf(a.rec); len(ids) != 1 || ids[0] != id {
				t.Fatalf("message_status EXPIRED for %v, want [%d] (request %d); all: %+v", ids, id, m.RequestID, changesSeen(a.rec))
			}
			chats, err := a.Chats()
			if err != nil {
				t.Fatal(err)
			}
			if chats.Len() != 1 || chats.Get(0).LastMessageStatus != edgechat.StatusExpired {
				t.Fatalf("alice's chat list %+v", chats.Conversations())
			}
		})
	}
}

// receiptProxy is an HTTP server in front of a real node that adds
// receipts of the test's choosing to the next sync page (GET /v1/messages)
// the node answers, as if the node had queued them.
type receiptProxy struct {
	srv *httptest.Server
	rp  *httputil.ReverseProxy

	mu     sync.Mutex
	inject []wire.Receipt
}

func newReceiptProxy(t testing.TB, backend string) *receiptProxy {
	u, err := url.Parse(backend)
	if err != nil {
		t.Fatal(err)
	}
	p := &receiptProxy{}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Header.Del("Accept-Encoding") // a body the proxy can edit
		},
		ModifyResponse: p.modify,
	}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/edges" {
			// No other edge: the client stays behind the proxy.
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, "[]")
			return
		}
		p.rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *receiptProxy) url() string { return p.srv.URL }

// add queues receipts for the next sync page.
func (p *receiptProxy) add(rs ...wire.Receipt) {
	p.mu.Lock()
	p.inject = append(p.inject, rs...)
	p.mu.Unlock()
}

func (p *receiptProxy) modify(resp *http.Response) error {
	if resp.Request.Method != http.MethodGet || resp.Request.URL.Path != "/v1/messages" || resp.StatusCode != http.StatusOK {
		return nil
	}
	p.mu.Lock()
	rs := p.inject
	p.inject = nil
	p.mu.Unlock()
	if len(rs) == 0 {
		return nil
	}
	var page wire.SyncResponse
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, &page); err != nil {
		return err
	}
	page.Receipts = append(page.Receipts, rs...)
	body, err = json.Marshal(page)
	if err != nil {
		return err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	return nil
}

// The client side of EXPIRED receipts, whatever the server does: a sync
// page with an EXPIRED receipt marks only my messages to that contact that
// are still SYNCED; a DELIVERED one stays DELIVERED, and later DELIVERED
// and READ receipts naming or covering an expired message leave it
// EXPIRED.
func TestExpiredReceiptFromSync(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, filepath.Join(dir, "node"), "", "eu")
	proxy := newReceiptProxy(t, n.URL())
	a := newClient(t, dir, proxy.url(), alice)
	for _, s := range []string{"one", "two", "three"} {
		if _, err := a.Send(bob, s); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Flush(5000); err != nil {
		t.Fatal(err)
	}
	h := history(t, a, bob)
	if contents(h) != "one,two,three" || statuses(h) != "SYNCED,SYNCED,SYNCED" {
		t.Fatalf("alice's conversation after the sends: %+v", h)
	}
	one, two, three := h[0].MessageID, h[1].MessageID, h[2].MessageID
	// Receipt ids follow the messages', as the server's would.
	rid := three
	receipt := func(status string, ids ...int64) wire.Receipt {
		rid++
		r := wire.Receipt{ID: rid, Status: status, ByUserID: bob, At: wire.FormatTime(time.Now())}
		if status == wire.StatusRead {
			r.UpToMessageID = ids[0]
		} else {
			r.MessageIDs = ids
		}
		return r
	}
	sync := func() {
		t.Helper()
		if err := a.Sync(); err != nil {
			t.Fatal(err)
		}
	}

	// "two" was delivered; then the server says one and two expired (an
	// EXPIRED receipt names only undelivered messages, but the device must
	// not trust that to downgrade one), and a receipt from someone else
	// changes nothing of bob's conversation.
	proxy.add(receipt(wire.StatusDelivered, two))
	proxy.add(receipt(statusExpired, one, two))
	other := receipt(statusExpired, one, two, three)
	other.ByUserID = 3003
	proxy.add(other)
	sync()
	if got := statuses(history(t, a, bob)); got != "EXPIRED,DELIVERED,SYNCED" {
		t.Fatalf("statuses after the EXPIRED receipt: %s", got)
	}
	waitFor(t, "message_status EXPIRED", 10*time.Second, func() bool { return len(expiredOf(a.rec)) > 0 })
	if ids := expiredOf(a.rec); len(ids) != 1 || ids[0] != one {
		t.Fatalf("message_status EXPIRED for %v, want [%d]; all: %+v", ids, one, changesSeen(a.rec))
	}

	// "three" expires too: it is the last message, so the chat list shows
	// EXPIRED.
	proxy.add(receipt(statusExpired, three))
	sync()
	waitFor(t, "message_status EXPIRED of three", 10*time.Second, func() bool { return len(expiredOf(a.rec)) == 2 })
	chats, err := a.Chats()
	if err != nil {
		t.Fatal(err)
	}
	if chats.Len() != 1 || chats.Get(0).LastMessageStatus != edgechat.StatusExpired {
		t.Fatalf("alice's chat list %+v", chats.Conversations())
	}

	// Receipts cannot revive an expired message: bob never got it, even
	// when a read mark's range covers it, or a replayed DELIVERED names it.
	proxy.add(receipt(wire.StatusDelivered, one, three), receipt(wire.StatusRead, three))
	sync()
	if got := statuses(history(t, a, bob)); got != "EXPIRED,READ,EXPIRED" {
		t.Fatalf("statuses after later receipts: %s", got)
	}
	waitFor(t, "message_status READ of two", 10*time.Second, func() bool {
		for _, ch := range changesSeen(a.rec) {
			if ch.Kind == edgechat.ChangeMessageStatus && ch.MessageID == two && ch.Status == edgechat.StatusRead {
				return true
			}
		}
		return false
	})
	for _, ch := range changesSeen(a.rec) {
		if (ch.MessageID == one || ch.MessageID == three) && ch.Kind == edgechat.ChangeMessageStatus && ch.Status != edgechat.StatusExpired {
			t.Fatalf("an expired message changed: %+v", ch)
		}
	}
}
