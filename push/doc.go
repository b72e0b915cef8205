// Package push alerts users of messages waiting in their queue through
// Apple's and Google's push services, when no socket of theirs took them.
//
// It owns three things:
//
//   - APNS, a client of Apple's provider API (HTTP/2, token-based
//     authentication: an ES256 JWT signed with the team's .p8 key, renewed
//     every 40 minutes, once more when Apple answers ExpiredProviderToken);
//   - FCM, a client of Firebase Cloud Messaging's HTTP v1 API (an OAuth2
//     access token obtained from a service account by the JWT-bearer grant,
//     refreshed before it expires, once more on 401);
//   - Dispatcher, which decides when a user gets an alert and sends one per
//     registered device, on the node that leads the user's shard.
//
// When a user is alerted: a message queued for the user (or a burst) is
// checked after a short debounce, measured from the first message not yet
// alerted. Nothing is sent when the queue holds no message newer than the
// user's push mark (the socket acknowledged it, or an earlier alert covered
// it). A user with a live socket anywhere in the cluster is alerted only when
// the message stayed unacknowledged past the ack timeout; a user whose last
// socket closed or whose presence expired is checked again at once (after
// the debounce). Every device gets one alert with the sender, a preview (full
// text, a fixed text or none) and the unread count as badge, collapsed per
// recipient (apns-collapse-id, FCM collapse_key and tag) so that the device
// shows one notification however many alerts arrive. The push mark is then
// committed to the relay log (relaylog.Log.MarkPushed), so a new leader of
// the shard does not alert again; a new leader alerts the users whose mark
// lags their newest message, after a short delay. An alert sent just before
// a leader change may be repeated; the collapse id merges the two.
//
// Provider answers: a dead token (APNs 410 Unregistered, 400 BadDeviceToken
// or DeviceTokenNotForTopic; FCM UNREGISTERED) is removed unless it was
// registered again meanwhile; 429 and 5xx are retried with exponential
// backoff and jitter, never sooner than Retry-After, within a bound on
// attempts and total time; other errors are logged and counted. Every
// request has a timeout, and a semaphore caps requests in flight.
//
// The package does not store devices or push marks (relaylog does) and does
// not know who is online (the node passes a function). Package pushtest has
// fake APNs and FCM servers that speak the real protocols, for tests.
package push
