package edgechat

import (
	"context"
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

// UnregisterDevice removes a push token (on logout, or when the platform
// rotates it).
func (c *Client) UnregisterDevice(token string) error {
	ctx, cancel := context.WithTimeout(c.calls(), 10*time.Second)
	defer cancel()
	return c.remote.unregisterDevice(ctx, token)
}
