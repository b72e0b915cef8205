package edgechat

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"

	"github.com/edgenode/edgenode/wire"
)

// Storage management, the seed's user-managed eviction: show usage per
// conversation and let the user delete a conversation or old messages.

// Usage returns the storage each conversation takes, largest first.
func (c *Client) Usage() (*UsageList, error) {
	ctx := context.Background()
	rows, err := c.store.db.QueryContext(ctx, `SELECT contact_id, count(*), sum(length(CAST(content AS BLOB))), min(id) FROM Messages GROUP BY contact_id`)
	if err != nil {
		return nil, fmt.Errorf("client: usage: %w", err)
	}
	idx := map[int64]int{}
	var out []ConversationUsage
	for rows.Next() {
		var u ConversationUsage
		var oldest int64
		if err := rows.Scan(&u.ContactID, &u.Messages, &u.ContentBytes, &oldest); err != nil {
			rows.Close()
			return nil, err
		}
		u.OldestAt = wire.FormatUnixMilli(commitMs(oldest))
		idx[u.ContactID] = len(out)
		out = append(out, u)
	}
	rows.Close()
	rows, err = c.store.db.QueryContext(ctx, `SELECT to_user_id, count(*), sum(length(CAST(content AS BLOB))) FROM MessageRequests GROUP BY to_user_id`)
	if err != nil {
		return nil, fmt.Errorf("client: usage: %w", err)
	}
	for rows.Next() {
		var id int64
		var n int
		var bytes int64
		if err := rows.Scan(&id, &n, &bytes); err != nil {
			rows.Close()
			return nil, err
		}
		i, ok := idx[id]
		if !ok {
			i = len(out)
			out = append(out, ConversationUsage{ContactID: id})
		}
		out[i].Pending += n
		out[i].ContentBytes += bytes
	}
	rows.Close()
	slices.SortStableFunc(out, func(a, b ConversationUsage) int {
		if a.ContentBytes != b.ContentBytes {
			if a.ContentBytes > b.ContentBytes {
				return -1
			}
			return 1
		}
		return int(a.ContactID - b.ContactID)
	})
	l := &UsageList{items: out}
	var pages, size int64
	c.store.db.QueryRow(`PRAGMA page_count`).Scan(&pages)
	c.store.db.QueryRow(`PRAGMA page_size`).Scan(&size)
	l.DatabaseBytes = pages * size
	return l, nil
}

// DeleteConversation deletes every message of the conversation with
// contactID, and its unsent requests. The contact stays known.
func (c *Client) DeleteConversation(contactID int64) error {
	ctx := context.Background()
	err := c.store.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM Messages WHERE contact_id = ?`, contactID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM MessageRequests WHERE to_user_id = ?`, contactID)
		return err
	})
	if err != nil {
		return fmt.Errorf("client: delete conversation: %w", err)
	}
	c.notify.change(Change{Kind: ChangeConversationRemoved, ContactID: contactID})
	return nil
}

// DeleteMessagesBefore deletes every accepted message the server committed
// before unixMillis, in every conversation, and returns how many it
// deleted. The date is the server's (from the message id), not the
// sender's clock. Pending requests are never deleted this way.
func (c *Client) DeleteMessagesBefore(unixMillis int64) (int, error) {
	ctx := context.Background()
	limit := firstIDAt(time.UnixMilli(unixMillis))
	var n int64
	var contacts []int64
	err := c.store.write(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT DISTINCT contact_id FROM Messages WHERE id < ?`, limit)
		if err != nil {
			return err
		}
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			contacts = append(contacts, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM Messages WHERE id < ?`, limit)
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("client: delete old messages: %w", err)
	}
	c.notify.conversation(contacts...)
	return int(n), nil
}

// Vacuum gives the space of deleted rows back to the file system.
func (c *Client) Vacuum() error {
	c.store.writeMu.Lock()
	defer c.store.writeMu.Unlock()
	_, err := c.store.db.Exec(`VACUUM`)
	return err
}
