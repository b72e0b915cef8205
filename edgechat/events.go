package edgechat

import "sync"

// Listener receives what changed. Every method is called after the change
// is committed to chats.db, from one goroutine of the SDK (never the UI
// thread: post to it), in commit order. A slow listener never blocks a
// commit: changes made meanwhile queue up and arrive together.
type Listener interface {
	// OnChanges: messages were added, changed status or were removed, or
	// a conversation was removed, in commit order. A screen applies them
	// to what it shows instead of re-reading the repositories.
	OnChanges(changes *ChangeList)
	// OnContactStatus: a watched contact's presence, or a contact's typing
	// indicator, changed (also when the socket drops: presence and typing
	// are then unknown, and shown as offline with the last seen time).
	OnContactStatus(info *ContactInfo)
	// OnConnectionChanged: the real-time connection is now ConnOffline,
	// ConnConnecting or ConnOnline.
	OnConnectionChanged(state string)
	// OnAuthFailed: the server refused the token and the TokenSource (if
	// any) gave no token it accepts. Sending and the socket wait until
	// SetToken or the TokenSource gives a new one (Resume asks it again).
	// code is an error code (ErrorCode): unauthorized, forbidden,
	// other_account or token_source; device_revoked when the user removed
	// this installation from the account (from another device): no token
	// brings it back, the app signs out and starts a new database.
	OnAuthFailed(code, message string)
}

// Change kinds (Change.Kind).
const (
	// ChangeMessageAdded: a message was stored: received, or written on
	// this device (a request: MessageID 0, RequestID set), or accepted by
	// the server after DeleteRequest removed its request.
	ChangeMessageAdded = "message_added"
	// ChangeMessageStatus: a message's Status changed (SYNCED to
	// DELIVERED or READ or EXPIRED; a request PENDING to FAILED and back).
	ChangeMessageStatus = "message_status"
	// ChangeMessageAccepted: the server accepted the request RequestID:
	// it is now the message MessageID (status SYNCED, or DELIVERED or
	// READ when the contact's receipt overtook the server's answer) in the
	// same place.
	ChangeMessageAccepted = "message_accepted"
	// ChangeMessageRemoved: the message (MessageID) or request (RequestID)
	// was deleted.
	ChangeMessageRemoved = "message_removed"
	// ChangeConversationRemoved: every message of the conversation with
	// ContactID was deleted.
	ChangeConversationRemoved = "conversation_removed"
	// ChangeConversation: several messages of the conversation with
	// ContactID changed at once (a read mark, old messages deleted):
	// re-read it.
	ChangeConversation = "conversation_changed"
)

// Change is one change to chats.db.
type Change struct {
	Kind      string `json:"kind"`
	ContactID int64  `json:"contactId"`
	MessageID int64  `json:"messageId,omitempty"`
	RequestID int64  `json:"requestId,omitempty"`
	// Status is the message's status after the change (added, status,
	// accepted).
	Status string `json:"status,omitempty"`
}

// ChangeList is a batch of changes, in commit order.
type ChangeList struct{ items []Change }

// Len is the number of changes.
func (l *ChangeList) Len() int { return len(l.items) }

// Get returns the i-th change.
func (l *ChangeList) Get(i int) *Change { ch := l.items[i]; return &ch }

// Changes returns the list as a slice (Go only).
func (l *ChangeList) Changes() []Change { return l.items }

// maxQueuedChanges bounds the changes queued for a slow listener: past it
// they collapse into one ChangeConversation per contact.
const maxQueuedChanges = 10_000

// notifier delivers Listener calls from one goroutine, so that a slow UI
// never blocks a commit.
type notifier struct {
	mu       sync.Mutex
	l        Listener
	changes  []Change
	statuses []ContactInfo
	conn     []string
	auth     [][2]string
	wakeC    chan struct{}
	done     chan struct{}
	closed   bool
}

func newNotifier() *notifier {
	n := &notifier{wakeC: make(chan struct{}, 1), done: make(chan struct{})}
	go n.run()
	return n
}

func (n *notifier) setListener(l Listener) {
	n.mu.Lock()
	n.l = l
	n.mu.Unlock()
}

// change queues changes for the listener.
func (n *notifier) change(chs ...Change) {
	if len(chs) == 0 {
		return
	}
	n.mu.Lock()
	n.changes = append(n.changes, chs...)
	if len(n.changes) > maxQueuedChanges {
		n.changes = collapse(n.changes)
	}
	n.mu.Unlock()
	n.signal()
}

// conversation queues a ChangeConversation for each contact.
func (n *notifier) conversation(ids ...int64) {
	chs := make([]Change, 0, len(ids))
	for _, id := range ids {
		chs = append(chs, Change{Kind: ChangeConversation, ContactID: id})
	}
	n.change(chs...)
}

// collapse turns changes into one ChangeConversation per contact, in
// order of first appearance.
func collapse(chs []Change) []Change {
	seen := map[int64]bool{}
	var out []Change
	for _, ch := range chs {
		if !seen[ch.ContactID] {
			seen[ch.ContactID] = true
			out = append(out, Change{Kind: ChangeConversation, ContactID: ch.ContactID})
		}
	}
	return out
}

func (n *notifier) contact(ci ContactInfo) {
	n.mu.Lock()
	n.statuses = append(n.statuses, ci)
	n.mu.Unlock()
	n.signal()
}

func (n *notifier) connection(state string) {
	n.mu.Lock()
	n.conn = append(n.conn, state)
	n.mu.Unlock()
	n.signal()
}

func (n *notifier) authFailed(code, message string) {
	n.mu.Lock()
	n.auth = append(n.auth, [2]string{code, message})
	n.mu.Unlock()
	n.signal()
}

func (n *notifier) signal() {
	select {
	case n.wakeC <- struct{}{}:
	default:
	}
}

func (n *notifier) close() {
	n.mu.Lock()
	if !n.closed {
		n.closed = true
		close(n.done)
	}
	n.mu.Unlock()
}

func (n *notifier) run() {
	for {
		select {
		case <-n.done:
			return
		case <-n.wakeC:
		}
		n.mu.Lock()
		l, changes, statuses, conn, auth := n.l, n.changes, n.statuses, n.conn, n.auth
		n.changes, n.statuses, n.conn, n.auth = nil, nil, nil, nil
		n.mu.Unlock()
		if l == nil {
			continue
		}
		for _, s := range conn {
			l.OnConnectionChanged(s)
		}
		for _, a := range auth {
			l.OnAuthFailed(a[0], a[1])
		}
		if len(changes) > 0 {
			l.OnChanges(&ChangeList{items: changes})
		}
		for i := range statuses {
			l.OnContactStatus(&statuses[i])
		}
	}
}
