package edgechat

import (
	"time"

	"github.com/edgenode/edgenode/wire"
)

// Message statuses as the UI sees them. SYNCED, DELIVERED and READ come
// from the server; PENDING and FAILED exist only on the device and belong to
// message requests the server has not accepted yet.
const (
	StatusPending   = "PENDING"
	StatusFailed    = "FAILED"
	StatusSynced    = wire.StatusSynced
	StatusDelivered = wire.StatusDelivered
	StatusRead      = wire.StatusRead
	// StatusExpired: the server dropped my message undelivered at the end
	// of its retention period (its EXPIRED receipt); the recipient never
	// got it. The app shows it as not delivered.
	StatusExpired = wire.StatusExpired
)

// MessageRequest statuses (seed, "Sending messages").
const (
	RequestDraft   = "DRAFT"   // stored, not to be sent yet
	RequestPending = "PENDING" // queued for the scheduler
	RequestSent    = "SENT"    // on the wire, no answer yet
	RequestFailed  = "FAILED"  // the last attempt failed or timed out
)

// Connection states reported to Listener.OnConnectionChanged.
const (
	ConnOffline    = "offline"
	ConnConnecting = "connecting"
	ConnOnline     = "online"
)

// Message is one entry of a conversation: a message the server accepted
// (MessageID set) or a request it has not accepted yet (MessageID 0,
// RequestID set, Status PENDING or FAILED). Its JSON form is the seed's
// Message model plus requestId, failCount and expired for pending entries.
type Message struct {
	MessageID  int64  `json:"messageId"`
	FromUserID int64  `json:"fromUserId"`
	ToUserID   int64  `json:"toUserId"`
	Content    string `json:"content"`
	Status     string `json:"status"`
	CreatedAt  string `json:"createdAt"`
	RequestID  int64  `json:"requestId,omitempty"`
	FailCount  int    `json:"failCount,omitempty"`
	// Expired is the reason of a FAILED request the server refused with
	// 409 request_expired after an attempt whose outcome is unknown: it may
	// have been delivered already. The app should say so and ask before
	// Resend, which sends it as a new message (it may show twice).
	Expired bool `json:"expired,omitempty"`
}

// Pending reports whether m is a request not yet accepted by the server.
func (m *Message) Pending() bool { return m.MessageID == 0 }

// MessageList is a page of a conversation, oldest first: accepted messages
// by messageId, then requests not yet accepted by createdAt.
type MessageList struct {
	items []Message
	// HasMore says that older messages precede this page.
	HasMore bool
	// NextBefore is the cursor for the next older page (the smallest
	// messageId in this page), 0 when the page holds none.
	NextBefore int64
}

// Len is the number of messages in the page.
func (l *MessageList) Len() int { return len(l.items) }

// Get returns the i-th message, oldest first.
func (l *MessageList) Get(i int) *Message { m := l.items[i]; return &m }

// Messages returns the page as a slice (Go only).
func (l *MessageList) Messages() []Message { return l.items }

// User is a contact (seed, "Data models").
type User struct {
	ID              int64  `json:"id"`
	Name            string `json:"name"`
	AvatarURL       string `json:"avatarUrl"`
	LastConnectedAt string `json:"lastConnectedAt"`
}

// ConversationPreview is one row of the chat list.
type ConversationPreview struct {
	Contact              User   `json:"contact"`
	LastMessageSummary   string `json:"lastMessageSummary"`
	LastMessageTimestamp string `json:"lastMessageTimestamp"`
	UnreadCount          int    `json:"unreadCount"`
	// LastMessageStatus and LastMessageFromMe let the list show a status
	// mark; they are additions to the seed's model.
	LastMessageStatus string `json:"lastMessageStatus"`
	LastMessageFromMe bool   `json:"lastMessageFromMe"`

	sortMs int64
}

// GetContact returns the preview's contact (gomobile does not bind struct
// fields of struct type).
func (p *ConversationPreview) GetContact() *User { u := p.Contact; return &u }

// ConversationList is the chat list, most recent conversation first.
type ConversationList struct{ items []ConversationPreview }

// Len is the number of conversations.
func (l *ConversationList) Len() int { return len(l.items) }

// Get returns the i-th conversation.
func (l *ConversationList) Get(i int) *ConversationPreview { p := l.items[i]; return &p }

// Conversations returns the list as a slice (Go only).
func (l *ConversationList) Conversations() []ConversationPreview { return l.items }

// ContactInfo is what the conversation screen shows about the contact:
// online status, last seen and whether they are typing to me.
type ContactInfo struct {
	UserID          int64  `json:"userId"`
	Online          bool   `json:"online"`
	LastConnectedAt string `json:"lastConnectedAt"`
	Typing          bool   `json:"typing"`
}

// OnlineStatus renders the status line of the seed's ContactInfo.
func (c *ContactInfo) OnlineStatus() string {
	switch {
	case c.Online:
		return "online"
	case c.LastConnectedAt != "":
		return "last seen " + c.LastConnectedAt
	}
	return "offline"
}

// ConversationUsage is the storage a conversation takes (seed, "Eviction
// policy": show users their usage and let them clean up).
type ConversationUsage struct {
	ContactID    int64  `json:"contactId"`
	Messages     int    `json:"messages"`
	Pending      int    `json:"pending"`
	ContentBytes int64  `json:"contentBytes"`
	OldestAt     string `json:"oldestAt"`
}

// UsageList is the usage of every conversation, largest first.
type UsageList struct {
	items []ConversationUsage
	// DatabaseBytes is the size of chats.db (pages in use and free).
	DatabaseBytes int64
}

// Len is the number of conversations.
func (l *UsageList) Len() int { return len(l.items) }

// Get returns the i-th conversation's usage.
func (l *UsageList) Get(i int) *ConversationUsage { u := l.items[i]; return &u }

// Usage returns the list as a slice (Go only).
func (l *UsageList) Usage() []ConversationUsage { return l.items }

// Edge is an edge node and its measured round trip.
type Edge struct {
	NodeID string `json:"nodeId"`
	Region string `json:"region"`
	URL    string `json:"url"`
	// RTTMillis is the measured round trip, -1 when it did not answer.
	RTTMillis int64 `json:"rttMillis"`
}

// EdgeList is the edges in the order the client tries them.
type EdgeList struct{ items []Edge }

// Len is the number of edges.
func (l *EdgeList) Len() int { return len(l.items) }

// Get returns the i-th edge.
func (l *EdgeList) Get(i int) *Edge { e := l.items[i]; return &e }

// idEpochMs is the epoch of message ids (API.md, "Id layout").
const idEpochMs = 1767225600000

// commitMs is the server's commit time of an id, in Unix ms.
func commitMs(id int64) int64 { return id>>12 + idEpochMs }

// firstIDAt is the smallest id the server can assign at or after t.
func firstIDAt(t time.Time) int64 {
	ms := t.UnixMilli() - idEpochMs
	if ms < 0 {
		return 0
	}
	return ms << 12
}
