package relaylog

import "time"

// EventKind says what a queued event is.
type EventKind uint8

const (
	// KindMessage is a new message for the queue's user.
	KindMessage EventKind = 1
	// KindDelivered tells the queue's user that By received MessageIDs.
	KindDelivered EventKind = 2
	// KindRead tells the queue's user that By read every message to By up
	// to UpTo.
	KindRead EventKind = 3
	// KindExpired tells the queue's user that MessageIDs, which the user
	// sent to By, were dropped undelivered from By's queue at the end of
	// the retention period.
	KindExpired EventKind = 4
	// KindSent is a message the queue's user sent (From) to To, for the
	// user's other devices: UpTo is its message id (the event has an id of
	// its own, in the user's queue). Queued only for a user with two or
	// more linked devices (linked.go).
	KindSent EventKind = 5
	// KindReadSync tells the queue's user's devices that the user read
	// every message from By up to UpTo on one of them. Queued only for a
	// user with two or more linked devices; a newer one replaces a queued
	// one of the same conversation.
	KindReadSync EventKind = 6
)

// Event is one entry of a user's undelivered queue. Events are immutable
// once committed: readers may keep them after the queue moved on.
type Event struct {
	ID   int64
	Kind EventKind
	// Message fields.
	From, To  int64
	Content   string
	CreatedAt string
	// Receipt fields.
	By         int64
	MessageIDs []int64 // KindDelivered, KindExpired
	UpTo       int64   // KindRead, KindReadSync; the message id of KindSent
}

// Time is when the event was committed (from its id).
func (e *Event) Time() time.Time { return IDTime(e.ID) }

// Device is a registered push token.
type Device struct {
	Platform string // "apns" or "fcm"
	Token    string
	Topic    string
	Sandbox  bool
	// RegisteredAt is the commit time of the registration, in Unix ms; push
	// uses it to remove a dead token only if it was not registered again.
	RegisteredAt int64
	// DeviceID is the linked device (Linked.ID) the token belongs to: the
	// device's own cursor decides its alerts and badge, and unlinking the
	// device removes the token. DefaultDevice for tokens of clients that
	// name no device, and for tokens registered before bindings existed.
	DeviceID string
}

// MaxDevicesPerUser bounds device registrations; registering one more
// forgets the oldest, as a user replacing phones would expect.
const MaxDevicesPerUser = 20

// fingerprint identifies the content of a send for idempotency: a retry of
// the same (sender, requestId) must carry the same recipient, content and
// createdAt. 64-bit FNV-1a over the three.
func fingerprint(to int64, content, createdAt string) uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for i := 0; i < 8; i++ {
		h ^= uint64(byte(to >> (8 * i)))
		h *= prime
	}
	for i := 0; i < len(content); i++ {
		h ^= uint64(content[i])
		h *= prime
	}
	h ^= 0xff
	h *= prime
	for i := 0; i < len(createdAt); i++ {
		h ^= uint64(createdAt[i])
		h *= prime
	}
	return h
}
