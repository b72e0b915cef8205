package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/edgenode/edgenode/wire"
)

// MinPingInterval is the shortest --ping-interval: a socket is closed after
// 2 intervals without an answer, which must leave a phone on a slow
// network time to answer.
const MinPingInterval = 100 * time.Millisecond

// problem is one reason a Config is unusable, tied to the flag to fix.
type problem struct {
	name string // flag name
	msg  string
}

func (p problem) err() error { return fmt.Errorf("config: --%s: %s", p.name, p.msg) }

// Validate reports every reason the configuration cannot run a node, joined
// into one error; nil means it can. Load checks everything but the presence
// of a JWT key: a node started without one generates a development secret in
// its data dir (node.PrepareDataDir) before it validates.
func (c Config) Validate() error {
	var errs []error
	for _, p := range c.problems() {
		errs = append(errs, p.err())
	}
	if err := c.CheckFiles(); err != nil {
		errs = append(errs, err)
	}
	if c.JWTSecret == "" && c.JWTPublicKey == "" {
		errs = append(errs, problem{"jwt-secret", "set --jwt-secret or --jwt-public-key, or no client can authenticate"}.err())
	}
	return errors.Join(errs...)
}

// DevSecretRefusal reports why the node may not run on a generated
// development JWT secret, nil when it may (or a JWT key is configured).
// Such a secret lives in one node's data dir: on a network address anyone
// who reads that file, or guesses that a node runs with it, holds the key
// of every user, so it is refused unless --dev says this is a trial; and
// every node of a cluster would check tokens against its own, so a
// cluster needs the same --jwt-secret or --jwt-public-key on every node.
func (c Config) DevSecretRefusal() error {
	if c.JWTSecret != "" || c.JWTPublicKey != "" {
		return nil
	}
	switch {
	case len(c.Join) > 0 || c.BootstrapExpect > 1:
		return problem{"jwt-secret", "no --jwt-secret or --jwt-public-key: every node of a cluster needs the same one (a development secret generated on this node would refuse the others' tokens); " +
			"give every node your login service's key, or for a trial the same random secret of at least 32 bytes (EDGENODE_JWT_SECRET; a cluster started by an earlier version shares the one in any node's DATA_DIR/jwt-secret)"}.err()
	case !c.Dev && !loopbackAddr(c.HTTPAddr):
		return problem{"jwt-secret", fmt.Sprintf("no --jwt-secret or --jwt-public-key, and --http-addr %q is not a loopback address: clients on the network would be checked against a development secret generated here; "+
			"give your login service's key (EDGENODE_JWT_SECRET or --jwt-public-key), or --dev to try edgenode on a network", c.HTTPAddr)}.err()
	}
	return nil
}

// CheckFiles reports every file named by a flag that cannot be read as a
// regular file, joined into one error; nil when all can (or none is named).
// Validate includes it.
func (c Config) CheckFiles() error {
	var errs []error
	for _, f := range []struct{ name, path string }{
		{"cluster-ca", c.ClusterCA}, {"cluster-cert", c.ClusterCert}, {"cluster-key", c.ClusterKey},
		{"jwt-public-key", c.JWTPublicKey}, {"tls-cert", c.TLSCert}, {"tls-key", c.TLSKey},
		{"apns-key-file", c.APNSKeyFile}, {"fcm-credentials-file", c.FCMCredentialsFile}, {"push-ca-file", c.PushCAFile},
	} {
		if f.path == "" {
			continue
		}
		fh, err := os.Open(f.path)
		if err == nil {
			var st os.FileInfo
			if st, err = fh.Stat(); err == nil && !st.Mode().IsRegular() {
				err = fmt.Errorf("%s is not a regular file", f.path)
			}
			fh.Close()
		}
		if err != nil {
			errs = append(errs, problem{f.name, err.Error()}.err())
		}
	}
	return errors.Join(errs...)
}

func (c *Config) problems() []problem {
	var ps []problem
	add := func(name, format string, a ...any) {
		ps = append(ps, problem{name, fmt.Sprintf(format, a...)})
	}

	for _, a := range []struct{ name, addr string }{
		{"http-addr", c.HTTPAddr}, {"gossip-addr", c.GossipAddr}, {"cluster-addr", c.ClusterAddr},
	} {
		if err := checkListenAddr(a.addr); err != nil {
			add(a.name, "%v", err)
		}
	}
	if c.AdminAddr != "" {
		if err := checkListenAddr(c.AdminAddr); err != nil {
			add("admin-addr", "%v", err)
		} else if c.AdminAddr == c.HTTPAddr && !strings.HasSuffix(c.AdminAddr, ":0") {
			add("admin-addr", "%q is also --http-addr; the operator listener needs a port of its own", c.AdminAddr)
		}
	} else if _, err := c.operatorAddr(); err != nil && checkListenAddr(c.HTTPAddr) == nil {
		add("admin-addr", "%v", err)
	}
	// Both are UDP: one port cannot carry gossip and QUIC.
	if c.GossipAddr != "" && c.GossipAddr == c.ClusterAddr && !strings.HasSuffix(c.GossipAddr, ":0") {
		add("cluster-addr", "%q is also --gossip-addr; they need different ports", c.ClusterAddr)
	}
	if c.DebugAddr != "" {
		if err := checkListenAddr(c.DebugAddr); err != nil {
			add("debug-addr", "%v", err)
		} else if !loopbackAddr(c.DebugAddr) {
			add("debug-addr", "%q is not a loopback address: /debug/pprof has no authentication and shows the node's command line, secrets included; serve it on 127.0.0.1 or [::1] and reach it through an SSH tunnel or kubectl port-forward", c.DebugAddr)
		}
	}
	if c.APNSTopic != "" && !wire.ValidTopic(c.APNSTopic) {
		add("apns-topic", "%q is not a reverse-DNS name such as com.example.chat", c.APNSTopic)
	}
	if c.AdvertiseAddr != "" && !validHost(c.AdvertiseAddr) {
		add("advertise-addr", "%q is not a host name or IP address (optionally with :port)", c.AdvertiseAddr)
	}
	if c.PublicURL != "" {
		if err := checkURL(c.PublicURL, false); err != nil {
			add("public-url", "%v", err)
		}
	}

	if c.DataDir == "" {
		add("data-dir", "must not be empty")
	}
	if c.NodeID != "" && !validName(c.NodeID) {
		add("node-id", "%q must be 1 to 64 letters, digits, '.', '_' or '-'", c.NodeID)
	}
	if !validName(c.Region) {
		add("region", "%q must be 1 to 64 letters, digits, '.', '_' or '-'", c.Region)
	}
	for _, j := range c.Join {
		if !validHost(j) {
			add("join", "%q is not a host or host:port", j)
		}
	}
	if c.BootstrapExpect < 1 {
		add("bootstrap-expect", "%d is less than 1", c.BootstrapExpect)
	}
	if c.Shards < 0 || c.Shards > MaxShards {
		add("shards", "%d is not between 0 (the default) and %d", c.Shards, MaxShards)
	}
	if n := btoi(c.ClusterCA != "") + btoi(c.ClusterCert != "") + btoi(c.ClusterKey != ""); n != 0 && n != 3 {
		add("cluster-ca", "give --cluster-ca, --cluster-cert and --cluster-key together")
	}
	if c.ClusterSecret != "" && len(c.ClusterSecret) < MinSecretBytes {
		add("cluster-secret", "is %d bytes; it must be at least %d (or empty to generate one)", len(c.ClusterSecret), MinSecretBytes)
	}

	if c.JWTSecret != "" && len(c.JWTSecret) < MinSecretBytes {
		add("jwt-secret", "is %d bytes; HS256 needs at least %d (RFC 7518, section 3.2)", len(c.JWTSecret), MinSecretBytes)
	}

	if c.PingInterval <= 0 {
		add("ping-interval", "%v is not positive", c.PingInterval)
	} else if c.PingInterval < MinPingInterval {
		add("ping-interval", "%v is below %v: clients could not answer in time", c.PingInterval, MinPingInterval)
	}
	for _, o := range c.AllowedOrigins {
		if err := checkOrigin(o); err != nil {
			add("allowed-origins", "%v", err)
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		if c.TLSCert == "" {
			add("tls-key", "set without --tls-cert; give both or neither")
		} else {
			add("tls-cert", "set without --tls-key; give both or neither")
		}
	}
	if c.WriteTimeout <= 0 {
		add("write-timeout", "%v is not positive", c.WriteTimeout)
	}
	if c.MaxUnacked < 1 {
		add("max-unacked", "%d is less than 1", c.MaxUnacked)
	}

	if c.MaxContentBytes < 1 || c.MaxContentBytes > MaxContentBytesLimit {
		add("max-content-bytes", "%d is not between 1 and %d", c.MaxContentBytes, MaxContentBytesLimit)
	}
	if !(c.SendRate > 0) || math.IsInf(c.SendRate, 0) {
		add("send-rate", "%v is not a positive number", c.SendRate)
	}
	if c.SendBurst < 1 {
		add("send-burst", "%d is less than 1", c.SendBurst)
	}
	if c.MaxConnectionsPerUser < 1 {
		add("max-connections-per-user", "%d is less than 1", c.MaxConnectionsPerUser)
	}
	if c.MaxConnections < 0 {
		add("max-connections", "%d is negative", c.MaxConnections)
	}
	if c.MaxConnectionsPerIP < 0 {
		add("max-connections-per-ip", "%d is negative", c.MaxConnectionsPerIP)
	}
	if c.MaxQueueDepth < 1 {
		add("max-queue-depth", "%d is less than 1", c.MaxQueueDepth)
	}
	if c.Retention <= 0 {
		add("retention", "%v is not positive", c.Retention)
	}
	if c.IdempotencyWindow <= 0 {
		add("idempotency-window", "%v is not positive", c.IdempotencyWindow)
	}

	apns := map[string]string{"apns-key-file": c.APNSKeyFile, "apns-key-id": c.APNSKeyID, "apns-team-id": c.APNSTeamID}
	if c.APNSKeyFile != "" || c.APNSKeyID != "" || c.APNSTeamID != "" {
		for _, name := range []string{"apns-key-file", "apns-key-id", "apns-team-id"} {
			if apns[name] == "" {
				add(name, "APNs needs --apns-key-file, --apns-key-id and --apns-team-id together")
			}
		}
	}
	if err := checkURL(c.APNSURL, true); err != nil {
		add("apns-url", "%v", err)
	}
	if err := checkURL(c.APNSSandboxURL, true); err != nil {
		add("apns-sandbox-url", "%v", err)
	}
	if err := checkURL(c.FCMURL, true); err != nil {
		add("fcm-url", "%v", err)
	}
	if c.PushDebounce <= 0 {
		add("push-debounce", "%v is not positive", c.PushDebounce)
	}
	if c.PushAckTimeout <= 0 {
		add("push-ack-timeout", "%v is not positive", c.PushAckTimeout)
	}
	switch c.Presence {
	case PresenceContacts, PresenceEveryone:
	default:
		add("presence", "%q is not one of contacts, everyone", c.Presence)
	}
	switch c.PushPreview {
	case PreviewFull, PreviewFixed, PreviewNone:
	default:
		add("push-preview", "%q is not one of full, fixed, none", c.PushPreview)
	}

	if _, ok := levelByValue(c.LogLevel); !ok {
		add("log-level", "%v is not one of debug, info, warn, error", c.LogLevel)
	}
	switch c.LogFormat {
	case LogText, LogJSON:
	default:
		add("log-format", "%q is not one of text, json", c.LogFormat)
	}
	if c.GOMAXPROCS < 0 {
		add("gomaxprocs", "%d is negative", c.GOMAXPROCS)
	}
	return ps
}

// checkListenAddr accepts host:port with a numeric port; the host may be
// empty (all interfaces) and the port 0 (any free port, for tests).
func checkListenAddr(addr string) error {
	if addr == "" {
		return errors.New("must not be empty")
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q has no port number between 0 and 65535", addr)
	}
	return nil
}

// loopbackAddr reports whether the host of host:port is a loopback
// address or "localhost" (an empty host means every interface).
// OperatorAddr is where the node serves its operator listener, and where
// `edgenode members` and `shards` look for it: --admin-addr, else 127.0.0.1
// at the port after --http-addr's (8081 beside the default 8080; port 0, a
// port of the kernel's choice, stays 0). Whatever --http-addr's host, the
// default is loopback: the operator views never face the clients' network
// unless an operator says so.
func (c Config) OperatorAddr() string {
	a, _ := c.operatorAddr()
	return a
}

func (c Config) operatorAddr() (string, error) {
	if c.AdminAddr != "" {
		return c.AdminAddr, nil
	}
	_, port, err := net.SplitHostPort(c.HTTPAddr)
	if err != nil {
		return "", err
	}
	n, err := strconv.Atoi(port)
	switch {
	case err != nil || n < 0 || n > 65535:
		return "", fmt.Errorf("--http-addr %q has no numeric port to put the operator listener beside; give --admin-addr", c.HTTPAddr)
	case n == 65535:
		return "", fmt.Errorf("--http-addr %q leaves no next port for the operator listener; give --admin-addr", c.HTTPAddr)
	case n > 0:
		n++
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(n)), nil
}

// LoopbackAddr reports whether addr (host:port) names a loopback host:
// localhost, 127.0.0.0/8 or ::1. An empty host (every interface) is not.
func LoopbackAddr(addr string) bool { return loopbackAddr(addr) }

func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && LoopbackHost(host)
}

// LoopbackHost reports whether host is "localhost" or a loopback IP.
func LoopbackHost(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

// validHost accepts a host name or IP address, optionally with a port.
func validHost(s string) bool {
	host := s
	if h, port, err := net.SplitHostPort(s); err == nil {
		if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			return false
		}
		host = h
	}
	if host == "" || len(host) > 253 {
		return false
	}
	if net.ParseIP(host) != nil {
		return true
	}
	for i := 0; i < len(host); i++ {
		ch := host[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '.' || ch == '_') {
			return false
		}
	}
	return true
}

// validName accepts node ids and regions: short, and safe in file names,
// metric labels and log lines.
func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '.' || ch == '_') {
			return false
		}
	}
	return true
}

// checkURL accepts an absolute http or https URL with a host and no query
// or fragment; endpoints must not have a path either.
func checkURL(s string, endpoint bool) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a URL", s)
	}
	if u.Scheme != "https" && u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("%q is not an http:// or https:// URL with a host", s)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("%q must not have a query, fragment or user", s)
	}
	if endpoint && u.Path != "" && u.Path != "/" {
		return fmt.Errorf("%q must not have a path", s)
	}
	return nil
}

// checkOrigin accepts "*" or what browsers send as Origin:
// scheme://host[:port], no path.
func checkOrigin(o string) error {
	if o == "*" {
		return nil
	}
	u, err := url.Parse(o)
	if err != nil || u.Scheme == "" || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("%q is not an origin like https://app.example (scheme and host, no path or trailing slash)", o)
	}
	return nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
