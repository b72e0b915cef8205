package wire

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestDecodeNewMessageRequest(t *testing.T) {
	ok := `{"requestId":1,"toUserId":2,"content":"hi","createdAt":"2026-11-27T10:20:08.123Z"}`
	cases := []struct {
		name, body, code string
	}{
		{"valid", ok, ""},
		{"unknown fields are ignored", `{"requestId":1,"toUserId":2,"content":"hi","createdAt":"2026-11-27T10:20:08.123Z","x":1}`, ""},
		{"offset timestamp", `{"requestId":1,"toUserId":2,"content":"hi","createdAt":"2026-11-27T12:20:08+02:00"}`, ""},
		{"max id", `{"requestId":9007199254740991,"toUserId":9007199254740991,"content":"hi","createdAt":"2026-11-27T10:20:08.123Z"}`, ""},
		{"id too big", `{"requestId":9007199254740992,"toUserId":2,"content":"hi","createdAt":"2026-11-27T10:20:08.123Z"}`, CodeInvalidArgument},
		{"negative id", `{"requestId":-1,"toUserId":2,"content":"hi","createdAt":"2026-11-27T10:20:08.123Z"}`, CodeInvalidArgument},
		{"float id", `{"requestId":1.5,"toUserId":2,"content":"hi","createdAt":"2026-11-27T10:20:08.123Z"}`, CodeInvalidArgument},
		{"missing requestId", `{"toUserId":2,"content":"hi","createdAt":"2026-11-27T10:20:08.123Z"}`, CodeInvalidArgument},
		{"null content", `{"requestId":1,"toUserId":2,"content":null,"createdAt":"2026-11-27T10:20:08.123Z"}`, CodeInvalidArgument},
		{"empty content", `{"requestId":1,"toUserId":2,"content":"","createdAt":"2026-11-27T10:20:08.123Z"}`, CodeInvalidArgument},
		{"content at limit", `{"requestId":1,"toUserId":2,"content":"` + strings.Repeat("é", 2048) + `","createdAt":"2026-11-27T10:20:08.123Z"}`, ""},
		{"content over limit", `{"requestId":1,"toUserId":2,"content":"` + strings.Repeat("x", 4097) + `","createdAt":"2026-11-27T10:20:08.123Z"}`, CodeTooLarge},
		{"invalid UTF-8", "{\"requestId\":1,\"toUserId\":2,\"content\":\"\xff\",\"createdAt\":\"2026-11-27T10:20:08.123Z\"}", CodeInvalidArgument},
		{"no timestamp", `{"requestId":1,"toUserId":2,"content":"hi"}`, CodeInvalidArgument},
		{"bad timestamp", `{"requestId":1,"toUserId":2,"content":"hi","createdAt":"27/11/2026"}`, CodeInvalidArgument},
		{"trailing data", ok + `{}`, CodeInvalidArgument},
		{"array", `[]`, CodeInvalidArgument},
		{"empty", ``, CodeInvalidArgument},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeNewMessageRequest([]byte(c.body), 0)
			switch {
			case c.code == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case c.code != "" && (err == nil || err.Code != c.code):
				t.Fatalf("error %v, want %s", err, c.code)
			}
		})
	}
}

func TestDecodeClientFrame(t *testing.T) {
	cases := []struct {
		body, typ, code string
	}{
		{`{"type":"ack","payload":{"upTo":5}}`, TypeAck, ""},
		{`{"type":"read","payload":{"userId":1,"upToMessageId":9}}`, TypeRead, ""},
		{`{"type":"typing","payload":{"toUserId":1,"typing":true}}`, TypeTyping, ""},
		{`{"type":"watch","payload":{"userIds":[]}}`, TypeWatch, ""},
		{`{"type":"watch","payload":{"userIds":[1,2,3]}}`, TypeWatch, ""},
		{`{"type":"watch","payload":{"userIds":[` + strings.Repeat("1,", 1000) + `1]}}`, "", CodeTooLarge},
		{`{"type":"watch","payload":{"userIds":[0]}}`, "", CodeInvalidArgument},
		{`{"type":"ack","payload":{}}`, "", CodeInvalidArgument},
		{`{"type":"ack"}`, "", CodeInvalidArgument},
		{`{"type":"typing","payload":{"toUserId":1}}`, "", CodeInvalidArgument},
		{`{"type":"nope","payload":{}}`, "", CodeInvalidArgument},
		{`{"payload":{}}`, "", CodeInvalidArgument},
		{`"ack"`, "", CodeInvalidArgument},
	}
	for _, c := range cases {
		f, err := DecodeClientFrame([]byte(c.body))
		if c.code == "" {
			if err != nil || f.Type != c.typ {
				t.Errorf("%s: %+v %v", c.body, f, err)
			}
		} else if err == nil || err.Code != c.code {
			t.Errorf("%s: error %v, want %s", c.body, err, c.code)
		}
	}
}

func TestEncodeMatchesEncodingJSON(t *testing.T) {
	contents := []string{"hello", `quote " back \ slash`, "<script>&</script>", "tab\tnew\nline\r\b\f\x01", "emoji 😀 é", "\u2028\u2029", "bad \xff utf8"}
	for _, c := range contents {
		m := Message{MessageID: 123, FromUserID: 1, ToUserID: MaxID, Content: c, Status: StatusDelivered, CreatedAt: "2026-11-27T10:20:08.123Z"}
		want, _ := json.Marshal(m)
		if got := AppendMessage(nil, &m); string(got) != string(want) {
			t.Errorf("message %q:\n got %s\nwant %s", c, got, want)
		}
		ev := AppendNewMessageEvent(nil, &m)
		var f Frame
		if err := json.Unmarshal(ev, &f); err != nil || f.Type != TypeNewMessage || f.ID != 123 {
			t.Errorf("event %s: %v", ev, err)
		}
	}
	r := Receipt{ID: 9, Status: StatusDelivered, ByUserID: 2, MessageIDs: []int64{1, 2}, At: "2026-11-27T10:20:08.123Z"}
	want, _ := json.Marshal(r)
	if got := AppendReceipt(nil, &r); string(got) != string(want) {
		t.Errorf("receipt:\n got %s\nwant %s", got, want)
	}
	for status, typ := range map[string]string{StatusDelivered: TypeMessageDelivered, StatusRead: TypeMessageRead, StatusExpired: TypeMessageExpired} {
		r := Receipt{ID: 9, Status: status, ByUserID: 2, MessageIDs: []int64{1, 2}, At: "2026-11-27T10:20:08.123Z"}
		var f Frame
		var p Receipt
		b := AppendReceiptEvent(nil, &r)
		if err := json.Unmarshal(b, &f); err != nil || f.Type != typ || f.ID != 9 || json.Unmarshal(f.Payload, &p) != nil || p.Status != status {
			t.Errorf("receipt event %s: %v, want type %s", b, err, typ)
		}
	}
	ts := "2026-11-27T10:20:08.123Z"
	for _, st := range []ContactStatus{{UserID: 1, Online: true}, {UserID: 2, LastConnectedAt: &ts, Typing: true}} {
		var f struct {
			Type    string        `json:"type"`
			Payload ContactStatus `json:"payload"`
		}
		b := AppendContactStatusEvent(nil, &st)
		if err := json.Unmarshal(b, &f); err != nil || f.Type != TypeContactStatusUpdate || f.Payload.UserID != st.UserID || (f.Payload.LastConnectedAt == nil) != (st.LastConnectedAt == nil) {
			t.Errorf("status %s: %v", b, err)
		}
	}
}

func TestFormatTime(t *testing.T) {
	tm := time.Date(2026, 11, 27, 11, 20, 8, 123456789, time.FixedZone("x", 3600))
	if got := FormatTime(tm); got != "2026-11-27T10:20:08.123Z" {
		t.Fatal(got)
	}
}

func FuzzDecodeNewMessageRequest(f *testing.F) {
	f.Add([]byte(`{"requestId":1,"toUserId":2,"content":"hi","createdAt":"2026-11-27T10:20:08.123Z"}`))
	f.Add([]byte(`{"requestId":1e3,"toUserId":-2,"content":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := DecodeNewMessageRequest(b, 0)
		if err != nil {
			if err.Status() < 400 || err.Status() > 499 {
				t.Fatalf("status %d", err.Status())
			}
			return
		}
		if req.RequestID <= 0 || req.RequestID > MaxID || req.ToUserID <= 0 || req.ToUserID > MaxID || len(req.Content) == 0 || len(req.Content) > DefaultMaxContentBytes {
			t.Fatalf("accepted invalid request %+v", req)
		}
		// What the server echoes must be valid JSON.
		m := Message{MessageID: 1, FromUserID: 1, ToUserID: req.ToUserID, Content: req.Content, CreatedAt: req.CreatedAt}
		if !json.Valid(AppendNewMessageEvent(nil, &m)) {
			t.Fatalf("invalid JSON for %+v", m)
		}
	})
}

func FuzzDecodeClientFrame(f *testing.F) {
	f.Add([]byte(`{"type":"ack","payload":{"upTo":5}}`))
	f.Add([]byte(`{"type":"watch","payload":{"userIds":[1,2]}}`))
	f.Add([]byte(`{"type":"typing","payload":{"toUserId":1,"typing":true}}`))
	f.Add([]byte(`{"type":"read","payload":{"userId":1,"upToMessageId":2}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := DecodeClientFrame(b)
		if err != nil {
			return
		}
		switch fr.Type {
		case TypeAck:
			if fr.Ack == nil || fr.Ack.UpTo <= 0 {
				t.Fatal("bad ack accepted")
			}
		case TypeRead:
			if fr.Read == nil || fr.Read.UserID <= 0 || fr.Read.UpToMessageID <= 0 {
				t.Fatal("bad read accepted")
			}
		case TypeTyping:
			if fr.Typing == nil || fr.Typing.ToUserID <= 0 {
				t.Fatal("bad typing accepted")
			}
		case TypeWatch:
			if fr.Watch == nil || len(fr.Watch.UserIDs) > MaxWatch {
				t.Fatal("bad watch accepted")
			}
		default:
			t.Fatalf("unknown type %q accepted", fr.Type)
		}
	})
}

// The ack fast path must agree with encoding/json on every frame it takes.
func FuzzAckFastPathAgrees(f *testing.F) {
	for _, s := range []string{
		`{"type":"ack","payload":{"upTo":5}}`,
		` { "payload" : { "upTo" : 9007199254740991 } , "type" : "ack" } `,
		`{"type":"ack","payload":{"upTo":9007199254740992}}`,
		`{"type":"ack","payload":{"upTo":05}}`,
		`{"type":"ack","payload":{"upTo":5.0}}`,
		`{"type":"ack","type":"ack","payload":{"upTo":5}}`,
		`{"type":"ack","payload":{"upTo":5,"x":1}}`,
		`{"type":"ack","payload":{"upTo":5}}x`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		upTo, ok := decodeAckFast(b)
		if !ok {
			return
		}
		fr, err := decodeClientFrameJSON(b)
		if err != nil {
			t.Fatalf("fast path took %q, encoding/json rejects it: %v", b, err)
		}
		if fr.Type != TypeAck || fr.Ack == nil || fr.Ack.UpTo != upTo {
			t.Fatalf("fast path read %q as ack %d, encoding/json as %+v", b, upTo, fr)
		}
	})
}

func TestAckFastPath(t *testing.T) {
	for s, want := range map[string]int64{
		`{"type":"ack","payload":{"upTo":5}}`:                                  1,
		"{\n \"payload\": {\"upTo\": 9007199254740991},\t\"type\": \"ack\"}\n": 1,
		`{"type":"ack","payload":{"upTo":9007199254740992}}`:                   0,
		`{"type":"ack","payload":{"upTo":0}}`:                                  0,
		`{"type":"ack","payload":{"upTo":-1}}`:                                 0,
		`{"type":"ack","payload":{"upTo":05}}`:                                 0,
		`{"type":"ack","payload":{"upTo":5e0}}`:                                0,
		`{"type":"ack","type":"ack","payload":{"upTo":5}}`:                     0,
		`{"type":"ack","payload":{"upTo":5,"x":1}}`:                            0,
		`{"type":"ack","payload":{"upTo":5}}}`:                                 0,
		`{"type":"ack"}`:                                                       0,
		`{"type":"read","payload":{"upTo":5}}`:                                 0,
	} {
		_, ok := decodeAckFast([]byte(s))
		if ok != (want == 1) {
			t.Errorf("decodeAckFast(%q) ok = %v, want %v", s, ok, want == 1)
		}
		// Whatever the path, DecodeClientFrame answers as encoding/json does.
		a, aerr := DecodeClientFrame([]byte(s))
		b, berr := decodeClientFrameJSON([]byte(s))
		if (aerr == nil) != (berr == nil) || (a.Ack == nil) != (b.Ack == nil) || (a.Ack != nil && a.Ack.UpTo != b.Ack.UpTo) {
			t.Errorf("%q: DecodeClientFrame %+v %v, encoding/json %+v %v", s, a, aerr, b, berr)
		}
	}
}

// The send fast path must agree with encoding/json on every body it takes.
func FuzzNewMessageFastPathAgrees(f *testing.F) {
	for _, s := range []string{
		`{"requestId":1,"toUserId":2,"content":"hi","createdAt":"2026-11-27T10:00:00Z"}`,
		` {"createdAt" : "2026-11-27T10:00:00.123Z", "content":"héllo 👋", "toUserId":9007199254740991,"requestId":7} `,
		`{"requestId":1,"toUserId":2,"content":"a\"b","createdAt":"2026-11-27T10:00:00Z"}`,
		`{"requestId":1,"toUserId":2,"content":"a\u00e9","createdAt":"2026-11-27T10:00:00Z"}`,
		`{"requestId":1,"toUserId":2,"content":"x","content":"y","createdAt":"2026-11-27T10:00:00Z"}`,
		`{"requestId":1.5,"toUserId":2,"content":"x","createdAt":"2026-11-27T10:00:00Z"}`,
		"{\"requestId\":1,\"toUserId\":2,\"content\":\"\xff\",\"createdAt\":\"2026-11-27T10:00:00Z\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, ok := decodeNewMessageFast(b)
		if !ok {
			return
		}
		slow, err := decodeNewMessageJSON(b, 1<<20)
		_, ferr := validNewMessage(fast, 1<<20)
		if (err == nil) != (ferr == nil) {
			t.Fatalf("%q: fast path error %v, encoding/json error %v", b, ferr, err)
		}
		if err == nil && fast != slow {
			t.Fatalf("%q: fast path %+v, encoding/json %+v", b, fast, slow)
		}
	})
}

func TestNewMessageFastPath(t *testing.T) {
	const ts = `"createdAt":"2026-11-27T10:00:00Z"`
	for s, want := range map[string]bool{
		`{"requestId":1,"toUserId":2,"content":"hi",` + ts + `}`:                     true,
		"{\n\"content\": \"héllo 👋\",\t" + ts + ", \"toUserId\":3, \"requestId\":4}": true,
		`{"requestId":1,"toUserId":2,"content":"a\"b",` + ts + `}`:                   false,
		`{"requestId":1,"toUserId":2,"content":"x","content":"y",` + ts + `}`:        false,
		`{"requestId":1,"toUserId":2,"content":"x",` + ts + `,"extra":1}`:            false,
		`{"requestId":1,"toUserId":2,"content":"x"}`:                                 false,
		`{"requestId":-1,"toUserId":2,"content":"x",` + ts + `}`:                     false,
		`{"requestId":1,"toUserId":2,"content":"` + "\xff" + `",` + ts + `}`:         false,
		`{"requestId":1,"toUserId":2,"content":"x",` + ts + `}{}`:                    false,
	} {
		req, ok := decodeNewMessageFast([]byte(s))
		if ok != want {
			t.Errorf("decodeNewMessageFast(%q) ok = %v, want %v", s, ok, want)
		}
		a, aerr := DecodeNewMessageRequest([]byte(s), 4096)
		b, berr := decodeNewMessageJSON([]byte(s), 4096)
		if (aerr == nil) != (berr == nil) || a != b {
			t.Errorf("%q: DecodeNewMessageRequest %+v %v, encoding/json %+v %v", s, a, aerr, b, berr)
		}
		if ok && req.Content == "" {
			t.Errorf("%q: no content read", s)
		}
	}
}
