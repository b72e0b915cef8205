package wire

import (
	"encoding/json"
	"time"
)

// MaxID is the largest user or message id: the largest integer a JavaScript
// number holds exactly.
const MaxID = 1<<53 - 1

// Limits of the protocol. Nodes may configure lower content limits; these
// are the defaults and the hard ceilings the decoders enforce.
const (
	// DefaultMaxContentBytes is the default limit on Message.content.
	DefaultMaxContentBytes = 4096
	// MaxBodyBytes bounds every REST request body.
	MaxBodyBytes = 64 << 10
	// MaxFrameBytes bounds every client WebSocket frame.
	MaxFrameBytes = 64 << 10
	// MaxWatch is the largest watch list one socket may hold.
	MaxWatch = 1000
	// MaxTimestampLen bounds createdAt strings.
	MaxTimestampLen = 64
	// DefaultSyncLimit and MaxSyncLimit bound GET /v1/messages.
	DefaultSyncLimit = 100
	MaxSyncLimit     = 500
)

// Message statuses. PENDING exists only on clients.
const (
	StatusSynced    = "SYNCED"
	StatusDelivered = "DELIVERED"
	StatusRead      = "READ"
	// StatusExpired is a receipt status only: the server dropped the
	// receipt's messages undelivered at the end of the retention period.
	StatusExpired = "EXPIRED"
)

// Event types of the WebSocket protocol.
const (
	TypeReady            = "ready"
	TypeNewMessage       = "new_message"
	TypeMessageDelivered = "message_delivered"
	TypeMessageRead      = "message_read"
	TypeMessageExpired   = "message_expired"
	// TypeMessageSent: a message the user sent from another of its devices
	// (payload {"message": Message}); TypeConversationRead: the user read a
	// conversation on another of its devices (payload ReadFrame). Both are
	// acknowledged like the others.
	TypeMessageSent         = "message_sent"
	TypeConversationRead    = "conversation_read"
	TypeContactStatusUpdate = "contact_status_update"
	TypeError               = "error"
	TypeAck                 = "ack"
	TypeRead                = "read"
	TypeTyping              = "typing"
	TypeWatch               = "watch"
)

// Message is the client's central model.
type Message struct {
	MessageID  int64  `json:"messageId"`
	FromUserID int64  `json:"fromUserId"`
	ToUserID   int64  `json:"toUserId"`
	Content    string `json:"content"`
	Status     string `json:"status"`
	CreatedAt  string `json:"createdAt"`
}

// NewMessageRequest is the body of POST /v1/messages.
type NewMessageRequest struct {
	RequestID int64  `json:"requestId"`
	ToUserID  int64  `json:"toUserId"`
	Content   string `json:"content"`
	CreatedAt string `json:"createdAt"`
}

// NewMessageResponse answers POST /v1/messages.
type NewMessageResponse struct {
	Message              Message `json:"message"`
	FromMessageRequestID int64   `json:"fromMessageRequestId"`
}

// Receipt tells a sender that messages were delivered, read, or dropped
// undelivered at the end of the retention period (EXPIRED).
type Receipt struct {
	ID            int64   `json:"id"`
	Status        string  `json:"status"`
	ByUserID      int64   `json:"byUserId"`
	MessageIDs    []int64 `json:"messageIds,omitempty"`
	UpToMessageID int64   `json:"upToMessageId,omitempty"`
	At            string  `json:"at"`
}

// ContactStatus is a user's presence as seen by another user.
type ContactStatus struct {
	UserID          int64   `json:"userId"`
	Online          bool    `json:"online"`
	LastConnectedAt *string `json:"lastConnectedAt"`
	Typing          bool    `json:"typing"`
}

// SyncResponse answers GET /v1/messages.
type SyncResponse struct {
	Messages          []Message `json:"messages"`
	Receipts          []Receipt `json:"receipts"`
	LastSyncedMessage int64     `json:"lastSyncedMessage"`
	HasMore           bool      `json:"hasMore"`
	// SentMessages are messages the user sent from another of its
	// devices; ConversationsRead, read marks the user made on another of
	// its devices (docs/API.md, "Devices"). Left out when empty.
	SentMessages      []Message   `json:"sentMessages,omitempty"`
	ConversationsRead []ReadFrame `json:"conversationsRead,omitempty"`
}

// ReadRequest is the body of POST /v1/conversations/{userId}/read.
type ReadRequest struct {
	UpToMessageID int64 `json:"upToMessageId"`
}

// TypingRequest is the body of POST /v1/conversations/{userId}/typing.
type TypingRequest struct {
	Typing bool `json:"typing"`
}

// Platforms of DeviceRequest.
const (
	PlatformAPNs = "apns"
	PlatformFCM  = "fcm"
)

// MaxDeviceTokenBytes bounds push tokens (APNs tokens are 64 hex chars, FCM
// registration tokens about 160 characters).
const MaxDeviceTokenBytes = 4096

// MaxTopicBytes bounds an APNs topic (a bundle id).
const MaxTopicBytes = 255

// DeviceRequest is the body of POST /v1/devices.
type DeviceRequest struct {
	Platform string `json:"platform"`
	Token    string `json:"token"`
	Topic    string `json:"topic,omitempty"`
	Sandbox  bool   `json:"sandbox,omitempty"`
}

// LinkedDevice is one entry of GET /v1/devices: an installation of the
// app that reads the user's queue with a cursor of its own.
type LinkedDevice struct {
	DeviceID   string `json:"deviceId"`
	LastSeenAt string `json:"lastSeenAt"`
	Current    bool   `json:"current,omitempty"` // the device of the call
	Push       bool   `json:"push,omitempty"`    // a push token is registered for the device
}

// DeviceList answers GET /v1/devices.
type DeviceList struct {
	Devices []LinkedDevice `json:"devices"`
}

// DeviceIDHeader carries the calling device's id on REST calls and the
// socket upgrade; DeviceIDQuery is its query form, on the upgrade only
// (browsers cannot set headers there).
const (
	DeviceIDHeader = "Device-Id"
	DeviceIDQuery  = "deviceId"
)

// Edge is one entry of GET /v1/edges.
type Edge struct {
	NodeID string `json:"nodeId"`
	Region string `json:"region"`
	URL    string `json:"url"`
}

// Ready is the payload of the first frame on every socket.
type Ready struct {
	UserID      int64  `json:"userId"`
	NodeID      string `json:"nodeId"`
	Region      string `json:"region"`
	HeartbeatMs int64  `json:"heartbeatMs"`
}

// Frame is the envelope of every WebSocket frame.
type Frame struct {
	Type    string          `json:"type"`
	ID      int64           `json:"id,omitempty"`
	Payload json.RawMessage `json:"payload"`
}

// Ack, ReadFrame, TypingFrame and Watch are client→server payloads.
type Ack struct {
	UpTo int64 `json:"upTo"`
}

type ReadFrame struct {
	UserID        int64 `json:"userId"`
	UpToMessageID int64 `json:"upToMessageId"`
}

type TypingFrame struct {
	ToUserID int64 `json:"toUserId"`
	Typing   bool  `json:"typing"`
}

type Watch struct {
	UserIDs []int64 `json:"userIds"`
}

// ClientFrame is a decoded and validated client→server frame: exactly one of
// the pointers is set, matching Type.
type ClientFrame struct {
	Type   string
	Ack    *Ack
	Read   *ReadFrame
	Typing *TypingFrame
	Watch  *Watch
}

// TimeLayout is the API's timestamp format: RFC 3339, UTC, milliseconds.
const TimeLayout = "2006-01-02T15:04:05.000Z"

// FormatTime renders t in the API's layout.
func FormatTime(t time.Time) string {
	return string(AppendTime(make([]byte, 0, len(TimeLayout)), t))
}

// AppendTime appends t in the API's layout.
func AppendTime(b []byte, t time.Time) []byte {
	return t.UTC().AppendFormat(b, TimeLayout)
}

// FormatUnixMilli renders a Unix millisecond timestamp in the API's layout.
func FormatUnixMilli(ms int64) string {
	return FormatTime(time.UnixMilli(ms))
}
