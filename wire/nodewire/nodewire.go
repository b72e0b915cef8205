package nodewire

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/edgenode/edgenode/wire"
)

// The protocol's version and frame bound (framing: see the package comment).
const (
	// NodeProtocolVersion is carried in every CallRequest.
	NodeProtocolVersion = 1
	// MaxNodeFrameBytes bounds one node-to-node frame (a page of 500
	// events of 4 KiB fits).
	MaxNodeFrameBytes = 8 << 20
)

// Call operations.
const (
	OpSend          = "send"
	OpPending       = "pending"
	OpAck           = "ack"
	OpRead          = "read"
	OpDeviceAdd     = "device_add" // User, Device; Token: the device id the push token is bound to (older nodes ignore it)
	OpDeviceRemove  = "device_remove"
	OpTokenOwner    = "token_owner" // Shard, Token → At: the user the token is registered for in Shard (0: none)
	OpContact       = "contact"     // User (reader), From (sender) → Found, At: the newest message from sender to reader
	OpContacts      = "contacts"    // Shard, IDs (reader, sender, reader, sender, ...) → Flags: did each sender message its reader
	OpUsage         = "usage"       // Shard, IDs (user, sends, calls, ...) spent on the caller → Events: users over their allowance, From = user, UpTo/By = sends/calls refused until (Unix ms, 0: not)
	OpSetLastSeen   = "set_last_seen"
	OpGetLastSeen   = "get_last_seen"
	OpShardProgress = "shard_progress"
	OpDelivered     = "delivered" // a DELIVERED receipt for User's queue, by From, of IDs
	OpExpired       = "expired"   // an EXPIRED receipt for User's queue: IDs, sent to From, dropped undelivered (older nodes answer bad_request)
	OpStatus        = "status"    // is User online anywhere (Found) and last seen (At)
	OpDraining      = "draining"  // the calling node is shutting down: hand it no leadership
	// Linked devices (older nodes answer bad_request; so does a leader
	// whose shard has a replica of such a node: the caller falls back to
	// one queue per user). Token carries the device id.
	OpAttach    = "attach"     // User, Token → At: the device's cursor, after linking it if need be
	OpAckDevice = "ack_device" // User, Token, UpTo → N
	OpUnlink    = "unlink"     // User, Token → Found: it was linked
	OpLinked    = "linked"     // User → Events: one per linked device, Content = id, UpTo = cursor, ID = last seen (Unix ms), By = 1 if it has a push token
	OpSentCopy  = "sent_copy"  // User (sender), Send (ToUserID, Content, CreatedAt), UpTo: the message id → Found: a copy was queued
	OpReadSync  = "read_sync"  // User (reader), From (sender), UpTo
	// Acknowledgements of several devices at once, sent only to nodes
	// whose features include relaylog.FeatureAckBatch (an older node
	// rejects the Acks field):
	OpAckDevices = "ack_devices" // Acks → Codes: one per ack, "" (checked; applied after the answer) or its failure code
)

// DeviceAck is one acknowledgement of an ack_devices call: device Device
// of User acknowledged its queue up to UpTo.
type DeviceAck struct {
	User   int64
	Device string
	UpTo   int64
}

// CallRequest is a client call forwarded to the node that leads the shard.
type CallRequest struct {
	Version int                     `json:"v"`
	Op      string                  `json:"op"`
	Shard   int                     `json:"shard,omitempty"`
	User    int64                   `json:"user,omitempty"`
	From    int64                   `json:"from,omitempty"`
	Send    *wire.NewMessageRequest `json:"send,omitempty"`
	After   int64                   `json:"after,omitempty"`
	UpTo    int64                   `json:"upTo,omitempty"`
	Limit   int                     `json:"limit,omitempty"`
	At      int64                   `json:"at,omitempty"` // Unix ms
	Device  *wire.DeviceRequest     `json:"device,omitempty"`
	Token   string                  `json:"token,omitempty"`
	IDs     []int64                 `json:"ids,omitempty"`
	Acks    []DeviceAck             `json:"acks,omitempty"` // ack_devices
}

// NodeEvent is a queued event as nodes exchange it.
type NodeEvent struct {
	ID         int64   `json:"id"`
	Kind       uint8   `json:"k"`
	From       int64   `json:"f,omitempty"`
	To         int64   `json:"t,omitempty"`
	Content    string  `json:"c,omitempty"`
	CreatedAt  string  `json:"ca,omitempty"`
	By         int64   `json:"b,omitempty"`
	MessageIDs []int64 `json:"ids,omitempty"`
	UpTo       int64   `json:"u,omitempty"`
}

// CallResponse answers a CallRequest.
type CallResponse struct {
	Err     string      `json:"err,omitempty"`
	Message string      `json:"msg,omitempty"`
	Leader  string      `json:"leader,omitempty"` // with not_leader: the leader the callee knows
	Events  []NodeEvent `json:"events,omitempty"`
	Created bool        `json:"created,omitempty"`
	More    bool        `json:"more,omitempty"`
	N       int         `json:"n,omitempty"`
	At      int64       `json:"at,omitempty"` // get_last_seen: Unix ms; shard_progress: the raft term Leader is known in
	Found   bool        `json:"found,omitempty"`
	Index   uint64      `json:"index,omitempty"`  // shard_progress: last applied raft index
	Voters  []string    `json:"voters,omitempty"` // shard_progress: the shard's voters as the callee knows them
	Flags   []bool      `json:"flags,omitempty"`  // contacts: one per pair
	Codes   []string    `json:"codes,omitempty"`  // ack_devices: one per ack, "" or a failure code
}

// Failure codes of CallResponse.Err.
const (
	NodeErrNotLeader  = "not_leader"
	NodeErrQueueFull  = "queue_full"
	NodeErrReused     = "request_id_reused"
	NodeErrExpired    = "request_expired"
	NodeErrClosed     = "closed"
	NodeErrOverloaded = "overloaded"
	NodeErrBadRequest = "bad_request"
	NodeErrInternal   = "internal"
	NodeErrRevoked    = "device_revoked" // the calling device was revoked (relaylog.ErrDeviceRevoked)
)

// Subscribe frame operations.
const (
	SubUser    = "sub"     // edge → leader: deliver notifications for User
	UnsubUser  = "unsub"   // edge → leader
	SubEvents  = "events"  // leader → edge: User's queue has new events (with Events: all of them past After)
	SubWatch   = "watch"   // edge → home: push User's status changes here
	SubUnwatch = "unwatch" // edge → home
	SubStatus  = "status"  // home → edge: User's status (Online, LastSeen)
	SubTyping  = "typing"  // both ways: From is (Typing) typing to User; Online: the taking node found From online; Origin already delivered it locally
	// Device presence, sent only to homes whose features include
	// relaylog.FeatureDevicePush (an older node rejects the Device field):
	SubDevice   = "device"   // edge → home: a socket of User's device Device is open here
	UnsubDevice = "undevice" // edge → home: the last one closed
)

// SubscribeFrame travels on a subscribe stream.
type SubscribeFrame struct {
	Op       string `json:"op"`
	User     int64  `json:"user"`
	Shard    int    `json:"shard,omitempty"`
	From     int64  `json:"from,omitempty"`
	Online   bool   `json:"online,omitempty"`
	LastSeen int64  `json:"seen,omitempty"` // Unix ms; 0 = never
	Typing   bool   `json:"typing,omitempty"`
	Origin   string `json:"origin,omitempty"`
	// SubEvents may carry the events themselves: then Events holds every
	// event of User's queue with an id above After, so that an edge that
	// wrote everything up to After to the user's socket writes these
	// without asking the leader. Without Events the edge pulls.
	After  int64       `json:"after,omitempty"`
	Events []NodeEvent `json:"events,omitempty"`
	// Device is SubDevice's and UnsubDevice's device id ("" is a user's
	// default device); written last, and only by those.
	Device string `json:"device,omitempty"`
}

// WriteNodeFrame writes v as one frame: CallRequest, CallResponse and
// SubscribeFrame (or pointers to them) in the binary form of codec.go,
// anything else as JSON.
func WriteNodeFrame(w io.Writer, v any) error { return writeFrame(w, false, 0, v) }

// WriteTaggedFrame writes v as one frame whose payload starts with id (a
// uvarint): calls multiplexed on one stream carry their request's id.
func WriteTaggedFrame(w io.Writer, id uint64, v any) error { return writeFrame(w, true, id, v) }

func writeFrame(w io.Writer, tagged bool, id uint64, v any) error {
	bp := frameBufs.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= 64<<10 {
			frameBufs.Put(bp)
		}
	}()
	// Room for the longest length prefix; the payload follows it and the
	// prefix is moved next to the payload once its length is known.
	const room = binary.MaxVarintLen64
	buf := append((*bp)[:0], make([]byte, room)...)
	if tagged {
		buf = binary.AppendUvarint(buf, id)
	}
	switch f := v.(type) {
	case *CallRequest:
		buf = appendCallRequest(buf, f)
	case CallRequest:
		buf = appendCallRequest(buf, &f)
	case *CallResponse:
		buf = appendCallResponse(buf, f)
	case CallResponse:
		buf = appendCallResponse(buf, &f)
	case *SubscribeFrame:
		buf = appendSubscribeFrame(buf, f)
	case SubscribeFrame:
		buf = appendSubscribeFrame(buf, &f)
	case *HeartbeatBatch:
		buf = appendHeartbeatBatch(buf, f)
	case *HeartbeatAnswer:
		buf = appendHeartbeatAnswer(buf, f)
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		buf = append(buf, b...)
	}
	*bp = buf
	n := len(buf) - room
	if n > MaxNodeFrameBytes {
		return fmt.Errorf("nodewire: node frame of %d bytes exceeds %d", n, MaxNodeFrameBytes)
	}
	var hdr [binary.MaxVarintLen64]byte
	h := binary.PutUvarint(hdr[:], uint64(n))
	start := room - h
	copy(buf[start:], hdr[:h])
	_, err := w.Write(buf[start:])
	return err
}

var frameBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// ErrNodeFrameTooLarge is returned for a frame longer than MaxNodeFrameBytes.
var ErrNodeFrameTooLarge = errors.New("nodewire: node frame too large")

// ReadNodeFrame reads one frame into v.
func ReadNodeFrame(r *bufio.Reader, v any) error {
	_, err := readFrame(r, false, v)
	return err
}

// ReadTaggedFrame reads one frame written by WriteTaggedFrame into v and
// returns its id.
func ReadTaggedFrame(r *bufio.Reader, v any) (uint64, error) { return readFrame(r, true, v) }

func readFrame(r *bufio.Reader, tagged bool, v any) (uint64, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return 0, err
	}
	if n > MaxNodeFrameBytes {
		return 0, ErrNodeFrameTooLarge
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return 0, err
	}
	var id uint64
	if tagged {
		var k int
		if id, k = binary.Uvarint(b); k <= 0 {
			return 0, errNodeFrame
		}
		b = b[k:]
	}
	if len(b) >= 2 && b[0] == nodeBinaryTag {
		switch f := v.(type) {
		case *CallRequest:
			if b[1] == 'q' {
				return id, decodeCallRequest(b[2:], f)
			}
		case *CallResponse:
			if b[1] == 'r' {
				return id, decodeCallResponse(b[2:], f)
			}
		case *SubscribeFrame:
			if b[1] == 's' {
				return id, decodeSubscribeFrame(b[2:], f)
			}
		case *HeartbeatBatch:
			if b[1] == 'h' {
				return id, decodeHeartbeatBatch(b[2:], f)
			}
		case *HeartbeatAnswer:
			if b[1] == 'a' {
				return id, decodeHeartbeatAnswer(b[2:], f)
			}
		}
		return id, errNodeFrame
	}
	return id, json.Unmarshal(b, v)
}

// RaftAddress is the raft server address of a node's raft data: its node id
// and the incarnation of its data dir (created with the raft data, so a
// node whose data dir was lost comes back under its id with a new
// incarnation). With no incarnation it is the node id alone, the address
// of versions before incarnations.
func RaftAddress(nodeID, incarnation string) string {
	if incarnation == "" {
		return nodeID
	}
	return nodeID + "@" + incarnation
}

// SplitRaftAddress is the inverse of RaftAddress. Node ids never hold '@'.
func SplitRaftAddress(addr string) (nodeID, incarnation string) {
	nodeID, incarnation, _ = strings.Cut(addr, "@")
	return nodeID, incarnation
}
