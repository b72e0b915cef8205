// Package member is the cluster membership of edgenode: which nodes exist,
// whether each is alive, suspect, dead or has left, and the small record each
// node gossips about itself (Meta: node id, region, client URL, QUIC mesh
// address, version). It is built on hashicorp/memberlist (SWIM gossip over
// TCP and UDP on --gossip-addr).
//
// It owns membership only. Shard placement, raft configuration changes and
// leader routing read Members/Alive and WaitChange and decide for themselves;
// the QUIC mesh dials the ClusterAddr found in Meta. Nothing here moves
// application traffic.
//
// # Names, encryption
//
// The memberlist node name is the NodeID. All gossip is encrypted and
// authenticated with AES-GCM under a 32-byte key derived from the cluster
// secret with HKDF-SHA256 (info "edgenode gossip v1"), so a node with another
// secret can neither join nor be joined: its packets fail to decrypt.
//
// # Status
//
// memberlist v0.7.0 keeps each node's state (alive, suspect, dead, left) to
// itself: the *Node it hands to delegates and returns from Members has a
// State field that is never filled in, and no callback reports suspicion.
// So statuses are derived here:
//
//   - alive: NotifyJoin/NotifyUpdate from memberlist's EventDelegate.
//   - dead or left: NotifyLeave. memberlist marks a node "left" when its own
//     graceful leave message arrives, but does not say so, so Leave first
//     sends a leave intent naming the leaving process (a boot id carried in
//     the gossiped meta, so an intent never applies to a later incarnation of
//     the same NodeID) to every live peer over TCP, and gossips it. A
//     NotifyLeave with a matching intent is "left", any other is "dead"; an
//     intent arriving after the NotifyLeave turns "dead" into "left". Intents
//     are re-gossiped by whoever learns them and carried in memberlist's
//     push/pull state, so nodes that missed them learn them at the next
//     anti-entropy round.
//   - suspect: this node's own view. memberlist probes every member once per
//     round of ProbeInterval ticks; a member whose probes this node has not
//     seen acknowledged for two such rounds (plus ProbeTimeout) is suspect
//     until an ack arrives or memberlist declares it dead. In large clusters
//     memberlist usually declares a node dead before that, so suspect is an
//     early warning in small ones, not a promise.
//
// Dead and left members stay listed (with Since, the time of their last
// status change, from Options.Now) for 24 hours, then are forgotten. A node
// restarted with the same NodeID gets a new boot id and a higher memberlist
// incarnation and comes back alive, also from a new address
// (DeadNodeReclaimTime is one ProbeInterval, so the name is reusable as soon as
// the old process has been declared dead).
//
// # LAN and WAN profiles
//
// Profile "lan" (the default) uses memberlist.DefaultLANConfig: probes every
// second with a 500ms timeout and gossip every 200ms, which detects a failed
// node within a few seconds on a network with sub-millisecond round trips.
// Profile "wan" uses memberlist.DefaultWANConfig (5s probes, 3s timeout, a
// larger suspicion multiplier): choose it when the nodes of one cluster are
// spread over regions with tens to hundreds of milliseconds between them,
// where LAN timings would take a slow ack for a failure and flap members.
// edgenode runs one memberlist per cluster, so a multi-region cluster uses
// "wan" on every node. Options.Tuning can adjust any timing afterwards (tests
// use it to shorten detection to well under a second).
package member
