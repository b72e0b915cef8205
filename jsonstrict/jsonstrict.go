// Package jsonstrict finds what encoding/json lets through silently in a
// JSON object: a key given twice (encoding/json keeps the last), and a key
// that names a field only when compared without case ("TOUSERID" fills
// toUserId). A client that sends either has a bug, or is probing for one in
// a component that reads the same bytes differently; both are refused.
package jsonstrict

import (
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
	// keys maps each folded key to the key as sent.
	var keys map[string]string
	for {
		w.space()
		if w.i >= len(w.b) {
			return errMalformed
		}
		if w.b[w.i] == '}' && len(keys) == 0 {
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
		key := string(raw[1 : len(raw)-1])
		if esc {
			if json.Unmarshal(raw, &key) != nil {
				return errMalformed
			}
		}
		folded := strings.ToLower(key)
		if k, ok := keys[folded]; ok {
			if k == key {
				w.found(fmt.Errorf("key %q is given twice", key))
			} else {
				w.found(fmt.Errorf("keys %q and %q differ only by case", k, key))
			}
		}
		if depth == 0 {
			for _, f := range w.fields {
				if key != f && strings.EqualFold(key, f) {
					w.found(fmt.Errorf("key %q: keys are case-sensitive (the field is %q)", key, f))
				}
			}
		}
		if keys == nil {
			keys = make(map[string]string, 4)
		}
		keys[folded] = key
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
