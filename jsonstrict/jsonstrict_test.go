package jsonstrict

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	fields := []string{"requestId", "toUserId"}
	for _, c := range []struct {
		in   string
		says string // "" = accepted
	}{
		{`{"requestId":1,"toUserId":2}`, ""},
		{` { "a" : [1, {"b": true, "c": null}, "x"], "d": {} , "e": [] } `, ""},
		{`{"a":1,"a":2}`, `key "a" is given twice`},
		{`{"a":1,"A":2}`, `keys "a" and "A" differ only by case`},
		{`{"x":{"a":1,"a":2}}`, `key "a" is given twice`},
		{`[{"a":1},{"a":2}]`, ""},
		{`[{"a":1,"a":2}]`, `key "a" is given twice`},
		{`{"TOUSERID":2}`, `key "TOUSERID": keys are case-sensitive (the field is "toUserId")`},
		{`{"x":{"TOUSERID":2}}`, ""}, // fields name the outermost object's keys only
		{`{"to\u0055serId":2,"toUserId":3}`, `key "toUserId" is given twice`},
		{`{"a\"b":1,"a\"b":2}`, `key "a\"b" is given twice`},
		{`{"a":"}","a":2}`, `key "a" is given twice`},
		// Past the first eight keys (kept apart from the others).
		{`{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10}`, ""},
		{`{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"I":10}`, `keys "i" and "I" differ only by case`},
		{`{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"B":10}`, `keys "b" and "B" differ only by case`},
		{`{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"j":11}`, `key "j" is given twice`},
		// Malformed input is the decoder's to report.
		{`{"a":1,"a"`, ""},
		{`{"a" 1, "a": 2}`, ""},
		{`{`, ""},
		{``, ""},
		{`"x`, ""},
	} {
		err := Check([]byte(c.in), fields...)
		switch {
		case c.says == "" && err != nil:
			t.Errorf("Check(%s) = %v, want nil", c.in, err)
		case c.says != "" && (err == nil || err.Error() != c.says):
			t.Errorf("Check(%s) = %v, want %q", c.in, err, c.says)
		}
	}
}

func TestDeepNestingDoesNotOverflow(t *testing.T) {
	in := strings.Repeat("[", 100000) + strings.Repeat("]", 100000)
	if err := Check([]byte(in)); err != nil {
		t.Fatalf("Check of deep nesting: %v", err)
	}
}

func FuzzCheck(f *testing.F) {
	for _, s := range []string{`{"a":1,"a":2}`, `{"x":[{"y":"\u0041"}]}`, `[1,2,{"k":null}]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := Check([]byte(s))
		if err == nil || !json.Valid([]byte(s)) {
			return
		}
		// A duplicate found in valid JSON must really be there: the
		// decoder sees fewer keys than the text has.
		if !strings.Contains(err.Error(), "twice") && !strings.Contains(err.Error(), "case") {
			t.Fatalf("Check(%q) = %v", s, err)
		}
	})
}

// BenchmarkCheckTypingFrame: the check's cost on a socket frame that takes
// the general decoder (typing), the most frequent of those.
func BenchmarkCheckTypingFrame(b *testing.B) {
	frame := []byte(`{"type":"typing","payload":{"toUserId":42,"typing":true}}`)
	b.ReportAllocs()
	for b.Loop() {
		if err := Check(frame, "type", "payload"); err != nil {
			b.Fatal(err)
		}
	}
}
