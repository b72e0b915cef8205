package edge_test

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/edgenode/edgenode/wire"
)

// rawToken signs claims, a JSON text taken as it is (duplicate keys and
// all), with HS256 and the harness's secret.
func rawToken(t *testing.T, claims string) string {
	t.Helper()
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString([]byte(claims))
	sig, err := jwt.SigningMethodHS256.Sign(signing, testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + enc.EncodeToString(sig)
}

// TestStrictInput: what encoding/json and the JWT library would read
// leniently is refused at the API (issue 13, row 9): duplicate keys, keys
// that differ only by case, a JWT with two sub claims or exp as a string,
// control characters in content, and topics that are not reverse-DNS.
func TestStrictInput(t *testing.T) {
	h := start(t, nil)
	exp := time.Now().Add(time.Hour).Unix()
	const at = `"createdAt":"2026-11-27T10:20:08.123Z"`
	cases := []struct {
		name, method, path, token, body string
		status                          int
		code, says                      string
	}{
		{"duplicate key", "POST", "/v1/messages", "", `{"requestId":1,"toUserId":2,"toUserId":3,"content":"hi",` + at + `}`, 400, wire.CodeInvalidArgument, `"toUserId" is given twice`},
		{"keys differing by case", "POST", "/v1/messages", "", `{"requestId":1,"toUserId":2,"TOUSERID":3,"content":"hi",` + at + `}`, 400, wire.CodeInvalidArgument, "differ only by case"},
		{"key in the wrong case", "POST", "/v1/messages", "", `{"requestId":1,"TOUSERID":2,"content":"hi",` + at + `}`, 400, wire.CodeInvalidArgument, "case-sensitive"},
		{"escaped duplicate key", "POST", "/v1/messages", "", `{"requestId":1,"toUserId":2,"\u0074oUserId":3,"content":"hi",` + at + `}`, 400, wire.CodeInvalidArgument, "given twice"},
		{"NUL in content", "POST", "/v1/messages", "", `{"requestId":1,"toUserId":2,"content":"a\u0000b",` + at + `}`, 400, wire.CodeInvalidArgument, "U+0000"},
		{"escape in content", "POST", "/v1/messages", "", `{"requestId":1,"toUserId":2,"content":"a\u001bb",` + at + `}`, 400, wire.CodeInvalidArgument, "U+001B"},
		{"C1 control in content", "POST", "/v1/messages", "", `{"requestId":1,"toUserId":2,"content":"a\u0085b",` + at + `}`, 400, wire.CodeInvalidArgument, "U+0085"},
		{"duplicate ack field", "POST", "/v1/conversations/2/read", "", `{"upToMessageId":1,"upToMessageId":2}`, 400, wire.CodeInvalidArgument, "given twice"},
		{"topic with CRLF", "POST", "/v1/devices", "", `{"platform":"apns","token":"abc","topic":"com.example\r\nx-injected: 1"}`, 400, wire.CodeInvalidArgument, "reverse-DNS"},
		{"topic one label", "POST", "/v1/devices", "", `{"platform":"apns","token":"abc","topic":"chat"}`, 400, wire.CodeInvalidArgument, "reverse-DNS"},
		{"two sub claims", "GET", "/v1/messages", rawToken(t, fmt.Sprintf(`{"sub":"1","sub":"2","exp":%d}`, exp)), "", 401, wire.CodeUnauthenticated, `"sub" is given twice`},
		{"exp as a string", "GET", "/v1/messages", rawToken(t, fmt.Sprintf(`{"sub":"1","exp":"%d"}`, exp)), "", 401, wire.CodeUnauthenticated, "exp must be a number"},
		{"sub as a number", "GET", "/v1/messages", rawToken(t, fmt.Sprintf(`{"sub":1,"exp":%d}`, exp)), "", 401, wire.CodeUnauthenticated, "sub must be a decimal user id string"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(c.method, h.url+c.path, strings.NewReader(c.body))
			tok := c.token
			if tok == "" {
				tok = tokenFor(t, int64(2000+i))
			}
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.status, b)
			}
			if e := decodeError(t, b); e.Code != c.code || !strings.Contains(e.Message, c.says) {
				t.Fatalf("error %+v, want code %s saying %q", e, c.code, c.says)
			}
		})
	}

	// What stays accepted: newline and tab in content, a reverse-DNS topic
	// with a suffix, the same token well-formed.
	if code, _, body := h.do("POST", "/v1/messages", 1, map[string]any{"requestId": 1, "toUserId": 2, "content": "line one\n\tline two", "createdAt": "2026-11-27T10:20:08.123Z"}); code != 201 {
		t.Fatalf("newline and tab in content: %d %s", code, body)
	}
	if code, _, body := h.do("POST", "/v1/devices", 1, map[string]any{"platform": "apns", "token": "abc", "topic": "com.example-app.chat.voip"}); code != 204 && code != 201 {
		t.Fatalf("reverse-DNS topic: %d %s", code, body)
	}
	req, _ := http.NewRequest("GET", h.url+"/v1/messages", nil)
	req.Header.Set("Authorization", "Bearer "+rawToken(t, fmt.Sprintf(`{"sub":"1","exp":%d}`, exp)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("well-formed raw token: %d", resp.StatusCode)
	}
}
