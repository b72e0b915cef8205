// Package node is the composition root of one edgenode process: it builds
// every subsystem once from a config.Config (the data dir's identity and
// secrets, the relay log, presence, the client front, metrics) and owns their
// start and orderly stop. cmd/edgenode is a thin shell around it, and tests
// start real nodes with it.
package node

import (
	"context"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/edgenode/edgenode/auth"
	"github.com/edgenode/edgenode/cluster"
	"github.com/edgenode/edgenode/cluster/join"
	"github.com/edgenode/edgenode/cluster/member"
	"github.com/edgenode/edgenode/cluster/mesh"
	"github.com/edgenode/edgenode/config"
	"github.com/edgenode/edgenode/connlimit"
	"github.com/edgenode/edgenode/datadir"
	"github.com/edgenode/edgenode/edge"
	"github.com/edgenode/edgenode/presence"
	"github.com/edgenode/edgenode/push"
	"github.com/edgenode/edgenode/relaylog"
	"github.com/edgenode/edgenode/wire"
)

// Files kept in the data dir besides the relay log.
const (
	NodeIDFile        = "node-id"
	ClusterIDFile     = join.ClusterIDFile
	JWTSecretFile     = "jwt-secret"
	ClusterSecretFile = "cluster-secret"
)

// PeersFile remembers the gossip addresses of the cluster's members, so that
// a node restarted with its original command (no --join on the first node)
// finds the cluster again (cluster/join keeps it).
const PeersFile = join.PeersFile

// MaxOperatorConns caps the connections open at once to the operator
// listener; more are closed at accept.
const MaxOperatorConns = 64

// RequestReadTimeout bounds the reading of one HTTP request, headers and
// body: a client that stops sending mid-request loses its connection.
const RequestReadTimeout = 30 * time.Second

// Node is one running edgenode.
type Node struct {
	Config   config.Config
	Logger   *slog.Logger
	Registry *prometheus.Registry
	Log      *relaylog.Log
	Hub      *presence.Hub
	Edge     *edge.Server
	Mesh     *mesh.Mesh
	Members  *member.Membership
	Cluster  *cluster.Cluster
	Push     *push.Dispatcher // nil when neither APNs nor FCM is configured

	members atomic.Pointer[member.Membership] // Members, for the log's PeerFeatures, which runs before it exists
	keeper  *join.Keeper                      // the membership policy (peers file, reconnect, bootstrap-expect, cluster id)

	http     *http.Server
	listener net.Listener
	// The operator listener (--admin-addr): /v1/cluster/*, /metrics.
	admin    *http.Server
	adminLn  net.Listener
	adminTLS bool
	url      string
	cancel   context.CancelFunc
	served   chan error
	// life ends (endLife) when the node starts to stop, or fails to start:
	// the loops of the membership policy and logReady end with it.
	life     context.Context
	endLife  context.CancelFunc
	stopOnce sync.Once
	stopErr  error
}

// PrepareDataDir creates (or checks) the data dir and fills in the identity
// and secrets a node keeps there: the node id, the cluster secret and, when
// no JWT verification is configured, a random development HS256 secret (so
// that a node started with no flags works; `edgenode token` signs with it),
// which it refuses to use on a non-loopback --http-addr without --dev and
// on a node of a cluster (config.DevSecretRefusal).
//
// The data dir must be the node user's own and writable by no one else
// (datadir.Check). A cluster secret given by flag, environment or config
// file is kept in the data dir, so that a plain restart without it rejoins;
// one that differs from the kept secret is refused. With none given and none
// kept, a node that is to --join refuses to start (a new secret could join
// nothing); a node starting a new cluster generates one.
func PrepareDataDir(cfg *config.Config, logger *slog.Logger) error {
	// Before anything is created: a node that may not run on a
	// development JWT secret leaves no data dir behind.
	if err := cfg.DevSecretRefusal(); err != nil {
		return err
	}
	if err := datadir.Prepare(cfg.DataDir); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if n, err := datadir.Tighten(cfg.DataDir); err != nil {
		return fmt.Errorf("node: data dir: %w", err)
	} else if n > 0 {
		logger.Warn("data dir: removed group and other permissions from files an earlier build left readable", "files", n, "dir", cfg.DataDir)
	}
	var err error
	if cfg.NodeID == "" {
		if cfg.NodeID, err = keepOrCreate(filepath.Join(cfg.DataDir, NodeIDFile), func() string {
			host, _ := os.Hostname()
			host = strings.Map(func(r rune) rune {
				if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
					return r
				}
				return -1
			}, strings.ToLower(host))
			if host == "" {
				host = "node"
			}
			if len(host) > 20 {
				host = host[:20]
			}
			return host + "-" + randomHex(4)
		}); err != nil {
			return err
		}
	}
	secretPath := filepath.Join(cfg.DataDir, ClusterSecretFile)
	kept, err := ReadKept(secretPath)
	if err != nil {
		return err
	}
	switch {
	case cfg.ClusterSecret != "" && kept == "":
		// Given by flag, environment or config file: kept, like Consul's
		// keyring, so that a restart without it rejoins.
		if err := datadir.WriteFile(secretPath, []byte(cfg.ClusterSecret+"\n")); err != nil {
			return fmt.Errorf("node: keeping the cluster secret: %w", err)
		}
	case cfg.ClusterSecret != "" && kept != cfg.ClusterSecret:
		return fmt.Errorf("node: the cluster secret given differs from the one this node joined its cluster with (kept in %s); "+
			"start it without --cluster-secret / EDGENODE_CLUSTER_SECRET, or remove that file to change the secret (every node must use the same)", secretPath)
	case cfg.ClusterSecret == "" && kept != "":
		cfg.ClusterSecret = kept
	case cfg.ClusterSecret == "" && len(cfg.Join) > 0:
		return fmt.Errorf("node: --join given but no cluster secret: pass the cluster's with --cluster-secret or EDGENODE_CLUSTER_SECRET "+
			"(`edgenode join-token` on a member prints it); none is kept in %s", cfg.DataDir)
	case cfg.ClusterSecret == "":
		cfg.ClusterSecret = randomToken(32)
		if err := datadir.WriteFile(secretPath, []byte(cfg.ClusterSecret+"\n")); err != nil {
			return fmt.Errorf("node: keeping the cluster secret: %w", err)
		}
	}
	if cfg.JWTSecret == "" && cfg.JWTPublicKey == "" {
		// A random secret of its own, kept in the data dir for `edgenode
		// token`: never derived from the cluster secret, which gossip
		// and the mesh also use, so that one leaked does not give the
		// other. Only on loopback, or with --dev (checked above).
		path := filepath.Join(cfg.DataDir, JWTSecretFile)
		if cfg.JWTSecret, err = keepOrCreate(path, func() string { return randomToken(32) }); err != nil {
			return err
		}
		logger.Warn("DEVELOPMENT MODE: no --jwt-secret or --jwt-public-key given: client tokens are checked against the development secret in the data dir (`edgenode token --user ID` signs with it); configure your login service's key before real users connect",
			"file", path, "http_addr", cfg.HTTPAddr, "dev", cfg.Dev)
	}
	return nil
}

// OperatorToken is the bearer token of the operator views
// (/v1/cluster/*): derived from the cluster secret with HKDF-SHA256, so
// that every node accepts the same one and `edgenode members` can compute
// it, while a captured request gives neither the cluster secret (gossip's
// key, the mesh CA's seed) nor anything beyond those read-only views.
func OperatorToken(clusterSecret string) string {
	k, _ := hkdf.Key(sha256.New, []byte(clusterSecret), nil, "edgenode operator token v1", 32)
	return base64.RawURLEncoding.EncodeToString(k)
}

// ReadDataDir reads, and never creates, what a node keeps in its data dir,
// for the CLI (token, join-token, members): the cluster secret unless cfg
// has one, and the development JWT secret unless cfg configures JWT
// verification. It fails, naming the data dir, when a value is needed and
// no node has kept it there.
func ReadDataDir(cfg *config.Config, needJWT bool) error {
	abs, _ := filepath.Abs(cfg.DataDir)
	if cfg.ClusterSecret == "" {
		s, err := ReadKept(filepath.Join(cfg.DataDir, ClusterSecretFile))
		if err != nil {
			return err
		}
		if s == "" && !needJWT {
			return fmt.Errorf("no cluster secret in the data dir %s (no node has run there): pass --data-dir of a node, or --cluster-secret / EDGENODE_CLUSTER_SECRET", abs)
		}
		cfg.ClusterSecret = s
	}
	if needJWT && cfg.JWTSecret == "" && cfg.JWTPublicKey == "" {
		s, err := ReadKept(filepath.Join(cfg.DataDir, JWTSecretFile))
		if err != nil {
			return err
		}
		if s == "" {
			return fmt.Errorf("no JWT secret in the data dir %s (no node has run there): pass --data-dir of a node, or --jwt-secret / EDGENODE_JWT_SECRET", abs)
		}
		cfg.JWTSecret = s
	}
	return nil
}

// ReadKept reads a value a node keeps in its data dir (node id, secrets);
// "" with no error when there is none yet. It refuses a symbolic link or a
// file another user owns or could write (datadir.ReadSecret).
func ReadKept(path string) (string, error) {
	v, err := datadir.ReadSecret(path)
	if err != nil {
		return "", fmt.Errorf("node: %w", err)
	}
	return v, nil
}

// keepOrCreate returns the value kept at path, or makes one and keeps it
// (written with datadir.WriteFile: O_EXCL|O_NOFOLLOW, fsynced with its
// directory).
func keepOrCreate(path string, make func() string) (string, error) {
	if v, err := ReadKept(path); err != nil || v != "" {
		return v, err
	}
	v := make()
	if err := datadir.WriteFile(path, []byte(v+"\n")); err != nil {
		return "", fmt.Errorf("node: %w", err)
	}
	return v, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func randomToken(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Tuning shortens a node's cluster timings for tests; the zero value keeps
// the production defaults.
type Tuning struct {
	Member         func(*memberlist.Config) // memberlist timings
	DeadGrace      time.Duration            // before a dead voter is replaced
	ReconcileEvery time.Duration            // placement period
	RaftHeartbeat  time.Duration            // raft heartbeat and election timeout
	Clock          func() time.Time         // the node's wall clock (ids, expiry, gossip's clock check); nil: time.Now
}

// Start builds a node from cfg, opens its relay log and starts serving. It
// returns once the client API listens; Ready tells when every shard leads.
func Start(ctx context.Context, cfg config.Config, logger *slog.Logger) (*Node, error) {
	return StartTuned(ctx, cfg, logger, Tuning{})
}

// StartTuned is Start with test timings. Each part is built by its own
// function, in the order the parts need each other; a failure stops what
// was built.
func StartTuned(ctx context.Context, cfg config.Config, logger *slog.Logger, tune Tuning) (*Node, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := prepareConfig(&cfg, logger); err != nil {
		return nil, err
	}
	n := newNode(cfg, logger)
	fail := func(err error) (*Node, error) {
		n.endLife()
		n.closeParts()
		return nil, err
	}
	verifier, err := newVerifier(cfg)
	if err != nil {
		return fail(err)
	}
	pushOpts, pushOn, err := pushOptions(cfg, logger, n.Registry)
	if err != nil {
		return fail(err)
	}
	if err := n.listen(); err != nil {
		return fail(err)
	}
	if err := n.startMesh(); err != nil {
		return fail(err)
	}
	if err := n.openLog(tune); err != nil {
		return fail(err)
	}
	if err := n.startMembership(tune); err != nil {
		return fail(err)
	}
	n.startCluster(tune)
	n.startHub()
	if pushOn {
		n.Push = n.startPush(pushOpts)
	}
	n.startEdge(verifier)
	if err := n.serve(); err != nil {
		return fail(err)
	}
	go n.logReady(time.Now())
	return n, nil
}

// prepareConfig checks the files named by flags before the data dir is
// touched, so that a typo stops the node before it creates anything; then
// prepares the data dir (PrepareDataDir) and validates the whole config.
func prepareConfig(cfg *config.Config, logger *slog.Logger) error {
	if err := cfg.CheckFiles(); err != nil {
		return err
	}
	if err := PrepareDataDir(cfg, logger); err != nil {
		return err
	}
	return cfg.Validate()
}

// newNode is a Node with its metrics registry and nothing started.
func newNode(cfg config.Config, logger *slog.Logger) *Node {
	n := &Node{Config: cfg, Logger: logger, Registry: prometheus.NewRegistry(), served: make(chan error, 1)}
	n.life, n.endLife = context.WithCancel(context.Background())
	n.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return n
}

// newVerifier checks client tokens: HS256 with the JWT secret, or the
// public key's algorithm.
func newVerifier(cfg config.Config) (*auth.Verifier, error) {
	var secret []byte
	if cfg.JWTSecret != "" {
		secret = []byte(cfg.JWTSecret)
	}
	return auth.NewVerifier(auth.Options{Secret: secret, PublicKeyFile: cfg.JWTPublicKey, Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience})
}

// listen opens the client listener first: its address is this node's
// public URL, which membership gossips. Then the operator listener:
// loopback unless the operator says otherwise, and then mutual TLS with
// the mesh's certificates (serveOperators).
func (n *Node) listen() error {
	cfg := n.Config
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("node: listen on %s: %w", cfg.HTTPAddr, err)
	}
	n.listener = ln
	n.url = publicURL(cfg, ln.Addr())
	if n.adminLn, err = net.Listen("tcp", cfg.OperatorAddr()); err != nil {
		return fmt.Errorf("node: operator listener (--admin-addr) on %s: %w", cfg.OperatorAddr(), err)
	}
	n.adminTLS = !n.adminLn.Addr().(*net.TCPAddr).IP.IsLoopback()
	return nil
}

// startMesh starts the QUIC mesh. It learns where the other nodes listen
// from membership, started later (member.Options.Addresses).
func (n *Node) startMesh() error {
	cfg := n.Config
	shards := cfg.Shards
	if shards == 0 {
		shards = relaylog.MaxShards
	}
	m, err := mesh.New(mesh.Options{
		NodeID: cfg.NodeID, ListenAddr: cfg.ClusterAddr, Secret: cfg.ClusterSecret, Shards: shards, Logger: n.Logger,
		CAFile: cfg.ClusterCA, CertFile: cfg.ClusterCert, KeyFile: cfg.ClusterKey,
	})
	if err != nil {
		return fmt.Errorf("node: cluster mesh on %s: %w", cfg.ClusterAddr, err)
	}
	n.Mesh = m
	return nil
}

// openLog opens the relay log, its raft shards talking over the mesh.
func (n *Node) openLog(tune Tuning) error {
	cfg := n.Config
	raftLogger := hclog.New(&hclog.LoggerOptions{Name: "raft-net", Level: hclog.Error, Output: io.Discard})
	rl, err := relaylog.Open(relaylog.Options{
		Dir:               filepath.Join(cfg.DataDir, "relaylog"),
		NodeID:            cfg.NodeID,
		Shards:            cfg.Shards,
		Join:              len(cfg.Join) > 0 || cfg.BootstrapExpect > 1,
		Logger:            n.Logger,
		MaxQueueDepth:     cfg.MaxQueueDepth,
		Retention:         cfg.Retention,
		IdempotencyWindow: cfg.IdempotencyWindow,
		Registerer:        n.Registry,
		Now:               tune.Clock,
		HeartbeatTimeout:  tune.RaftHeartbeat,
		AckBatch:          relaylog.DefaultAckBatch,
		Transport: func(shard int, local raft.ServerAddress) (raft.Transport, error) {
			return n.Mesh.RaftTransport(shard, local, raft.NetworkTransportConfig{
				Timeout: 10 * time.Second, Logger: raftLogger,
			}), nil
		},
		Heartbeats: func(ctx context.Context, node string) (net.Conn, error) {
			return n.Mesh.Open(ctx, node, mesh.KindHeartbeat, 0)
		},
		Beat: n.Mesh.Beat,
		// Membership starts after the log: until it does, no other
		// node's features are known.
		PeerFeatures: func(node string) uint64 {
			ms := n.members.Load()
			if ms == nil {
				return 0
			}
			m, ok := ms.Get(node)
			if !ok {
				return 0
			}
			return m.Features
		},
	})
	if err != nil {
		return err
	}
	n.Log = rl
	n.Mesh.Handle(mesh.KindHeartbeat, func(c net.Conn, from string, _ int) { rl.ServeHeartbeats(c, from) })
	n.Mesh.HandleBeats(rl.HeardBeat)
	beats := func(i int) func() float64 {
		return func() float64 {
			sent, received, rejected := n.Mesh.BeatCounts()
			return float64([3]int64{sent, received, rejected}[i])
		}
	}
	n.Registry.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "edgenode_mesh_beats_sent_total", Help: "Node beats this node sent as datagrams on the mesh's UDP socket."}, beats(0)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "edgenode_mesh_beats_received_total", Help: "Datagram node beats this node took: signed with the key of its QUIC connection to the sender, newer than the last from it."}, beats(1)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "edgenode_mesh_beats_rejected_total", Help: "Datagrams on the mesh's UDP socket that were not QUIC and not a valid beat (malformed, wrongly signed, replayed, or from a node without a connection to this one), dropped."}, beats(2)),
	)
	return nil
}

// startMembership starts gossip, joining the addresses given and
// remembered (join.Addrs) with the cluster's id (join.ClusterID: kept in
// the data dir; created when this node has just started a new cluster,
// else adopted from the members once joined), and the loops of the
// membership policy (join.Keeper): reconnecting to dead members and, with
// --bootstrap-expect, bootstrapping once enough nodes are alive.
func (n *Node) startMembership(tune Tuning) error {
	cfg := n.Config
	clusterID, err := join.ClusterID(cfg.DataDir, n.Log.Bootstrapped(), n.Logger)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	members, err := member.Start(member.Options{
		Meta: member.Meta{
			NodeID: cfg.NodeID, Region: cfg.Region, HTTPURL: n.url,
			ClusterAddr: join.Advertised(cfg.AdvertiseAddr, cfg.ClusterAddr, n.Mesh.Addr()), Cluster: clusterID,
			Incarnation: n.Log.Incarnation(), Features: relaylog.Features,
		},
		BindAddr: cfg.GossipAddr, AdvertiseAddr: cfg.AdvertiseAddr, Secret: cfg.ClusterSecret, Profile: cfg.GossipProfile,
		Join: join.Addrs(cfg.DataDir, cfg.Join), Logger: n.Logger, Tuning: tune.Member, Now: tune.Clock,
		Addresses: n.Mesh,
	})
	if err != nil {
		return fmt.Errorf("node: gossip on %s: %w", cfg.GossipAddr, err)
	}
	n.Members = members
	n.members.Store(members)
	n.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "edgenode_clock_skew_seconds", Help: "The other nodes' clocks minus this node's, as measured over gossip (the offset to at least half of them); 0 when none was measured. Past 1 minute either way this node expires nothing."}, func() float64 {
		skew, _ := members.ClockSkew()
		return skew.Seconds()
	}))
	n.keeper = join.New(join.Options{NodeID: cfg.NodeID, DataDir: cfg.DataDir, Members: members, Logger: n.Logger})
	if cfg.BootstrapExpect > 1 {
		go n.keeper.BootstrapWhenExpected(n.life, n.Log, cfg.BootstrapExpect)
	}
	go n.keeper.Reconnect(n.life, n.Log)
	return nil
}

// startCluster starts placement, routing and homes. What the homes have
// for this node's sockets, watchers and push waits in the cluster's inbox,
// which fanOut reads.
func (n *Node) startCluster(tune Tuning) {
	cfg := n.Config
	n.Cluster = cluster.New(cluster.Options{
		Log: n.Log, Members: n.Members, Mesh: n.Mesh, Logger: n.Logger,
		Limits:    cluster.Limits{SendRate: cfg.SendRate, SendBurst: cfg.SendBurst, CallRate: edge.DefaultCallRate, CallBurst: edge.DefaultCallBurst},
		DeadGrace: tune.DeadGrace, ReconcileEvery: tune.ReconcileEvery,
		Registerer: n.Registry,
	})
	go n.followMembership(n.life)
}

// followMembership makes placement run and remembers the peers after
// every change of the members (coalesced; one made before the cluster
// existed is kept for the first wait), until ctx ends.
func (n *Node) followMembership(ctx context.Context) {
	for n.Members.WaitChange(ctx) {
		n.Cluster.MembershipChanged()
		n.keeper.RememberPeers()
	}
}

// startHub makes presence, cluster-wide through the cluster's Presence
// (users' homes decide who is online; the cluster hears of each user's
// first and last socket here).
func (n *Node) startHub() {
	n.Hub = presence.New(presence.Options{
		LastConnected: n.Cluster.Router().LastConnected,
		Remote:        n.Cluster.Presence(),
	})
}

// startEdge builds the client front (REST, WebSocket) and the operator
// views, on the cluster's router.
func (n *Node) startEdge(verifier *auth.Verifier) {
	cfg := n.Config
	router := n.Cluster.Router()
	n.Edge = edge.New(edge.Options{
		NodeID: cfg.NodeID, Region: cfg.Region, PublicURL: n.url,
		Log: router, Hub: n.Hub, Verifier: verifier, Logger: n.Logger,
		Edges:      n.edges,
		Registerer: n.Registry, Gatherer: n.Registry,
		PingInterval: cfg.PingInterval, AllowedOrigins: cfg.AllowedOrigins,
		OpenPresence:    cfg.Presence == config.PresenceEveryone,
		MaxContentBytes: cfg.MaxContentBytes, SendRate: cfg.SendRate, SendBurst: cfg.SendBurst,
		MaxConnsPerUser: cfg.MaxConnectionsPerUser, WriteTimeout: cfg.WriteTimeout, MaxUnacked: cfg.MaxUnacked,
		// Limits hold across the cluster: each user's home sums them.
		Usage: router.ReportUsage,
		// GET /v1/cluster/members and /v1/cluster/shards on the operator
		// listener, for operators holding the cluster secret (`edgenode
		// members`, `edgenode shards` send the token derived from it).
		Cluster: map[string]http.Handler{
			"members": http.HandlerFunc(n.handleMembers),
			"shards":  http.HandlerFunc(n.handleShards),
		},
		OperatorToken: OperatorToken(cfg.ClusterSecret),
	})
}

// serve starts the node's background work and both servers: the client's
// on the listener capped by limitClients (and TLS with --tls-cert), and
// the operators'.
func (n *Node) serve() error {
	cfg := n.Config
	var tlsConfig *tls.Config
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return fmt.Errorf("node: TLS: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	n.http = newHTTPServer(n.Edge.Handler(), n.Logger)
	ln := n.limitClients(n.listener)
	if tlsConfig != nil {
		n.http.TLSConfig = tlsConfig
		// HTTP/2 would multiplex but cannot carry the WebSocket upgrade;
		// mobile clients use HTTP/1.1 keep-alive for REST.
		n.http.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
		ln = tls.NewListener(ln, n.http.TLSConfig)
	}
	bg, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go n.Hub.Run(bg)
	go n.fanOut(bg)
	go n.Log.RunExpiry(bg, n.Cluster.Receipts(), n.Members)
	go n.Edge.RunUsage(bg)
	go func() { n.served <- n.http.Serve(ln) }()
	n.serveOperators()
	n.Logger.Info("edgenode serving", "node", cfg.NodeID, "region", cfg.Region, "url", n.url, "shards", n.Log.Shards(), "data", cfg.DataDir)
	return nil
}

// limitClients caps the client connections (--max-connections,
// --max-connections-per-ip), counting refusals and open connections in
// the node's metrics.
func (n *Node) limitClients(ln net.Listener) net.Listener {
	cfg := n.Config
	refusal := connlimit.HTTPRefusal()
	if cfg.TLSCert != "" {
		refusal = nil // a plain-text answer would be garbage in a TLS handshake
	}
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "edgenode_connections_refused_total",
		Help: "Client connections closed at accept: over --max-connections (total), over --max-connections-per-ip (per_ip), or with the process out of file descriptors (fd)."}, []string{"reason"})
	for _, r := range []string{"total", "per_ip", "fd"} {
		refused.WithLabelValues(r)
	}
	capped := connlimit.New(ln, connlimit.Options{
		MaxConns: cfg.MaxConnections, MaxPerIP: cfg.MaxConnectionsPerIP, Refusal: refusal,
		OnRefuse: func(reason string) { refused.WithLabelValues(reason).Inc() },
	})
	n.Registry.MustRegister(refused, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "edgenode_connections_open",
		Help: "Client connections (HTTP and WebSocket) open now."}, func() float64 { return float64(capped.Open()) }))
	lim := capped.Limits()
	n.Logger.Info("client connection limits", "max_connections", lim.MaxConns, "max_connections_per_ip", lim.MaxPerIP, "file_limit", connlimit.FileLimit())
	return capped
}

// serveOperators serves the operator views on the operator listener.
func (n *Node) serveOperators() {
	n.admin = newHTTPServer(n.Edge.OperatorHandler(), n.Logger)
	// Operators are few: a small cap keeps a flood of connections to this
	// port (off loopback, anyone can start a handshake) from costing the
	// node more than a few descriptors.
	var ln net.Listener = connlimit.New(n.adminLn, connlimit.Options{MaxConns: MaxOperatorConns, MaxPerIP: MaxOperatorConns})
	if n.adminTLS {
		ln = tls.NewListener(ln, n.Mesh.OperatorServerTLS())
	}
	go n.admin.Serve(ln)
	n.Logger.Info("operator listener", "addr", n.adminLn.Addr().String(), "tls", n.adminTLS)
}

// newHTTPServer is the server of both listeners, the client's and the
// operators'.
func newHTTPServer(h http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		// A request, body included, is read within ReadTimeout, or its
		// connection is closed: a body that never arrives holds nothing
		// for long. A WebSocket upgrade clears it (gorilla/websocket), and
		// the socket's ping deadline takes over.
		ReadTimeout:    RequestReadTimeout,
		IdleTimeout:    120 * time.Second,
		MaxHeaderBytes: 16 << 10,
		ErrorLog:       slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// logReady logs "edgenode ready" once, when /readyz would first answer 200
// (every shard has a leader): "edgenode serving" comes earlier, when the
// API listens but writes may still answer 503.
func (n *Node) logReady(since time.Time) {
	if n.WaitReady(n.life) != nil {
		return // stopped first
	}
	n.Logger.Info("edgenode ready", "node", n.Config.NodeID, "url", n.url, "after", time.Since(since).Round(time.Millisecond).String())
}

func publicURL(cfg config.Config, addr net.Addr) string {
	if cfg.PublicURL != "" {
		return strings.TrimRight(cfg.PublicURL, "/")
	}
	scheme := "http"
	if cfg.TLSCert != "" {
		scheme = "https"
	}
	return scheme + "://" + join.Advertised(cfg.AdvertiseAddr, cfg.HTTPAddr, addr.String())
}

// URL is the base URL clients use for this node.
func (n *Node) URL() string { return n.url }

// Addr is the address the client API listens on.
func (n *Node) Addr() net.Addr { return n.listener.Addr() }

// OperatorAddr is the operator listener's address (--admin-addr), and
// whether it speaks mutual TLS (any address but loopback).
func (n *Node) OperatorAddr() (addr net.Addr, mutualTLS bool) { return n.adminLn.Addr(), n.adminTLS }

// WaitReady blocks until every shard has a leader (the node's /readyz
// would answer 200 but for draining), looking every 10 ms at first and
// every second at most.
func (n *Node) WaitReady(ctx context.Context) error {
	router := n.Cluster.Router()
	t := time.NewTimer(0)
	defer t.Stop()
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("node: waiting for shard leaders: %w", ctx.Err())
		case <-t.C:
		}
		if router.Ready() {
			return nil
		}
		t.Reset(wait)
	}
}

// Shutdown drains the node: it stops accepting sockets and tells open ones
// to reconnect elsewhere (close 1012), finishes REST calls in flight, then
// stops the relay log. Acknowledged messages are on disk before their 201,
// so nothing acknowledged is lost however the shutdown ends.
func (n *Node) Shutdown(ctx context.Context) error {
	n.stopOnce.Do(func() {
		n.endLife()
		n.Logger.Info("edgenode draining")
		n.Edge.Drain(ctx)
		// Hand this node's shards to other voters while the mesh is up, so
		// that writes continue elsewhere; then say goodbye to the cluster
		// (others see "left", not "dead", and replace it without waiting).
		n.Cluster.Drain(ctx)
		if err := n.Members.Leave(5 * time.Second); err != nil {
			n.Logger.Warn("gossip leave", "err", err)
		}
		err := n.http.Shutdown(ctx)
		if errors.Is(err, context.DeadlineExceeded) {
			n.http.Close()
		}
		n.admin.Close()
		n.cancel()
		if cerr := n.closeParts(); cerr != nil && err == nil {
			err = cerr
		}
		n.stopErr = err
		n.Logger.Info("edgenode stopped")
	})
	return n.stopErr
}

// closeParts stops whatever Start built, in reverse order.
func (n *Node) closeParts() error {
	var first error
	keep := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	if n.Push != nil {
		n.Push.Close()
	}
	if n.Cluster != nil {
		n.Cluster.Close()
	}
	if n.Log != nil {
		keep(n.Log.Close())
	}
	if n.Members != nil {
		keep(n.Members.Shutdown())
	}
	if n.Mesh != nil {
		keep(n.Mesh.Close())
	}
	if n.listener != nil && n.http == nil {
		n.listener.Close()
	}
	if n.adminLn != nil && n.admin == nil {
		n.adminLn.Close()
	}
	return first
}

// edges lists every alive node for GET /v1/edges.
func (n *Node) edges() []wire.Edge {
	alive := n.Members.Alive()
	out := make([]wire.Edge, 0, len(alive))
	for _, m := range alive {
		out = append(out, wire.Edge{NodeID: m.NodeID, Region: m.Region, URL: m.HTTPURL})
	}
	return out
}

// MemberInfo is one row of `edgenode members`.
type MemberInfo struct {
	NodeID string `json:"nodeId"`
	Region string `json:"region"`
	Status string `json:"status"`
	Addr   string `json:"addr"`
	// Incarnation names the member's raft data; new when its data dir is.
	Incarnation string `json:"incarnation"`
}

func (n *Node) handleMembers(w http.ResponseWriter, r *http.Request) {
	ms := n.Members.Members()
	out := make([]MemberInfo, 0, len(ms))
	for _, m := range ms {
		out = append(out, MemberInfo{NodeID: m.NodeID, Region: m.Region, Status: string(m.Status), Addr: m.GossipAddr, Incarnation: m.Incarnation})
	}
	writeJSON(w, out)
}

func (n *Node) handleShards(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	writeJSON(w, n.Cluster.Shards(ctx))
}

func writeJSON(w http.ResponseWriter, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(b, '\n'))
}

// Done delivers the HTTP server's exit error.
func (n *Node) Done() <-chan error { return n.served }

// Failed delivers a fault the node cannot run on (its cluster secret is
// refused by every node it joins); the process should shut the node down
// and exit non-zero with it.
func (n *Node) Failed() <-chan error { return n.Members.Refused() }

// Kill stops the node abruptly, as a crash looks to the rest of the cluster:
// no socket drain, no leadership transfer, no gossip goodbye. For tests.
func (n *Node) Kill() {
	n.stopOnce.Do(func() {
		n.endLife()
		n.Mesh.Close()
		n.Members.Shutdown()
		n.http.Close()
		n.admin.Close()
		n.cancel()
		n.closeParts()
	})
}
