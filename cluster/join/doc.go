// Package join is how a node finds its cluster and stays in it: the policy
// on top of gossip membership (cluster/member), which itself only reports
// who is there.
//
//   - Addresses to join: those given (--join) and those remembered in the
//     data dir's peers file (PeersFile) from earlier runs, so that a node
//     restarted with its original command (no --join on the first node)
//     finds the cluster again (Addrs; Keeper.RememberPeers keeps the file).
//   - Addresses to advertise: the host other hosts reach this node at
//     (Host) and the mesh address gossiped to them (Advertised).
//   - Reconnecting: memberlist never probes a member it declared dead, so
//     after a partition heals both sides would stay apart; Keeper.Reconnect
//     contacts dead members every few seconds.
//   - Bootstrap when expected (--bootstrap-expect): once that many nodes
//     are alive, the one with the smallest node id bootstraps the shards
//     (Keeper.BootstrapWhenExpected); a node that sees a member of an
//     existing cluster joins it instead.
//   - The cluster id (ClusterIDFile): created by the node that starts a
//     cluster, adopted by the others from their members
//     (Keeper.AdoptCluster), kept in every data dir.
//
// What the policy needs of the relay log (whether every shard leads, the
// bootstrap itself) is handed to each call as Shards; the package keeps
// nothing of the layers above it.
package join
