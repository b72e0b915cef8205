package relaylog

import (
	"errors"

	"github.com/edgenode/edgenode/internal/varint"
)

// Log entries (command.go) and snapshots (fsm.go) are encoded with the
// primitives of internal/varint: varints, length-prefixed strings, and id
// lists as deltas (DeltaIDs). Decoding never panics on bad input; it records
// errCorrupt and returns zero values after it.

var errCorrupt = errors.New("relaylog: corrupt encoding")

func newDec(b []byte) varint.Decoder { return varint.NewDecoder(b, errCorrupt) }
