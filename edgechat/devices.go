package edgechat

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"time"

	"github.com/edgenode/edgenode/wire"
)

// Push notification helpers. The platform's push client (FirebaseMessagingService,
// UNUserNotificationCenterDelegate) gets the token; these register it with
// the server, which alerts the device when a message waits and no socket
// is open. A notification in the foreground should call Sync.

// RegisterAPNs registers an iOS device token for topic (the app's bundle
// id); sandbox selects Apple's development environment.
func (c *Client) RegisterAPNs(token, topic string, sandbox bool) error {
	return c.registerDevice(wire.DeviceRequest{Platform: wire.PlatformAPNs, Token: token, Topic: topic, Sandbox: sandbox})
}

// RegisterFCM registers an Android (Firebase Cloud Messaging) token.
func (c *Client) RegisterFCM(token string) error {
	return c.registerDevice(wire.DeviceRequest{Platform: wire.PlatformFCM, Token: token})
}

// RegisterDevice registers a push token for platform "apns" or "fcm".
func (c *Client) RegisterDevice(platform, token, topic string, sandbox bool) error {
	return c.registerDevice(wire.DeviceRequest{Platform: platform, Token: token, Topic: topic, Sandbox: sandbox})
}

func (c *Client) registerDevice(d wire.DeviceRequest) error {
	ctx, cancel := context.WithTimeout(c.calls(), 10*time.Second)
	defer cancel()
	return c.remote.registerDevice(ctx, d)
}

// LinkedDevice is one installation of the app linked to the user (this one
// among them): each gets every message, receipt and read mark of the user
// on its own.
type LinkedDevice struct {
	DeviceID   string
	LastSeenAt string // RFC 3339
	Current    bool   // this installation
	Push       bool   // a push token of the installation is registered (it gets alerts)
}

// DeviceList is the user's linked devices.
type DeviceList struct{ items []LinkedDevice }

// Len is the number of devices.
func (l *DeviceList) Len() int { return len(l.items) }

// Get is device i.
func (l *DeviceList) Get(i int) *LinkedDevice { d := l.items[i]; return &d }

// LinkedDevices lists the installations linked to the user (at most 10),
// as the server has them.
func (c *Client) LinkedDevices() (*DeviceList, error) {
	ctx, cancel := context.WithTimeout(c.calls(), 10*time.Second)
	defer cancel()
	var out wire.DeviceList
	if err := c.remote.do(ctx, http.MethodGet, "/v1/devices", nil, &out); err != nil {
		return nil, err
	}
	l := &DeviceList{items: make([]LinkedDevice, len(out.Devices))}
	for i, d := range out.Devices {
		l.items[i] = LinkedDevice{DeviceID: d.DeviceID, LastSeenAt: d.LastSeenAt, Current: d.Current, Push: d.Push}
	}
	return l, nil
}

// UnlinkDevice revokes another installation of the user (one the user
// lost, say): the server stops keeping messages and sending alerts for it,
// and keeps its device id out for the retention period; that installation,
// if it runs, hears OnAuthFailed with code device_revoked and stays
// offline.
func (c *Client) UnlinkDevice(deviceID string) error {
	ctx, cancel := context.WithTimeout(c.calls(), 10*time.Second)
	defer cancel()
	return c.remote.unregisterDevice(ctx, deviceID)
}

// newDeviceID is a random device id: 128 bits, hex.
func newDeviceID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("edgechat: no randomness: " + err.Error())
	}
	return hex.EncodeToString(b[:])
}

// UnregisterDevice removes a push token (on logout, or when the platform
// rotates it).
func (c *Client) UnregisterDevice(token string) error {
	ctx, cancel := context.WithTimeout(c.calls(), 10*time.Second)
	defer cancel()
	return c.remote.unregisterDevice(ctx, token)
}
