package config

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const secret32 = "0123456789abcdef0123456789abcdef"

// load runs Load with args, env and, when file is not empty, a config file
// written to a temp dir and passed as --config. Unless the test sets one, a
// valid JWT secret comes from a setting weaker than any the test makes, so
// that only the case under test can fail validation.
func load(t *testing.T, args []string, env map[string]string, file string) (Config, error) {
	t.Helper()
	if file != "" {
		path := filepath.Join(t.TempDir(), "edgenode.yaml")
		if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append([]string{"--config", path}, args...)
	}
	mentions := strings.Join(args, " ") + " " + file
	for k := range env {
		mentions += " " + k
	}
	if !strings.Contains(mentions, "jwt-secret") && !strings.Contains(mentions, "jwt-public-key") &&
		!strings.Contains(mentions, "JWT_SECRET") && !strings.Contains(mentions, "JWT_PUBLIC_KEY") {
		args = append([]string{"--jwt-secret", secret32}, args...)
	}
	return Load(args, func(k string) string { return env[k] })
}

func TestDefaults(t *testing.T) {
	d := Defaults()
	want := map[string]any{
		"http-addr": "127.0.0.1:8080", "admin-addr": "", "dev": false, "gossip-addr": ":7946", "cluster-addr": ":7947", "advertise-addr": "",
		"public-url": "", "data-dir": "./data", "node-id": "", "region": "default", "join": []string(nil),
		"bootstrap-expect": 1, "shards": 0, "cluster-secret": "", "gossip-profile": "lan", "cluster-ca": "", "cluster-cert": "", "cluster-key": "", "jwt-secret": "", "jwt-public-key": "",
		"ping-interval": 25 * time.Second, "allowed-origins": []string(nil), "tls-cert": "", "tls-key": "",
		"apns-url": "https://api.push.apple.com", "fcm-url": "https://fcm.googleapis.com",
		"log-level": slog.LevelInfo, "log-format": "text", "max-content-bytes": 4096, "send-rate": 50.0,
		"send-burst": 200, "max-connections-per-user": 10, "max-queue-depth": 10000,
		"max-connections": 0, "max-connections-per-ip": 0,
		"retention": 720 * time.Hour, "idempotency-window": 24 * time.Hour, "write-timeout": 10 * time.Second,
		"max-unacked": 1024, "gomaxprocs": 0, "debug-addr": "", "push-preview": "full", "presence": "contacts",
		"apns-sandbox-url": "https://api.sandbox.push.apple.com", "push-debounce": time.Second,
		"push-ack-timeout": 15 * time.Second, "push-ca-file": "",
	}
	for name, w := range want {
		if got := field(d, name); !reflect.DeepEqual(got, w) {
			t.Errorf("Defaults %s = %#v, want %#v", name, got, w)
		}
	}
	if err := d.Validate(); err == nil || !strings.Contains(err.Error(), "--jwt-secret") {
		t.Errorf("Defaults().Validate() = %v, want an error asking for a JWT secret", err)
	}
	d.JWTSecret = secret32
	if err := d.Validate(); err != nil {
		t.Errorf("Defaults with a JWT secret: %v", err)
	}
	c, err := Load(nil, func(k string) string { return map[string]string{"EDGENODE_JWT_SECRET": secret32}[k] })
	if err != nil {
		t.Fatal(err)
	}
	d.JWTSecret = secret32
	if !reflect.DeepEqual(c, d) {
		t.Errorf("Load with nothing set = %v\nwant %v", c, d)
	}
}

// field reads the Config field of a flag through the option table, the
// same path Usage and String take, plus a typed read for the test's sake.
func field(c Config, name string) any {
	v := reflect.ValueOf(c)
	f := v.FieldByName(fieldName[name])
	if !f.IsValid() {
		panic("no field for " + name)
	}
	return f.Interface()
}

var fieldName = map[string]string{
	"config": "ConfigFile", "http-addr": "HTTPAddr", "admin-addr": "AdminAddr", "gossip-addr": "GossipAddr", "cluster-addr": "ClusterAddr",
	"advertise-addr": "AdvertiseAddr", "public-url": "PublicURL", "data-dir": "DataDir", "node-id": "NodeID",
	"region": "Region", "join": "Join", "bootstrap-expect": "BootstrapExpect", "shards": "Shards",
	"cluster-secret": "ClusterSecret", "gossip-profile": "GossipProfile", "cluster-ca": "ClusterCA", "cluster-cert": "ClusterCert", "cluster-key": "ClusterKey", "jwt-secret": "JWTSecret", "jwt-public-key": "JWTPublicKey",
	"jwt-issuer": "JWTIssuer", "jwt-audience": "JWTAudience", "dev": "Dev", "ping-interval": "PingInterval",
	"allowed-origins": "AllowedOrigins", "tls-cert": "TLSCert", "tls-key": "TLSKey",
	"write-timeout": "WriteTimeout", "max-unacked": "MaxUnacked", "max-content-bytes": "MaxContentBytes",
	"send-rate": "SendRate", "send-burst": "SendBurst", "max-connections-per-user": "MaxConnectionsPerUser",
	"max-connections": "MaxConnections", "max-connections-per-ip": "MaxConnectionsPerIP",
	"max-queue-depth": "MaxQueueDepth", "retention": "Retention", "idempotency-window": "IdempotencyWindow",
	"apns-key-file": "APNSKeyFile", "apns-key-id": "APNSKeyID", "apns-team-id": "APNSTeamID",
	"apns-topic": "APNSTopic", "apns-url": "APNSURL", "fcm-credentials-file": "FCMCredentialsFile",
	"fcm-url": "FCMURL", "push-preview": "PushPreview", "presence": "Presence", "apns-sandbox-url": "APNSSandboxURL",
	"push-debounce": "PushDebounce", "push-ack-timeout": "PushAckTimeout", "push-ca-file": "PushCAFile", "log-level": "LogLevel", "log-format": "LogFormat",
	"gomaxprocs": "GOMAXPROCS", "debug-addr": "DebugAddr",
}

// A switch alone means true and takes no value from the next argument.
func TestSwitchAlone(t *testing.T) {
	c, err := load(t, []string{"--dev", "--region", "eu"}, nil, "")
	if err != nil || !c.Dev || c.Region != "eu" {
		t.Fatalf("--dev --region eu: Dev %v, Region %q, %v", c.Dev, c.Region, err)
	}
	if c, err := load(t, []string{"--dev=false"}, nil, ""); err != nil || c.Dev {
		t.Fatalf("--dev=false: Dev %v, %v", c.Dev, err)
	}
	if _, err := load(t, []string{"--dev=maybe"}, nil, ""); err == nil || !strings.Contains(err.Error(), "--dev") {
		t.Fatalf("--dev=maybe: %v", err)
	}
}

// TestEveryFlag sets each flag, of every type, from each of the three
// sources and checks the field; it also proves the table below and the
// option table cover every Config field.
func TestEveryFlag(t *testing.T) {
	tests := []struct {
		name  string
		value string
		want  any
		extra []string // flags the value needs to validate
	}{
		{"http-addr", "127.0.0.1:9090", "127.0.0.1:9090", nil},
		{"admin-addr", "10.0.0.5:7000", "10.0.0.5:7000", nil},
		{"gossip-addr", "[::1]:8946", "[::1]:8946", nil},
		{"cluster-addr", "0.0.0.0:0", "0.0.0.0:0", nil},
		{"advertise-addr", "10.0.0.5", "10.0.0.5", nil},
		{"public-url", "https://eu.chat.example/", "https://eu.chat.example/", nil},
		{"data-dir", "/var/lib/edgenode", "/var/lib/edgenode", nil},
		{"node-id", "eu-1.a_b", "eu-1.a_b", nil},
		{"region", "eu-west", "eu-west", nil},
		{"join", "10.0.0.1:7946, node2.example,10.0.0.3", []string{"10.0.0.1:7946", "node2.example", "10.0.0.3"}, nil},
		{"bootstrap-expect", "3", 3, nil},
		{"shards", "64", 64, nil},
		{"cluster-secret", secret32 + "!", secret32 + "!", nil},
		{"gossip-profile", "wan", "wan", nil},
		{"cluster-ca", "/etc/ca.pem", "/etc/ca.pem", []string{"--cluster-cert", "/etc/n.pem", "--cluster-key", "/etc/n.key"}},
		{"cluster-cert", "/etc/n.pem", "/etc/n.pem", []string{"--cluster-ca", "/etc/ca.pem", "--cluster-key", "/etc/n.key"}},
		{"cluster-key", "/etc/n.key", "/etc/n.key", []string{"--cluster-ca", "/etc/ca.pem", "--cluster-cert", "/etc/n.pem"}},
		{"jwt-secret", secret32 + "?", secret32 + "?", nil},
		{"jwt-public-key", "/etc/edgenode/jwt.pem", "/etc/edgenode/jwt.pem", nil},
		{"jwt-issuer", "https://login.example", "https://login.example", nil},
		{"jwt-audience", "chat", "chat", nil},
		{"dev", "true", true, nil},
		{"ping-interval", "1m30s", 90 * time.Second, nil},
		{"allowed-origins", "https://app.example,http://localhost:3000", []string{"https://app.example", "http://localhost:3000"}, nil},
		{"tls-cert", "/tls/cert.pem", "/tls/cert.pem", []string{"--tls-key", "/tls/key.pem"}},
		{"tls-key", "/tls/key.pem", "/tls/key.pem", []string{"--tls-cert", "/tls/cert.pem"}},
		{"write-timeout", "2.5s", 2500 * time.Millisecond, nil},
		{"max-unacked", "64", 64, nil},
		{"max-content-bytes", "8192", 8192, nil},
		{"send-rate", "0.5", 0.5, nil},
		{"send-burst", "5", 5, nil},
		{"max-connections-per-user", "3", 3, nil},
		{"max-connections", "5000", 5000, nil},
		{"max-connections-per-ip", "100", 100, nil},
		{"max-queue-depth", "500", 500, nil},
		{"retention", "168h", 168 * time.Hour, nil},
		{"idempotency-window", "1h", time.Hour, nil},
		{"apns-key-file", "/apns/key.p8", "/apns/key.p8", []string{"--apns-key-id", "K", "--apns-team-id", "T"}},
		{"apns-key-id", "ABC123DEFG", "ABC123DEFG", []string{"--apns-key-file", "k.p8", "--apns-team-id", "T"}},
		{"apns-team-id", "TEAM123456", "TEAM123456", []string{"--apns-key-file", "k.p8", "--apns-key-id", "K"}},
		{"apns-topic", "com.example.chat", "com.example.chat", nil},
		{"apns-url", "http://127.0.0.1:8443", "http://127.0.0.1:8443", nil},
		{"fcm-credentials-file", "/fcm/sa.json", "/fcm/sa.json", nil},
		{"fcm-url", "http://127.0.0.1:9443", "http://127.0.0.1:9443", nil},
		{"push-preview", "fixed", "fixed", nil},
		{"presence", "everyone", "everyone", nil},
		{"apns-sandbox-url", "https://127.0.0.1:8444", "https://127.0.0.1:8444", nil},
		{"push-debounce", "250ms", 250 * time.Millisecond, nil},
		{"push-ack-timeout", "1m", time.Minute, nil},
		{"push-ca-file", "/etc/edgenode/push-ca.pem", "/etc/edgenode/push-ca.pem", nil},
		{"log-level", "debug", slog.LevelDebug, nil},
		{"log-format", "json", "json", nil},
		{"gomaxprocs", "2", 2, nil},
		{"debug-addr", "127.0.0.1:6060", "127.0.0.1:6060", nil},
	}
	covered := map[string]bool{"config": true} // --config has its own test
	for _, tt := range tests {
		covered[tt.name] = true
		for _, source := range []string{"flag", "env", "file"} {
			t.Run(tt.name+"/"+source, func(t *testing.T) {
				var args []string
				env := map[string]string{}
				file := ""
				switch source {
				case "flag":
					args = []string{"--" + tt.name, tt.value}
					if optionByName[tt.name].flag {
						args = []string{"--" + tt.name + "=" + tt.value}
					}
				case "env":
					env[EnvName(tt.name)] = tt.value
				case "file":
					file = fmt.Sprintf("%s: %q\n", tt.name, tt.value)
				}
				c, err := load(t, append(args, tt.extra...), env, file)
				if err != nil {
					t.Fatal(err)
				}
				if got := field(c, tt.name); !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("%s = %#v, want %#v", tt.name, got, tt.want)
				}
			})
		}
	}
	for _, o := range options {
		if !covered[o.name] {
			t.Errorf("flag --%s has no test case", o.name)
		}
	}
	if n := reflect.TypeFor[Config]().NumField(); n != len(options) || n != len(fieldName) {
		t.Errorf("Config has %d fields, %d options, %d test field names", n, len(options), len(fieldName))
	}
}

func TestPrecedence(t *testing.T) {
	type sources struct{ flag, env, file string }
	tests := []struct {
		name string
		set  sources
		want any
	}{
		{"region", sources{}, "default"},
		{"region", sources{file: "f"}, "f"},
		{"region", sources{env: "e", file: "f"}, "e"},
		{"region", sources{flag: "x", env: "e", file: "f"}, "x"},
		{"region", sources{flag: "x", file: "f"}, "x"},
		{"region", sources{flag: "x", env: "e"}, "x"},
		{"shards", sources{file: "8"}, 8},
		{"shards", sources{env: "16", file: "8"}, 16},
		{"shards", sources{flag: "32", env: "16", file: "8"}, 32},
		{"send-rate", sources{env: "2.5", file: "1"}, 2.5},
		{"send-rate", sources{flag: "7", env: "2.5", file: "1"}, 7.0},
		{"retention", sources{file: "1h"}, time.Hour},
		{"retention", sources{env: "2h", file: "1h"}, 2 * time.Hour},
		{"retention", sources{flag: "3h", env: "2h", file: "1h"}, 3 * time.Hour},
		{"join", sources{file: "a,b"}, []string{"a", "b"}},
		{"join", sources{env: "c", file: "a,b"}, []string{"c"}},
		{"join", sources{flag: "d,e", env: "c", file: "a,b"}, []string{"d", "e"}},
		{"log-level", sources{env: "warn", file: "error"}, slog.LevelWarn},
		{"log-level", sources{flag: "ERROR", env: "warn"}, slog.LevelError},
		{"jwt-secret", sources{env: secret32 + "e", file: secret32 + "f"}, secret32 + "e"},
		{"jwt-secret", sources{flag: secret32 + "x", env: secret32 + "e", file: secret32 + "f"}, secret32 + "x"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%+v", tt.name, tt.set), func(t *testing.T) {
			var args []string
			env := map[string]string{}
			file := ""
			if tt.set.flag != "" {
				args = []string{"--" + tt.name + "=" + tt.set.flag}
			}
			if tt.set.env != "" {
				env[EnvName(tt.name)] = tt.set.env
			}
			if tt.set.file != "" {
				file = tt.name + ": " + tt.set.file + "\n"
			}
			c, err := load(t, args, env, file)
			if err != nil {
				t.Fatal(err)
			}
			if got := field(c, tt.name); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("%s = %#v, want %#v", tt.name, got, tt.want)
			}
		})
	}
}

func TestConfigFlagAndEnv(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.yaml")
	b := filepath.Join(dir, "b.yaml")
	os.WriteFile(a, []byte("region: from-a\n"), 0o600)
	os.WriteFile(b, []byte("region: from-b\n"), 0o600)
	env := map[string]string{"EDGENODE_CONFIG": a, "EDGENODE_JWT_SECRET": secret32}
	getenv := func(k string) string { return env[k] }

	c, err := Load(nil, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Region != "from-a" || c.ConfigFile != a {
		t.Fatalf("EDGENODE_CONFIG: region %q, file %q", c.Region, c.ConfigFile)
	}
	c, err = Load([]string{"-config", b}, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Region != "from-b" || c.ConfigFile != b {
		t.Fatalf("--config beats EDGENODE_CONFIG: region %q, file %q", c.Region, c.ConfigFile)
	}
	_, err = Load([]string{"--config", filepath.Join(dir, "missing.yaml")}, getenv)
	if err == nil || !strings.Contains(err.Error(), "--config") || !strings.Contains(err.Error(), "missing.yaml") {
		t.Fatalf("missing file: err = %v", err)
	}
}

func TestFileSyntax(t *testing.T) {
	file := "\ufeff# edgenode\r\n" +
		"---\n" +
		"http-addr: \":9090\"   # quoted, with a comment\r\n" +
		"gossip-addr = 127.0.0.1:8946\n" +
		"\n" +
		"   \n" +
		"data-dir: /srv/edge#1\n" +
		"jwt-issuer: 'it''s here' # single quotes\n" +
		"node-id: node-7 # trailing comment\n" +
		"public-url: \"https://chat.example/edge\\u0031\"\n" +
		"join: [10.0.0.1:7946, \"10.0.0.2:7946\"]\n" +
		"allowed-origins: \"https://a.example, https://b.example\"\n" +
		"fcm-credentials-file:\n" +
		"apns-topic: # nothing\n" +
		"jwt-audience=chat\n" +
		"  # an indented comment is still a comment\n"
	c, err := load(t, nil, nil, file)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"http-addr": ":9090", "gossip-addr": "127.0.0.1:8946", "data-dir": "/srv/edge#1",
		"jwt-issuer": "it's here", "node-id": "node-7", "public-url": "https://chat.example/edge1",
		"join": []string{"10.0.0.1:7946", "10.0.0.2:7946"}, "allowed-origins": []string{"https://a.example", "https://b.example"},
		"fcm-credentials-file": "", "apns-topic": "", "jwt-audience": "chat",
	}
	for name, w := range want {
		if got := field(c, name); !reflect.DeepEqual(got, w) {
			t.Errorf("%s = %#v, want %#v", name, got, w)
		}
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		file string
		want []string // substrings of the error
	}{
		// Command line.
		{"unknown flag", []string{"--nope", "1"}, nil, "", []string{"unknown flag --nope"}},
		{"flag without value", []string{"--region"}, nil, "", []string{"--region needs a value"}},
		{"positional argument", []string{"serve"}, nil, "", []string{`unexpected argument "serve"`}},
		{"argument after --", []string{"--", "x"}, nil, "", []string{`unexpected argument "x"`}},
		{"single dash", []string{"-"}, nil, "", []string{`unexpected argument "-"`}},

		// Bad values name the flag and the source.
		{"bad int flag", []string{"--shards", "many"}, nil, "", []string{"--shards (flag)", `"many" is not an integer`}},
		{"bad int env", nil, map[string]string{"EDGENODE_BOOTSTRAP_EXPECT": "3x"}, "", []string{"--bootstrap-expect (env EDGENODE_BOOTSTRAP_EXPECT)", "not an integer"}},
		{"bad int file", nil, nil, "region: r\nmax-unacked: 1.5\n", []string{"--max-unacked (", "edgenode.yaml:2)", "not an integer"}},
		{"bad float", []string{"--send-rate", "fast"}, nil, "", []string{"--send-rate (flag)", "not a number"}},
		{"NaN float", []string{"--send-rate", "NaN"}, nil, "", []string{"--send-rate (flag)", "not a number"}},
		{"bad duration", nil, map[string]string{"EDGENODE_RETENTION": "30d"}, "", []string{"--retention (env EDGENODE_RETENTION)", `"30d" is not a duration`}},
		{"duration without unit", []string{"--ping-interval", "25"}, nil, "", []string{"--ping-interval (flag)", "not a duration"}},
		{"bad level", []string{"--log-level", "verbose"}, nil, "", []string{"--log-level (flag)", "debug, info, warn, error"}},
		{"bad format", nil, nil, "log-format: xml\n", []string{"--log-format (", ":1)", "text, json"}},
		{"bad preview", []string{"--push-preview", "some"}, nil, "", []string{"--push-preview (flag)", "full, fixed, none"}},
		{"bad presence", []string{"--presence", "friends"}, nil, "", []string{"--presence (flag)", "contacts, everyone"}},
		{"all bad values reported", []string{"--shards", "x", "--send-burst", "y"}, nil, "", []string{"--shards", "--send-burst"}},

		// Validation names the source too.
		{"tls cert without key", []string{"--tls-cert", "c.pem"}, nil, "", []string{"--tls-cert (flag)", "without --tls-key"}},
		{"tls key without cert", nil, map[string]string{"EDGENODE_TLS_KEY": "k.pem"}, "", []string{"--tls-key (env EDGENODE_TLS_KEY)", "without --tls-cert"}},
		{"short cluster secret", nil, map[string]string{"EDGENODE_CLUSTER_SECRET": "short"}, "", []string{"--cluster-secret (env EDGENODE_CLUSTER_SECRET)", "is 5 bytes", "at least 32"}},
		{"short cluster secret in file", nil, nil, "cluster-secret: \"" + secret32[:31] + "\"\n", []string{"--cluster-secret (", ":1)", "31 bytes"}},
		{"short jwt secret", []string{"--jwt-secret", "secret"}, nil, "", []string{"--jwt-secret (flag)", "6 bytes"}},
		{"secret not echoed", []string{"--jwt-secret", "hunter2"}, nil, "", []string{"7 bytes"}},
		{"shards negative", []string{"--shards", "-1"}, nil, "", []string{"--shards (flag)", "between 0"}},
		{"shards too many", []string{"--shards", "5000"}, nil, "", []string{"--shards", "256"}},
		{"bootstrap-expect 0", []string{"--bootstrap-expect", "0"}, nil, "", []string{"--bootstrap-expect (flag)"}},
		{"zero ping", []string{"--ping-interval", "0s"}, nil, "", []string{"--ping-interval (flag)", "not positive"}},
		{"ping too short", []string{"--ping-interval", "1ms"}, nil, "", []string{"--ping-interval (flag)", "below 100ms"}},
		{"negative retention", []string{"--retention", "-1h"}, nil, "", []string{"--retention"}},
		{"zero idempotency", []string{"--idempotency-window", "0"}, nil, "", []string{"--idempotency-window"}},
		{"zero write timeout", []string{"--write-timeout", "0"}, nil, "", []string{"--write-timeout"}},
		{"zero send rate", []string{"--send-rate", "0"}, nil, "", []string{"--send-rate"}},
		{"zero burst", []string{"--send-burst", "0"}, nil, "", []string{"--send-burst"}},
		{"zero connections", []string{"--max-connections-per-user", "0"}, nil, "", []string{"--max-connections-per-user"}},
		{"zero queue", []string{"--max-queue-depth", "0"}, nil, "", []string{"--max-queue-depth"}},
		{"debug-addr on every interface", []string{"--debug-addr", ":6060"}, nil, "", []string{"--debug-addr (flag)", "not a loopback address"}},
		{"debug-addr public", []string{"--debug-addr", "0.0.0.0:6060"}, nil, "", []string{"--debug-addr (flag)", "not a loopback address"}},
		{"debug-addr private", nil, map[string]string{"EDGENODE_DEBUG_ADDR": "10.0.0.5:6060"}, "", []string{"--debug-addr (env EDGENODE_DEBUG_ADDR)", "not a loopback address"}},
		{"negative connection cap", []string{"--max-connections", "-1"}, nil, "", []string{"--max-connections"}},
		{"negative per-IP cap", []string{"--max-connections-per-ip", "-1"}, nil, "", []string{"--max-connections-per-ip"}},
		{"zero unacked", []string{"--max-unacked", "0"}, nil, "", []string{"--max-unacked"}},
		{"content too large", []string{"--max-content-bytes", "100000"}, nil, "", []string{"--max-content-bytes", "32768"}},
		{"content zero", []string{"--max-content-bytes", "0"}, nil, "", []string{"--max-content-bytes"}},
		{"negative gomaxprocs", []string{"--gomaxprocs", "-2"}, nil, "", []string{"--gomaxprocs"}},
		{"http addr without port", []string{"--http-addr", "localhost"}, nil, "", []string{"--http-addr (flag)", "host:port"}},
		{"http addr bad port", []string{"--http-addr", ":http"}, nil, "", []string{"--http-addr", "port number"}},
		{"empty http addr", []string{"--http-addr="}, nil, "", []string{"--http-addr", "empty"}},
		{"gossip and cluster on one port", []string{"--gossip-addr", ":7000", "--cluster-addr", ":7000"}, nil, "", []string{"--cluster-addr", "different ports"}},
		{"bad advertise", []string{"--advertise-addr", "http://x"}, nil, "", []string{"--advertise-addr"}},
		{"bad public url", []string{"--public-url", "chat.example"}, nil, "", []string{"--public-url", "https://"}},
		{"bad node id", []string{"--node-id", "node 1"}, nil, "", []string{"--node-id"}},
		{"empty region", []string{"--region", ""}, nil, "", []string{"--region"}},
		{"empty data dir", nil, nil, "data-dir: \"\"\n", []string{"--data-dir", "empty"}},
		{"bad join", []string{"--join", "a b"}, nil, "", []string{"--join", `"a b"`}},
		{"origin with path", []string{"--allowed-origins", "https://app.example/"}, nil, "", []string{"--allowed-origins", "trailing slash"}},
		{"origin without scheme", []string{"--allowed-origins", "app.example"}, nil, "", []string{"--allowed-origins"}},
		{"apns partial", []string{"--apns-key-file", "k.p8"}, nil, "", []string{"--apns-key-id", "--apns-team-id"}},
		{"apns url with path", []string{"--apns-url", "https://api.push.apple.com/3/device"}, nil, "", []string{"--apns-url", "path"}},
		{"apns sandbox url", []string{"--apns-sandbox-url", "ftp://sandbox"}, nil, "", []string{"--apns-sandbox-url", "http"}},
		{"push debounce zero", []string{"--push-debounce", "0s"}, nil, "", []string{"--push-debounce", "not positive"}},
		{"push ack timeout negative", []string{"--push-ack-timeout", "-1s"}, nil, "", []string{"--push-ack-timeout", "not positive"}},
		{"fcm url not http", []string{"--fcm-url", "ftp://fcm"}, nil, "", []string{"--fcm-url"}},

		// Config file syntax, with file and line.
		{"unknown key", nil, nil, "region: r\nhttp-port: 80\n", []string{"edgenode.yaml:2", `unknown setting "http-port"`}},
		{"underscore key", nil, nil, "http_addr: :80\n", []string{":1", `did you mean "http-addr"`}},
		{"dashed key", nil, nil, "--http-addr: :80\n", []string{":1", "without leading dashes"}},
		{"duplicate key", nil, nil, "region: a\n\nregion: b\n", []string{":3", "already set on line 1"}},
		{"no separator", nil, nil, "region eu\n", []string{":1", "expected name: value"}},
		{"indented", nil, nil, "push:\n  apns-url: x\n", []string{":1", `unknown setting "push"`}},
		{"nested", nil, nil, "region: a\n  data-dir: x\n", []string{":2", "indented"}},
		{"unterminated quote", nil, nil, "region: \"eu\n", []string{":1", "unterminated double quote"}},
		{"unterminated single quote", nil, nil, "region: 'eu\n", []string{":1", "unterminated single quote"}},
		{"junk after quote", nil, nil, "region: \"eu\" west\n", []string{":1", "after the quoted value"}},
		{"bad escape", nil, nil, "region: \"e\\qu\"\n", []string{":1", "bad quoted value"}},
		{"block scalar", nil, nil, "jwt-secret: |\n  abc\n", []string{":1", "block scalars"}},
		{"config in file", nil, nil, "config: other.yaml\n", []string{":1", "config cannot be set inside"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := load(t, tt.args, tt.env, tt.file)
			if err == nil {
				t.Fatalf("Load succeeded: %v", c)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), secret32) {
				t.Errorf("error %q shows a secret", err)
			}
		})
	}
}

func TestListFlagsAccumulate(t *testing.T) {
	c, err := load(t, []string{"--join", "a:1", "--join=b:2,c:3", "--region", "r1", "--region", "r2"}, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a:1", "b:2", "c:3"}; !reflect.DeepEqual(c.Join, want) {
		t.Errorf("Join = %q, want %q", c.Join, want)
	}
	if c.Region != "r2" {
		t.Errorf("Region = %q, want the last flag r2", c.Region)
	}
}

func TestHelp(t *testing.T) {
	for _, arg := range []string{"-h", "--help", "-help"} {
		if _, err := Load([]string{arg}, nil); !errors.Is(err, flag.ErrHelp) {
			t.Errorf("Load(%s) = %v, want flag.ErrHelp", arg, err)
		}
	}
}

func TestValidateHandBuilt(t *testing.T) {
	c := Defaults()
	c.JWTSecret = secret32
	c.TLSCert = "cert.pem"
	c.ClusterSecret = "short"
	c.LogLevel = slog.Level(3)
	c.LogFormat = "xml"
	c.PushPreview = ""
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate = nil")
	}
	for _, w := range []string{"--tls-cert", "--cluster-secret", "--log-level", "--log-format", "--push-preview"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not name %s", err, w)
		}
	}
}

func TestCheckFiles(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(good, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := Defaults()
	c.JWTSecret = secret32
	c.PushCAFile = good
	if err := c.CheckFiles(); err != nil {
		t.Fatalf("CheckFiles with a readable file: %v", err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate with a readable file: %v", err)
	}
	c.PushCAFile = filepath.Join(dir, "missing.pem") // checked even with no push provider set
	c.TLSCert, c.TLSKey = dir, good                  // a directory is not a certificate
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate = nil with a missing push CA and a directory as certificate")
	}
	for _, w := range []string{"--push-ca-file", "missing.pem", "--tls-cert", "not a regular file"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %s", err, w)
		}
	}
}

func TestUsage(t *testing.T) {
	var b strings.Builder
	Usage(&b)
	out := b.String()
	for _, o := range options {
		flag := "--" + o.name + " "
		if o.flag {
			flag = "--" + o.name + "\n"
		}
		for _, w := range []string{flag, EnvName(o.name), o.help} {
			if !strings.Contains(out, w) {
				t.Errorf("Usage lacks %q", w)
			}
		}
	}
	for _, w := range []string{`default "127.0.0.1:8080"`, "default false", "default 25s", "default 720h\n", "default 24h\n", "default info", `default "https://api.push.apple.com"`} {
		if !strings.Contains(out, w) {
			t.Errorf("Usage lacks %q", w)
		}
	}
}

func TestEnvName(t *testing.T) {
	for flag, env := range map[string]string{
		"jwt-secret": "EDGENODE_JWT_SECRET", "max-connections-per-user": "EDGENODE_MAX_CONNECTIONS_PER_USER",
		"gomaxprocs": "EDGENODE_GOMAXPROCS", "config": "EDGENODE_CONFIG",
	} {
		if got := EnvName(flag); got != env {
			t.Errorf("EnvName(%s) = %s, want %s", flag, got, env)
		}
	}
}

func TestStringRedactsSecrets(t *testing.T) {
	c := Defaults()
	c.JWTSecret = "jwt-" + secret32
	c.ClusterSecret = "cluster-" + secret32
	for _, s := range []string{c.String(), fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c), c.LogValue().String()} {
		if strings.Contains(s, secret32) {
			t.Fatalf("secret shown: %s", s)
		}
		if !strings.Contains(s, "jwt-secret=[redacted]") || !strings.Contains(s, "http-addr=") {
			t.Fatalf("unexpected rendering: %s", s)
		}
	}
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("start", "config", c)
	if strings.Contains(b.String(), secret32) || !strings.Contains(b.String(), "config.jwt-secret=[redacted]") {
		t.Fatalf("slog output: %s", b.String())
	}
}

func TestDebugAddrOnLoopback(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:6060", "[::1]:6060", "localhost:6060", "127.0.0.1:0"} {
		c, err := Load([]string{"--debug-addr", addr}, nil)
		if err != nil || c.DebugAddr != addr {
			t.Errorf("--debug-addr %s: %v", addr, err)
		}
	}
}

func TestSecretFlags(t *testing.T) {
	got := SecretFlags([]string{"--region", "eu", "--cluster-secret", "x", "--jwt-secret=y", "--send-rate", "3"})
	if len(got) != 2 || got[0] != "--cluster-secret" || got[1] != "--jwt-secret" {
		t.Fatalf("SecretFlags = %q", got)
	}
	if got := SecretFlags([]string{"--region", "eu"}); len(got) != 0 {
		t.Fatalf("SecretFlags without secrets = %q", got)
	}
}

// The operator listener defaults to loopback beside the client port,
// whatever host the client port serves; --admin-addr overrides it.
func TestOperatorAddr(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "127.0.0.1:8081"},
		{[]string{"--http-addr", ":9000", "--dev"}, "127.0.0.1:9001"},
		{[]string{"--http-addr", "127.0.0.1:0"}, "127.0.0.1:0"},
		{[]string{"--admin-addr", "10.0.0.5:7000"}, "10.0.0.5:7000"},
	} {
		cfg, err := Load(c.args, nil)
		if err != nil {
			t.Fatalf("%q: %v", c.args, err)
		}
		if got := cfg.OperatorAddr(); got != c.want {
			t.Errorf("%q: OperatorAddr() = %q, want %q", c.args, got, c.want)
		}
	}
	for _, args := range [][]string{
		{"--http-addr", "127.0.0.1:65535"},
		{"--admin-addr", "nope"},
		{"--admin-addr", "127.0.0.1:8080"}, // the client port
	} {
		if _, err := Load(args, nil); err == nil || !strings.Contains(err.Error(), "admin-addr") {
			t.Errorf("%q: %v, want an error naming admin-addr", args, err)
		}
	}
}
