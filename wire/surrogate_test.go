package wire

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"
)

// A JSON string escape of a lone UTF-16 surrogate is valid JSON but no
// Unicode character: encoding/json would store U+FFFD in its place, so every
// body decoded by the general decoder refuses it instead.
func TestLoneSurrogateEscapesAreRejected(t *testing.T) {
	const ts = `"createdAt":"2026-11-27T10:20:08.123Z"`
	send := func(content string) string {
		return `{"requestId":1,"toUserId":2,"content":"` + content + `",` + ts + `}`
	}
	for _, c := range []struct {
		content string
		ok      bool
		want    string // content as stored, when ok
	}{
		{`\ud800`, false, ""},
		{`\uDBFF`, false, ""},
		{`\udc00`, false, ""},                  // low without high
		{`\uDFFF`, false, ""},                  // low without high
		{`a\ud800b`, false, ""},                // high followed by text
		{`\ud800\u0041`, false, ""},            // high followed by a non-surrogate escape
		{`\ud800\ud800`, false, ""},            // two highs
		{`\udc00\ud800`, false, ""},            // low then high: reversed pair
		{`\ud83d\ude00\ude00`, false, ""},      // a pair, then a lone low
		{`x\ud83d`, false, ""},                 // high at the end of the string
		{`\ud83d\ude00`, true, "😀"},            // a valid pair
		{`\uD83D\uDE00`, true, "😀"},            // upper-case hex
		{`\ud7ff\ue000`, true, "\ud7ff\ue000"}, // just outside the surrogate range
		{`\\ud800`, true, `\ud800`},            // an escaped backslash, then text
		{`\\\ud83d\ude00`, true, `\😀`},         // escaped backslash, then a pair
		{`\"\ud83d\ude00`, true, `"😀`},
		{`\u00e9`, true, "é"},
		{`\ufffd`, true, "\ufffd"}, // U+FFFD itself, sent on purpose
	} {
		body := send(c.content)
		req, err := DecodeNewMessageRequest([]byte(body), 0)
		if !c.ok {
			if err == nil || err.Code != CodeInvalidArgument || !strings.Contains(err.Message, "surrogate") {
				t.Errorf("%s: accepted as %q (err %v), want invalid_argument naming the surrogate", body, req.Content, err)
			}
			continue
		}
		if err != nil || req.Content != c.want {
			t.Errorf("%s: content %q, err %v; want %q", body, req.Content, err, c.want)
		}
	}

	// Every other body decoded by the general decoder too: wherever the
	// string is, field name and unknown fields included.
	for _, body := range []string{
		`{"requestId":1,"toUserId":2,"content":"hi",` + ts + `,"extra":"\ud800"}`,
		`{"requestId":1,"toUserId":2,"content":"hi","createdAt":"2026-11-27T10:20:08.123Z\udc00"}`,
	} {
		if _, err := DecodeNewMessageRequest([]byte(body), 0); err == nil || err.Code != CodeInvalidArgument {
			t.Errorf("%s: err %v, want invalid_argument", body, err)
		}
	}
	if _, err := DecodeDeviceRequest([]byte(`{"platform":"apns","token":"abc","topic":"com.example\ud800"}`)); err == nil || !strings.Contains(err.Message, "surrogate") {
		t.Errorf("device topic with a lone surrogate: err %v", err)
	}
	// A pair is a character (no surrogate error), though not one a
	// reverse-DNS topic may hold.
	if _, err := DecodeDeviceRequest([]byte(`{"platform":"apns","token":"abc","topic":"com.example\ud83d\ude00"}`)); err == nil || strings.Contains(err.Message, "surrogate") || !strings.Contains(err.Message, "reverse-DNS") {
		t.Errorf("device topic with a pair: err %v", err)
	}
	if _, err := DecodeReadRequest([]byte(`{"upToMessageId":5,"note":"\udfff"}`)); err == nil {
		t.Error("read body with a lone surrogate accepted")
	}
	if _, err := DecodeTypingRequest([]byte(`{"typing":true,"\ud800":1}`)); err == nil {
		t.Error("typing body with a lone surrogate in a field name accepted")
	}
	if _, err := DecodeClientFrame([]byte(`{"type":"typing","payload":{"toUserId":1,"typing":true,"x":"\ud800"}}`)); err == nil {
		t.Error("client frame with a lone surrogate accepted")
	}
}

// replacements counts the U+FFFD a body may legitimately decode to: sent as
// UTF-8 or as the escape \ufffd.
func replacements(b []byte) int {
	return bytes.Count(b, []byte("\ufffd")) + bytes.Count(bytes.ToLower(b), []byte(`\ufffd`))
}

// No accepted body decodes to a U+FFFD that its sender did not write: the
// decoders never silently alter content.
func FuzzNoSilentReplacement(f *testing.F) {
	for _, s := range []string{
		`{"requestId":1,"toUserId":2,"content":"\ud800","createdAt":"2026-11-27T10:20:08.123Z"}`,
		`{"requestId":1,"toUserId":2,"content":"\ud83d\ude00","createdAt":"2026-11-27T10:20:08.123Z"}`,
		`{"requestId":1,"toUserId":2,"content":"\\ud800\ufffd","createdAt":"2026-11-27T10:20:08.123Z"}`,
		`{"requestId":1,"toUserId":2,"content":"a\ud800\u0041","createdAt":"2026-11-27T10:20:08.123Z"}`,
		"{\"requestId\":1,\"toUserId\":2,\"content\":\"\xed\xa0\x80\",\"createdAt\":\"2026-11-27T10:20:08.123Z\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := DecodeNewMessageRequest(b, 0)
		if err != nil {
			return
		}
		got := strings.Count(req.Content, "\ufffd") + strings.Count(req.CreatedAt, "\ufffd")
		if got > replacements(b) {
			t.Fatalf("%q decoded to content %q: a U+FFFD the sender did not write", b, req.Content)
		}
		if !utf8.ValidString(req.Content) {
			t.Fatalf("%q decoded to invalid UTF-8 %q", b, req.Content)
		}
	})
}

// hasLoneSurrogate agrees with encoding/json's own decoding of a single
// string: a string with no lone surrogate decodes to exactly as many U+FFFD
// as it spells out.
func FuzzLoneSurrogateAgreesWithJSON(f *testing.F) {
	for _, s := range []string{`"\ud800"`, `"\ud83d\ude00"`, `"\\ud800"`, `"\udc00\ud800"`, `"\ud800\u"`, `"\ufffd"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var s struct {
			V string `json:"v"`
		}
		body := append(append([]byte(`{"v":`), b...), '}')
		if hasLoneSurrogate(body) {
			return
		}
		if decodeStrict(body, &s) != nil {
			return
		}
		if strings.Count(s.V, "\ufffd") > replacements(b) {
			t.Fatalf("%s: no lone surrogate found, but encoding/json decoded %q", b, s.V)
		}
	})
}
