package relaylog

import "github.com/edgenode/edgenode/internal/varint"

// A raft log entry of a shard is a batch of commands, proposed together by
// the shard's proposer so that one entry (and one fsync shared with other
// shards) carries many client calls:
//
//	entry   = version:u8 count:uvarint command*
//	command = kind:u8 fields...   (see encodeCommand)
//
// Event ids are assigned by the leader when it proposes (so they follow the
// node's clock) and made strictly increasing per shard by the state machine
// (so replay is deterministic whatever the clocks did).

const entryVersion = 1

type cmdKind uint8

const (
	cmdSend          cmdKind = 1 // user=recipient from=sender
	cmdDelivered     cmdKind = 2 // user=sender of the messages, from=recipient who got them
	cmdRead          cmdKind = 3 // user=sender of the messages, from=reader
	cmdAck           cmdKind = 4 // user acknowledged its queue up to upTo
	cmdDevice        cmdKind = 5
	cmdDeviceRemove  cmdKind = 6
	cmdLastConnected cmdKind = 7
	cmdExpire        cmdKind = 8  // upTo=retention cutoff id, at=idempotency cutoff id
	cmdPushed        cmdKind = 9  // user was alerted by push of its messages up to upTo
	cmdExpired       cmdKind = 10 // user=sender of the messages, from=recipient whose queue dropped ids at expiry
	cmdLink          cmdKind = 11 // device dev of user linked (or seen again) at at (linked.go)
	cmdUnlink        cmdKind = 12 // device dev of user unlinked
	cmdAckDevice     cmdKind = 13 // device dev of user acknowledged its queue up to upTo at at
	cmdSentCopy      cmdKind = 14 // user=sender, from=recipient: upTo=message id, content, createdAt (linked.go)
	cmdReadSync      cmdKind = 15 // user=reader, from=sender: read up to upTo on one of the reader's devices
	cmdDeviceOf      cmdKind = 16 // cmdDevice with device.DeviceID: a push token bound to a linked device
	cmdRevoke        cmdKind = 17 // cmdUnlink that also keeps dev of user out (linked.go) from at on
)

type command struct {
	kind      cmdKind
	id        int64
	user      int64
	from      int64
	reqID     int64
	limit     int64 // cmdSend: queue depth limit in force when proposed
	content   string
	createdAt string
	ids       []int64
	upTo      int64
	at        int64
	device    Device
	dev       string // cmdLink, cmdUnlink, cmdAckDevice: a linked device's id
}

// aboutMessages reports whether commands of kind k are about messages
// between two users (a send and its receipts). Those all start with the
// event id, the queue's user and the other user (id, user, from), before
// fields of their own.
func (k cmdKind) aboutMessages() bool {
	switch k {
	case cmdSend, cmdDelivered, cmdRead, cmdExpired, cmdSentCopy, cmdReadSync:
		return true
	}
	return false
}

func encodeCommand(e *varint.Encoder, c *command) {
	e.Byte(uint8(c.kind))
	if c.kind.aboutMessages() {
		e.Varint(c.id)
		e.Varint(c.user)
		e.Varint(c.from)
	}
	switch c.kind {
	case cmdSend:
		e.Varint(c.reqID)
		e.Varint(c.limit)
		e.Str(c.content)
		e.Str(c.createdAt)
	case cmdDelivered, cmdExpired:
		e.DeltaIDs(c.ids)
	case cmdRead, cmdReadSync:
		e.Varint(c.upTo)
	case cmdSentCopy:
		e.Varint(c.upTo)
		e.Str(c.content)
		e.Str(c.createdAt)
	case cmdAck, cmdPushed:
		e.Varint(c.user)
		e.Varint(c.upTo)
	case cmdDevice, cmdDeviceRemove, cmdDeviceOf:
		e.Varint(c.user)
		e.Str(c.device.Platform)
		e.Str(c.device.Token)
		e.Str(c.device.Topic)
		e.Bool(c.device.Sandbox)
		e.Varint(c.at)
		if c.kind == cmdDeviceOf {
			e.Str(c.device.DeviceID)
		}
	case cmdLastConnected:
		e.Varint(c.user)
		e.Varint(c.at)
	case cmdExpire:
		e.Varint(c.upTo)
		e.Varint(c.at)
	case cmdLink, cmdUnlink, cmdRevoke:
		e.Varint(c.user)
		e.Str(c.dev)
		e.Varint(c.at)
	case cmdAckDevice:
		e.Varint(c.user)
		e.Varint(c.upTo)
		e.Str(c.dev)
		e.Varint(c.at)
	}
}

func decodeCommand(d *varint.Decoder) command {
	c := command{kind: cmdKind(d.Byte())}
	if c.kind.aboutMessages() {
		c.id = d.Varint()
		c.user = d.Varint()
		c.from = d.Varint()
	}
	switch c.kind {
	case cmdSend:
		c.reqID = d.Varint()
		c.limit = d.Varint()
		c.content = d.Str()
		c.createdAt = d.Str()
	case cmdDelivered, cmdExpired:
		c.ids = d.DeltaIDs()
	case cmdRead, cmdReadSync:
		c.upTo = d.Varint()
	case cmdSentCopy:
		c.upTo = d.Varint()
		c.content = d.Str()
		c.createdAt = d.Str()
	case cmdAck, cmdPushed:
		c.user = d.Varint()
		c.upTo = d.Varint()
	case cmdDevice, cmdDeviceRemove, cmdDeviceOf:
		c.user = d.Varint()
		c.device.Platform = d.Str()
		c.device.Token = d.Str()
		c.device.Topic = d.Str()
		c.device.Sandbox = d.Byte() == 1
		c.at = d.Varint()
		if c.kind == cmdDeviceOf {
			c.device.DeviceID = d.Str()
		}
	case cmdLastConnected:
		c.user = d.Varint()
		c.at = d.Varint()
	case cmdExpire:
		c.upTo = d.Varint()
		c.at = d.Varint()
	case cmdLink, cmdUnlink, cmdRevoke:
		c.user = d.Varint()
		c.dev = d.Str()
		c.at = d.Varint()
	case cmdAckDevice:
		c.user = d.Varint()
		c.upTo = d.Varint()
		c.dev = d.Str()
		c.at = d.Varint()
	default:
		d.Fail()
	}
	return c
}

func encodeEntry(buf []byte, cmds []*command) []byte {
	e := varint.Encoder{B: buf[:0]}
	e.Byte(entryVersion)
	e.Uvarint(uint64(len(cmds)))
	for _, c := range cmds {
		encodeCommand(&e, c)
	}
	return e.B
}

func decodeEntry(b []byte) ([]command, error) {
	d := newDec(b)
	if d.Byte() != entryVersion {
		return nil, errCorrupt
	}
	n := d.Count(2)
	cmds := make([]command, n)
	for i := range cmds {
		cmds[i] = decodeCommand(&d)
	}
	if d.Err != nil {
		return nil, d.Err
	}
	return cmds, nil
}
