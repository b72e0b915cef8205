package edge

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/edgenode/edgenode/relaylog"
	"github.com/edgenode/edgenode/wire"
)

// Linked devices (relaylog/linked.go): each installation of the app names
// itself with a device id (the Device-Id header, or the deviceId query
// parameter on the socket upgrade) and reads the user's queue with a
// cursor of its own; clients that name none are the user's default
// device.

// deviceID is the calling device's id: "" (the default device) when the
// request names none.
func deviceID(r *http.Request, allowQuery bool) (string, *wire.Error) {
	dev := r.Header.Get(wire.DeviceIDHeader)
	if dev == "" && allowQuery {
		dev = r.URL.Query().Get(wire.DeviceIDQuery)
	}
	if dev != "" && !relaylog.ValidDeviceID(dev) {
		return "", wire.Errorf(wire.CodeInvalidArgument, "%s must be 1 to %d ASCII letters, digits, '-', '_' or '.'", wire.DeviceIDHeader, relaylog.MaxDeviceIDBytes)
	}
	return dev, nil
}

// attach links the socket's device (on the writer goroutine, before its
// first pull) and starts the socket after the device's cursor. It reports
// false when the shard could not answer: the writer tries again shortly.
func (sk *socket) attach() bool {
	s := sk.srv
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.CallTimeout)
	defer cancel()
	cursor, _, err := s.log.Attach(ctx, sk.user, sk.dev)
	if errors.Is(err, relaylog.ErrDeviceRevoked) {
		sk.revoked(err)
		return false
	}
	if err != nil {
		s.opts.Logger.Debug("attach failed", "user", sk.user, "err", err)
		return false
	}
	// Everything up to the cursor this device acknowledged before.
	raiseTo(&sk.written, cursor)
	raiseTo(&sk.sent, cursor)
	raiseTo(&sk.clientAck, cursor)
	raiseTo(&sk.pendingAck, cursor)
	raiseTo(&sk.durableAck, cursor)
	sk.attached = true
	return true
}

// revoked ends the socket of a device its user revoked: the client gets
// the error, then a close (policy violation), and stops reconnecting as
// this device.
func (sk *socket) revoked(err error) {
	sk.sendError(apiError(err))
	sk.closeWith(closePolicy, "device revoked", "device revoked")
}

// markRead commits reader's read mark (the READ receipt for sender), then
// queues it for reader's other devices.
func (s *Server) markRead(ctx context.Context, reader, sender, upTo int64) error {
	if err := s.log.MarkRead(ctx, reader, sender, upTo); err != nil {
		return err
	}
	return s.log.ReadSync(ctx, reader, sender, upTo)
}

func (s *Server) handleDeviceList(w http.ResponseWriter, r *http.Request, user int64) *wire.Error {
	dev, werr := deviceID(r, false)
	if werr != nil {
		return werr
	}
	ctx, cancel := s.ctx(r)
	defer cancel()
	list, err := s.log.LinkedDevices(ctx, user)
	if err != nil {
		return apiError(err)
	}
	out := wire.DeviceList{Devices: make([]wire.LinkedDevice, len(list))}
	for i, d := range list {
		out.Devices[i] = wire.LinkedDevice{DeviceID: d.ID, LastSeenAt: wire.FormatTime(time.UnixMilli(d.Seen)), Current: d.ID == dev, Push: d.Push}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
