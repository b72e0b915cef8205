package relaylog

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
}

func encodeCommand(e *enc, c *command) {
	e.u8(uint8(c.kind))
	switch c.kind {
	case cmdSend:
		e.varint(c.id)
		e.varint(c.user)
		e.varint(c.from)
		e.varint(c.reqID)
		e.varint(c.limit)
		e.str(c.content)
		e.str(c.createdAt)
	case cmdDelivered, cmdExpired:
		e.varint(c.id)
		e.varint(c.user)
		e.varint(c.from)
		e.ids(c.ids)
	case cmdRead:
		e.varint(c.id)
		e.varint(c.user)
		e.varint(c.from)
		e.varint(c.upTo)
	case cmdAck:
		e.varint(c.user)
		e.varint(c.upTo)
	case cmdDevice, cmdDeviceRemove:
		e.varint(c.user)
		e.str(c.device.Platform)
		e.str(c.device.Token)
		e.str(c.device.Topic)
		if c.device.Sandbox {
			e.u8(1)
		} else {
			e.u8(0)
		}
		e.varint(c.at)
	case cmdLastConnected:
		e.varint(c.user)
		e.varint(c.at)
	case cmdExpire:
		e.varint(c.upTo)
		e.varint(c.at)
	case cmdPushed:
		e.varint(c.user)
		e.varint(c.upTo)
	}
}

func decodeCommand(d *dec) command {
	c := command{kind: cmdKind(d.u8())}
	switch c.kind {
	case cmdSend:
		c.id = d.varint()
		c.user = d.varint()
		c.from = d.varint()
		c.reqID = d.varint()
		c.limit = d.varint()
		c.content = d.str()
		c.createdAt = d.str()
	case cmdDelivered, cmdExpired:
		c.id = d.varint()
		c.user = d.varint()
		c.from = d.varint()
		c.ids = d.ids()
	case cmdRead:
		c.id = d.varint()
		c.user = d.varint()
		c.from = d.varint()
		c.upTo = d.varint()
	case cmdAck:
		c.user = d.varint()
		c.upTo = d.varint()
	case cmdDevice, cmdDeviceRemove:
		c.user = d.varint()
		c.device.Platform = d.str()
		c.device.Token = d.str()
		c.device.Topic = d.str()
		c.device.Sandbox = d.u8() == 1
		c.at = d.varint()
	case cmdLastConnected:
		c.user = d.varint()
		c.at = d.varint()
	case cmdExpire:
		c.upTo = d.varint()
		c.at = d.varint()
	case cmdPushed:
		c.user = d.varint()
		c.upTo = d.varint()
	default:
		d.fail()
	}
	return c
}

func encodeEntry(buf []byte, cmds []*command) []byte {
	e := enc{b: buf[:0]}
	e.u8(entryVersion)
	e.uvarint(uint64(len(cmds)))
	for _, c := range cmds {
		encodeCommand(&e, c)
	}
	return e.b
}

func decodeEntry(b []byte) ([]command, error) {
	d := dec{b: b}
	if d.u8() != entryVersion {
		return nil, errCorrupt
	}
	n := d.count(2)
	cmds := make([]command, n)
	for i := range cmds {
		cmds[i] = decodeCommand(&d)
	}
	if d.err != nil {
		return nil, d.err
	}
	return cmds, nil
}
