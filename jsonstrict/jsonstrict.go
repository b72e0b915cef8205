// Package jsonstrict finds what encoding/json lets through silently in a
// JSON object: a key given twice (encoding/json keeps the last), and a key
// that names a field only when compared without case ("TOUSERID" fills
// toUserId). A client that sends either has a bug, or is probing for one in
// a component that reads the same bytes differently; both are refused.
package jsonstrict

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// Check walks the JSON value data, which must be well-formed for Check to
// say anything (malformed input gives nil: leave it to the decoder's
// error; the walk checks structure only loosely, so JSON it accepts may
// still be refused by the decoder). It returns an error naming the first object key given twice in
// any object, also when the two differ only by case; and the first key of
// the outermost object that equals one of fields without case but not
// exactly.
func Check(data []byte, fields ...string) error {
	w := walker{b: data, fields: fields}
	w.space()
	if err := w.value(0); err != nil {
		return nil // malformed: the decoder says so
	}
	return w.problem
}

type walker struct {
	b       []byte
	i       int
	fields  []string
	problem error // the first duplicate or miscased key
}

func (w *walker) found(err error) {
	if w.problem == nil {
		w.problem = err
	}
}

type malformed struct{}

func (malformed) Error() string { return "malformed JSON" }

var errMalformed error = malformed{}

// maxDepth bounds nesting: encoding/json refuses deeper input itself.
const maxDepth = 10000

func (w *walker) space() {
	for w.i < len(w.b) {
		switch w.b[w.i] {
		case ' ', '\t', '\n', '\r':
			w.i++
		default:
			return
		}
	}
}

func (w *walker) value(depth int) error {
	if depth > maxDepth || w.i >= len(w.b) {
		return errMalformed
	}
	switch c := w.b[w.i]; {
	case c == '{':
		return w.object(depth)
	case c == '[':
		w.i++
		w.space()
		if w.i < len(w.b) && w.b[w.i] == ']' {
			w.i++
			return nil
		}
		for {
			w.space()
			if err := w.value(depth + 1); err != nil {
				return err
			}
			if done, err := w.next(']'); done || err != nil {
				return err
			}
		}
	case c == '"':
		_, _, err := w.str()
		return err
	default:
		// A number or a literal: up to the next delimiter.
		start := w.i
		for w.i < len(w.b) {
			switch w.b[w.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				if w.i == start {
					return errMalformed
				}
				return nil
			}
			w.i++
		}
		return nil
	}
}

// str reads a string at w.i and returns its raw bytes (quotes included)
// and whether it holds an escape.
func (w *walker) str() ([]byte, bool, error) {
	start := w.i
	w.i++
	esc := false
	for w.i < len(w.b) {
		switch w.b[w.i] {
		case '\\':
			esc = true
			w.i += 2
			continue
		case '"':
			w.i++
			return w.b[start:w.i], esc, nil
		}
		w.i++
	}
	return nil, false, errMalformed
}

func (w *walker) object(depth int) error {
	w.i++ // the opening brace
	// The keys seen so far, as sent: the first few in an array (objects
	// are small, and a key that needs no unescaping is a slice of the
	// input), the rest in a map by folded key.
	var few [8][]byte
	var n int
	var many map[string][]byte
	for first := true; ; first = false {
		w.space()
		if w.i >= len(w.b) {
			return errMalformed
		}
		if first && w.b[w.i] == '}' {
			w.i++
			return nil
		}
		if w.b[w.i] != '"' {
			return errMalformed
		}
		raw, esc, err := w.str()
		if err != nil {
			return err
		}
		key := raw[1 : len(raw)-1]
		if esc {
			var k string
			if json.Unmarshal(raw, &k) != nil {
				return errMalformed
			}
			key = []byte(k)
		}
		var seen []byte
		for _, k := range few[:n] {
			if bytes.EqualFold(k, key) {
				seen = k
			}
		}
		if seen == nil && many != nil {
			seen = many[strings.ToLower(string(key))]
		}
		switch {
		case seen == nil:
		case bytes.Equal(seen, key):
			w.found(fmt.Errorf("key %q is given twice", key))
		default:
			w.found(fmt.Errorf("keys %q and %q differ only by case", seen, key))
		}
		if depth == 0 {
			for _, f := range w.fields {
				if string(key) != f && strings.EqualFold(string(key), f) {
					w.found(fmt.Errorf("key %q: keys are case-sensitive (the field is %q)", key, f))
				}
			}
		}
		if n < len(few) {
			few[n], n = key, n+1
		} else {
			if many == nil {
				many = make(map[string][]byte)
			}
			many[strings.ToLower(string(key))] = key
		}
		w.space()
		if w.i >= len(w.b) || w.b[w.i] != ':' {
			return errMalformed
		}
		w.i++
		w.space()
		if err := w.value(depth + 1); err != nil {
			return err
		}
		if done, err := w.next('}'); done || err != nil {
			return err
		}
	}
}

// next reads what follows an element of an array or object: a comma (more
// to come) or the closing byte (done).
func (w *walker) next(closing byte) (done bool, err error) {
	w.space()
	if w.i >= len(w.b) {
		return false, errMalformed
	}
	switch w.b[w.i] {
	case ',':
		w.i++
		return false, nil
	case closing:
		w.i++
		return true, nil
	}
	return false, errMalformed
}
