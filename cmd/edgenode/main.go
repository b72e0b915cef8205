// Command edgenode runs a node of the edgenode chat relay, and a few
// subcommands around it.
//
//	edgenode [flags]                       run a node (no flags needed to try it)
//	edgenode token --user ID [--ttl 24h]   print a client token signed with the node's HS256 secret
//	edgenode join-token                    print the cluster secret other nodes join with
//	edgenode members|shards --addr H:P     ask a running node about its cluster (needs the cluster secret)
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
	"github.com/edgenode/edgenode/node"
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
                                          both send the cluster secret: --cluster-secret,
                                          EDGENODE_CLUSTER_SECRET, --config, or the secret in --data-dir
  edgenode health [--addr HOST:PORT] [--path /readyz] [--timeout 3s]
                                          exit 0 only if the node answers 200 (container health checks)
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

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == config.LogJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
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
	logger := newLogger(cfg, stderr)
	n, err := node.Start(context.Background(), cfg, logger)
	if err != nil {
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
	select {
	case sig := <-sigs:
		logger.Info("signal received; draining", "signal", sig.String())
	case err := <-n.Done():
		logger.Error("client API stopped", "err", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() {
		// A second signal stops at once; acknowledged data is already durable.
		<-sigs
		logger.Warn("second signal: exiting now")
		os.Exit(1)
	}()
	return n.Shutdown(ctx)
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
	if err := prepareForCLI(&cfg, cfg.JWTSecret, node.JWTSecretFile); err != nil {
		return err
	}
	tok, err := auth.IssueFor([]byte(cfg.JWTSecret), user, ttl, time.Now(), cfg.JWTIssuer, cfg.JWTAudience)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

// prepareForCLI reads the secrets a node keeps in its data dir, as the node
// would. Where no node has run yet it creates them, as the node will keep
// them, but says so: a token made in the wrong directory would not match
// the node's secret. given is the value the caller prints when it came from
// a flag, the environment or the config file.
func prepareForCLI(cfg *config.Config, given, file string) error {
	_, statErr := os.Stat(filepath.Join(cfg.DataDir, file))
	if err := node.PrepareDataDir(cfg, nil); err != nil {
		return err
	}
	if given == "" && errors.Is(statErr, os.ErrNotExist) {
		abs, _ := filepath.Abs(cfg.DataDir)
		fmt.Fprintf(os.Stderr, "edgenode: no node has used the data dir %s yet: created its secrets there; only a node started with this data dir (or the same secrets) accepts what is printed\n", abs)
	}
	return nil
}

func joinToken(args []string, stdout io.Writer) error {
	cfg, err := config.Load(args, os.Getenv)
	if err != nil {
		return err
	}
	if err := prepareForCLI(&cfg, cfg.ClusterSecret, node.ClusterSecretFile); err != nil {
		return err
	}
	fmt.Fprintln(stdout, cfg.ClusterSecret)
	return nil
}
