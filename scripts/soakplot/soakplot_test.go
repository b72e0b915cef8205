package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// svgTexts parses an SVG (failing on malformed XML) and returns the text
// of its <text> elements by class ("" for unclassed ones), and how many
// elements of each name it has.
func svgTexts(t *testing.T, svg []byte) (map[string][]string, map[string]int) {
	t.Helper()
	texts, elems := map[string][]string{}, map[string]int{}
	d := xml.NewDecoder(bytes.NewReader(svg))
	var class string
	var in bool
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("the SVG is not well-formed XML: %v", err)
		}
		switch e := tok.(type) {
		case xml.StartElement:
			elems[e.Name.Local]++
			if e.Name.Local == "text" {
				in, class = true, ""
				for _, a := range e.Attr {
					if a.Name.Local == "class" {
						class = a.Value
					}
				}
			}
		case xml.EndElement:
			in = false
		case xml.CharData:
			if in {
				texts[class] = append(texts[class], string(e))
			}
		}
	}
	return texts, elems
}

func writeCSV(t *testing.T, lines ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "soak.csv")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPlotDrawsEveryPanel(t *testing.T) {
	lines := []string{strings.Join(header([]string{"queues", "senders"}), ",")}
	for m := 1; m <= 4; m++ {
		for _, n := range []string{"n1", "n2", "n3"} {
			rss := fmt.Sprint(100<<20 + m<<20)
			if n == "n2" && m == 3 {
				rss = "" // the node could not be read: a gap in its line
			}
			// minute,node,rss,heap,state_queues,state_senders,queued,data,snap,sends/s,p50,p99,max,errors,time,attempted/s,delivered/s,ready,error_kinds
			lines = append(lines, fmt.Sprintf("%d,%s,%s,%d,%d,%d,%d,%d,%d,1998.5,4.%d,80,%d,%d,2026-01-01T00:0%d:00Z,2000,1998,10000,http_503_unavailable=%d",
				m, n, rss, 50<<20, 100*m, 200*m, 3, m*(10<<20), 1<<20, m, 100*m, m, m, m))
		}
	}
	in := writeCSV(t, lines...)
	out := filepath.Join(t.TempDir(), "soak.svg")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-in", in, "-out", out, "-title", "soak <three nodes> & more"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	svg, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	texts, elems := svgTexts(t, svg)
	want := []string{"Memory (MiB)", "Disk (MiB)", "State entries: queues", "State entries: senders", "Queued messages",
		"Accepted sends/s (201)", "Errors per interval", "Send→deliver latency (ms, log scale)"}
	if !slices.Equal(texts["panel-title"], want) {
		t.Fatalf("panels %q, want %q", texts["panel-title"], want)
	}
	if elems["g"] != len(want) || elems["polyline"] == 0 || elems["circle"] == 0 {
		t.Fatalf("elements %v", elems)
	}
	all := strings.Join(texts[""], "|")
	for _, s := range []string{"n1 RSS", "n3 Go heap in use", "n2 senders", "accepted/s", "p99", "minute", "soak <three nodes> & more"} {
		if !strings.Contains(all, s) {
			t.Errorf("no text %q in the SVG", s)
		}
	}
	// The load generator's columns are the same on every node's row: drawn once.
	if strings.Contains(all, "n1 p99") || strings.Contains(all, "n1 accepted/s") {
		t.Errorf("cluster-wide columns drawn per node: %s", all)
	}
	// n2's missing RSS at minute 3 splits its line in two.
	if !bytes.Contains(svg, []byte(`stroke="#d62728" stroke-width="1.6" points="`)) {
		t.Errorf("no line for n2")
	}
}

func TestPlotWithoutStateEntriesOrLatency(t *testing.T) {
	in := writeCSV(t,
		"minute,node,rss_bytes,heap_inuse_bytes,queued,data_dir_bytes,snapshot_bytes,sends_per_s,p50_ms,p99_ms,max_ms,errors",
		"0.5,n1,1000,500,0,10,0,0,,,,0",
		"1,n1,2000,600,0,20,0,0,,,,0",
	)
	out := filepath.Join(t.TempDir(), "x.svg")
	if err := plotFile(in, out, "idle"); err != nil {
		t.Fatal(err)
	}
	svg, _ := os.ReadFile(out)
	texts, _ := svgTexts(t, svg)
	if !slices.Contains(texts["panel-title"], "State entries") || !strings.Contains(strings.Join(texts[""], "|"), "no edgenode_state_entries series") {
		t.Fatalf("texts %q", texts)
	}
	if !strings.Contains(strings.Join(texts[""], "|"), "no values") {
		t.Fatalf("the empty latency panel has no note: %q", texts[""])
	}
}

func TestReadTableNeedsMinuteAndNode(t *testing.T) {
	if _, err := readTable(strings.NewReader("node,rss_bytes\nn1,1\n")); err == nil || !strings.Contains(err.Error(), "minute") {
		t.Fatalf("err %v", err)
	}
	tb, err := readTable(strings.NewReader("minute,node,state_b,state_a\n1,x,5\n"))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := tb.num(0, "state_b"); !ok || v != 5 {
		t.Fatalf("state_b %v %v", v, ok)
	}
	if _, ok := tb.num(0, "state_a"); ok { // short row
		t.Fatal("a missing cell has a value")
	}
	if k := tb.stateKinds(); !slices.Equal(k, []string{"b", "a"}) {
		t.Fatalf("kinds %q", k)
	}
}

func TestNiceTicks(t *testing.T) {
	for _, tc := range []struct {
		hi   float64
		want []float64
	}{
		{5, []float64{0, 2, 4, 6}},
		{4, []float64{0, 1, 2, 3, 4}},
		{1999, []float64{0, 500, 1000, 1500, 2000}},
		{0.33, []float64{0, 0.1, 0.2, 0.3, 0.4}},
	} {
		if got := niceTicks(0, tc.hi, 5); !slices.Equal(got, tc.want) {
			t.Errorf("niceTicks(0, %g) = %v, want %v", tc.hi, got, tc.want)
		}
	}
}

const fakeMetrics = `# HELP go_memstats_heap_inuse_bytes Number of heap bytes that are in use.
# TYPE go_memstats_heap_inuse_bytes gauge
go_memstats_heap_inuse_bytes 1.2345678e+07
go_memstats_next_gc_bytes 3e+07
go_gc_gogc_percent 50
# TYPE edgenode_state_entries gauge
edgenode_state_entries{kind="senders"} 10000
edgenode_state_entries{kind="idempotency_records",shard="1"} 70
edgenode_state_entries{kind="idempotency_records",shard="2"} 30
edgenode_state_entries{kind="read_marks",note="a \"quoted\", value"} 5
edgenode_queued_messages 42
`

func TestSamplerFollowsTheReport(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, fakeMetrics)
	}))
	defer srv.Close()
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()

	// A data dir laid out as hashicorp/raft's FileSnapshotStore leaves it.
	dir := t.TempDir()
	for path, size := range map[string]int{
		"relaylog/wal/0000000000000000.wal":                             1000,
		"relaylog/snapshots/shard-000/snapshots/2-10-100/state.bin":     100,
		"relaylog/snapshots/shard-000/snapshots/2-20-200/state.bin":     300,  // newest of shard 0
		"relaylog/snapshots/shard-000/snapshots/3-30-300.tmp/state.bin": 9999, // being written
		"relaylog/snapshots/shard-001/snapshots/1-7-1/state.bin":        50,
		"relaylog/snapshots/shard-001/snapshots/1-7-1/meta.json":        10,
		// Started in the first interval, in the second, after the last; empty.
		fmt.Sprintf("relaylog/snapshots/shard-002/snapshots/1-5-%d/state.bin", time.Date(2026, 1, 1, 0, 0, 30, 0, time.UTC).UnixMilli()): 0,
		fmt.Sprintf("relaylog/snapshots/shard-002/snapshots/1-6-%d/state.bin", time.Date(2026, 1, 1, 0, 1, 10, 0, time.UTC).UnixMilli()): 0,
		fmt.Sprintf("relaylog/snapshots/shard-002/snapshots/1-8-%d/state.bin", time.Date(2026, 1, 1, 0, 2, 30, 0, time.UTC).UnixMilli()): 0,
	} {
		p := filepath.Join(dir, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	report := filepath.Join(t.TempDir(), "run.jsonl")
	line := func(k int, errs string) string {
		return fmt.Sprintf(`{"interval":%d,"start":"2026-01-01T00:0%d:00Z","end":"2026-01-01T00:0%d:00Z","seconds":60,"attempted":120000,"accepted":119000,`+
			`"errorCount":2,"errors":%s,"delivered":118000,"acceptedPerSec":1983.333,"deliveredPerSec":1966.667,`+
			`"deliver":{"count":118000,"p50Ms":4.5,"p99Ms":91.25,"maxMs":812.5},"readySockets":10000,"workers":1,`+
			`"slowest":[{"sent":"2026-01-01T00:0%d:30Z","latencyMs":812.5,"to":42}]}`, k, k-1, k, errs, k-1)
	}
	os.WriteFile(report, []byte(line(1, `{"timeout":2}`)+"\n"+line(2, `{"http_503_unavailable":1,"overload":1}`)+"\n"+`{"interval":3,"sta`), 0o644)

	out := filepath.Join(t.TempDir(), "soak.csv")
	var log bytes.Buffer
	s := newSampler([]nodeSpec{
		{name: "n1", pid: os.Getpid(), url: srv.URL, dir: dir},
		{name: "n2", pid: 1 << 30, url: gone.URL, dir: filepath.Join(dir, "missing")},
	}, out, &log)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // takes what is written, then returns
	if err := s.follow(ctx, report, pollEvery); err != nil {
		t.Fatal(err)
	}
	tb, err := readTable(mustOpen(t, out))
	if err != nil {
		t.Fatal(err)
	}
	if k := tb.stateKinds(); !slices.Equal(k, []string{"idempotency_records", "read_marks", "senders"}) {
		t.Fatalf("state kinds %q", k)
	}
	if len(tb.rows) != 4 || tb.str(0, "node") != "n1" || tb.str(1, "node") != "n2" || tb.str(2, "minute") != "2" {
		t.Fatalf("rows %q", tb.rows)
	}
	for col, want := range map[string]string{
		"minute": "1", "heap_inuse_bytes": "12345678", "state_senders": "10000", "state_idempotency_records": "100",
		"state_read_marks": "5", "queued": "42", "snapshot_bytes": "350", "sends_per_s": "1983.333", "p50_ms": "4.5",
		"p99_ms": "91.25", "max_ms": "812.5", "errors": "2", "error_kinds": "timeout=2", "ready_sockets": "10000",
		"snapshots": "1", "heap_live_bytes": "20000000",
	} {
		if got := tb.str(0, col); got != want {
			t.Errorf("%s = %q, want %q", col, got, want)
		}
	}
	if v, ok := tb.num(0, "rss_bytes"); !ok || v < 1<<20 {
		t.Errorf("rss_bytes %q", tb.str(0, "rss_bytes"))
	}
	if v, ok := tb.num(0, "data_dir_bytes"); !ok || v < 1000+100+300+9999+50+10 {
		t.Errorf("data_dir_bytes %q", tb.str(0, "data_dir_bytes"))
	}
	// n2 could not be read: empty cells, the load generator's columns still there.
	for _, col := range []string{"rss_bytes", "heap_inuse_bytes", "queued", "data_dir_bytes", "state_senders"} {
		if tb.str(1, col) != "" {
			t.Errorf("n2 %s = %q, want empty", col, tb.str(1, col))
		}
	}
	// Beside the CSV: the slowest deliveries and every snapshot seen, for
	// tracing.
	slow, _ := os.ReadFile(strings.TrimSuffix(out, ".csv") + "-slow.csv")
	if want := "minute,sent,latency_ms,to\n1,2026-01-01T00:00:30Z,812.5,42\n2,2026-01-01T00:01:30Z,812.5,42\n"; string(slow) != want {
		t.Errorf("slow.csv:\n%s\nwant\n%s", slow, want)
	}
	snaps, _ := os.ReadFile(strings.TrimSuffix(out, ".csv") + "-snapshots.csv")
	if !strings.HasPrefix(string(snaps), "node,shard,start,end\n") || !strings.Contains(string(snaps), "\nn1,2,2026-01-01T00:00:30Z,") || !strings.Contains(string(snaps), "\nn1,2,2026-01-01T00:01:10Z,") {
		t.Errorf("snapshots.csv:\n%s", snaps)
	}
	// Each snapshot counts once, in the interval it started in.
	if tb.str(2, "snapshots") != "1" || tb.str(1, "snapshots") != "" || tb.str(3, "snapshots") != "" {
		t.Errorf("snapshots per row: %q %q %q", tb.str(1, "snapshots"), tb.str(2, "snapshots"), tb.str(3, "snapshots"))
	}
	if tb.str(3, "error_kinds") != "http_503_unavailable=1 overload=1" || tb.str(3, "p99_ms") != "91.25" {
		t.Errorf("row 4: %q", tb.rows[3])
	}
	if !strings.Contains(log.String(), "soak minute 2 n1: RSS") {
		t.Errorf("log: %s", log.String())
	}
}

func TestParseNodeSpec(t *testing.T) {
	n, err := parseNodeSpec("n1,123,http://127.0.0.1:19800/,/tmp/d")
	if err != nil || n != (nodeSpec{"n1", 123, "http://127.0.0.1:19800", "/tmp/d"}) {
		t.Fatalf("%+v %v", n, err)
	}
	for _, s := range []string{"n1,123,http://x", "n1,pid,http://x,/d", ",1,http://x,/d"} {
		if _, err := parseNodeSpec(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

func mustOpen(t *testing.T, p string) io.Reader {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.NewReader(b)
}
