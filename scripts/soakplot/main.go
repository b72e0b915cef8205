// Command soakplot draws a soak run (scripts/soak.sh) as one SVG, and
// samples the nodes while the run goes on. It uses the standard library
// only.
//
// Plot a soak CSV (one row per node per interval) as small-multiple panels
// that share the minute axis: memory (RSS and Go heap), disk (data dir and
// newest raft snapshots), queued messages, every kind of state entry,
// accepted sends per second, errors and send→deliver latency (log scale).
// With several nodes each panel has one line per node; the load
// generator's columns (sends/s, latency, errors) are the same on every
// node's row and are drawn once.
//
//	go run ./scripts/soakplot -in docs/soak/one-node.csv -out docs/soak/one-node.svg -title "one node"
//
// Sample nodes (what scripts/soak.sh runs next to edgeload): follow
// edgeload's --report-file and, as each interval's line appears, read every
// node's VmRSS, its /metrics (go_memstats_heap_inuse_bytes; the live heap
// after the last GC, go_memstats_next_gc_bytes / (1 + go_gc_gogc_percent/100);
// every
// edgenode_state_entries{kind} series, edgenode_queued_messages), the size
// of its data dir and of its newest raft snapshot per shard, and rewrite the
// CSV. SIGTERM or SIGINT ends it after the lines already written.
//
//	soakplot sample -report run.jsonl -out docs/soak/one-node.csv \
//	    -node n1,PID,http://127.0.0.1:19800,/tmp/data/n1 [-node ...]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "sample" {
		return runSample(args[1:], stderr)
	}
	fs := flag.NewFlagSet("soakplot", flag.ContinueOnError)
	fs.SetOutput(stderr)
	in := fs.String("in", "", "soak CSV to plot")
	out := fs.String("out", "", "SVG to write (default: -in with .svg)")
	title := fs.String("title", "", "title of the figure (default: the CSV's name)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: soakplot -in FILE.csv [-out FILE.svg] [-title TEXT]\n       soakplot sample -report FILE.jsonl -out FILE.csv -node NAME,PID,URL,DATADIR [-node ...]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if *in == "" || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	if *out == "" {
		*out = trimExt(*in) + ".svg"
	}
	if *title == "" {
		*title = *in
	}
	if err := plotFile(*in, *out, *title); err != nil {
		fmt.Fprintln(stderr, "soakplot:", err)
		return 1
	}
	fmt.Fprintf(stdout, "soakplot: wrote %s\n", *out)
	return 0
}

func runSample(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("soakplot sample", flag.ContinueOnError)
	fs.SetOutput(stderr)
	report := fs.String("report", "", "edgeload's --report-file to follow")
	out := fs.String("out", "", "CSV to (re)write after every interval")
	var nodes []nodeSpec
	fs.Func("node", "NAME,PID,URL,DATADIR of a node to sample (repeat for each node)", func(s string) error {
		n, err := parseNodeSpec(s)
		if err == nil {
			nodes = append(nodes, n)
		}
		return err
	})
	poll := fs.Duration("poll", pollEvery, "how often the report file is read")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if *report == "" || *out == "" || len(nodes) == 0 || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "soakplot sample: -report, -out and at least one -node are required")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s := newSampler(nodes, *out, stderr)
	if err := s.follow(ctx, *report, *poll); err != nil {
		fmt.Fprintln(stderr, "soakplot sample:", err)
		return 1
	}
	return 0
}

func trimExt(p string) string {
	for i := len(p) - 1; i >= 0 && p[i] != '/'; i-- {
		if p[i] == '.' {
			return p[:i]
		}
	}
	return p
}
