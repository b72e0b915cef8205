package main

import (
	"encoding/csv"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// The soak CSV: one row per node per interval. State entry kinds are
// columns "state_<kind>", whatever kinds the nodes export; extras follow
// the fixed columns.
var (
	headColumns = []string{"minute", "node", "rss_bytes", "heap_inuse_bytes"}
	tailColumns = []string{"queued", "data_dir_bytes", "snapshot_bytes", "sends_per_s", "p50_ms", "p99_ms", "max_ms", "errors",
		"time", "attempted_per_s", "delivered_per_s", "ready_sockets", "error_kinds", "snapshots", "heap_live_bytes"}
)

const statePrefix = "state_"

// header returns the CSV columns for the given state kinds.
func header(kinds []string) []string {
	h := slices.Clone(headColumns)
	for _, k := range kinds {
		h = append(h, statePrefix+k)
	}
	return append(h, tailColumns...)
}

// table is a parsed soak CSV.
type table struct {
	header []string
	rows   [][]string
	col    map[string]int
}

func readTable(r io.Reader) (*table, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	recs, err := cr.ReadAll()
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("empty CSV")
	}
	t := &table{header: recs[0], rows: recs[1:], col: map[string]int{}}
	for i, h := range t.header {
		t.col[strings.TrimSpace(h)] = i
	}
	for _, c := range []string{"minute", "node"} {
		if _, ok := t.col[c]; !ok {
			return nil, fmt.Errorf("CSV has no %q column", c)
		}
	}
	return t, nil
}

func (t *table) has(col string) bool {
	_, ok := t.col[col]
	return ok
}

// str returns a cell ("" when the row is short or the column absent).
func (t *table) str(row int, col string) string {
	i, ok := t.col[col]
	if !ok || i >= len(t.rows[row]) {
		return ""
	}
	return strings.TrimSpace(t.rows[row][i])
}

// num returns a numeric cell; false when it is empty or not a number.
func (t *table) num(row int, col string) (float64, bool) {
	s := t.str(row, col)
	if s == "" {
		return 0, false
	}
	v, err := strconv.ParseFloat(s, 64)
	return v, err == nil
}

// nodes are the node names in order of first appearance.
func (t *table) nodes() []string {
	var out []string
	for i := range t.rows {
		if n := t.str(i, "node"); !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// stateKinds are the kinds of the state_ columns, in column order.
func (t *table) stateKinds() []string {
	var out []string
	for _, h := range t.header {
		if k, ok := strings.CutPrefix(strings.TrimSpace(h), statePrefix); ok {
			out = append(out, k)
		}
	}
	return out
}
