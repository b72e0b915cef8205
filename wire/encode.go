package wire

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// The server writes one event per message delivered, so the hot events are
// encoded by hand into a caller's buffer instead of through reflection;
// the output is byte-for-byte what encoding/json would produce for the same
// values (see TestEncodeMatchesEncodingJSON).

// AppendMessage appends m as a JSON object.
func AppendMessage(b []byte, m *Message) []byte {
	b = append(b, `{"messageId":`...)
	b = strconv.AppendInt(b, m.MessageID, 10)
	b = append(b, `,"fromUserId":`...)
	b = strconv.AppendInt(b, m.FromUserID, 10)
	b = append(b, `,"toUserId":`...)
	b = strconv.AppendInt(b, m.ToUserID, 10)
	b = append(b, `,"content":`...)
	b = AppendString(b, m.Content)
	b = append(b, `,"status":`...)
	b = AppendString(b, m.Status)
	b = append(b, `,"createdAt":`...)
	b = AppendString(b, m.CreatedAt)
	return append(b, '}')
}

// AppendReceipt appends r as a JSON object.
func AppendReceipt(b []byte, r *Receipt) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, r.ID, 10)
	b = append(b, `,"status":`...)
	b = AppendString(b, r.Status)
	b = append(b, `,"byUserId":`...)
	b = strconv.AppendInt(b, r.ByUserID, 10)
	if len(r.MessageIDs) > 0 {
		b = append(b, `,"messageIds":[`...)
		for i, id := range r.MessageIDs {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, id, 10)
		}
		b = append(b, ']')
	}
	if r.UpToMessageID != 0 {
		b = append(b, `,"upToMessageId":`...)
		b = strconv.AppendInt(b, r.UpToMessageID, 10)
	}
	b = append(b, `,"at":`...)
	b = AppendString(b, r.At)
	return append(b, '}')
}

// AppendNewMessageEvent appends a complete new_message frame.
func AppendNewMessageEvent(b []byte, m *Message) []byte {
	b = append(b, `{"type":"new_message","id":`...)
	b = strconv.AppendInt(b, m.MessageID, 10)
	b = append(b, `,"payload":{"message":`...)
	b = AppendMessage(b, m)
	return append(b, "}}"...)
}

// AppendSentMessageEvent appends a complete message_sent frame: m, which
// the user sent from another device, queued as event id.
func AppendSentMessageEvent(b []byte, id int64, m *Message) []byte {
	b = append(b, `{"type":"message_sent","id":`...)
	b = strconv.AppendInt(b, id, 10)
	b = append(b, `,"payload":{"message":`...)
	b = AppendMessage(b, m)
	return append(b, "}}"...)
}

// AppendConversationReadEvent appends a complete conversation_read frame:
// the user read r.UserID's messages up to r.UpToMessageID on another
// device, queued as event id.
func AppendConversationReadEvent(b []byte, id int64, r *ReadFrame) []byte {
	b = append(b, `{"type":"conversation_read","id":`...)
	b = strconv.AppendInt(b, id, 10)
	b = append(b, `,"payload":{"userId":`...)
	b = strconv.AppendInt(b, r.UserID, 10)
	b = append(b, `,"upToMessageId":`...)
	b = strconv.AppendInt(b, r.UpToMessageID, 10)
	return append(b, "}}"...)
}

// AppendReceiptEvent appends a complete message_delivered, message_read or
// message_expired frame, chosen by r.Status.
func AppendReceiptEvent(b []byte, r *Receipt) []byte {
	typ := TypeMessageDelivered
	switch r.Status {
	case StatusRead:
		typ = TypeMessageRead
	case StatusExpired:
		typ = TypeMessageExpired
	}
	b = append(b, `{"type":"`...)
	b = append(b, typ...)
	b = append(b, `","id":`...)
	b = strconv.AppendInt(b, r.ID, 10)
	b = append(b, `,"payload":`...)
	b = AppendReceipt(b, r)
	return append(b, '}')
}

// AppendContactStatusEvent appends a contact_status_update frame.
func AppendContactStatusEvent(b []byte, s *ContactStatus) []byte {
	b = append(b, `{"type":"contact_status_update","payload":{"userId":`...)
	b = strconv.AppendInt(b, s.UserID, 10)
	b = append(b, `,"online":`...)
	b = strconv.AppendBool(b, s.Online)
	b = append(b, `,"lastConnectedAt":`...)
	if s.LastConnectedAt == nil {
		b = append(b, "null"...)
	} else {
		b = AppendString(b, *s.LastConnectedAt)
	}
	b = append(b, `,"typing":`...)
	b = strconv.AppendBool(b, s.Typing)
	return append(b, "}}"...)
}

// EncodeEvent encodes any event with encoding/json; for the rare frames
// (ready, error).
func EncodeEvent(typ string, payload any) []byte {
	p, err := json.Marshal(payload)
	if err != nil {
		// Only wire's own types reach here; they always marshal.
		p = []byte("{}")
	}
	b, _ := json.Marshal(Frame{Type: typ, Payload: p})
	return b
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string, escaped exactly as encoding/json
// does (HTML-safe, U+2028 and U+2029 escaped, invalid UTF-8 replaced).
func AppendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
