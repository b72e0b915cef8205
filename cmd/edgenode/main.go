// Command edgenode runs a node of the edgenode chat relay, and a few
// subcommands around it.
//
//	edgenode [flags]                       run a node (no flags needed to try it)
//	edgenode token --user ID [--ttl 24h]   print a client token signed with the node's HS256 secret
//	edgenode join-token                    print the cluster secret other nodes join with
//	edgenode members|shards --addr H:P     ask a node's operator listener about its cluster (needs the cluster secret)
//	edgenode repair-wal                    cut the raft log at a corrupt record (node stopped)
//	edgenode recover-shard --shard N|--all make this node the only voter of shards (node stopped)
//	edgenode version                       print the version (also: edgenode --version)
//
// Every flag also reads from EDGENODE_<FLAG> and from --config FILE; see
// `edgenode --help` and docs/API.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	gometrics "github.com/hashicorp/go-metrics"

	"github.com/edgenode/edgenode/auth"
	"github.com/edgenode/edgenode/config"
	"github.com/edgenode/edgenode/datadir"
	"github.com/edgenode/edgenode/node"
	"github.com/edgenode/edgenode/ratelog"
	"github.com/edgenode/edgenode/relaylog"
	"github.com/edgenode/edgenode/relaylog/walstore"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = ""

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	sub := ""
	if len(args) > 0 && (!strings.HasPrefix(args[0], "-") || args[0] == "--version") {
		sub, args = args[0], args[1:]
	}
	for _, a := range args {
		if a == "-h" || a == "--help" || a == "-help" {
			usage(stdout)
			return 0
		}
	}
	var err error
	switch sub {
	case "", "run":
		err = serve(args, stderr)
	case "token":
		err = token(args, stdout)
	case "join-token":
		err = joinToken(args, stdout)
	case "members":
		err = inspect(args, stdout, "/v1/cluster/members", membersTable)
	case "shards":
		err = inspect(args, stdout, "/v1/cluster/shards", shardsTable)
	case "health":
		err = health(args, stdout)
	case "repair-wal":
		err = repairWAL(args, stdout, stderr)
	case "recover-shard":
		err = recoverShard(args, stdout, stderr)
	case "version", "--version":
		if len(args) > 0 {
			err = fmt.Errorf("%s takes no arguments (got %q)", sub, args[0])
			break
		}
		fmt.Fprintln(stdout, "edgenode", versionString(), runtime.Version())
	case "help":
		usage(stdout)
	default:
		err = fmt.Errorf("unknown subcommand %q (see edgenode --help)", sub)
	}
	if err != nil {
		fmt.Fprintln(stderr, "edgenode:", err)
		return 1
	}
	return 0
}

func usage(w io.Writer) {
	fmt.Fprint(w, `edgenode: a self-hosted relay for 1:1 mobile chat.

Usage:
  edgenode [flags]                        run a node
  edgenode token --user ID [--ttl 24h]    print a client token (HS256, the node's secret)
  edgenode join-token [--data-dir DIR]    print the cluster secret
  edgenode members [--addr HOST:PORT] [--json]   cluster members as a running node sees them
  edgenode shards [--addr HOST:PORT] [--json]    every shard's leader and voters
                                          both ask a node's operator listener (default: --admin-addr,
                                          else 127.0.0.1 at --http-addr's port + 1; HTTPS with the
                                          mesh's certificates off loopback) with the operator token of
                                          the cluster secret: --cluster-secret, EDGENODE_CLUSTER_SECRET,
                                          --config, or the secret in --data-dir
  edgenode health [--addr HOST:PORT] [--path /readyz] [--timeout 3s]
                                          exit 0 only if the node answers 200 (container health checks)
  edgenode repair-wal [--data-dir DIR]    cut the node's raft log at a corrupt record (the node
                                          refuses to start on one); read docs/OPERATIONS.md first
  edgenode recover-shard --shard N[,M]|--all [--data-dir DIR]
                                          make this stopped node the only voter of shards that lost
                                          a majority for good; read docs/OPERATIONS.md first
  edgenode version, edgenode --version    print the version

`)
	config.Usage(w)
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// newLogger is the node's logger: text or JSON, and repeated warnings and
// errors rate-limited (ratelog: 10 of a kind per minute, then one summary).
func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if cfg.LogFormat == config.LogJSON {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(ratelog.New(h, ratelog.Options{}))
}

func serve(args []string, stderr io.Writer) error {
	cfg, err := config.Load(args, os.Getenv)
	if err != nil {
		return err
	}
	switch {
	case cfg.GOMAXPROCS > 0:
		runtime.GOMAXPROCS(cfg.GOMAXPROCS)
	case os.Getenv("GOMAXPROCS") == "":
		// Threads blocked in fsync and socket syscalls hold their P; with
		// as many Ps as cores, runnable goroutines wait while CPUs idle
		// (docs/BASELINE.md). 4x the cores measured 5,424-5,591 sends/s
		// against 4,404-5,292 at 1x (edgeload, 2,000 users; docs/PERFORMANCE.md).
		runtime.GOMAXPROCS(4 * runtime.GOMAXPROCS(0))
	}
	// Everything the node creates is its user's alone: raft snapshots hold
	// message text and device tokens (hashicorp/raft makes them 0644).
	datadir.Umask()
	logger := newLogger(cfg, stderr)
	for _, f := range config.SecretFlags(args) {
		logger.Warn("a secret is given as a command-line flag, which every local user can read (ps, /proc); prefer its environment variable or the config file", "flag", f, "env", config.EnvName(strings.TrimPrefix(f, "--")))
	}
	n, err := node.Start(context.Background(), cfg, logger)
	if err != nil {
		var ce *walstore.CorruptError
		if errors.As(err, &ce) {
			abs, _ := filepath.Abs(cfg.DataDir)
			return fmt.Errorf("%w\nThe node did not start. If the other replicas of its shards are healthy, the safest fix is to replace this node (docs/OPERATIONS.md, \"A corrupt raft log\"); "+
				"to keep this copy instead, cut the log at the corrupt record with:\n  edgenode repair-wal --data-dir %s", err, abs)
		}
		return err
	}
	if cfg.DebugAddr != "" {
		// net/http/pprof registers on http.DefaultServeMux, which serves
		// nothing else in this process. hashicorp/raft's own timings
		// (commit time, store and replication latencies, FSM apply) are
		// kept in memory and served as JSON at /debug/raft-metrics.
		sink := gometrics.NewInmemSink(10*time.Second, time.Minute)
		if _, err := gometrics.NewGlobal(gometrics.DefaultConfig("edgenode"), sink); err == nil {
			http.HandleFunc("/debug/raft-metrics", func(w http.ResponseWriter, r *http.Request) {
				data, err := sink.DisplayMetrics(w, r)
				if err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				_ = json.NewEncoder(w).Encode(data)
			})
		}
		go func() {
			logger.Info("pprof serving", "addr", cfg.DebugAddr)
			if err := http.ListenAndServe(cfg.DebugAddr, nil); err != nil {
				logger.Error("pprof stopped", "err", err)
			}
		}()
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	var fatal error
	select {
	case sig := <-sigs:
		logger.Info("signal received; draining", "signal", sig.String())
	case err := <-n.Done():
		logger.Error("client API stopped", "err", err)
		fatal = fmt.Errorf("client API stopped: %w", err)
	case err := <-n.Failed():
		fatal = err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() {
		// A second signal stops at once; acknowledged data is already durable.
		<-sigs
		logger.Warn("second signal: exiting now")
		os.Exit(1)
	}()
	if err := n.Shutdown(ctx); fatal == nil {
		return err
	}
	return fatal
}

// extract removes --name VALUE / --name=VALUE from args.
func extract(args []string, name string) (string, []string, error) {
	var rest []string
	val := ""
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--"+name || a == "-"+name:
			if i+1 >= len(args) {
				return "", nil, fmt.Errorf("--%s needs a value", name)
			}
			val = args[i+1]
			i++
		case strings.HasPrefix(a, "--"+name+"="):
			val = strings.TrimPrefix(a, "--"+name+"=")
		default:
			rest = append(rest, a)
		}
	}
	return val, rest, nil
}

func token(args []string, stdout io.Writer) error {
	userStr, args, err := extract(args, "user")
	if err != nil {
		return err
	}
	ttlStr, args, err := extract(args, "ttl")
	if err != nil {
		return err
	}
	user, err := strconv.ParseInt(userStr, 10, 64)
	if err != nil || user <= 0 || user > 1<<53-1 {
		return errors.New("token: --user must be a user id between 1 and 2^53-1")
	}
	ttl := 24 * time.Hour
	if ttlStr != "" {
		if ttl, err = time.ParseDuration(ttlStr); err != nil || ttl <= 0 {
			return errors.New("token: --ttl must be a positive duration such as 24h")
		}
	}
	cfg, err := config.Load(args, os.Getenv)
	if err != nil {
		return err
	}
	if cfg.JWTSecret == "" && cfg.JWTPublicKey != "" {
		return errors.New("token: this node verifies tokens with a public key; issue tokens with your login service's private key")
	}
	// Never creates a secret: a token signed with a new one would match no
	// node.
	if err := node.ReadDataDir(&cfg, true); err != nil {
		return fmt.Errorf("token: %w", err)
	}
	tok, err := auth.IssueFor([]byte(cfg.JWTSecret), user, ttl, time.Now(), cfg.JWTIssuer, cfg.JWTAudience)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

func joinToken(args []string, stdout io.Writer) error {
	cfg, err := config.Load(args, os.Getenv)
	if err != nil {
		return err
	}
	if err := node.ReadDataDir(&cfg, false); err != nil {
		return fmt.Errorf("join-token: %w", err)
	}
	fmt.Fprintln(stdout, cfg.ClusterSecret)
	return nil
}

// repairWAL cuts the raft log of a stopped node at its first corrupt record.
func repairWAL(args []string, stdout, stderr io.Writer) error {
	cfg, err := config.Load(args, os.Getenv)
	if err != nil {
		return err
	}
	datadir.Umask()
	abs, _ := filepath.Abs(cfg.DataDir)
	if err := datadir.Check(abs); err != nil {
		return fmt.Errorf("repair-wal: %w", err)
	}
	dir := filepath.Join(abs, "relaylog")
	r, err := relaylog.RepairWAL(dir, newLogger(cfg, stderr))
	if err != nil {
		return fmt.Errorf("repair-wal: %w", err)
	}
	if r == nil {
		fmt.Fprintf(stdout, "the raft log in %s has no corrupt record: nothing cut\n", dir)
		return nil
	}
	fmt.Fprintf(stdout, "cut the raft log in %s at offset %d of %s (%s): dropped %d bytes, %d later segment(s)\n",
		dir, r.Offset, filepath.Base(r.Segment), r.Reason, r.Bytes, len(r.Segments))
	fmt.Fprintln(stdout, "entries and votes in the dropped part are gone from this node; start it to catch up from the other replicas")
	return nil
}

// recoverShard makes a stopped node the only voter of shards that lost a
// majority of their voters for good (raft.RecoverCluster).
func recoverShard(args []string, stdout, stderr io.Writer) error {
	shardArg, args, err := extract(args, "shard")
	if err != nil {
		return err
	}
	all := false
	var rest []string
	for _, a := range args {
		if a == "--all" || a == "-all" {
			all = true
			continue
		}
		rest = append(rest, a)
	}
	if (shardArg == "") == !all {
		return errors.New("recover-shard: give --shard N (or N,M,...) or --all")
	}
	var shards []int
	if shardArg != "" {
		for _, f := range strings.Split(shardArg, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 0 {
				return fmt.Errorf("recover-shard: --shard %q: want shard numbers such as 3 or 3,7", shardArg)
			}
			shards = append(shards, n)
		}
	}
	cfg, err := config.Load(rest, os.Getenv)
	if err != nil {
		return err
	}
	datadir.Umask()
	abs, _ := filepath.Abs(cfg.DataDir)
	if err := datadir.Check(abs); err != nil {
		return fmt.Errorf("recover-shard: %w", err)
	}
	id := cfg.NodeID
	if id == "" {
		if id, err = node.ReadKept(filepath.Join(abs, node.NodeIDFile)); err != nil {
			return err
		}
		if id == "" {
			return fmt.Errorf("recover-shard: no node id in %s (no node has run there)", abs)
		}
	}
	done, err := relaylog.RecoverShards(filepath.Join(abs, "relaylog"), id, shards, newLogger(cfg, stderr))
	for _, i := range done {
		fmt.Fprintf(stdout, "shard %d: node %s is now its only voter\n", i, id)
	}
	if err != nil {
		return fmt.Errorf("recover-shard: %w", err)
	}
	if len(done) == 0 {
		return errors.New("recover-shard: no shard with state on this node was recovered")
	}
	fmt.Fprintln(stdout, "start the node: it leads these shards alone, and placement adds voters on other nodes. Never restart the shards' old voters with their data: wipe them first.")
	return nil
}
