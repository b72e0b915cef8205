package config

import (
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/edgenode/edgenode/wire"
)

// EnvPrefix starts the environment variable of every flag.
const EnvPrefix = "EDGENODE_"

// Config is one node's configuration, one field per flag. Its zero value is
// not usable; start from Defaults or Load.
type Config struct {
	ConfigFile string // --config: file read for settings not given by flag or env; "" = none

	// Listening and addressing.
	HTTPAddr      string // --http-addr: client API, HTTPS when TLSCert and TLSKey are set
	AdminAddr     string // --admin-addr: operator listener; "" = loopback at --http-addr's port + 1 (OperatorAddr)
	GossipAddr    string // --gossip-addr: memberlist, TCP and UDP
	ClusterAddr   string // --cluster-addr: QUIC between nodes (UDP)
	AdvertiseAddr string // --advertise-addr: host other nodes dial; "" = first private address
	PublicURL     string // --public-url: this node's URL in GET /v1/edges; "" = derived

	// Cluster.
	DataDir         string   // --data-dir: raft logs, snapshots, secrets
	NodeID          string   // --node-id: "" = generated once and kept in DataDir
	Region          string   // --region: failure domain, shown to clients
	Join            []string // --join: gossip addresses of existing nodes; none = start a new cluster
	BootstrapExpect int      // --bootstrap-expect: nodes to wait for before forming a new cluster
	Shards          int      // --shards: shard count of a new cluster; 0 = the store's built-in default
	ClusterSecret   string   // --cluster-secret: "" = generated on first start; else at least 32 bytes
	GossipProfile   string   // --gossip-profile: "lan" or "wan" memberlist timings
	ClusterCA       string   // --cluster-ca: PEM CA of the mesh instead of the one derived from the secret
	ClusterCert     string   // --cluster-cert: this node's mesh certificate (node id as CN or DNS SAN)
	ClusterKey      string   // --cluster-key: its private key

	// Client authentication.
	JWTSecret    string // --jwt-secret: HS256 secret, at least 32 bytes
	JWTPublicKey string // --jwt-public-key: PEM file of Ed25519 or P-256 public keys
	JWTIssuer    string // --jwt-issuer: required iss; "" = not checked
	JWTAudience  string // --jwt-audience: required aud; "" = not checked
	Dev          bool   // --dev: allow a generated development JWT secret on a non-loopback --http-addr

	// Client connections.
	PingInterval   time.Duration // --ping-interval: WebSocket ping period
	AllowedOrigins []string      // --allowed-origins: browser origins allowed to open the WebSocket and call REST (CORS)
	TLSCert        string        // --tls-cert: PEM certificate chain; with TLSKey
	TLSKey         string        // --tls-key: PEM private key; with TLSCert
	WriteTimeout   time.Duration // --write-timeout: bound on one socket write
	MaxUnacked     int           // --max-unacked: events in flight per socket before waiting for acks

	// Limits.
	MaxContentBytes       int           // --max-content-bytes: largest message content
	SendRate              float64       // --send-rate: sustained sends per user per second
	SendBurst             int           // --send-burst: sends per user allowed at once
	MaxConnectionsPerUser int           // --max-connections-per-user: concurrent sockets per user
	Presence              string        // --presence: PresenceContacts or PresenceEveryone
	MaxConnections        int           // --max-connections: client connections open at once; 0 = from the file limit
	MaxConnectionsPerIP   int           // --max-connections-per-ip: client connections from one IP (IPv6: /64); 0 = a quarter of --max-connections
	MaxQueueDepth         int           // --max-queue-depth: undelivered messages per user
	Retention             time.Duration // --retention: how long an undelivered event is kept
	IdempotencyWindow     time.Duration // --idempotency-window: how long a requestId is remembered

	// Push notifications.
	APNSKeyFile        string        // --apns-key-file: APNs token signing key (.p8)
	APNSKeyID          string        // --apns-key-id
	APNSTeamID         string        // --apns-team-id
	APNSTopic          string        // --apns-topic: default topic (bundle id) for devices registered without one
	APNSURL            string        // --apns-url
	APNSSandboxURL     string        // --apns-sandbox-url: for devices registered with "sandbox": true
	FCMCredentialsFile string        // --fcm-credentials-file: service-account JSON
	FCMURL             string        // --fcm-url
	PushPreview        string        // --push-preview: PreviewFull, PreviewFixed or PreviewNone
	PushDebounce       time.Duration // --push-debounce: wait after a user's first unalerted message
	PushAckTimeout     time.Duration // --push-ack-timeout: an online user is alerted of a message unacknowledged this long
	PushCAFile         string        // --push-ca-file: PEM roots trusted for the push services besides the system's; "" = system only

	// Process.
	LogLevel   slog.Level // --log-level
	LogFormat  string     // --log-format: LogText or LogJSON
	GOMAXPROCS int        // --gomaxprocs: 0 = the Go runtime's choice
	DebugAddr  string     // --debug-addr: where to serve /debug/pprof; "" = nowhere
}

// Values of Config.PushPreview.
const (
	PreviewFull  = "full"  // the notification shows the message content
	PreviewFixed = "fixed" // a fixed text ("New message"), the sender still shown
	PreviewNone  = "none"  // no alert text: only the badge changes
)

// Values of Config.Presence.
const (
	PresenceContacts = "contacts" // presence, last seen and typing only between users who share a conversation
	PresenceEveryone = "everyone" // any user sees any user's
)

// Values of Config.LogFormat.
const (
	LogText = "text"
	LogJSON = "json"
)

// Limits that Validate enforces.
const (
	// MinSecretBytes is the shortest cluster or HS256 secret: RFC 7518
	// section 3.2 requires an HS256 key of at least 256 bits.
	MinSecretBytes = 32
	// MaxShards bounds --shards; every shard is a raft group with its own
	// log, heartbeats and leader election.
	MaxShards = 256 // relaylog.MaxShards: the id layout has 8 bits for the shard at most
	// MaxContentBytesLimit bounds --max-content-bytes so that a message with
	// its JSON envelope always fits a request body (wire.MaxBodyBytes).
	MaxContentBytesLimit = wire.MaxBodyBytes / 2
)

// Defaults returns the configuration of a node given no settings at all.
// It passes Load's checks; Validate also needs --jwt-secret or
// --jwt-public-key, which node.PrepareDataDir supplies when none is given.
func Defaults() Config {
	return Config{
		HTTPAddr:              "127.0.0.1:8080",
		GossipAddr:            ":7946",
		ClusterAddr:           ":7947",
		DataDir:               "./data",
		Region:                "default",
		GossipProfile:         "lan",
		BootstrapExpect:       1,
		PingInterval:          25 * time.Second,
		APNSURL:               "https://api.push.apple.com",
		APNSSandboxURL:        "https://api.sandbox.push.apple.com",
		FCMURL:                "https://fcm.googleapis.com",
		LogLevel:              slog.LevelInfo,
		LogFormat:             LogText,
		MaxContentBytes:       wire.DefaultMaxContentBytes,
		SendRate:              50,
		SendBurst:             200,
		MaxConnectionsPerUser: 10,
		MaxQueueDepth:         10000,
		Retention:             720 * time.Hour,
		IdempotencyWindow:     24 * time.Hour,
		WriteTimeout:          10 * time.Second,
		MaxUnacked:            1024,
		PushPreview:           PreviewFull,
		Presence:              PresenceContacts,
		PushDebounce:          time.Second,
		PushAckTimeout:        15 * time.Second,
	}
}

// option describes one flag: how to set it from text and how to show it.
type option struct {
	name   string
	group  string
	arg    string // placeholder in Usage
	help   string
	secret bool // never printed or logged
	list   bool // repeated flags accumulate
	flag   bool // a switch: --name alone means true
	valueType
}

// valueType parses and formats one kind of setting.
type valueType struct {
	set    func(c *Config, s string) error
	get    func(c *Config) string // unquoted
	quoted bool                   // show get's result quoted in Usage and String
}

// EnvName returns the environment variable read for a flag name:
// "jwt-secret" gives "EDGENODE_JWT_SECRET".
func EnvName(flag string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

func str(f func(*Config) *string) valueType {
	return valueType{
		set:    func(c *Config, s string) error { *f(c) = s; return nil },
		get:    func(c *Config) string { return *f(c) },
		quoted: true,
	}
}

func integer(f func(*Config) *int) valueType {
	return valueType{
		set: func(c *Config, s string) error {
			n, err := strconv.Atoi(s)
			if err != nil {
				return fmt.Errorf("%q is not an integer", s)
			}
			*f(c) = n
			return nil
		},
		get: func(c *Config) string { return strconv.Itoa(*f(c)) },
	}
}

func float(f func(*Config) *float64) valueType {
	return valueType{
		set: func(c *Config, s string) error {
			x, err := strconv.ParseFloat(s, 64)
			if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
				return fmt.Errorf("%q is not a number", s)
			}
			*f(c) = x
			return nil
		},
		get: func(c *Config) string { return strconv.FormatFloat(*f(c), 'g', -1, 64) },
	}
}

func duration(f func(*Config) *time.Duration) valueType {
	return valueType{
		set: func(c *Config, s string) error {
			d, err := time.ParseDuration(s)
			if err != nil {
				return fmt.Errorf("%q is not a duration (examples: 90s, 10m, 720h)", s)
			}
			*f(c) = d
			return nil
		},
		get: func(c *Config) string { return formatDuration(*f(c)) },
	}
}

// formatDuration drops zero minutes and seconds: 720h, not 720h0m0s.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

func boolean(f func(*Config) *bool) valueType {
	return valueType{
		set: func(c *Config, s string) error {
			b, err := strconv.ParseBool(s)
			if err != nil {
				return fmt.Errorf("%q is not true or false", s)
			}
			*f(c) = b
			return nil
		},
		get: func(c *Config) string { return strconv.FormatBool(*f(c)) },
	}
}

func list(f func(*Config) *[]string) valueType {
	return valueType{
		set:    func(c *Config, s string) error { *f(c) = splitList(s); return nil },
		get:    func(c *Config) string { return strings.Join(*f(c), ",") },
		quoted: true,
	}
}

func oneOf(f func(*Config) *string, values ...string) valueType {
	return valueType{
		set: func(c *Config, s string) error {
			for _, v := range values {
				if s == v {
					*f(c) = s
					return nil
				}
			}
			return fmt.Errorf("%q is not one of %s", s, strings.Join(values, ", "))
		},
		get: func(c *Config) string { return *f(c) },
	}
}

var logLevels = []struct {
	name  string
	level slog.Level
}{{"debug", slog.LevelDebug}, {"info", slog.LevelInfo}, {"warn", slog.LevelWarn}, {"error", slog.LevelError}}

func levelByValue(l slog.Level) (string, bool) {
	for _, x := range logLevels {
		if x.level == l {
			return x.name, true
		}
	}
	return strings.ToLower(l.String()), false
}

// splitList splits a comma-separated list, also in YAML flow style [a, "b"],
// dropping blanks.
func splitList(s string) []string {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && s[0] == '[' && s[len(s)-1] == ']' {
		s = s[1 : len(s)-1]
	}
	var out []string
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if len(item) >= 2 && (item[0] == '"' || item[0] == '\'') && item[len(item)-1] == item[0] {
			item = item[1 : len(item)-1]
		}
		if item != "" {
			out = append(out, item)
		}
	}
	return out
}

// options lists every flag in Usage order.
var options = func() []*option {
	o := func(group, name, arg, help string, t valueType) *option {
		return &option{name: name, group: group, arg: arg, help: help, valueType: t}
	}
	secret := func(opt *option) *option { opt.secret = true; return opt }
	multi := func(opt *option) *option { opt.list = true; return opt }
	flag := func(opt *option) *option { opt.flag = true; return opt }
	const (
		gNet     = "Addresses"
		gCluster = "Cluster"
		gAuth    = "Client authentication"
		gConn    = "Client connections"
		gLimits  = "Limits"
		gPush    = "Push notifications"
		gProc    = "Process"
	)
	level := valueType{
		set: func(c *Config, s string) error {
			for _, x := range logLevels {
				if strings.EqualFold(s, x.name) {
					c.LogLevel = x.level
					return nil
				}
			}
			return fmt.Errorf("%q is not one of debug, info, warn, error", s)
		},
		get: func(c *Config) string { name, _ := levelByValue(c.LogLevel); return name },
	}
	opts := []*option{
		o("Config file", "config", "FILE", "config file with further settings (name: value lines; see package docs)",
			str(func(c *Config) *string { return &c.ConfigFile })),

		o(gNet, "http-addr", "ADDR", "client API listen address (HTTPS and WSS when --tls-cert and --tls-key are given); the default serves this machine only: give :8080 (with a JWT key, or --dev) to serve the network",
			str(func(c *Config) *string { return &c.HTTPAddr })),
		o(gNet, "admin-addr", "ADDR", "operator listener (/v1/cluster/members, /v1/cluster/shards, /metrics), plain HTTP on a loopback address, mutual TLS with the mesh's certificates on any other; empty = 127.0.0.1 at --http-addr's port + 1 (8081 by default)",
			str(func(c *Config) *string { return &c.AdminAddr })),
		o(gNet, "gossip-addr", "ADDR", "memberlist gossip listen address, TCP and UDP",
			str(func(c *Config) *string { return &c.GossipAddr })),
		o(gNet, "cluster-addr", "ADDR", "QUIC listen address for traffic between nodes (UDP)",
			str(func(c *Config) *string { return &c.ClusterAddr })),
		o(gNet, "advertise-addr", "HOST", "the host other nodes dial; empty = first private address",
			str(func(c *Config) *string { return &c.AdvertiseAddr })),
		o(gNet, "public-url", "URL", "this node's URL as GET /v1/edges gives it to clients; empty = derived from --advertise-addr and --http-addr",
			str(func(c *Config) *string { return &c.PublicURL })),

		o(gCluster, "data-dir", "DIR", "raft logs, snapshots and generated secrets",
			str(func(c *Config) *string { return &c.DataDir })),
		o(gCluster, "node-id", "ID", "this node's id (letters, digits, '.', '_', '-'); empty = generated once and kept in --data-dir",
			str(func(c *Config) *string { return &c.NodeID })),
		o(gCluster, "region", "NAME", "failure domain for replica placement, shown to clients",
			str(func(c *Config) *string { return &c.Region })),
		multi(o(gCluster, "join", "ADDRS", "comma-separated gossip addresses of any existing nodes; none = start a new cluster",
			list(func(c *Config) *[]string { return &c.Join }))),
		o(gCluster, "bootstrap-expect", "N", "nodes to wait for before forming a new cluster",
			integer(func(c *Config) *int { return &c.BootstrapExpect })),
		o(gCluster, "shards", "N", fmt.Sprintf("shard count of a new cluster, fixed once it exists (at most %d); 0 = the store's built-in default", MaxShards),
			integer(func(c *Config) *int { return &c.Shards })),
		secret(o(gCluster, "cluster-secret", "SECRET", fmt.Sprintf("secret shared by every node, at least %d bytes; empty = generated on first start (see edgenode join-token)", MinSecretBytes),
			str(func(c *Config) *string { return &c.ClusterSecret }))),
		o(gCluster, "gossip-profile", "PROFILE", "membership timings: lan (default) or wan (slower probes and suspicion, for nodes across regions over the internet)",
			oneOf(func(c *Config) *string { return &c.GossipProfile }, "lan", "wan")),
		o(gCluster, "cluster-ca", "FILE", "PEM CA certificate for the node-to-node mesh, instead of the CA derived from the cluster secret (with --cluster-cert and --cluster-key)",
			str(func(c *Config) *string { return &c.ClusterCA })),
		o(gCluster, "cluster-cert", "FILE", "this node's PEM certificate for the mesh, naming its node id (CN or DNS SAN)",
			str(func(c *Config) *string { return &c.ClusterCert })),
		o(gCluster, "cluster-key", "FILE", "the PEM private key of --cluster-cert",
			str(func(c *Config) *string { return &c.ClusterKey })),

		secret(o(gAuth, "jwt-secret", "SECRET", fmt.Sprintf("HS256 secret for client tokens, at least %d bytes; prefer the environment variable", MinSecretBytes),
			str(func(c *Config) *string { return &c.JWTSecret }))),
		o(gAuth, "jwt-public-key", "FILE", "PEM file of Ed25519 (EdDSA) or P-256 (ES256) public keys or certificates for client tokens",
			str(func(c *Config) *string { return &c.JWTPublicKey })),
		o(gAuth, "jwt-issuer", "ISS", "required iss claim of client tokens; empty = not checked",
			str(func(c *Config) *string { return &c.JWTIssuer })),
		o(gAuth, "jwt-audience", "AUD", "required aud claim of client tokens; empty = not checked",
			str(func(c *Config) *string { return &c.JWTAudience })),
		flag(o(gAuth, "dev", "", "development mode: without --jwt-secret or --jwt-public-key, serve a non-loopback --http-addr anyway, checking tokens against a secret generated in --data-dir (edgenode token signs with it); never in production",
			boolean(func(c *Config) *bool { return &c.Dev }))),

		o(gConn, "ping-interval", "DURATION", "WebSocket ping period; a socket that misses two is offline",
			duration(func(c *Config) *time.Duration { return &c.PingInterval })),
		multi(o(gConn, "allowed-origins", "ORIGINS", "comma-separated browser origins (https://app.example) allowed to open the WebSocket and to call the REST API (CORS), or *; native apps send none",
			list(func(c *Config) *[]string { return &c.AllowedOrigins }))),
		o(gConn, "tls-cert", "FILE", "PEM certificate chain; with --tls-key, serve HTTPS and WSS",
			str(func(c *Config) *string { return &c.TLSCert })),
		o(gConn, "tls-key", "FILE", "PEM private key for --tls-cert",
			str(func(c *Config) *string { return &c.TLSKey })),
		o(gConn, "write-timeout", "DURATION", "longest one WebSocket write may take before the socket is closed",
			duration(func(c *Config) *time.Duration { return &c.WriteTimeout })),
		o(gConn, "max-unacked", "N", "events sent on one socket and not yet acknowledged before the node waits for acks",
			integer(func(c *Config) *int { return &c.MaxUnacked })),

		o(gLimits, "max-content-bytes", "N", fmt.Sprintf("largest message content in bytes of UTF-8 (at most %d)", MaxContentBytesLimit),
			integer(func(c *Config) *int { return &c.MaxContentBytes })),
		o(gLimits, "send-rate", "PER_SECOND", "messages one user may send per second, sustained (fractions allowed); more answer 429",
			float(func(c *Config) *float64 { return &c.SendRate })),
		o(gLimits, "send-burst", "N", "messages one user may send at once before --send-rate applies",
			integer(func(c *Config) *int { return &c.SendBurst })),
		o(gLimits, "max-connections-per-user", "N", "WebSockets one user may hold open at once on one node",
			integer(func(c *Config) *int { return &c.MaxConnectionsPerUser })),
		o(gLimits, "presence", "WHO", "who sees a user's online state, last seen and typing: contacts (users who share a conversation with them: a message either way within --retention) or everyone",
			oneOf(func(c *Config) *string { return &c.Presence }, PresenceContacts, PresenceEveryone)),
		o(gLimits, "max-connections", "N", "client connections (HTTP and WebSocket) open at once; more are answered 503 and closed; 0 = the process's file limit minus max(256, a 64th of it)",
			integer(func(c *Config) *int { return &c.MaxConnections })),
		o(gLimits, "max-connections-per-ip", "N", "client connections open at once from one IP address (IPv6: one /64); 0 = a quarter of --max-connections; at or above --max-connections there is no per-IP cap (behind a load balancer or NAT)",
			integer(func(c *Config) *int { return &c.MaxConnectionsPerIP })),
		o(gLimits, "max-queue-depth", "N", "undelivered messages one user's queue may hold (receipts not counted); sends beyond answer 429",
			integer(func(c *Config) *int { return &c.MaxQueueDepth })),
		o(gLimits, "retention", "DURATION", "how long an undelivered event is kept before it is dropped",
			duration(func(c *Config) *time.Duration { return &c.Retention })),
		o(gLimits, "idempotency-window", "DURATION", "how long a sender's requestId is remembered, so a retry returns the same message",
			duration(func(c *Config) *time.Duration { return &c.IdempotencyWindow })),

		o(gPush, "apns-key-file", "FILE", "APNs token signing key (.p8); with --apns-key-id and --apns-team-id enables APNs",
			str(func(c *Config) *string { return &c.APNSKeyFile })),
		o(gPush, "apns-key-id", "ID", "key id of --apns-key-file",
			str(func(c *Config) *string { return &c.APNSKeyID })),
		o(gPush, "apns-team-id", "ID", "Apple developer team id",
			str(func(c *Config) *string { return &c.APNSTeamID })),
		o(gPush, "apns-topic", "TOPIC", "default APNs topic (app bundle id) for devices registered without one",
			str(func(c *Config) *string { return &c.APNSTopic })),
		o(gPush, "apns-url", "URL", "APNs endpoint; https://api.sandbox.push.apple.com for development, or a test server",
			str(func(c *Config) *string { return &c.APNSURL })),
		o(gPush, "apns-sandbox-url", "URL", "APNs endpoint for devices registered with \"sandbox\": true",
			str(func(c *Config) *string { return &c.APNSSandboxURL })),
		o(gPush, "fcm-credentials-file", "FILE", "FCM service-account JSON (its token_uri is honoured); enables FCM",
			str(func(c *Config) *string { return &c.FCMCredentialsFile })),
		o(gPush, "fcm-url", "URL", "FCM HTTP v1 endpoint, overridable for tests",
			str(func(c *Config) *string { return &c.FCMURL })),
		o(gPush, "push-preview", "MODE", "what a notification shows: full (sender and content), fixed (sender and a fixed text), none (badge only)",
			oneOf(func(c *Config) *string { return &c.PushPreview }, PreviewFull, PreviewFixed, PreviewNone)),
		o(gPush, "push-debounce", "DURATION", "wait after a user's first message not yet alerted before the alert, so a burst gives one",
			duration(func(c *Config) *time.Duration { return &c.PushDebounce })),
		o(gPush, "push-ack-timeout", "DURATION", "a user with a live socket is alerted of a message still unacknowledged after this long",
			duration(func(c *Config) *time.Duration { return &c.PushAckTimeout })),
		o(gPush, "push-ca-file", "FILE", "PEM certificates trusted for the push services besides the system roots (a proxy's, or a test server's)",
			str(func(c *Config) *string { return &c.PushCAFile })),

		o(gProc, "log-level", "LEVEL", "least severe log level written: debug, info, warn or error",
			level),
		o(gProc, "log-format", "FORMAT", "log output: text (key=value) or json",
			oneOf(func(c *Config) *string { return &c.LogFormat }, LogText, LogJSON)),
		o(gProc, "gomaxprocs", "N", "threads running Go code at once; 0 = 4x the cores Go sees (or $GOMAXPROCS), since threads blocked in fsync hold theirs",
			integer(func(c *Config) *int { return &c.GOMAXPROCS })),
		o(gProc, "debug-addr", "HOST:PORT", "serve Go's /debug/pprof profiles here (keep it on loopback); empty = off",
			str(func(c *Config) *string { return &c.DebugAddr })),
	}
	return opts
}()

var optionByName = func() map[string]*option {
	m := make(map[string]*option, len(options))
	for _, o := range options {
		m[o.name] = o
	}
	return m
}()

// String lists every setting as name=value with secrets redacted, so a
// Config can be logged or printed with %v.
func (c Config) String() string {
	var b strings.Builder
	for i, o := range options {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(o.name)
		b.WriteByte('=')
		v := c.show(o)
		if o.quoted && v != redacted {
			v = strconv.Quote(v)
		}
		b.WriteString(v)
	}
	return b.String()
}

// LogValue logs a Config as a group of its settings, secrets redacted.
func (c Config) LogValue() slog.Value {
	attrs := make([]slog.Attr, 0, len(options))
	for _, o := range options {
		attrs = append(attrs, slog.String(o.name, c.show(o)))
	}
	return slog.GroupValue(attrs...)
}

const redacted = "[redacted]"

// show formats a setting for String and LogValue: a set secret is redacted.
func (c *Config) show(o *option) string {
	v := o.get(c)
	if o.secret && v != "" {
		return redacted
	}
	return v
}
