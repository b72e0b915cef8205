package join

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/edgenode/edgenode/cluster/member"
	"github.com/edgenode/edgenode/datadir"
)

// PeersFile, in the data dir, remembers the gossip addresses of the
// cluster's other members (a JSON array of host:port strings, sorted), so
// that a node restarted with its original command (no --join on the first
// node) finds the cluster again.
const PeersFile = "peers.json"

// Bounds of the peers file: at most MaxPeers addresses are kept (the first
// in sorted order), and a file larger than maxPeersFileBytes, which this
// package never writes, is ignored.
const (
	MaxPeers          = 128
	maxPeersFileBytes = 64 << 10
)

// Addrs lists the gossip addresses to join: given (--join) first, in
// order, then those remembered in dataDir's peers file that given lacks.
// A missing, unreadable or malformed peers file adds nothing.
func Addrs(dataDir string, given []string) []string {
	addrs := slices.Clone(given)
	saved := readPeers(filepath.Join(dataDir, PeersFile))
	seen := map[string]bool{}
	for _, a := range addrs {
		seen[a] = true
	}
	for _, a := range saved {
		if !seen[a] {
			seen[a] = true
			addrs = append(addrs, a)
		}
	}
	return addrs
}

// readPeers reads at most MaxPeers addresses from the peers file at path;
// none when it is missing, too large or not a JSON array of strings.
func readPeers(path string) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPeersFileBytes+1))
	if err != nil || len(b) > maxPeersFileBytes {
		return nil
	}
	var saved []string
	if json.Unmarshal(b, &saved) != nil {
		return nil
	}
	return saved[:min(len(saved), MaxPeers)]
}

// peerAddrs is what the peers file keeps of members: the gossip addresses
// of the members other than self that have not left, sorted, without
// repeats, at most MaxPeers.
func peerAddrs(self string, members []member.Member) []string {
	var addrs []string
	for _, m := range members {
		if m.NodeID != self && m.Status != member.StatusLeft && m.GossipAddr != "" {
			addrs = append(addrs, m.GossipAddr)
		}
	}
	slices.Sort(addrs)
	addrs = slices.Compact(addrs)
	return addrs[:min(len(addrs), MaxPeers)]
}

// savePeers writes addrs to the peers file at path unless it holds them
// already, or addrs is empty (a node alone keeps what it knew).
func savePeers(path string, addrs []string) error {
	if len(addrs) == 0 {
		return nil
	}
	b, _ := json.Marshal(addrs)
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, b) {
		return nil
	}
	return datadir.WriteFile(path, b)
}
