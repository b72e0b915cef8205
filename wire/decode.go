package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// decodeStrict decodes one JSON object from data into v. Unknown fields are
// ignored so that newer clients keep working against older nodes; wrong
// types, trailing data and non-objects are errors.
func decodeStrict(data []byte, v any) *Error {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return Invalid("body must be a JSON object")
	}
	// encoding/json would silently replace invalid UTF-8; JSON text must be
	// UTF-8 (RFC 8259), so say so instead of storing altered content.
	if !utf8.Valid(data) {
		return Invalid("body must be valid UTF-8")
	}
	// Unmarshal rejects trailing data itself and is several times cheaper
	// than a Decoder for one small object.
	if err := json.Unmarshal(data, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return Invalid("field %q has the wrong type", te.Field)
		}
		return Invalid("malformed JSON: %v", err)
	}
	return nil
}

// ValidID checks a user or message id.
func ValidID(field string, id int64) *Error {
	if id <= 0 || id > MaxID {
		return Invalid("%s must be an integer between 1 and %d", field, int64(MaxID))
	}
	return nil
}

// ValidTimestamp checks a client timestamp: RFC 3339 (any offset, fractional
// seconds allowed). The string is kept exactly as sent.
func ValidTimestamp(field, s string) *Error {
	if s == "" {
		return Invalid("%s is required", field)
	}
	if len(s) > MaxTimestampLen {
		return Invalid("%s is too long", field)
	}
	if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
		return Invalid("%s must be an RFC 3339 timestamp", field)
	}
	return nil
}

// ValidContent checks message content against maxBytes: 1 to maxBytes bytes
// of valid UTF-8. Too long is too_large; empty or invalid UTF-8 is
// invalid_argument.
func ValidContent(content string, maxBytes int) *Error {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxContentBytes
	}
	if len(content) == 0 {
		return Invalid("content must not be empty")
	}
	if len(content) > maxBytes {
		return Errorf(CodeTooLarge, "content is %d bytes; the limit is %d", len(content), maxBytes)
	}
	if !utf8.ValidString(content) {
		return Invalid("content must be valid UTF-8")
	}
	return nil
}

// DecodeNewMessageRequest decodes and validates a POST /v1/messages body.
// maxContent is the node's content limit (0 means the default).
func DecodeNewMessageRequest(data []byte, maxContent int) (NewMessageRequest, *Error) {
	var req struct {
		RequestID *int64  `json:"requestId"`
		ToUserID  *int64  `json:"toUserId"`
		Content   *string `json:"content"`
		CreatedAt *string `json:"createdAt"`
	}
	if err := decodeStrict(data, &req); err != nil {
		return NewMessageRequest{}, err
	}
	if req.RequestID == nil {
		return NewMessageRequest{}, Invalid("requestId is required")
	}
	if req.ToUserID == nil {
		return NewMessageRequest{}, Invalid("toUserId is required")
	}
	if req.Content == nil {
		return NewMessageRequest{}, Invalid("content is required")
	}
	if req.CreatedAt == nil {
		return NewMessageRequest{}, Invalid("createdAt is required")
	}
	out := NewMessageRequest{RequestID: *req.RequestID, ToUserID: *req.ToUserID, Content: *req.Content, CreatedAt: *req.CreatedAt}
	if err := ValidID("requestId", out.RequestID); err != nil {
		return NewMessageRequest{}, err
	}
	if err := ValidID("toUserId", out.ToUserID); err != nil {
		return NewMessageRequest{}, err
	}
	if err := ValidContent(out.Content, maxContent); err != nil {
		return NewMessageRequest{}, err
	}
	if err := ValidTimestamp("createdAt", out.CreatedAt); err != nil {
		return NewMessageRequest{}, err
	}
	return out, nil
}

// DecodeReadRequest decodes and validates a read body.
func DecodeReadRequest(data []byte) (ReadRequest, *Error) {
	var req struct {
		UpToMessageID *int64 `json:"upToMessageId"`
	}
	if err := decodeStrict(data, &req); err != nil {
		return ReadRequest{}, err
	}
	if req.UpToMessageID == nil {
		return ReadRequest{}, Invalid("upToMessageId is required")
	}
	if err := ValidID("upToMessageId", *req.UpToMessageID); err != nil {
		return ReadRequest{}, err
	}
	return ReadRequest{UpToMessageID: *req.UpToMessageID}, nil
}

// DecodeTypingRequest decodes and validates a typing body.
func DecodeTypingRequest(data []byte) (TypingRequest, *Error) {
	var req struct {
		Typing *bool `json:"typing"`
	}
	if err := decodeStrict(data, &req); err != nil {
		return TypingRequest{}, err
	}
	if req.Typing == nil {
		return TypingRequest{}, Invalid("typing is required")
	}
	return TypingRequest{Typing: *req.Typing}, nil
}

// DecodeDeviceRequest decodes and validates a device registration.
func DecodeDeviceRequest(data []byte) (DeviceRequest, *Error) {
	var req DeviceRequest
	if err := decodeStrict(data, &req); err != nil {
		return DeviceRequest{}, err
	}
	if req.Platform != PlatformAPNs && req.Platform != PlatformFCM {
		return DeviceRequest{}, Invalid(`platform must be "apns" or "fcm"`)
	}
	if err := ValidDeviceToken(req.Token); err != nil {
		return DeviceRequest{}, err
	}
	if len(req.Topic) > MaxTopicBytes || !utf8.ValidString(req.Topic) {
		return DeviceRequest{}, Invalid("topic must be at most %d bytes of UTF-8", MaxTopicBytes)
	}
	return req, nil
}

// ValidDeviceToken checks a push token: 1 to MaxDeviceTokenBytes printable
// ASCII characters.
func ValidDeviceToken(token string) *Error {
	if token == "" {
		return Invalid("token is required")
	}
	if len(token) > MaxDeviceTokenBytes {
		return Errorf(CodeTooLarge, "token is longer than %d bytes", MaxDeviceTokenBytes)
	}
	for i := 0; i < len(token); i++ {
		if c := token[i]; c <= ' ' || c > '~' {
			return Invalid("token must be printable ASCII")
		}
	}
	return nil
}

// DecodeClientFrame decodes and validates one client→server WebSocket frame.
func DecodeClientFrame(data []byte) (ClientFrame, *Error) {
	var f struct {
		Type    string          `json:"type"`
		Payload json.RawMessage `json:"payload"`
	}
	if err := decodeStrict(data, &f); err != nil {
		return ClientFrame{}, err
	}
	if len(f.Payload) == 0 || bytes.Equal(f.Payload, []byte("null")) {
		return ClientFrame{}, Invalid("frame %q has no payload", f.Type)
	}
	out := ClientFrame{Type: f.Type}
	switch f.Type {
	case TypeAck:
		var p struct {
			UpTo *int64 `json:"upTo"`
		}
		if err := decodeStrict(f.Payload, &p); err != nil {
			return ClientFrame{}, err
		}
		if p.UpTo == nil {
			return ClientFrame{}, Invalid("ack.upTo is required")
		}
		if err := ValidID("ack.upTo", *p.UpTo); err != nil {
			return ClientFrame{}, err
		}
		out.Ack = &Ack{UpTo: *p.UpTo}
	case TypeRead:
		var p struct {
			UserID        *int64 `json:"userId"`
			UpToMessageID *int64 `json:"upToMessageId"`
		}
		if err := decodeStrict(f.Payload, &p); err != nil {
			return ClientFrame{}, err
		}
		if p.UserID == nil || p.UpToMessageID == nil {
			return ClientFrame{}, Invalid("read needs userId and upToMessageId")
		}
		if err := ValidID("read.userId", *p.UserID); err != nil {
			return ClientFrame{}, err
		}
		if err := ValidID("read.upToMessageId", *p.UpToMessageID); err != nil {
			return ClientFrame{}, err
		}
		out.Read = &ReadFrame{UserID: *p.UserID, UpToMessageID: *p.UpToMessageID}
	case TypeTyping:
		var p struct {
			ToUserID *int64 `json:"toUserId"`
			Typing   *bool  `json:"typing"`
		}
		if err := decodeStrict(f.Payload, &p); err != nil {
			return ClientFrame{}, err
		}
		if p.ToUserID == nil || p.Typing == nil {
			return ClientFrame{}, Invalid("typing needs toUserId and typing")
		}
		if err := ValidID("typing.toUserId", *p.ToUserID); err != nil {
			return ClientFrame{}, err
		}
		out.Typing = &TypingFrame{ToUserID: *p.ToUserID, Typing: *p.Typing}
	case TypeWatch:
		var p struct {
			UserIDs *[]int64 `json:"userIds"`
		}
		if err := decodeStrict(f.Payload, &p); err != nil {
			return ClientFrame{}, err
		}
		if p.UserIDs == nil {
			return ClientFrame{}, Invalid("watch.userIds is required")
		}
		ids := *p.UserIDs
		if len(ids) > MaxWatch {
			return ClientFrame{}, Errorf(CodeTooLarge, "watch list has %d users; the limit is %d", len(ids), MaxWatch)
		}
		for i, id := range ids {
			if err := ValidID(fmt.Sprintf("watch.userIds[%d]", i), id); err != nil {
				return ClientFrame{}, err
			}
		}
		out.Watch = &Watch{UserIDs: ids}
	case "":
		return ClientFrame{}, Invalid("frame type is required")
	default:
		return ClientFrame{}, Invalid("unknown frame type %q", f.Type)
	}
	return out, nil
}
