package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

const pollEvery = 200 * time.Millisecond

// nodeSpec is one node to sample.
type nodeSpec struct {
	name string
	pid  int
	url  string // base URL of its HTTP listener (/metrics)
	dir  string // its --data-dir
}

func parseNodeSpec(s string) (nodeSpec, error) {
	f := strings.Split(s, ",")
	if len(f) != 4 {
		return nodeSpec{}, fmt.Errorf("-node %q: want NAME,PID,URL,DATADIR", s)
	}
	pid, err := strconv.Atoi(f[1])
	if err != nil || pid <= 0 || f[0] == "" || f[2] == "" || f[3] == "" {
		return nodeSpec{}, fmt.Errorf("-node %q: want NAME,PID,URL,DATADIR", s)
	}
	return nodeSpec{name: f[0], pid: pid, url: strings.TrimRight(f[2], "/"), dir: f[3]}, nil
}

// intervalLine is what the sampler reads of an edgeload --report-file line
// (loadgen.IntervalReport).
type intervalLine struct {
	Interval        int              `json:"interval"`
	Start           time.Time        `json:"start"`
	End             time.Time        `json:"end"`
	Seconds         float64          `json:"seconds"`
	Attempted       int64            `json:"attempted"`
	ErrorCount      int64            `json:"errorCount"`
	Errors          map[string]int64 `json:"errors"`
	AcceptedPerSec  float64          `json:"acceptedPerSec"`
	DeliveredPerSec float64          `json:"deliveredPerSec"`
	Deliver         struct {
		Count int64   `json:"count"`
		P50   float64 `json:"p50Ms"`
		P99   float64 `json:"p99Ms"`
		Max   float64 `json:"maxMs"`
	} `json:"deliver"`
	ReadySockets int64 `json:"readySockets"`
	// Slowest are the interval's slowest deliveries (loadgen.SlowDelivery).
	Slowest []struct {
		Sent      time.Time `json:"sent"`
		LatencyMs float64   `json:"latencyMs"`
		To        int64     `json:"to"`
	} `json:"slowest"`
}

// nodeSample is what one node showed at the end of an interval; a value
// that could not be read is NaN.
type nodeSample struct {
	rss, heap, queued, dataDir, snapshot float64
	// heapLive is the live heap at the last GC: the GC's goal divided by
	// 1+GOGC/100. Heap in use depends on where in its cycle the GC is when
	// sampled; this does not.
	heapLive float64
	state    map[string]float64
	snaps    map[string]snapTimes // every complete raft snapshot by path
}

// snapTimes are when a raft snapshot started (its directory's name) and
// ended (its state.bin's modification time).
type snapTimes struct{ start, end time.Time }

type sampler struct {
	nodes  []nodeSpec
	out    string
	log    io.Writer
	client *http.Client

	start time.Time // of the first interval
	kinds map[string]bool
	rows  []map[string]string
	ivs   [][2]time.Time    // each interval's start and end; its rows are ivs index × len(nodes) + node
	seen  []map[string]bool // per node: snapshots already counted
	// For tracing slow deliveries: every snapshot seen (node, shard, start,
	// end) and every interval's slowest deliveries, written beside the CSV
	// as NAME-snapshots.csv and NAME-slow.csv.
	snapRows [][]string
	slowRows [][]string
}

func newSampler(nodes []nodeSpec, out string, log io.Writer) *sampler {
	s := &sampler{nodes: nodes, out: out, log: log, client: &http.Client{Timeout: 5 * time.Second}, kinds: map[string]bool{}}
	for range nodes {
		s.seen = append(s.seen, map[string]bool{})
	}
	return s
}

// follow reads the report file as it grows and samples the nodes for each
// new line, until ctx ends; then it takes the lines already written and
// returns.
func (s *sampler) follow(ctx context.Context, report string, poll time.Duration) error {
	var f *os.File
	var pending []byte
	buf := make([]byte, 64<<10)
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		last := ctx.Err() != nil
		if f == nil {
			var err error
			if f, err = os.Open(report); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		if f != nil {
			for {
				n, err := f.Read(buf)
				pending = append(pending, buf[:n]...)
				if n == 0 || err != nil {
					break
				}
			}
			for {
				i := bytes.IndexByte(pending, '\n')
				if i < 0 {
					break
				}
				line := bytes.TrimSpace(pending[:i])
				pending = pending[i+1:]
				if len(line) == 0 {
					continue
				}
				var l intervalLine
				if err := json.Unmarshal(line, &l); err != nil {
					fmt.Fprintf(s.log, "soakplot sample: skipping a bad report line: %v\n", err)
					continue
				}
				if err := s.add(l, s.sampleAll()); err != nil {
					return err
				}
			}
		}
		if last {
			if f != nil {
				f.Close()
			}
			return nil
		}
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
}

func (s *sampler) sampleAll() []nodeSample {
	out := make([]nodeSample, len(s.nodes))
	for i, n := range s.nodes {
		out[i] = s.sample(n)
	}
	return out
}

// sample reads one node; what cannot be read is NaN (an empty cell).
func (s *sampler) sample(n nodeSpec) nodeSample {
	nan := math.NaN()
	ns := nodeSample{rss: nan, heap: nan, heapLive: nan, queued: nan, dataDir: nan, snapshot: nan, state: map[string]float64{}}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", n.pid)); err == nil {
		if kib, ok := vmRSS(b); ok {
			ns.rss = kib * 1024
		}
	}
	if resp, err := s.client.Get(n.url + "/metrics"); err == nil {
		if resp.StatusCode == http.StatusOK {
			m := parseMetrics(resp.Body)
			if v, ok := m.sum("go_memstats_heap_inuse_bytes"); ok {
				ns.heap = v
			}
			if goal, ok := m.sum("go_memstats_next_gc_bytes"); ok {
				gogc, ok := m.sum("go_gc_gogc_percent")
				if !ok || gogc <= 0 {
					gogc = 100
				}
				ns.heapLive = goal / (1 + gogc/100)
			}
			if v, ok := m.sum("edgenode_queued_messages"); ok {
				ns.queued = v
			}
			ns.state = m.byLabel("edgenode_state_entries", "kind")
		}
		resp.Body.Close()
	}
	if v, err := dirBytes(n.dir); err == nil {
		ns.dataDir = float64(v)
	}
	if v, snaps, err := snapshotFiles(n.dir); err == nil {
		ns.snapshot = float64(v)
		ns.snaps = snaps
	}
	return ns
}

// add records one interval (a row per node) and rewrites the CSV.
func (s *sampler) add(l intervalLine, samples []nodeSample) error {
	if s.start.IsZero() {
		s.start = l.Start
	}
	minute := math.Round(l.End.Sub(s.start).Minutes()*1000) / 1000
	num := func(v float64) string {
		if math.IsNaN(v) {
			return ""
		}
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	ms := func(v float64) string { return strconv.FormatFloat(math.Round(v*1000)/1000, 'f', -1, 64) }
	lat := func(v float64) string {
		if l.Deliver.Count == 0 {
			return ""
		}
		return ms(v)
	}
	var kinds []string
	for _, k := range slices.Sorted(maps.Keys(l.Errors)) {
		kinds = append(kinds, fmt.Sprintf("%s=%d", k, l.Errors[k]))
	}
	for i, n := range s.nodes {
		ns := samples[i]
		row := map[string]string{
			"minute": strconv.FormatFloat(minute, 'f', -1, 64), "node": n.name,
			"rss_bytes": num(ns.rss), "heap_inuse_bytes": num(ns.heap), "queued": num(ns.queued),
			"data_dir_bytes": num(ns.dataDir), "snapshot_bytes": num(ns.snapshot),
			"sends_per_s": ms(l.AcceptedPerSec), "p50_ms": lat(l.Deliver.P50), "p99_ms": lat(l.Deliver.P99), "max_ms": lat(l.Deliver.Max),
			"errors": strconv.FormatInt(l.ErrorCount, 10), "time": l.End.UTC().Format(time.RFC3339),
			"attempted_per_s": ms(float64(l.Attempted) / max(l.Seconds, 1e-9)), "delivered_per_s": ms(l.DeliveredPerSec),
			"ready_sockets": strconv.FormatInt(l.ReadySockets, 10), "error_kinds": strings.Join(kinds, " "),
			"snapshots": "0", "heap_live_bytes": num(ns.heapLive),
		}
		for k, v := range ns.state {
			s.kinds[k] = true
			row[statePrefix+k] = num(v)
		}
		s.rows = append(s.rows, row)
		if math.IsNaN(ns.snapshot) {
			row["snapshots"] = ""
		}
		fmt.Fprintf(s.log, "soak minute %s %s: RSS %s MiB, heap %s MiB, queued %s, data %s MiB, snapshots %s MiB, state %s | %s sends/s, deliver p50 %s p99 %s max %s ms, %d errors\n",
			row["minute"], n.name, mibStr(ns.rss), mibStr(ns.heap), num(ns.queued), mibStr(ns.dataDir), mibStr(ns.snapshot), stateStr(ns.state),
			row["sends_per_s"], row["p50_ms"], row["p99_ms"], row["max_ms"], l.ErrorCount)
	}
	s.ivs = append(s.ivs, [2]time.Time{l.Start, l.End})
	for _, d := range l.Slowest {
		s.slowRows = append(s.slowRows, []string{strconv.Itoa(l.Interval), d.Sent.UTC().Format(time.RFC3339Nano),
			strconv.FormatFloat(d.LatencyMs, 'f', -1, 64), strconv.FormatInt(d.To, 10)})
	}
	for i := range s.nodes {
		s.countSnapshots(i, samples[i].snaps)
	}
	if err := s.write(); err != nil {
		return err
	}
	base := strings.TrimSuffix(s.out, ".csv")
	if err := writeTable(base+"-snapshots.csv", []string{"node", "shard", "start", "end"}, s.snapRows); err != nil {
		return err
	}
	return writeTable(base+"-slow.csv", []string{"minute", "sent", "latency_ms", "to"}, s.slowRows)
}

// writeTable replaces path with a CSV of header and rows.
func writeTable(path string, header []string, rows [][]string) error {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	_ = w.Write(header)
	_ = w.WriteAll(rows)
	if err := w.Error(); err != nil {
		return err
	}
	if err := os.WriteFile(path+".tmp", b.Bytes(), 0o644); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}

// countSnapshots adds each snapshot of node i not counted yet to the
// "snapshots" column of the interval in which it started (it may have
// finished after that interval's sample, so an earlier row can change).
// Snapshots started before the first interval (warm-up) are not counted;
// one started after the newest interval's end waits for the next.
func (s *sampler) countSnapshots(i int, snaps map[string]snapTimes) {
	last := s.ivs[len(s.ivs)-1][1]
	for _, path := range slices.Sorted(maps.Keys(snaps)) {
		at := snaps[path].start
		if s.seen[i][path] || !at.Before(last) {
			continue
		}
		s.seen[i][path] = true
		s.snapRows = append(s.snapRows, []string{s.nodes[i].name, shardOf(path),
			at.UTC().Format(time.RFC3339Nano), snaps[path].end.UTC().Format(time.RFC3339Nano)})
		for k, iv := range s.ivs {
			if at.Before(iv[0]) || !at.Before(iv[1]) {
				continue
			}
			row := s.rows[k*len(s.nodes)+i]
			n, _ := strconv.Atoi(row["snapshots"])
			row["snapshots"] = strconv.Itoa(n + 1)
		}
	}
}

// shardOf is the shard of a snapshot directory
// (.../snapshots/shard-NNN/snapshots/ID), or "" if the path has none.
func shardOf(path string) string {
	for dir := filepath.Dir(path); dir != "." && dir != "/"; dir = filepath.Dir(dir) {
		if n, ok := strings.CutPrefix(filepath.Base(dir), "shard-"); ok {
			if v, err := strconv.Atoi(n); err == nil {
				return strconv.Itoa(v)
			}
		}
	}
	return ""
}

func mibStr(v float64) string {
	if math.IsNaN(v) {
		return "?"
	}
	return strconv.FormatFloat(math.Round(v/(1<<20)*10)/10, 'f', -1, 64)
}

func stateStr(m map[string]float64) string {
	if len(m) == 0 {
		return "-"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%.0f", k, m[k]))
	}
	return strings.Join(parts, " ")
}

// write rewrites the whole CSV (the state columns are the union of the
// kinds seen so far), atomically.
func (s *sampler) write() error {
	h := header(slices.Sorted(maps.Keys(s.kinds)))
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	_ = w.Write(h)
	rec := make([]string, len(h))
	for _, r := range s.rows {
		for i, c := range h {
			rec[i] = r[c]
		}
		_ = w.Write(rec)
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return err
	}
	tmp := s.out + ".tmp"
	if err := os.WriteFile(tmp, b.Bytes(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, s.out)
}

func vmRSS(status []byte) (float64, bool) {
	for _, l := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				v, err := strconv.ParseFloat(f[0], 64)
				return v, err == nil
			}
		}
	}
	return 0, false
}

// metrics is a parsed Prometheus text exposition: name → series.
type metrics map[string][]metricSeries

type metricSeries struct {
	labels map[string]string
	value  float64
}

func parseMetrics(r io.Reader) metrics {
	m := metrics{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name, labels, rest := line, map[string]string{}, ""
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name = line[:i]
			rest = line[i:]
			if rest[0] == '{' {
				var ok bool
				if labels, rest, ok = parseLabels(rest[1:]); !ok {
					continue
				}
			}
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		m[name] = append(m[name], metricSeries{labels, v})
	}
	return m
}

// parseLabels reads `a="x",b="y"}` and returns the labels and what follows.
func parseLabels(s string) (map[string]string, string, bool) {
	out := map[string]string{}
	for {
		s = strings.TrimLeft(s, " ,")
		if strings.HasPrefix(s, "}") {
			return out, s[1:], true
		}
		eq := strings.IndexByte(s, '=')
		if eq <= 0 || eq+1 >= len(s) || s[eq+1] != '"' {
			return nil, "", false
		}
		name := strings.TrimSpace(s[:eq])
		var v strings.Builder
		i := eq + 2
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
				switch s[i] {
				case 'n':
					v.WriteByte('\n')
				default:
					v.WriteByte(s[i])
				}
				continue
			}
			v.WriteByte(s[i])
		}
		if i >= len(s) {
			return nil, "", false
		}
		out[name] = v.String()
		s = s[i+1:]
	}
}

// sum adds every series of a metric; false when there is none.
func (m metrics) sum(name string) (float64, bool) {
	ss, ok := m[name]
	var t float64
	for _, s := range ss {
		t += s.value
	}
	return t, ok && len(ss) > 0
}

// byLabel adds the series of a metric by the value of one label.
func (m metrics) byLabel(name, label string) map[string]float64 {
	out := map[string]float64{}
	for _, s := range m[name] {
		out[s.labels[label]] += s.value
	}
	return out
}

// dirBytes is the apparent size of everything under dir (du -sb); files
// that vanish while it walks are skipped.
func dirBytes(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p != dir {
				return nil
			}
			return err
		}
		if info, err := d.Info(); err == nil {
			n += info.Size()
		}
		return nil
	})
	return n, err
}

// snapshotFiles reads the raft snapshot stores under dir: hashicorp/raft's
// FileSnapshotStore keeps each snapshot in
// <store>/snapshots/<term>-<index>-<unix ms>/ with meta.json and state.bin
// (edgenode: <data-dir>/relaylog/snapshots/shard-NNN/snapshots/), and
// "<name>.tmp" while one is being written. It returns the sum of state.bin
// of the newest (highest term, then index) complete snapshot per store, and
// every complete snapshot with the time it started (the name's unix ms) and
// ended (state.bin's modification time).
func snapshotFiles(dir string) (int64, map[string]snapTimes, error) {
	all := map[string]snapTimes{}
	type snap struct {
		term, index, ms uint64
		size            int64
	}
	newest := map[string]snap{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p != dir {
				return nil
			}
			return err
		}
		if d.IsDir() || d.Name() != "state.bin" {
			return nil
		}
		sdir := filepath.Dir(p)
		id := filepath.Base(sdir)
		if strings.HasSuffix(id, ".tmp") {
			return nil
		}
		f := strings.Split(id, "-")
		if len(f) != 3 {
			return nil
		}
		var v [3]uint64
		for i := range f {
			if v[i], err = strconv.ParseUint(f[i], 10, 64); err != nil {
				return nil
			}
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		s := snap{v[0], v[1], v[2], info.Size()}
		all[sdir] = snapTimes{start: time.UnixMilli(int64(v[2])), end: info.ModTime()}
		store := filepath.Dir(sdir)
		if o, ok := newest[store]; !ok || s.term > o.term || (s.term == o.term && (s.index > o.index || (s.index == o.index && s.ms > o.ms))) {
			newest[store] = s
		}
		return nil
	})
	var n int64
	for _, s := range newest {
		n += s.size
	}
	return n, all, err
}
