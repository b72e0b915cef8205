package edge

import (
	"encoding/binary"
	"strconv"
	"unicode/utf8"

	"github.com/edgenode/edgenode/relaylog"
	"github.com/edgenode/edgenode/wire"
)

// The WebSocket frame codec (RFC 6455) of the socket, apart from its state
// machine (socket.go): how server events are framed, and how client frames
// are parsed, reassembled and validated. Nothing here touches a socket; the
// functions take and return bytes, frames and errors.
//
// Server frames are unmasked and built in place: beginFrame reserves room for
// the largest header, the payload is appended, and endFrame writes the real
// header and closes the gap, so an event is encoded once, straight into the
// write buffer.

// Opcodes (RFC 6455, section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA

	finBit = 0x80
)

// WebSocket close codes (RFC 6455, section 7.4.1).
const (
	closeNormal        = 1000
	closeProtocolError = 1002
	closeInvalidData   = 1007
	closePolicy        = 1008
	closeTooBig        = 1009
	closeRestart       = 1012
)

// --- Server frames ---------------------------------------------------------

// beginFrame reserves room for a text frame header at the end of b; endFrame
// fills it in once the payload is appended.
func beginFrame(b []byte) ([]byte, int) {
	return append(b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), len(b)
}

func endFrame(b []byte, at int) []byte {
	payload := len(b) - at - 10
	var hdr [10]byte
	hdr[0] = finBit | opText
	n := 2
	switch {
	case payload < 126:
		hdr[1] = byte(payload)
	case payload <= 0xffff:
		hdr[1] = 126
		hdr[2], hdr[3] = byte(payload>>8), byte(payload)
		n = 4
	default:
		hdr[1] = 127
		for i := 0; i < 8; i++ {
			hdr[2+i] = byte(uint64(payload) >> (56 - 8*i))
		}
		n = 10
	}
	// Close the gap between the header and the payload.
	copy(b[at:], hdr[:n])
	copy(b[at+n:], b[at+10:])
	return b[:len(b)-(10-n)]
}

// frame appends one complete text frame built by fill.
func frame(b []byte, fill func([]byte) []byte) []byte {
	b, at := beginFrame(b)
	return endFrame(fill(b), at)
}

// controlFrame appends an unmasked control frame (opClose, opPing, opPong)
// with a payload of at most 125 bytes.
func controlFrame(b []byte, op byte, payload []byte) []byte {
	if len(payload) > 125 {
		payload = payload[:125]
	}
	b = append(b, finBit|op, byte(len(payload)))
	return append(b, payload...)
}

// appendClose appends a close frame with code and text.
func appendClose(b []byte, code int, text string) []byte {
	payload := make([]byte, 2, 2+len(text))
	binary.BigEndian.PutUint16(payload, uint16(code))
	payload = append(payload, text...)
	return controlFrame(b, opClose, payload)
}

// appendReady appends the ready event, the socket's first frame.
func appendReady(b []byte, r wire.Ready) []byte {
	ready := wire.EncodeEvent(wire.TypeReady, r)
	return frame(b, func(b []byte) []byte { return append(b, ready...) })
}

// appendStatus appends a contact_status_update event.
func appendStatus(b []byte, st *wire.ContactStatus) []byte {
	return frame(b, func(b []byte) []byte { return wire.AppendContactStatusEvent(b, st) })
}

// appendEvent appends a queued event as the client sees it: new_message for a
// message, the receipt's event otherwise.
func appendEvent(b []byte, ev *relaylog.Event) []byte {
	b, at := beginFrame(b)
	switch ev.Kind {
	case relaylog.KindSent:
		m := sentToWire(ev)
		return endFrame(wire.AppendSentMessageEvent(b, ev.ID, &m), at)
	case relaylog.KindReadSync:
		return endFrame(wire.AppendConversationReadEvent(b, ev.ID, &wire.ReadFrame{UserID: ev.By, UpToMessageID: ev.UpTo}), at)
	}
	msg, rc := toWire(ev)
	if msg != nil {
		b = wire.AppendNewMessageEvent(b, msg)
	} else {
		b = wire.AppendReceiptEvent(b, rc)
	}
	return endFrame(b, at)
}

// appendErrors appends an error event for each of errs.
func appendErrors(b []byte, errs []*wire.Error) []byte {
	for _, e := range errs {
		ev := wire.EncodeEvent(wire.TypeError, wire.ErrorDetail{Code: e.Code, Message: e.Message})
		b = frame(b, func(b []byte) []byte { return append(b, ev...) })
	}
	return b
}

// --- Client frames ---------------------------------------------------------

// clientFrame is one parsed client frame.
type clientFrame struct {
	fin     bool
	op      byte
	payload []byte // unmasked in place
}

// protocolError closes the socket with a WebSocket close code.
type protocolError struct {
	code   int
	text   string
	reason string // metric label of the close
}

func errTooBig() *protocolError {
	return &protocolError{closeTooBig, "frame larger than " + strconv.Itoa(wire.MaxFrameBytes) + " bytes", "frame too large"}
}

// parseFrame parses one client frame at the start of b and unmasks its
// payload in place. n is 0 while b holds only part of the frame. Limits are
// checked from the header, before any payload is buffered.
func parseFrame(b []byte) (f clientFrame, n int, perr *protocolError) {
	if len(b) < 2 {
		return f, 0, nil
	}
	f.fin, f.op = b[0]&finBit != 0, b[0]&0x0f
	if b[0]&0x70 != 0 {
		return f, 0, &protocolError{closeProtocolError, "reserved bits set", "protocol error"}
	}
	if b[1]&0x80 == 0 {
		return f, 0, &protocolError{closeProtocolError, "client frames must be masked", "protocol error"}
	}
	length, hl := uint64(b[1]&0x7f), 2
	switch length {
	case 126:
		if len(b) < 4 {
			return f, 0, nil
		}
		length, hl = uint64(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		if len(b) < 10 {
			return f, 0, nil
		}
		length, hl = binary.BigEndian.Uint64(b[2:]), 10
	}
	switch f.op {
	case opContinuation, opText, opBinary:
	case opClose, opPing, opPong:
		if length > 125 || !f.fin {
			return f, 0, &protocolError{closeProtocolError, "bad control frame", "protocol error"}
		}
	default:
		return f, 0, &protocolError{closeProtocolError, "unknown opcode", "protocol error"}
	}
	if length > wire.MaxFrameBytes {
		return f, 0, errTooBig()
	}
	end := hl + 4 + int(length)
	if len(b) < end {
		return f, 0, nil
	}
	mask := b[hl : hl+4]
	f.payload = b[hl+4 : end]
	for i := range f.payload {
		f.payload[i] ^= mask[i&3]
	}
	return f, end, nil
}

// assembler joins the data frames of a fragmented client message (RFC 6455,
// section 5.4). It holds nothing between messages.
type assembler struct {
	op  byte   // the message's opcode; 0: no fragmented message is open
	buf []byte // its payload so far
}

// add takes a data frame (opText, opBinary or opContinuation). done reports a
// complete message, op and msg; msg may alias f's payload.
func (a *assembler) add(f clientFrame) (op byte, msg []byte, done bool, perr *protocolError) {
	if f.op != opContinuation {
		if a.op != 0 {
			return 0, nil, false, &protocolError{closeProtocolError, "new message inside a fragmented one", "protocol error"}
		}
		if f.fin {
			return f.op, f.payload, true, nil
		}
		a.op, a.buf = f.op, append([]byte(nil), f.payload...)
		return 0, nil, false, nil
	}
	if a.op == 0 {
		return 0, nil, false, &protocolError{closeProtocolError, "continuation without a message", "protocol error"}
	}
	if len(a.buf)+len(f.payload) > wire.MaxFrameBytes {
		return 0, nil, false, errTooBig()
	}
	a.buf = append(a.buf, f.payload...)
	if !f.fin {
		return 0, nil, false, nil
	}
	op, msg = a.op, a.buf
	a.op, a.buf = 0, nil
	return op, msg, true, nil
}

// decodeMessage validates and decodes a complete client message. A binary
// message or a frame the API rejects is a werr (an error event; the socket
// stays open); text that is not UTF-8 is a perr (the socket closes, 1007).
func decodeMessage(op byte, data []byte) (f wire.ClientFrame, werr *wire.Error, perr *protocolError) {
	if op != opText {
		return f, wire.Invalid("frames must be JSON text frames"), nil
	}
	if !utf8.Valid(data) {
		return f, nil, &protocolError{closeInvalidData, "text frame is not valid UTF-8", "protocol error"}
	}
	f, werr = wire.DecodeClientFrame(data)
	return f, werr, nil
}
