package edgechat

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgenode/edgenode/wire"
)

// benchClient opens a client on a fresh chats.db (no network is used).
func benchClient(b *testing.B) *Client {
	b.Helper()
	c, err := Open(&Config{ServerURL: "http://127.0.0.1:1", UserID: 1, DBPath: filepath.Join(b.TempDir(), "chats.db")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

// fill stores n messages per contact, alternating directions, as the
// socket would (batched transactions of 500).
func fill(b *testing.B, c *Client, contacts, perContact int) {
	b.Helper()
	ctx := context.Background()
	id := firstIDAt(time.Now().Add(-24 * time.Hour))
	var batch []wire.Message
	flush := func() {
		var a applied
		if err := c.store.write(ctx, func(tx *sql.Tx) error { return c.applyEvents(ctx, tx, batch, nil, 0, &a) }); err != nil {
			b.Fatal(err)
		}
		batch = batch[:0]
	}
	for i := range perContact {
		for k := range contacts {
			id += 1 << 12
			contact := int64(100 + k)
			m := wire.Message{MessageID: id, FromUserID: contact, ToUserID: 1, Status: wire.StatusDelivered,
				Content: fmt.Sprintf("message %d of a conversation, about the length of a chat line", i), CreatedAt: wire.FormatUnixMilli(commitMs(id))}
			if i%2 == 1 {
				m.FromUserID, m.ToUserID, m.Status = 1, contact, wire.StatusRead
			}
			batch = append(batch, m)
			if len(batch) == 500 {
				flush()
			}
		}
	}
	if len(batch) > 0 {
		flush()
	}
}

// Opening a conversation of 10,000 messages: the first screen (50 newest
// plus pending ones), the way the conversation screen loads it.
func BenchmarkOpenConversation10k(b *testing.B) {
	c := benchClient(b)
	fill(b, c, 1, 10000)
	for range 3 {
		c.Send(100, "pending")
	}
	b.ResetTimer()
	for b.Loop() {
		l, err := c.History(100, 0, 50)
		if err != nil || l.Len() != 53 {
			b.Fatalf("%v %d", err, l.Len())
		}
	}
}

// Loading all 10,000 messages of one conversation at once.
func BenchmarkLoadWholeConversation10k(b *testing.B) {
	c := benchClient(b)
	fill(b, c, 1, 10000)
	b.ResetTimer()
	for b.Loop() {
		l, err := c.History(100, 0, 10000)
		if err != nil || l.Len() != 10000 {
			b.Fatalf("%v %d", err, l.Len())
		}
	}
}

// The chat list of 1,000 conversations (10 messages each, half unread).
func BenchmarkChats1000(b *testing.B) {
	c := benchClient(b)
	fill(b, c, 1000, 10)
	b.ResetTimer()
	for b.Loop() {
		l, err := c.Chats()
		if err != nil || l.Len() != 1000 || l.Get(0).UnreadCount != 5 {
			b.Fatalf("%v %d", err, l.Len())
		}
	}
}
