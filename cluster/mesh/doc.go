// Package mesh is the QUIC mesh between edgenode nodes: one mutually
// authenticated QUIC connection per pair of nodes, carrying the raft traffic
// of every shard, forwarded client calls and delivery subscriptions as
// multiplexed bidirectional streams.
//
// # Connections
//
// A Mesh owns one UDP socket (Options.ListenAddr) through which it both
// listens and dials, so a peer sees a node at the same address either way.
// There is at most one connection in use per pair of nodes, shared by every
// stream in both directions. A stream to a node with no live connection
// dials it (SetAddr, fed by membership, maps the node id to host:port; concurrent
// openers share one dial, bounded by DialTimeout). When two nodes dial each
// other at once, both keep the connection dialed by the smaller node id;
// the other stops getting new streams and is closed once it has carried no
// stream for 1 s, or 5 s after it lost (a long-lived stream, such as a raft
// pipeline, would keep it open forever; closing it fails at most the RPCs
// in flight on it, which raft retries on the kept connection). A newer connection dialed from the
// same side replaces the older one (the peer redialed or restarted).
//
// Failures surface on streams quickly: a peer that closes its mesh sends
// CONNECTION_CLOSE, which fails its streams at once; a silent peer is given
// up after MaxIdleTimeout (10 s) despite keep-alives every KeepAlivePeriod
// (2 s); a restarted peer answers packets of its old connection with a
// stateless reset (its reset key is derived from the secret and node id, so
// stable across restarts). The next Open redials.
//
// # Stream header
//
// The first bytes of every stream, written by the opener, are:
//
//	+--------+-----------------+------------------+------------------+
//	| kind   | shard           | id length        | sender node id   |
//	| 1 byte | uvarint (1..5 B)| uvarint (1..2 B) | 1..255 bytes     |
//	+--------+-----------------+------------------+------------------+
//
//	kind   KindRaft      = 1: one raft NetworkTransport connection of the shard
//	       KindCall      = 2: one call on a stream of its own (first form; unused by the cluster now)
//	       KindSubscribe = 3: deliveries from a queue owner to an edge
//	       KindCallMux   = 4: every forwarded call from one node to another, tagged by id
//	       KindRaftTo    = 5: KindRaft to one incarnation of the receiver's raft data
//	       KindHeartbeat = 6: the raft heartbeats of all shards from one node to another, batched
//	shard  0..MaxShard (2^31-1), encoding/binary uvarint
//	id     the opener's node id; the receiver resets the stream unless it
//	       equals the node id in the peer's TLS certificate
//
// A KindRaftTo header goes on with the incarnation the opener addresses
// (uvarint length 1..MaxIncarnationLen, then its bytes): raft addresses are
// node-id@incarnation, and the receiver resets the stream unless its shard's
// raft layer is that incarnation, so that a node whose data dir was lost
// never answers raft as the replica it was.
//
// Everything after the header belongs to the stream's user. The header
// carries no version: the protocol version (ProtocolVersion = 1) is in the
// ALPN, "edgenode-mesh/1", so nodes of incompatible versions fail the TLS
// handshake instead of misreading streams. A stream with a malformed
// header, an unknown kind, a kind without a Handle handler, or a raft shard
// without an open StreamLayer is reset (error code 0x201).
//
// Streams are handed out as *Conn (a net.Conn). Conn.Close closes both
// directions: FIN on the send side (written data is still delivered) and
// STOP_SENDING on the receive side, so the stream completes at both ends
// and its credit returns to the peer's limit (quic-go's Stream.Close alone
// closes only the send side, and raft's connection pool would leak
// half-open streams). Conn.CloseWrite is the half-close.
//
// # TLS
//
// TLS 1.3 only, ALPN "edgenode-mesh/1", certificates required and verified
// in both directions.
//
// With Options.Secret, every node derives the same cluster CA:
//
//	seed   = HKDF-SHA256(secret, salt: none, info: "edgenode mesh CA v1", 32 bytes)
//	CA key = ed25519.NewKeyFromSeed(seed)
//	CA     = self-signed, serial 1, CN/subject "edgenode mesh CA v1" (O=edgenode),
//	         valid 2024-01-01..2124-01-01, CA:true pathlen:0, keyCertSign
//
// (ed25519 signatures are deterministic, so the CA certificate is
// byte-identical on every node). Each process generates a fresh ed25519
// leaf key and certificate signed by that CA, with the node id as
// CommonName and DNS SAN, usable for server and client auth. A peer whose
// secret differs has a different CA, and the handshake fails both ways.
//
// With Options.CAFile/CertFile/KeyFile (PEM), the operator's CA is the only
// root and the node's certificate must name its node id in its CommonName
// or a DNS SAN.
//
// A dialer checks that the server's certificate names the node it dialed;
// an acceptor takes the peer's node id from its certificate (CommonName,
// else first DNS SAN) and checks it against every stream header. With the
// derived CA, whoever holds the secret can mint a certificate for any node
// id: the secret is the cluster's trust root, and the id checks guard
// against misrouting and misconfiguration, not against a secret holder.
//
// # Limits
//
// MaxIncomingStreams(shards) = shards*8 + 4096 concurrent bidirectional
// streams per peer: raft's transports pool no idle streams (RaftTransport),
// but a shard has several in use at once (pipelined and synchronous
// AppendEntries, heartbeat, votes, snapshots), and one peer may lead every
// shard; the headroom is for calls and subscriptions. quic-go's
// default of 100 starves raft at a few hundred groups. The connection flow
// control window may grow to 64 MB since all shards share it.
package mesh
