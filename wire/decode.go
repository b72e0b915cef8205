package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/edgenode/edgenode/jsonstrict"
)

// decodeStrict decodes one JSON object from data into v. Unknown fields are
// ignored so that newer clients keep working against older nodes; wrong
// types, trailing data, non-objects, a key given twice (at any depth, also
// when the two differ only by case) and a key that names a field of v only
// without case ("TOUSERID") are errors.
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
	// Likewise it would replace an escaped lone UTF-16 surrogate ("\ud800",
	// valid JSON but no Unicode character) with U+FFFD.
	if hasLoneSurrogate(data) {
		return Invalid(`a string holds a lone surrogate escape (\uD800 to \uDFFF not in a high-low pair), which is not a Unicode character`)
	}
	if err := jsonstrict.Check(data, jsonFields(v)...); err != nil {
		return Invalid("%v", err)
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

var fieldCache sync.Map // reflect.Type → []string

// jsonFields are the JSON names of the fields of the struct v points to.
func jsonFields(v any) []string {
	t := reflect.TypeOf(v)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	if f, ok := fieldCache.Load(t); ok {
		return f.([]string)
	}
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-" || !f.IsExported():
		case name == "":
			names = append(names, f.Name)
		default:
			names = append(names, name)
		}
	}
	fieldCache.Store(t, names)
	return names
}

// hasLoneSurrogate reports whether data, JSON text, has a \u escape of a
// UTF-16 surrogate (U+D800 to U+DFFF) that is not a high surrogate directly
// followed by an escaped low one. Escapes occur only inside strings, and a
// "\\" escape is skipped whole, so "\\ud800" (a backslash, then text) is
// not one. Malformed escapes are left to the JSON decoder.
func hasLoneSurrogate(data []byte) bool {
	i := bytes.IndexByte(data, '\\')
	if i < 0 {
		return false
	}
	for ; i < len(data); i++ {
		if data[i] != '\\' {
			continue
		}
		if i+1 >= len(data) || data[i+1] != 'u' {
			i++ // a two-byte escape such as \\ or \"
			continue
		}
		r, ok := hex4(data, i+2)
		if !ok {
			continue
		}
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return true // a low surrogate with no high one before it
		case r >= 0xD800 && r <= 0xDBFF:
			if i+11 >= len(data) || data[i+6] != '\\' || data[i+7] != 'u' {
				return true
			}
			if lo, ok := hex4(data, i+8); !ok || lo < 0xDC00 || lo > 0xDFFF {
				return true
			}
			i += 11 // the pair
		default:
			i += 5
		}
	}
	return false
}

// hex4 reads four hex digits at data[i:].
func hex4(data []byte, i int) (rune, bool) {
	if i+4 > len(data) {
		return 0, false
	}
	var r rune
	for _, c := range data[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
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
	if i := controlChar(content); i >= 0 {
		r, _ := utf8.DecodeRuneInString(content[i:])
		return Invalid("content holds the control character U+%04X at byte %d; only newline and tab are allowed", r, i)
	}
	return nil
}

// controlChar is the index of the first control character in s (U+0000 to
// U+001F but newline and tab, U+007F, U+0080 to U+009F), or -1. s is valid
// UTF-8.
func controlChar(s string) int {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 && c != '\n' && c != '\t', c == 0x7f:
			return i
		case c == 0xc2 && i+1 < len(s) && s[i+1] >= 0x80 && s[i+1] <= 0x9f:
			return i
		}
	}
	return -1
}

// DecodeNewMessageRequest decodes and validates a POST /v1/messages body.
// maxContent is the node's content limit (0 means the default).
func DecodeNewMessageRequest(data []byte, maxContent int) (NewMessageRequest, *Error) {
	if req, ok := decodeNewMessageFast(data); ok {
		return validNewMessage(req, maxContent)
	}
	return decodeNewMessageJSON(data, maxContent)
}

// decodeNewMessageJSON is DecodeNewMessageRequest with encoding/json, for
// every body.
func decodeNewMessageJSON(data []byte, maxContent int) (NewMessageRequest, *Error) {
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
	return validNewMessage(out, maxContent)
}

func validNewMessage(out NewMessageRequest, maxContent int) (NewMessageRequest, *Error) {
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
	if len(req.Topic) > MaxTopicBytes {
		return DeviceRequest{}, Invalid("topic must be at most %d bytes", MaxTopicBytes)
	}
	if req.Topic != "" && !ValidTopic(req.Topic) {
		return DeviceRequest{}, Invalid("topic must be a reverse-DNS name such as com.example.chat (letters, digits and '-' in two or more dot-separated labels)")
	}
	return req, nil
}

// ValidTopic reports whether topic is a reverse-DNS name, as APNs topics
// (bundle ids, with suffixes such as .voip) are: two or more labels of
// ASCII letters, digits and '-', separated by dots, none empty.
func ValidTopic(topic string) bool {
	labels := 0
	for label := range strings.SplitSeq(topic, ".") {
		if label == "" {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
		labels++
	}
	return labels >= 2
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
	if upTo, ok := decodeAckFast(data); ok {
		return ClientFrame{Type: TypeAck, Ack: &Ack{UpTo: upTo}}, nil
	}
	return decodeClientFrameJSON(data)
}

// decodeClientFrameJSON is DecodeClientFrame with encoding/json, for every
// frame.
func decodeClientFrameJSON(data []byte) (ClientFrame, *Error) {
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

// decodeAckFast recognises the frame clients send most, an ack written as
// {"type":"ack","payload":{"upTo":N}} (JSON whitespace between tokens,
// either key order) with a valid id, without encoding/json. Anything else
// (other spellings, extra fields, escapes, an invalid id) is left to the
// general decoder, which accepts a superset of this and decides.
func decodeAckFast(b []byte) (upTo int64, ok bool) {
	sc := scanner{b: b}
	if !sc.lit("{") {
		return 0, false
	}
	var seenType, seenPayload bool
	for i := 0; i < 2; i++ {
		if i == 1 && !sc.lit(",") {
			return 0, false
		}
		switch {
		case !seenType && sc.lit(`"type"`):
			if !sc.lit(":") || !sc.lit(`"ack"`) {
				return 0, false
			}
			seenType = true
		case !seenPayload && sc.lit(`"payload"`):
			if !sc.lit(":") || !sc.lit("{") || !sc.lit(`"upTo"`) || !sc.lit(":") {
				return 0, false
			}
			if upTo, ok = sc.id(); !ok || !sc.lit("}") {
				return 0, false
			}
			seenPayload = true
		default:
			return 0, false
		}
	}
	if !sc.lit("}") {
		return 0, false
	}
	sc.ws()
	return upTo, sc.p == len(b)
}

// decodeNewMessageFast reads the body every client sends, a flat object of
// exactly requestId, toUserId, content and createdAt (any order, JSON
// whitespace between tokens), when its ids are plain positive integers and
// its strings hold no escapes or control characters, without
// encoding/json. Anything else is left to the general decoder, which
// accepts a superset of this and decides. Validation is the caller's.
func decodeNewMessageFast(b []byte) (req NewMessageRequest, ok bool) {
	sc := scanner{b: b}
	if !sc.lit("{") {
		return req, false
	}
	var seen uint8
	for i := 0; i < 4; i++ {
		if i > 0 && !sc.lit(",") {
			return req, false
		}
		var bit uint8
		var id *int64
		var str *string
		switch {
		case sc.lit(`"requestId"`):
			bit, id = 1, &req.RequestID
		case sc.lit(`"toUserId"`):
			bit, id = 2, &req.ToUserID
		case sc.lit(`"content"`):
			bit, str = 4, &req.Content
		case sc.lit(`"createdAt"`):
			bit, str = 8, &req.CreatedAt
		default:
			return req, false
		}
		if seen&bit != 0 || !sc.lit(":") {
			return req, false
		}
		seen |= bit
		ok := false
		if id != nil {
			*id, ok = sc.id()
		} else {
			*str, ok = sc.plainString()
		}
		if !ok {
			return req, false
		}
	}
	if !sc.lit("}") {
		return req, false
	}
	sc.ws()
	return req, sc.p == len(b)
}

// scanner reads the few JSON shapes of the decoders' fast paths.
type scanner struct {
	b []byte
	p int
}

func (s *scanner) ws() {
	for s.p < len(s.b) && (s.b[s.p] == ' ' || s.b[s.p] == '\t' || s.b[s.p] == '\n' || s.b[s.p] == '\r') {
		s.p++
	}
}

// lit skips whitespace and then lit, if it is next.
func (s *scanner) lit(lit string) bool {
	s.ws()
	if len(s.b)-s.p < len(lit) || string(s.b[s.p:s.p+len(lit)]) != lit {
		return false
	}
	s.p += len(lit)
	return true
}

// id reads a valid id written as plain digits (no sign, fraction,
// exponent or leading zero).
func (s *scanner) id() (int64, bool) {
	s.ws()
	start := s.p
	var n int64
	for s.p < len(s.b) && s.b[s.p] >= '0' && s.b[s.p] <= '9' && s.p-start < 17 {
		n = n*10 + int64(s.b[s.p]-'0')
		s.p++
	}
	if s.p == start || s.b[start] == '0' || s.p-start > 16 || n > MaxID {
		return 0, false
	}
	return n, true
}

// plainString reads a string without escapes or control characters whose
// bytes are valid UTF-8: its value is its bytes.
func (s *scanner) plainString() (string, bool) {
	if !s.lit(`"`) {
		return "", false
	}
	start := s.p
	ascii := true
	for ; s.p < len(s.b); s.p++ {
		c := s.b[s.p]
		switch {
		case c == '"':
			v := s.b[start:s.p]
			s.p++
			if !ascii && !utf8.Valid(v) {
				return "", false
			}
			return string(v), true
		case c == '\\' || c < 0x20:
			return "", false
		case c >= 0x80:
			ascii = false
		}
	}
	return "", false
}
