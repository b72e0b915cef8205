// Package wire is the client protocol: every type that crosses a process
// boundary between a mobile client and an edge node, that is the JSON
// models, REST bodies and WebSocket events of API.md (docs/API.md in this
// repository), their validation, and the one mapping from failures to API
// error codes.
//
// What nodes of a cluster say to each other (forwarded calls, subscribe
// frames and their binary codec) is a separate protocol, package
// wire/nodewire; it carries some of this package's request bodies but
// nothing here depends on it.
//
// The package has no logic beyond encode, decode and validate. It does not
// know about raft, sockets or users; callers hand it bytes and get typed
// values or an *Error that already carries the HTTP status and API code.
//
// # Identifiers
//
// User ids and message ids are positive integers no larger than MaxID
// (2^53-1) so that JavaScript clients hold them exactly. Decoders reject
// anything else with invalid_argument.
//
// # WebSocket frames
//
// Every frame is a JSON text frame {"type": T, "payload": P}; server events
// that the client must acknowledge also carry "id" (the queue cursor):
//
//	ready                  server→client  {"userId","nodeId","region","heartbeatMs"}
//	new_message            server→client  {"message": Message}            acked
//	message_delivered      server→client  Receipt (DELIVERED)              acked
//	message_read           server→client  Receipt (READ)                   acked
//	contact_status_update  server→client  ContactStatus
//	error                  server→client  {"code","message"}
//	ack                    client→server  {"upTo": int}
//	read                   client→server  {"userId": int, "upToMessageId": int}
//	typing                 client→server  {"toUserId": int, "typing": bool}
//	watch                  client→server  {"userIds": [int]}  (at most MaxWatch)
//
// A client frame larger than MaxFrameBytes closes the socket with status
// 1009 (message too big).
package wire
