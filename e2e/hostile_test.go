package e2e

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// startAlone starts one node, under wrap (a command such as prlimit), and
// stops it when the test ends.
func startAlone(t *testing.T, wrap []string, extra ...string) *proc {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a real edgenode process")
	}
	base := t.TempDir()
	p := newProc(t, base, "n1-eu", "eu")
	p.wrap, p.extra = wrap, extra
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("---- last lines of %s ----\n%s", p.name, p.tail(40))
		}
	})
	p.start()
	return p
}

// metricAt reads one sample of /metrics ("name{labels}" as printed).
func metricAt(t *testing.T, p *proc, series string) float64 {
	t.Helper()
	resp, err := httpShort.Get(p.url() + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no %s in /metrics", series)
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// TestProcessSilentBodies: a hostile client opens 3,000 connections from
// one address, each sending the headers of a POST with `Content-Length:
// 10` and then nothing, against a node whose file limit is 256 (the
// review's setting, where 300 of them starved /healthz before). The node
// holds a bounded number of them (its per-IP cap, derived from the file
// limit), answers the rest 503 at once, keeps answering /healthz from
// another address within 1 s all along, and closes the silent ones when
// their read timeout (30 s) passes.
func TestProcessSilentBodies(t *testing.T) {
	t.Parallel() // mostly waits for the read timeout
	if _, err := os.Stat("/usr/bin/prlimit"); err != nil {
		t.Skip("needs prlimit (util-linux) to give the node a low file limit")
	}
	p := startAlone(t, []string{"/usr/bin/prlimit", "--nofile=256:256", "--"})
	const perIP = 16 // a quarter of 64: the file limit minus the reserve of 256, at least 64
	if !strings.Contains(p.tail(400), `client connection limits" max_connections=64 max_connections_per_ip=16 file_limit=256`) {
		t.Fatalf("the node did not derive its limits from the file limit:\n%s", p.tail(20))
	}

	const attack = 3000
	req := []byte("POST /v1/messages HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n")
	type result struct {
		conn    net.Conn
		refused bool // answered 503 at once
	}
	results := make([]result, attack)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range results {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 5 * time.Second}
			c, err := d.Dial("tcp", p.httpAddr())
			if err != nil {
				return
			}
			results[i].conn = c
			if _, err := c.Write(req); err != nil {
				results[i].refused = true
				return
			}
			// A refused connection has its 503 waiting already.
			_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
				resp.Body.Close()
				results[i].refused = resp.StatusCode == http.StatusServiceUnavailable
			}
		}()
	}
	wg.Wait()
	start := time.Now()
	defer func() {
		for _, r := range results {
			if r.conn != nil {
				r.conn.Close()
			}
		}
	}()
	held, refused := 0, 0
	for _, r := range results {
		switch {
		case r.refused:
			refused++
		case r.conn != nil:
			held++
		}
	}
	t.Logf("%d silent connections: %d held by the node, %d refused at once", attack, held, refused)
	if held > perIP {
		t.Errorf("the node holds %d connections from one address, over its per-IP cap of %d", held, perIP)
	}

	// Health checks from another address answer within 1 s while the silent
	// connections are held.
	health := &http.Client{Timeout: time.Second}
	var worst time.Duration
	for i := range 10 {
		t0 := time.Now()
		resp, err := health.Get(p.url() + "/healthz")
		if err != nil {
			t.Fatalf("/healthz %d with %d silent connections held: %v", i, held, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("/healthz %d: %d", i, resp.StatusCode)
		}
		worst = max(worst, time.Since(t0))
	}
	t.Logf("/healthz: 10 of 10 answered 200, slowest %v", worst.Round(time.Microsecond))
	if got := metricAt(t, p, `edgenode_connections_refused_total{reason="per_ip"}`); got < float64(refused) {
		t.Errorf("edgenode_connections_refused_total{reason=\"per_ip\"} = %v, want at least %d", got, refused)
	}

	// The read timeout closes the held ones.
	closed := 0
	for _, r := range results {
		if r.refused || r.conn == nil {
			continue
		}
		_ = r.conn.SetReadDeadline(start.Add(45 * time.Second))
		_, err := io.Copy(io.Discard, r.conn)
		var ne net.Error
		if err == nil || !(errors.As(err, &ne) && ne.Timeout()) {
			closed++
		}
	}
	t.Logf("%d of %d held connections closed by the node %v after the attack", closed, held, time.Since(start).Round(time.Second))
	if closed != held {
		t.Fatalf("%d of %d silent connections still open 45 s after they went silent", held-closed, held)
	}
	if n := metricAt(t, p, "edgenode_connections_open"); n > 5 {
		t.Errorf("edgenode_connections_open = %v after the silent connections were closed", n)
	}
}

// TestProcessJunkGossipIsNotLogged: junk UDP packets to the gossip port
// (which the node cannot decrypt) used to log one ERROR line each. Now the
// first few of a kind are logged per minute and then one summary with the
// count of the rest.
func TestProcessJunkGossipIsNotLogged(t *testing.T) {
	t.Parallel() // mostly waits for the minute's summary
	p := startAlone(t, nil)
	c, err := net.Dial("udp", p.gossipAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const junk = 5000
	for i := range junk {
		if _, err := c.Write([]byte("junk packet, not memberlist " + strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	var summary string
	re := regexp.MustCompile(`level=ERROR msg="[^"]*\(repeated\)" component=memberlist suppressed=(\d+) window=1m0s`)
	took := waitFor(t, "the summary of the junk packets' errors", 150*time.Second, func() (bool, string) {
		m := re.FindStringSubmatch(p.tail(100000))
		if m == nil {
			return false, "no summary yet"
		}
		summary = m[0]
		n, _ := strconv.Atoi(m[1])
		return n >= junk/2, m[0]
	})
	logged := 0
	for line := range strings.SplitSeq(p.tail(100000), "\n") {
		if strings.Contains(line, "level=ERROR") && strings.Contains(line, "component=memberlist") && !strings.Contains(line, "(repeated)") {
			logged++
		}
	}
	t.Logf("%d junk packets: %d error lines and, %v later, %q", junk, logged, took.Round(time.Second), summary)
	if logged > 10 {
		t.Fatalf("%d error lines for %d junk packets, want at most 10 and a summary", logged, junk)
	}
}
