package edgechat

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"
)

// Chats returns the chat list: one ConversationPreview per contact with at
// least one message or pending request, the most recent conversation
// first, with unread counts. It reads the local database only.
//
// "Most recent" compares the server's commit time of accepted messages
// (from the id) with the local creation time of pending ones, so that a
// sender's wrong clock cannot move a conversation to the top.
func (c *Client) Chats() (*ConversationList, error) {
	return c.chats(context.Background())
}

func (c *Client) chats(ctx context.Context) (*ConversationList, error) {
	rows, err := c.store.db.QueryContext(ctx, `
		SELECT u.id, u.name, coalesce(u.avatar_url, ''), coalesce(u.last_connected_at, ''),
			m.id, m.from_user_id, m.content, `+messageStatus("m")+`, m.created_at,
			(SELECT count(*) FROM Messages x WHERE x.contact_id = u.id AND x.id > u.read_up_to AND x.from_user_id = u.id)
		FROM (SELECT contact_id, max(id) AS id FROM Messages GROUP BY contact_id) last
		JOIN Messages m ON m.id = last.id
		JOIN Users u ON u.id = last.contact_id`)
	if err != nil {
		return nil, fmt.Errorf("client: chats: %w", err)
	}
	byContact := map[int64]int{}
	var list []ConversationPreview
	for rows.Next() {
		var p ConversationPreview
		var id, from int64
		if err := rows.Scan(&p.Contact.ID, &p.Contact.Name, &p.Contact.AvatarURL, &p.Contact.LastConnectedAt,
			&id, &from, &p.LastMessageSummary, &p.LastMessageStatus, &p.LastMessageTimestamp, &p.UnreadCount); err != nil {
			rows.Close()
			return nil, err
		}
		p.LastMessageFromMe = from == c.me
		p.sortMs = commitMs(id)
		byContact[p.Contact.ID] = len(list)
		list = append(list, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// Pending requests come after every accepted message of their
	// conversation, so the newest one, if any, is the last message.
	rows, err = c.store.db.QueryContext(ctx, `
		SELECT u.id, u.name, coalesce(u.avatar_url, ''), coalesce(u.last_connected_at, ''),
			r.content, r.status, r.created_at, r.next_attempt_at IS NULL
		FROM MessageRequests r JOIN Users u ON u.id = r.to_user_id
		ORDER BY r.created_at, r.seq`)
	if err != nil {
		return nil, fmt.Errorf("client: chats: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var u User
		var content, status, created string
		var stopped bool
		if err := rows.Scan(&u.ID, &u.Name, &u.AvatarURL, &u.LastConnectedAt, &content, &status, &created, &stopped); err != nil {
			return nil, err
		}
		i, ok := byContact[u.ID]
		if !ok {
			i = len(list)
			byContact[u.ID] = i
			list = append(list, ConversationPreview{Contact: u})
		}
		p := &list[i]
		p.LastMessageSummary, p.LastMessageTimestamp = content, created
		p.LastMessageStatus, p.LastMessageFromMe = viewStatus(status, stopped), true
		if t, err := time.Parse(time.RFC3339Nano, created); err == nil {
			p.sortMs = max(p.sortMs, t.UnixMilli())
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slices.SortStableFunc(list, func(a, b ConversationPreview) int {
		switch {
		case a.sortMs > b.sortMs:
			return -1
		case a.sortMs < b.sortMs:
			return 1
		}
		return int(a.Contact.ID - b.Contact.ID)
	})
	for i := range list {
		if len(list[i].LastMessageSummary) > 100 {
			list[i].LastMessageSummary = truncate(list[i].LastMessageSummary, 100)
		}
	}
	return &ConversationList{items: list}, nil
}

// truncate cuts s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}

// UnreadCount is the number of messages from contactID not marked read.
func (c *Client) UnreadCount(contactID int64) (int, error) {
	var n int
	err := c.store.db.QueryRow(`SELECT count(*) FROM Messages x JOIN Users u ON u.id = x.contact_id
		WHERE x.contact_id = ? AND x.from_user_id = ? AND x.id > u.read_up_to`, contactID, contactID).Scan(&n)
	return n, err
}

// PutUser stores or updates a contact's profile (the users repository; the
// app fills it from its contact list, which the seed assumes pre-loaded).
func (c *Client) PutUser(id int64, name, avatarURL string) error {
	ctx := context.Background()
	err := c.store.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO Users(id, name, avatar_url) VALUES (?, ?, ?)
			ON CONFLICT(id) DO UPDATE SET name = excluded.name, avatar_url = excluded.avatar_url`, id, name, avatarURL)
		return err
	})
	if err != nil {
		return fmt.Errorf("client: put user %d: %w", id, err)
	}
	c.notify.conversation(id)
	return nil
}

// User returns a stored user.
func (c *Client) User(id int64) (*User, error) {
	var u User
	err := c.store.db.QueryRow(`SELECT id, name, coalesce(avatar_url, ''), coalesce(last_connected_at, '') FROM Users WHERE id = ?`, id).
		Scan(&u.ID, &u.Name, &u.AvatarURL, &u.LastConnectedAt)
	if err == sql.ErrNoRows {
		return nil, ErrNotFound
	}
	return &u, err
}
