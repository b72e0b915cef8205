// Package node is the composition root of one edgenode process: it builds
// every subsystem once from a config.Config (the data dir's identity and
// secrets, the relay log, presence, the client front, metrics) and owns their
// start and orderly stop. cmd/edgenode is a thin shell around it, and tests
// start real nodes with it.
package node

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/edgenode/edgenode/auth"
	"github.com/edgenode/edgenode/config"
	"github.com/edgenode/edgenode/edge"
	"github.com/edgenode/edgenode/presence"
	"github.com/edgenode/edgenode/relaylog"
)

// Files kept in the data dir besides the relay log.
const (
	NodeIDFile        = "node-id"
	JWTSecretFile     = "jwt-secret"
	ClusterSecretFile = "cluster-secret"
)

// Node is one running edgenode.
type Node struct {
	Config   config.Config
	Logger   *slog.Logger
	Registry *prometheus.Registry
	Log      *relaylog.Log
	Hub      *presence.Hub
	Edge     *edge.Server

	http     *http.Server
	listener net.Listener
	url      string
	cancel   context.CancelFunc
	served   chan error
	stopOnce sync.Once
	stopErr  error
}

// PrepareDataDir creates the data dir and fills in the identity and secrets
// a node keeps there: the node id, the cluster secret and, when no JWT
// verification is configured, a development HS256 secret (so that a node
// started with no flags works; `edgenode token` signs with it).
func PrepareDataDir(cfg *config.Config, logger *slog.Logger) error {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("node: data dir: %w", err)
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
	if cfg.ClusterSecret == "" {
		if cfg.ClusterSecret, err = keepOrCreate(filepath.Join(cfg.DataDir, ClusterSecretFile), func() string { return randomToken(32) }); err != nil {
			return err
		}
	}
	if cfg.JWTSecret == "" && cfg.JWTPublicKey == "" {
		path := filepath.Join(cfg.DataDir, JWTSecretFile)
		_, statErr := os.Stat(path)
		if cfg.JWTSecret, err = keepOrCreate(path, func() string { return randomToken(32) }); err != nil {
			return err
		}
		if errors.Is(statErr, os.ErrNotExist) && logger != nil {
			logger.Warn("no --jwt-secret or --jwt-public-key given: generated a development secret; use `edgenode token --user ID` to get tokens, and configure your login service's key in production", "file", path)
		}
	}
	return nil
}

func keepOrCreate(path string, make func() string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		if v := strings.TrimSpace(string(b)); v != "" {
			return v, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("node: %w", err)
	}
	v := make()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(v+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("node: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
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

// Start builds a node from cfg, opens its relay log and starts serving. It
// returns once the client API listens; Ready tells when every shard leads.
func Start(ctx context.Context, cfg config.Config, logger *slog.Logger) (*Node, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := PrepareDataDir(&cfg, logger); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Node{Config: cfg, Logger: logger, Registry: prometheus.NewRegistry(), served: make(chan error, 1)}
	n.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	var secret []byte
	if cfg.JWTSecret != "" {
		secret = []byte(cfg.JWTSecret)
	}
	verifier, err := auth.NewVerifier(auth.Options{Secret: secret, PublicKeyFile: cfg.JWTPublicKey, Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience})
	if err != nil {
		return nil, err
	}

	var hub *presence.Hub
	n.Log, err = relaylog.Open(relaylog.Options{
		Dir:               filepath.Join(cfg.DataDir, "relaylog"),
		NodeID:            cfg.NodeID,
		Shards:            cfg.Shards,
		Logger:            logger,
		MaxQueueDepth:     cfg.MaxQueueDepth,
		Retention:         cfg.Retention,
		IdempotencyWindow: cfg.IdempotencyWindow,
		Registerer:        n.Registry,
		OnEvents:          func(user int64) { hub.NotifyEvents(user) },
	})
	if err != nil {
		return nil, err
	}
	hub = presence.New(presence.Options{LastConnected: n.Log.LastConnected})
	n.Hub = hub

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		n.Log.Close()
		return nil, fmt.Errorf("node: listen on %s: %w", cfg.HTTPAddr, err)
	}
	n.listener = ln
	n.url = publicURL(cfg, ln.Addr())

	n.Edge = edge.New(edge.Options{
		NodeID: cfg.NodeID, Region: cfg.Region, PublicURL: n.url,
		Log: n.Log, Hub: hub, Verifier: verifier, Logger: logger,
		Registerer: n.Registry, Gatherer: n.Registry,
		PingInterval: cfg.PingInterval, AllowedOrigins: cfg.AllowedOrigins,
		MaxContentBytes: cfg.MaxContentBytes, SendRate: cfg.SendRate, SendBurst: cfg.SendBurst,
		MaxConnsPerUser: cfg.MaxConnectionsPerUser, WriteTimeout: cfg.WriteTimeout, MaxUnacked: cfg.MaxUnacked,
	})
	n.http = &http.Server{
		Handler:           n.Edge.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			ln.Close()
			n.Log.Close()
			return nil, fmt.Errorf("node: TLS: %w", err)
		}
		n.http.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		// HTTP/2 would multiplex but cannot carry the WebSocket upgrade;
		// mobile clients use HTTP/1.1 keep-alive for REST.
		n.http.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
		ln = tls.NewListener(ln, n.http.TLSConfig)
	}
	bg, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go hub.Run(bg)
	go func() { n.served <- n.http.Serve(ln) }()
	logger.Info("edgenode serving", "node", cfg.NodeID, "region", cfg.Region, "url", n.url, "shards", n.Log.Shards(), "data", cfg.DataDir)
	return n, nil
}

func publicURL(cfg config.Config, addr net.Addr) string {
	if cfg.PublicURL != "" {
		return strings.TrimRight(cfg.PublicURL, "/")
	}
	scheme := "http"
	if cfg.TLSCert != "" {
		scheme = "https"
	}
	_, port, _ := net.SplitHostPort(addr.String())
	host := cfg.AdvertiseAddr
	if host == "" {
		if h, _, err := net.SplitHostPort(cfg.HTTPAddr); err == nil && h != "" && h != "0.0.0.0" && h != "::" {
			host = h
		} else if ip := firstPrivateIP(); ip != "" {
			host = ip
		} else {
			host = "127.0.0.1"
		}
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// firstPrivateIP is the first private IPv4 address of an interface that is
// up, skipping container bridges and virtual pairs, which other hosts cannot
// reach.
func firstPrivateIP() string {
	ifaces, err := net.Interfaces()
	if err != nil {
		return ""
	}
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		if n := ifc.Name; strings.HasPrefix(n, "docker") || strings.HasPrefix(n, "br-") || strings.HasPrefix(n, "veth") || strings.HasPrefix(n, "virbr") {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && ipn.IP.IsPrivate() {
				return ipn.IP.String()
			}
		}
	}
	return ""
}

// URL is the base URL clients use for this node.
func (n *Node) URL() string { return n.url }

// Addr is the address the client API listens on.
func (n *Node) Addr() net.Addr { return n.listener.Addr() }

// WaitReady blocks until every shard has a leader.
func (n *Node) WaitReady(ctx context.Context) error { return n.Log.WaitReady(ctx) }

// Shutdown drains the node: it stops accepting sockets and tells open ones
// to reconnect elsewhere (close 1012), finishes REST calls in flight, then
// stops the relay log. Acknowledged messages are on disk before their 201,
// so nothing acknowledged is lost however the shutdown ends.
func (n *Node) Shutdown(ctx context.Context) error {
	n.stopOnce.Do(func() {
		n.Logger.Info("edgenode draining")
		n.Edge.Drain(ctx)
		err := n.http.Shutdown(ctx)
		if errors.Is(err, context.DeadlineExceeded) {
			n.http.Close()
		}
		n.cancel()
		if lerr := n.Log.Close(); lerr != nil && err == nil {
			err = lerr
		}
		n.stopErr = err
		n.Logger.Info("edgenode stopped")
	})
	return n.stopErr
}

// Done delivers the HTTP server's exit error.
func (n *Node) Done() <-chan error { return n.served }
