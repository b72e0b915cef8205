// Package cluster turns one node into a member of a cluster of identical
// edge nodes: it wires membership (cluster/member, hashicorp/memberlist) and
// the QUIC mesh (cluster/mesh) to the relay log, places each shard's raft
// voters on three nodes of distinct regions, routes every client call to the
// leader of its shard, and carries delivery notifications from shard leaders
// to the edges that hold the recipients' sockets.
//
// # Placement
//
// Every node runs a raft instance for every shard; instances that are not in
// a shard's configuration stay idle until a leader adds them. The leader of
// each shard reconciles its configuration toward a target computed from the
// live members: 3 voters when at least 3 nodes are alive (1 otherwise, so
// the count stays odd), chosen by rendezvous hashing of (shard, node) with
// one voter per region first. A missing voter is added as a non-voter,
// promoted once it has applied nearly all of the leader's log (asked over
// the mesh), and only then is a surplus voter removed. A dead node leaves
// the target at once (the target is computed from live members only): with
// enough live nodes its replacement is added as a non-voter immediately and
// promoted once caught up, and the dead voter is removed only after that,
// so a shard never has fewer voters than before the failure. A node that
// comes back scores as before, is added again, and the replacement becomes
// the surplus. DeadGrace only orders the removal of surplus voters (dead
// or left ones first). The highest-scoring live voter of each
// shard is its preferred leader, and leaders hand over to it, which spreads
// leadership evenly over the nodes.
//
// # Routing
//
// Router implements the front's Store: a call whose shard this node serves
// runs locally; any other is forwarded over a mesh call stream to the leader,
// found from a per-shard cache, raft's own knowledge, the shard's placement
// target, then any live node, following not-leader hints. While a shard has
// no leader the call fails with relaylog.ErrNoLeader (503 with Retry-After),
// never a hang.
//
// # Delivery across nodes
//
// Sockets still pull their queue (through the Router) past their cursor; what
// crosses nodes is only the wake-up. When a user's first socket opens on an
// edge that does not lead the user's shard, the edge subscribes to the user at
// the leader over one subscribe stream per leader node; the leader sends
// "events" for that user after every commit. Edges re-check leaders every
// second and resubscribe after a leader change or a broken stream, and wake
// the socket, so nothing committed meanwhile waits for the next message.
//
// What the cluster has for this node's sockets, watchers and push (a
// home's wake-up, with the events when they fit; a contact's status; a
// typing indicator; at a user's home, the user gone offline everywhere) it
// publishes in its Inbox, which the node reads and hands to the presence
// hub and push: the cluster calls nothing above it. Presence (the type)
// is the cluster's side of the hub (presence.Remote), which the hub takes
// at construction.
//
// # Parts
//
// Cluster is the composition node uses; New adapts the relay log,
// membership and mesh to the small interfaces the parts take, and each
// part has its own lock:
//
//   - transport (callmux.go, meshTransport): the Transport for calls to
//     another node, one multiplexed stream per peer; owns the muxes
//     (muxMu).
//   - routing (routing.go): runs a call here or forwards it to the leader;
//     owns the leader hints (hintMu) and the calls in flight (callsMu);
//     takes shardLeaders (Serving, Leader, ShardFor, Shards), a
//     memberView and a Transport. Router (router.go) is the front's Store
//     on top of it and runs the local calls against *relaylog.Log.
//   - placement (placer.go): reconciles the configurations of the shards
//     led here; owns lastTransfer (mu); takes shardConfigs (one shard's
//     raft configuration and its changes), a memberView, a Transport,
//     routing's leaderHints and drain's isDraining.
//   - drain (drain.go): hands leadership away on shutdown and remembers
//     which nodes announced theirs; owns the marks (mu); takes
//     shardConfigs, drainMembers (Alive, Boot) and a Transport.
//   - homes/subscriptions (subscribe.go): registrations at users' homes
//     and, as a home, the edges registered there; owns wanted, out, in,
//     watch (mu) and onlineAt (atMu); takes a homeLog, routing's hint,
//     a stream opener, and publishes in the Inbox (inbox.go); whether a
//     user has a socket here it knows from its own registrations.
//   - usage (usage.go): the home's buckets (ratelimit, own locks).
//
// Who reads whose state (before the split each of these took the other
// part's mutex directly; now each goes through a method or an interface):
// routing, placement and subscriptions read raft's leader from the log;
// routing and placement read membership; subscriptions read routing's
// hints (homeOf); placement reads and writes them (discoverLeader) and
// reads drain's marks (no leadership to a draining node), which the call
// handler writes (OpDraining); drain and placement change raft
// configurations and share nothing else; the call handler (cluster.go,
// execute) and Presence read subscriptions' online state
// (subscriptions.online, remoteOnline, statusFrame) and usage; Shards
// (placement.go) uses routing's candidates and the transport. Still
// shared: every part reads the one *relaylog.Log (through its own
// interface), and the Cluster's stop channel and wait group run the
// loops of routing (watchCalls), placement and subscriptions.
package cluster
