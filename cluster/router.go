package cluster

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/edgenode/edgenode/relaylog"
	"github.com/edgenode/edgenode/wire"
	"github.com/edgenode/edgenode/wire/nodewire"
)

// Router is the front's Store on a cluster node: every call goes to the
// leader of its shard, here or over the mesh.
type Router struct{ c *Cluster }

func (r *Router) route(ctx context.Context, user int64, local func() error, req *nodewire.CallRequest) (*nodewire.CallResponse, error) {
	return r.c.routing.route(ctx, user, local, req)
}

func (r *Router) routeNewShard(ctx context.Context, shard int, local func() error, req *nodewire.CallRequest) (resp *nodewire.CallResponse, old bool, err error) {
	return r.c.routing.routeNewShard(ctx, shard, local, req)
}

// Send implements edge.Store.
func (r *Router) Send(ctx context.Context, from int64, req wire.NewMessageRequest) (ev relaylog.Event, created bool, err error) {
	resp, err := r.route(ctx, req.ToUserID, func() (err error) {
		ev, created, err = r.c.log.Send(ctx, from, req)
		return err
	}, &nodewire.CallRequest{Op: nodewire.OpSend, From: from, Send: &req})
	if err != nil || resp == nil {
		return ev, created, err
	}
	if len(resp.Events) != 1 {
		return relaylog.Event{}, false, errors.New("cluster: malformed send response")
	}
	return fromNode(&resp.Events[0]), resp.Created, nil
}

// Pending implements edge.Store.
func (r *Router) Pending(ctx context.Context, user, after int64, limit int) (evs []relaylog.Event, more bool, err error) {
	resp, err := r.route(ctx, user, func() (err error) {
		evs, more, err = r.c.log.Pending(ctx, user, after, limit)
		return err
	}, &nodewire.CallRequest{Op: nodewire.OpPending, User: user, After: after, Limit: limit})
	if err != nil || resp == nil {
		return evs, more, err
	}
	evs = make([]relaylog.Event, len(resp.Events))
	for i := range resp.Events {
		evs[i] = fromNode(&resp.Events[i])
	}
	return evs, resp.More, nil
}

// Ack implements edge.Store.
func (r *Router) Ack(ctx context.Context, user, upTo int64) (n int, err error) {
	resp, err := r.route(ctx, user, func() (err error) { n, err = r.c.log.AckVia(ctx, user, upTo, r.c.Receipts()); return err },
		&nodewire.CallRequest{Op: nodewire.OpAck, User: user, UpTo: upTo})
	if resp != nil {
		n = resp.N
	}
	return n, err
}

// Attach implements edge.Store: device dev of user is linked (if need be)
// on the leader of user's shard, which answers dev's cursor. ok is false
// when that shard cannot link devices yet (a replica or its leader runs an
// older build): the user's devices share one queue meanwhile.
func (r *Router) Attach(ctx context.Context, user int64, dev string) (cursor int64, ok bool, err error) {
	resp, old, err := r.routeNewShard(ctx, r.c.log.ShardFor(user), func() (err error) {
		cursor, ok, err = r.c.log.Attach(ctx, user, dev)
		return err
	}, &nodewire.CallRequest{Op: nodewire.OpAttach, User: user, Token: dev})
	switch {
	case err != nil:
		return 0, false, err
	case old:
		return 0, false, nil
	case resp != nil:
		return resp.At, true, nil
	}
	return cursor, ok, nil
}

// AckDevice implements edge.Store: Ack for device dev (relaylog's
// AckDeviceVia); a leader of an older build takes it as a plain Ack.
func (r *Router) AckDevice(ctx context.Context, user int64, dev string, upTo int64) (n int, err error) {
	resp, old, err := r.routeNewShard(ctx, r.c.log.ShardFor(user), func() (err error) {
		n, err = r.c.log.AckDeviceVia(ctx, user, dev, upTo, r.c.Receipts())
		return err
	}, &nodewire.CallRequest{Op: nodewire.OpAckDevice, User: user, UpTo: upTo, Token: dev})
	switch {
	case old:
		return r.Ack(ctx, user, upTo)
	case resp != nil:
		n = resp.N
	}
	return n, err
}

// SentCopy implements edge.Store: msg, which sender sent, is queued for
// sender's other devices at the leader of sender's shard (nothing when
// sender has one device, or that leader's build has no devices). It
// reports whether a copy was queued (a leader of a build that does not
// tell answers false).
func (r *Router) SentCopy(ctx context.Context, sender int64, msg relaylog.Event) (queued bool, err error) {
	resp, _, err := r.routeNewShard(ctx, r.c.log.ShardFor(sender), func() (err error) {
		queued, err = r.c.log.SentCopy(ctx, sender, msg)
		return err
	}, &nodewire.CallRequest{Op: nodewire.OpSentCopy, User: sender, UpTo: msg.ID,
		Send: &wire.NewMessageRequest{ToUserID: msg.To, Content: msg.Content, CreatedAt: msg.CreatedAt}})
	if resp != nil {
		queued = resp.Found
	}
	return queued, err
}

// ReadSync implements edge.Store: reader's read mark is queued for
// reader's other devices at the leader of reader's shard.
func (r *Router) ReadSync(ctx context.Context, reader, sender, upTo int64) error {
	_, _, err := r.routeNewShard(ctx, r.c.log.ShardFor(reader), func() error { return r.c.log.ReadSync(ctx, reader, sender, upTo) },
		&nodewire.CallRequest{Op: nodewire.OpReadSync, User: reader, From: sender, UpTo: upTo})
	return err
}

// Unlink implements edge.Store: device dev no longer holds user's queue.
// It reports whether dev was linked (false too on a leader of an older
// build, which links none).
func (r *Router) Unlink(ctx context.Context, user int64, dev string) (found bool, err error) {
	resp, old, err := r.routeNewShard(ctx, r.c.log.ShardFor(user), func() (err error) {
		found, err = r.c.log.Unlink(ctx, user, dev)
		return err
	}, &nodewire.CallRequest{Op: nodewire.OpUnlink, User: user, Token: dev})
	switch {
	case old:
		return false, nil
	case resp != nil:
		found = resp.Found
	}
	return found, err
}

// LinkedDevices implements edge.Store: user's linked devices, as the
// leader of user's shard has them (none on a leader of an older build).
func (r *Router) LinkedDevices(ctx context.Context, user int64) (list []relaylog.Linked, err error) {
	resp, old, err := r.routeNewShard(ctx, r.c.log.ShardFor(user), func() (err error) {
		list, err = r.c.log.LinkedDevices(ctx, user)
		return err
	}, &nodewire.CallRequest{Op: nodewire.OpLinked, User: user})
	switch {
	case old || err != nil:
		return nil, err
	case resp != nil:
		list = make([]relaylog.Linked, len(resp.Events))
		for i, e := range resp.Events {
			list[i] = relaylog.Linked{ID: e.Content, Cursor: e.UpTo, Seen: e.ID, Push: e.By == 1}
		}
	}
	return list, nil
}

// MarkRead implements edge.Store. The read mark lives in the sender's shard.
// A mark names a conversation with a message from sender to reader: the
// leader of reader's shard is asked first (contact), and a mark of anything
// else (a stranger, an id past sender's newest message) creates nothing. A
// node of a version without the call answers bad_request: the mark goes on
// unchecked, as before.
func (r *Router) MarkRead(ctx context.Context, reader, sender, upTo int64) error {
	var last int64
	var ok bool
	resp, old, err := r.routeNewShard(ctx, r.c.log.ShardFor(reader), func() (err error) {
		last, ok, err = r.c.log.Contact(reader, sender)
		return err
	}, &nodewire.CallRequest{Op: nodewire.OpContact, User: reader, From: sender})
	switch {
	case old:
		last, ok = upTo, true
	case err != nil:
		return err
	case resp != nil:
		last, ok = resp.At, resp.Found
	}
	if !ok || upTo > last {
		return nil
	}
	_, err = r.route(ctx, sender, func() error { return r.c.log.MarkRead(ctx, reader, sender, upTo) },
		&nodewire.CallRequest{Op: nodewire.OpRead, User: sender, From: reader, UpTo: upTo})
	return err
}

// Shared implements edge.Store: for each of users, whether viewer shares
// a conversation with them (a message in either direction within the
// retention period). Every shard involved is asked at once, through its
// leader. A node of a version without the call answers bad_request: its
// pairs count as shared, as every pair did before.
func (r *Router) Shared(ctx context.Context, viewer int64, users []int64) ([]bool, error) {
	qs, out := r.c.log.ContactQueries(viewer, users)
	flags := make([][]bool, len(qs))
	errs := make([]error, len(qs))
	var wg sync.WaitGroup
	for i := range qs {
		wg.Go(func() { flags[i], errs[i] = r.contacts(ctx, qs[i].Shard, qs[i].Pairs) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for i, q := range qs {
		for j, f := range flags[i] {
			out[q.Index[j]] = out[q.Index[j]] || f
		}
	}
	return out, nil
}

// contacts asks shard's leader about pairs (relaylog.Log.Contacts).
func (r *Router) contacts(ctx context.Context, shard int, pairs []int64) (flags []bool, err error) {
	resp, old, err := r.routeNewShard(ctx, shard, func() (err error) {
		flags, err = r.c.log.Contacts(shard, pairs)
		return err
	}, &nodewire.CallRequest{Op: nodewire.OpContacts, Shard: shard, IDs: pairs})
	switch {
	case old:
		all := make([]bool, len(pairs)/2)
		for i := range all {
			all[i] = true
		}
		return all, nil
	case err != nil || resp == nil:
		return flags, err
	case len(resp.Flags) != len(pairs)/2:
		return nil, errors.New("cluster: malformed contacts response")
	}
	return resp.Flags, nil
}

// RegisterDevice implements edge.Store. A push token names one phone, so
// it belongs to one user cluster-wide: once registered for user (which
// moves it from any other user of user's shard), it is removed from
// whoever holds it in every other shard before the call answers, so that
// the previous user's alerts (and their previews) stop going to the phone.
// Two users registering one token at once may both lose it; the app
// registers again at its next start.
func (r *Router) RegisterDevice(ctx context.Context, user int64, d relaylog.Device) error {
	_, err := r.route(ctx, user, func() error { return r.c.log.RegisterDevice(ctx, user, d) },
		&nodewire.CallRequest{Op: nodewire.OpDeviceAdd, User: user, Device: &wire.DeviceRequest{Platform: d.Platform, Token: d.Token, Topic: d.Topic, Sandbox: d.Sandbox}, Token: d.DeviceID})
	if err != nil {
		return err
	}
	// Every shard's leader is asked at once: one after the other, a
	// cluster across regions would take a round trip per shard.
	home := r.c.log.ShardFor(user)
	owners := make([]int64, r.c.log.Shards())
	errs := make([]error, len(owners))
	var wg sync.WaitGroup
	for shard := range owners {
		if shard != home {
			wg.Go(func() { owners[shard], errs[shard] = r.tokenOwner(ctx, shard, d.Token) })
		}
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, owner := range owners {
		if owner != 0 && owner != user {
			if err := r.UnregisterDevice(ctx, owner, d.Token); err != nil {
				return err
			}
		}
	}
	return nil
}

// tokenOwner asks shard's leader which of its users token is registered
// for (0: none). A node of a version without the call answers bad_request:
// taken as none.
func (r *Router) tokenOwner(ctx context.Context, shard int, token string) (owner int64, err error) {
	resp, old, err := r.routeNewShard(ctx, shard, func() (err error) {
		owner, err = r.c.log.TokenOwner(shard, token)
		return err
	}, &nodewire.CallRequest{Op: nodewire.OpTokenOwner, Shard: shard, Token: token})
	switch {
	case old:
		return 0, nil
	case err != nil || resp == nil:
		return owner, err
	}
	return resp.At, nil
}

// UnregisterDevice implements edge.Store.
func (r *Router) UnregisterDevice(ctx context.Context, user int64, token string) error {
	_, err := r.route(ctx, user, func() error { return r.c.log.UnregisterDevice(ctx, user, token) },
		&nodewire.CallRequest{Op: nodewire.OpDeviceRemove, User: user, Token: token})
	return err
}

// SetLastConnected implements edge.Store.
func (r *Router) SetLastConnected(ctx context.Context, user int64, t time.Time) error {
	_, err := r.route(ctx, user, func() error { return r.c.log.SetLastConnected(ctx, user, t) },
		&nodewire.CallRequest{Op: nodewire.OpSetLastSeen, User: user, At: t.UnixMilli()})
	return err
}

// LastConnected is presence's lookup of a user's last connection, from the
// user's shard leader (a short timeout: it only decorates a status).
func (r *Router) LastConnected(user int64) (t time.Time, found bool) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	resp, err := r.route(ctx, user, func() error {
		if err := r.c.log.CheckServing(user); err != nil {
			return err
		}
		t, found = r.c.log.LastConnected(user)
		return nil
	}, &nodewire.CallRequest{Op: nodewire.OpGetLastSeen, User: user})
	if err != nil {
		return time.Time{}, false
	}
	if resp != nil {
		return time.UnixMilli(resp.At), resp.Found
	}
	return t, found
}

// Ready implements edge.Store: every shard has a leader somewhere that this
// node knows of, or serves here.
func (r *Router) Ready() bool {
	for shard := 0; shard < r.c.log.Shards(); shard++ {
		if r.c.log.Serving(shard) {
			continue
		}
		if r.c.log.Leader(shard) != "" {
			continue
		}
		if r.c.routing.hint(shard) == "" {
			return false
		}
	}
	return true
}
