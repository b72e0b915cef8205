package edge

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/edgenode/edgenode/relaylog"
	"github.com/edgenode/edgenode/wire"
)

var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// readBody reads a request body of at most wire.MaxBodyBytes into a pooled
// buffer; the caller returns it with bodyPool.Put.
func readBody(w http.ResponseWriter, r *http.Request) (*[]byte, *wire.Error) {
	if r.ContentLength > wire.MaxBodyBytes {
		return nil, wire.Errorf(wire.CodeTooLarge, "request body is larger than %d bytes", wire.MaxBodyBytes)
	}
	bp := bodyPool.Get().(*[]byte)
	buf := (*bp)[:0]
	lr := io.LimitReader(r.Body, wire.MaxBodyBytes+1)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := lr.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			*bp = buf
			bodyPool.Put(bp)
			return nil, wire.Invalid("reading request body: %v", err)
		}
	}
	*bp = buf
	if len(buf) > wire.MaxBodyBytes {
		bodyPool.Put(bp)
		return nil, wire.Errorf(wire.CodeTooLarge, "request body is larger than %d bytes", wire.MaxBodyBytes)
	}
	return bp, nil
}

// decodeBody reads the request body into a pooled buffer and decodes it.
// Decoders copy what they keep (encoding/json copies strings), so the buffer
// goes back to the pool at once.
func decodeBody[T any](w http.ResponseWriter, r *http.Request, decode func([]byte) (T, *wire.Error)) (T, *wire.Error) {
	bp, werr := readBody(w, r)
	if werr != nil {
		var zero T
		return zero, werr
	}
	v, werr := decode(*bp)
	bodyPool.Put(bp)
	return v, werr
}

func pathID(r *http.Request, name string) (int64, *wire.Error) {
	v := r.PathValue(name)
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id <= 0 || id > wire.MaxID {
		return 0, wire.Invalid("%s in the path must be an integer between 1 and %d", name, int64(wire.MaxID))
	}
	return id, nil
}

func (s *Server) ctx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), s.opts.CallTimeout)
}

func (s *Server) handleSend(w http.ResponseWriter, r *http.Request, user int64) *wire.Error {
	if wait, ok := s.allowSend(user); !ok {
		s.m.sends.WithLabelValues("rate_limited").Inc()
		return &wire.Error{Code: wire.CodeRateLimited, Message: "too many messages; slow down", RetryAfter: wait}
	}
	dev, werr := deviceID(r, false)
	if werr != nil {
		s.m.sends.WithLabelValues("invalid").Inc()
		return werr
	}
	req, werr := decodeBody(w, r, func(b []byte) (wire.NewMessageRequest, *wire.Error) {
		return wire.DecodeNewMessageRequest(b, s.opts.MaxContentBytes)
	})
	if werr != nil {
		s.m.sends.WithLabelValues("invalid").Inc()
		return werr
	}
	// The request's own context bounds only the wait for a place in the
	// shard's queue: once proposed, a send is always answered.
	ev, created, err := s.log.Send(r.Context(), user, req)
	if err == nil {
		// The sender's other devices get it too (a retry queues it again:
		// devices drop it by message id). Until that is written the send
		// is not answered, so a failure here is retried like the send.
		// The sending device's sockets here pass over their copy (flow.go):
		// marked before it is queued, as it may be written at once.
		own := s.ownSockets(user, dev)
		for _, sk := range own {
			sk.markOwn(ev.ID)
		}
		var queued bool
		queued, err = s.log.SentCopy(r.Context(), user, ev)
		if !queued {
			for _, sk := range own {
				sk.unmarkOwn(ev.ID)
			}
		}
	}
	if err != nil {
		werr := apiError(err)
		s.m.sends.WithLabelValues(werr.Code).Inc()
		return werr
	}
	s.conversationStarted(user, req.ToUserID)
	if created {
		s.m.sends.WithLabelValues("created").Inc()
	} else {
		s.m.sends.WithLabelValues("duplicate").Inc()
	}
	msg := wire.Message{MessageID: ev.ID, FromUserID: ev.From, ToUserID: ev.To, Content: ev.Content, Status: wire.StatusSynced, CreatedAt: ev.CreatedAt}
	b := make([]byte, 0, 160+len(ev.Content))
	b = append(b, `{"message":`...)
	b = wire.AppendMessage(b, &msg)
	b = append(b, `,"fromMessageRequestId":`...)
	b = strconv.AppendInt(b, req.RequestID, 10)
	b = append(b, "}\n"...)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	w.Write(b)
	return nil
}

// ownSockets are the sockets of user's device dev on this node.
func (s *Server) ownSockets(user int64, dev string) []*socket {
	var own []*socket
	for _, ss := range s.hub.Sessions(user) {
		if sk, ok := ss.(*socket); ok && sk.dev == dev {
			own = append(own, sk)
		}
	}
	return own
}

func queryInt(r *http.Request, name string, def int64) (int64, *wire.Error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > wire.MaxID {
		return 0, wire.Invalid("%s must be a non-negative integer", name)
	}
	return n, nil
}

// queryLimit reads the sync limit: absent means the default, a positive
// integer above wire.MaxSyncLimit (however large, even beyond int64) is
// clamped to it, and 0, a negative number or a non-integer is an error.
func queryLimit(r *http.Request) (int64, *wire.Error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return wire.DefaultSyncLimit, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) && ne.Err == strconv.ErrRange && v[0] != '-' {
			return wire.MaxSyncLimit, nil // a valid integer, only too large for int64
		}
		return 0, wire.Invalid("limit must be an integer between 1 and %d (larger values are clamped)", wire.MaxSyncLimit)
	}
	if n <= 0 {
		return 0, wire.Invalid("limit must be between 1 and %d", wire.MaxSyncLimit)
	}
	return min(n, wire.MaxSyncLimit), nil
}

// sentToWire is the message of a KindSent event, as its sender's
// devices get it: status SYNCED, its own message id.
func sentToWire(ev *relaylog.Event) wire.Message {
	return wire.Message{MessageID: ev.UpTo, FromUserID: ev.From, ToUserID: ev.To, Content: ev.Content, Status: wire.StatusSynced, CreatedAt: ev.CreatedAt}
}

// toWire converts a queued event for its recipient.
func toWire(ev *relaylog.Event) (msg *wire.Message, rc *wire.Receipt) {
	switch ev.Kind {
	case relaylog.KindMessage:
		return &wire.Message{MessageID: ev.ID, FromUserID: ev.From, ToUserID: ev.To, Content: ev.Content, Status: wire.StatusDelivered, CreatedAt: ev.CreatedAt}, nil
	case relaylog.KindDelivered:
		return nil, &wire.Receipt{ID: ev.ID, Status: wire.StatusDelivered, ByUserID: ev.By, MessageIDs: ev.MessageIDs, At: wire.FormatTime(ev.Time())}
	case relaylog.KindExpired:
		return nil, &wire.Receipt{ID: ev.ID, Status: wire.StatusExpired, ByUserID: ev.By, MessageIDs: ev.MessageIDs, At: wire.FormatTime(ev.Time())}
	default:
		return nil, &wire.Receipt{ID: ev.ID, Status: wire.StatusRead, ByUserID: ev.By, UpToMessageID: ev.UpTo, At: wire.FormatTime(ev.Time())}
	}
}

func (s *Server) handleSync(w http.ResponseWriter, r *http.Request, user int64) *wire.Error {
	cursor, werr := queryInt(r, "lastSyncedMessage", 0)
	if werr != nil {
		return werr
	}
	limit, werr := queryLimit(r)
	if werr != nil {
		return werr
	}
	dev, werr := deviceID(r, false)
	if werr != nil {
		return werr
	}
	ctx, cancel := s.ctx(r)
	defer cancel()
	from, _, err := s.log.Attach(ctx, user, dev)
	if err != nil {
		return apiError(err)
	}
	if cursor > 0 {
		if _, err := s.log.AckDevice(ctx, user, dev, cursor); err != nil {
			return apiError(err)
		}
	}
	// The page starts after the cursor sent, or after what this device
	// acknowledged before if that is further.
	cursor = max(cursor, from)
	evs, more, err := s.log.Pending(ctx, user, cursor, int(limit))
	if err != nil {
		return apiError(err)
	}
	resp := wire.SyncResponse{Messages: []wire.Message{}, Receipts: []wire.Receipt{}, LastSyncedMessage: cursor, HasMore: more}
	for i := range evs {
		switch evs[i].Kind {
		case relaylog.KindSent:
			resp.SentMessages = append(resp.SentMessages, sentToWire(&evs[i]))
			resp.LastSyncedMessage = evs[i].ID
			continue
		case relaylog.KindReadSync:
			resp.ConversationsRead = append(resp.ConversationsRead, wire.ReadFrame{UserID: evs[i].By, UpToMessageID: evs[i].UpTo})
			resp.LastSyncedMessage = evs[i].ID
			continue
		}
		msg, rc := toWire(&evs[i])
		if msg != nil {
			resp.Messages = append(resp.Messages, *msg)
		} else {
			resp.Receipts = append(resp.Receipts, *rc)
		}
		resp.LastSyncedMessage = evs[i].ID
	}
	s.m.deliveries.WithLabelValues("sync").Add(float64(len(evs)))
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, &wire.Error{Code: wire.CodeInternal, Message: "encoding failed"})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func (s *Server) handleRead(w http.ResponseWriter, r *http.Request, user int64) *wire.Error {
	other, werr := pathID(r, "userId")
	if werr != nil {
		return werr
	}
	req, werr := decodeBody(w, r, wire.DecodeReadRequest)
	if werr != nil {
		return werr
	}
	if wait, ok := s.allowCalls(user, 1); !ok {
		return callsLimited(wait)
	}
	ctx, cancel := s.ctx(r)
	defer cancel()
	if err := s.markRead(ctx, user, other, req.UpToMessageID); err != nil {
		return apiError(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) handleTyping(w http.ResponseWriter, r *http.Request, user int64) *wire.Error {
	other, werr := pathID(r, "userId")
	if werr != nil {
		return werr
	}
	req, werr := decodeBody(w, r, wire.DecodeTypingRequest)
	if werr != nil {
		return werr
	}
	if wait, ok := s.allowCalls(user, 1); !ok {
		return callsLimited(wait)
	}
	s.typing(user, other, req.Typing)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// typing relays from's indicator to to, when to may see from's presence
// (visible); otherwise, or when that cannot be found out within a second,
// it is dropped, as typing is not stored.
func (s *Server) typing(from, to int64, typing bool) {
	if typing {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		ok, _ := s.visibleOne(ctx, from, to)
		cancel()
		if !ok {
			return
		}
	}
	s.hub.SetTyping(from, to, typing)
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request, user int64) *wire.Error {
	other, werr := pathID(r, "userId")
	if werr != nil {
		return werr
	}
	if wait, ok := s.allowCalls(user, 1); !ok {
		return callsLimited(wait)
	}
	ctx, cancel := s.ctx(r)
	ok, err := s.visibleOne(ctx, user, other)
	cancel()
	if err != nil {
		return apiError(err)
	}
	st := wire.ContactStatus{UserID: other} // as if never connected
	if ok {
		st = s.hub.Status(user, other)
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

// callsLimited answers a read mark, typing, status lookup or watch beyond
// the user's allowance (Options.CallRate).
func callsLimited(wait time.Duration) *wire.Error {
	return &wire.Error{Code: wire.CodeRateLimited, Message: "too many calls; slow down", RetryAfter: wait}
}

func (s *Server) handleDeviceAdd(w http.ResponseWriter, r *http.Request, user int64) *wire.Error {
	req, werr := decodeBody(w, r, wire.DecodeDeviceRequest)
	if werr != nil {
		return werr
	}
	// The token is the calling device's: its alerts follow that device.
	dev, werr := deviceID(r, false)
	if werr != nil {
		return werr
	}
	ctx, cancel := s.ctx(r)
	defer cancel()
	if err := s.log.RegisterDevice(ctx, user, relaylog.Device{Platform: req.Platform, Token: req.Token, Topic: req.Topic, Sandbox: req.Sandbox, DeviceID: dev}); err != nil {
		return apiError(err)
	}
	writeJSON(w, http.StatusCreated, req)
	return nil
}

func (s *Server) handleDeviceRemove(w http.ResponseWriter, r *http.Request, user int64) *wire.Error {
	tok := r.PathValue("token")
	if werr := wire.ValidDeviceToken(tok); werr != nil {
		return werr
	}
	ctx, cancel := s.ctx(r)
	defer cancel()
	if err := s.log.UnregisterDevice(ctx, user, tok); err != nil {
		return apiError(err)
	}
	// The path names a push token or a linked device: both go. The
	// device's sockets here close now; those on other nodes at their next
	// acknowledgement.
	if relaylog.ValidDeviceID(tok) {
		if _, err := s.log.Unlink(ctx, user, tok); err != nil {
			return apiError(err)
		}
		for _, ss := range s.hub.Sessions(user) {
			if sk, ok := ss.(*socket); ok && sk.dev == tok {
				sk.revoked(relaylog.ErrDeviceRevoked)
			}
		}
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) handleEdges(w http.ResponseWriter, r *http.Request, user int64) *wire.Error {
	var edges []wire.Edge
	if s.opts.Edges != nil {
		edges = s.opts.Edges()
	} else {
		edges = []wire.Edge{{NodeID: s.opts.NodeID, Region: s.opts.Region, URL: s.opts.PublicURL}}
	}
	writeJSON(w, http.StatusOK, edges)
	return nil
}
