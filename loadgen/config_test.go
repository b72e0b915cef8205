package loadgen

import (
	"strings"
	"testing"
	"time"
)

func validConfig() Config {
	c := DefaultConfig()
	c.JWTSecret = "0123456789abcdef0123456789abcdef"
	return c
}

func TestValidateAcceptsDefaults(t *testing.T) {
	c := validConfig()
	if err := c.Validate(20000); err != nil {
		t.Fatal(err)
	}
}

func TestValidateRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no secret", func(c *Config) { c.JWTSecret = "" }, "--jwt-secret"},
		{"no targets", func(c *Config) { c.Targets = nil }, "--targets"},
		{"bad scheme", func(c *Config) { c.Targets = []string{"ftp://x:1"} }, "scheme"},
		{"path in target", func(c *Config) { c.Targets = []string{"http://x:1/v1"} }, "base URL"},
		{"zero users", func(c *Config) { c.Users = 0 }, "--users"},
		{"ids past 2^53", func(c *Config) { c.FirstUser = 1<<53 - 10 }, "--first-user"},
		{"negative rate", func(c *Config) { c.Rate = -1 }, "--rate"},
		{"closed loop without workers", func(c *Config) { c.Rate = 0; c.Concurrency = 0 }, "--concurrency"},
		{"size below nonce", func(c *Config) { c.Size = 15 }, "--size"},
		{"size too large", func(c *Config) { c.Size = 4097 }, "--size"},
		{"senders over users", func(c *Config) { c.Senders = "2001" }, "--senders"},
		{"senders fraction > 1", func(c *Config) { c.Senders = "1.5" }, "fraction"},
		{"senders garbage", func(c *Config) { c.Senders = "many" }, "--senders"},
		{"zero duration", func(c *Config) { c.Duration = 0 }, "--duration"},
		{"negative warmup", func(c *Config) { c.Warmup = Duration(-time.Second) }, "--warmup"},
		{"bad ack", func(c *Config) { c.Ack = "sometimes" }, "--ack"},
		{"interval without period", func(c *Config) { c.Ack = AckInterval; c.AckEvery = 0 }, "--ack-every"},
		{"too many procs", func(c *Config) { c.Procs = 300 }, "--procs"},
		{"procs over users", func(c *Config) { c.Users = 3; c.Procs = 4; c.Senders = "0" }, "--procs"},
		{"one user per proc with senders", func(c *Config) { c.Users = 4; c.Procs = 4 }, "at least 2 users"},
	} {
		c := validConfig()
		tc.mod(&c)
		err := c.Validate(20000)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to mention %q", tc.name, err, tc.want)
		}
	}
}

func TestValidateFileLimit(t *testing.T) {
	c := validConfig()
	c.Idle = true
	c.Users = 19000
	err := c.Validate(20000)
	if err != nil {
		t.Fatalf("19,000 idle sockets fit one process under 20,000 files: %v", err)
	}
	c.Idle = false
	c.MaxInflight = 1000
	err = c.Validate(20000)
	if err == nil || !strings.Contains(err.Error(), "use --procs 2") {
		t.Fatalf("19,000 sockets + 1,000 connections: err = %v, want a --procs 2 hint", err)
	}
	c.Procs = 2
	if err := c.Validate(20000); err != nil {
		t.Fatalf("with --procs 2: %v", err)
	}
	c.Users = 60000
	if err := c.Validate(20000); err == nil || !strings.Contains(err.Error(), "use --procs 4") {
		t.Fatalf("60,000 sockets: err = %v, want a --procs 4 hint", err)
	}
}

func TestSenderCount(t *testing.T) {
	for in, want := range map[string]int{"0.5": 1000, "50%": 1000, "1000": 1000, "1.0": 2000, "0": 0, "1": 1, "0.0005": 1, "1e-1": 200} {
		c := validConfig()
		c.Senders = in
		got, err := c.SenderCount()
		if err != nil || got != want {
			t.Errorf("--senders %s: %d, %v; want %d", in, got, err, want)
		}
	}
}

func TestSplitCoversEverything(t *testing.T) {
	c := validConfig()
	c.Users, c.Senders, c.Rate, c.MaxInflight, c.Concurrency, c.Procs = 2001, "1001", 5000, 999, 10, 3
	users, senders, inflight, conc := 0, 0, 0, 0
	rate := 0.0
	next := 0
	for i := 0; i < c.Procs; i++ {
		w := c.Split(i, 42)
		if w.UserOffset != next {
			t.Fatalf("worker %d starts at %d, want %d", i, w.UserOffset, next)
		}
		next += w.UserCount
		users += w.UserCount
		senders += w.SenderCount
		rate += w.WorkerRate
		inflight += w.WorkerCap
		conc += w.WorkerConc
		if w.SourceIP != []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}[i] {
			t.Fatalf("worker %d source %q", i, w.SourceIP)
		}
		if w.JWTSecret != c.JWTSecret || w.RunBase != 42 {
			t.Fatalf("worker %d lost the secret or run base", i)
		}
		if w.SenderCount > w.UserCount {
			t.Fatalf("worker %d: %d senders of %d users", i, w.SenderCount, w.UserCount)
		}
	}
	if users != 2001 || senders != 1001 || inflight != 999 || conc != 10 || rate < 4999.999 || rate > 5000.001 {
		t.Fatalf("split sums: users %d senders %d inflight %d conc %d rate %v", users, senders, inflight, conc, rate)
	}
	if w := c.Split(0, 1); c.Procs > 1 && w.SourceIP == "" {
		t.Fatal("no source address with several processes")
	}
	c.Procs = 1
	if w := c.Split(0, 1); w.SourceIP != "" {
		t.Fatalf("single process binds %q", w.SourceIP)
	}
}

func TestParseTarget(t *testing.T) {
	tg, err := ParseTarget("http://127.0.0.1:18080/")
	if err != nil || tg.Base != "http://127.0.0.1:18080" || tg.WS != "ws://127.0.0.1:18080/v1/socket/updates" || !tg.Loopback {
		t.Fatalf("%+v %v", tg, err)
	}
	tg, err = ParseTarget("https://edge.example.com")
	if err != nil || tg.WS != "wss://edge.example.com/v1/socket/updates" || tg.Loopback {
		t.Fatalf("%+v %v", tg, err)
	}
}
