package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/edgenode/edgenode/cluster/mesh"
	"github.com/edgenode/edgenode/config"
	"github.com/edgenode/edgenode/node"
)

// inspect asks a running node's operator listener (--addr HOST:PORT or a
// URL; by default where the node's own settings put it, 127.0.0.1:8081
// beside the default client port) for a cluster view and prints it as a
// table, or as the node's JSON with --json. Loopback is asked in plain
// HTTP, any other host in mutual TLS with the mesh's PKI. The views need
// the operator token, derived from the cluster secret, which inspect finds
// as the node does: from --cluster-secret, EDGENODE_CLUSTER_SECRET or the
// config file, else in the node's data dir (--data-dir), which it only
// reads.
func inspect(args []string, stdout io.Writer, path string, table func(w io.Writer, body []byte) error) error {
	addr, args, err := extract(args, "addr")
	if err != nil {
		return err
	}
	asJSON := false
	var rest []string
	for _, a := range args {
		switch a {
		case "--json", "-json":
			asJSON = true
		default:
			rest = append(rest, a)
		}
	}
	cfg, err := config.Load(rest, os.Getenv)
	if err != nil {
		return err
	}
	secret, err := clusterSecret(cfg)
	if err != nil {
		return err
	}
	if addr == "" {
		addr = cfg.OperatorAddr()
		if strings.HasSuffix(addr, ":0") {
			return fmt.Errorf("this node's operator listener has a port chosen at start (--http-addr %s): give --addr with the address of its \"operator listener\" log line, or start the node with --admin-addr", cfg.HTTPAddr)
		}
	}
	base := addr
	if !strings.Contains(base, "://") {
		// Off loopback the operator listener speaks only mutual TLS.
		if config.LoopbackAddr(base) {
			base = "http://" + base
		} else {
			base = "https://" + base
		}
	}
	req, err := http.NewRequest(http.MethodGet, strings.TrimRight(base, "/")+path, nil)
	if err != nil {
		return err
	}
	if err := clearTextRefused(req.URL); err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+node.OperatorToken(secret))
	client := &http.Client{Timeout: 15 * time.Second}
	if req.URL.Scheme == "https" {
		// The node's mesh certificate, checked against the cluster's CA,
		// and one of our own signed by it: derived from the cluster
		// secret, or the operator's PKI files (--cluster-ca and so on).
		conf, err := mesh.OperatorClientTLS(secret, cfg.ClusterCA, cfg.ClusterCert, cfg.ClusterKey)
		if err != nil {
			return err
		}
		client.Transport = &http.Transport{TLSClientConfig: conf}
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode == http.StatusUnauthorized {
		return fmt.Errorf("%s refused the operator token derived from the cluster secret (%s): pass the cluster's own with --cluster-secret or EDGENODE_CLUSTER_SECRET (`edgenode join-token` on a node prints it)", addr, resp.Status)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s: %s", addr, resp.Status, strings.TrimSpace(string(body)))
	}
	if asJSON {
		_, err := stdout.Write(body)
		return err
	}
	return table(stdout, body)
}

// clearTextRefused refuses to send the operator token over plain HTTP to
// anything but a loopback address: whoever sees it reads the cluster's
// members and shards.
func clearTextRefused(u *url.URL) error {
	if u.Scheme != "http" {
		return nil
	}
	if config.LoopbackHost(u.Hostname()) {
		return nil
	}
	return fmt.Errorf("refusing to send the operator token in clear text to %s: a node's operator listener off loopback speaks mutual TLS (give --addr %s or https://%s), or run the command on the node or through an SSH tunnel", u.Host, u.Host, u.Host)
}

// clusterSecret is the cluster secret of cfg, else the one a node keeps in
// its data dir. Unlike join-token it creates nothing: inspecting a cluster
// from a machine that runs no node must not leave a data dir behind.
func clusterSecret(cfg config.Config) (string, error) {
	if cfg.ClusterSecret != "" {
		return cfg.ClusterSecret, nil
	}
	file := filepath.Join(cfg.DataDir, node.ClusterSecretFile)
	s, err := node.ReadKept(file)
	if err != nil {
		return "", fmt.Errorf("reading the cluster secret: %w; pass it with --cluster-secret or EDGENODE_CLUSTER_SECRET", err)
	}
	if s != "" {
		return s, nil
	}
	abs, _ := filepath.Abs(file)
	return "", fmt.Errorf("no cluster secret: pass --cluster-secret or set EDGENODE_CLUSTER_SECRET (`edgenode join-token` on a node prints it), or point --data-dir at a node's data dir (%s does not exist)", abs)
}

func membersTable(w io.Writer, body []byte) error {
	var ms []struct{ NodeID, Region, Status, Addr, Incarnation string }
	if err := json.Unmarshal(body, &ms); err != nil {
		return errors.New("unexpected answer: " + err.Error())
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tREGION\tSTATUS\tGOSSIP ADDR\tINCARNATION")
	for _, m := range ms {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.NodeID, m.Region, m.Status, m.Addr, m.Incarnation)
	}
	return tw.Flush()
}

func shardsTable(w io.Writer, body []byte) error {
	var ss []struct {
		Shard  int
		Leader string
		Term   uint64
		Voters []string
	}
	if err := json.Unmarshal(body, &ss); err != nil {
		return errors.New("unexpected answer: " + err.Error())
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SHARD\tLEADER\tTERM\tVOTERS")
	for _, s := range ss {
		leader := s.Leader
		if leader == "" {
			leader = "(none)"
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\n", s.Shard, leader, s.Term, strings.Join(s.Voters, ","))
	}
	return tw.Flush()
}

// health probes a running node's /readyz (or --path) and succeeds only on
// 200: the health check of images that have no shell or curl.
func health(args []string, stdout io.Writer) error {
	addr, args, err := extract(args, "addr")
	if err != nil {
		return err
	}
	path, args, err := extract(args, "path")
	if err != nil {
		return err
	}
	timeoutArg, args, err := extract(args, "timeout")
	if err != nil {
		return err
	}
	if len(args) > 0 {
		return fmt.Errorf("unknown argument %q", args[0])
	}
	if addr == "" {
		addr = "127.0.0.1:8080"
	}
	if path == "" {
		path = "/readyz"
	}
	timeout := 3 * time.Second
	if timeoutArg != "" {
		if timeout, err = time.ParseDuration(timeoutArg); err != nil {
			return fmt.Errorf("--timeout: %w", err)
		}
	}
	base := addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	client := &http.Client{Timeout: timeout}
	resp, err := client.Get(strings.TrimRight(base, "/") + "/" + strings.TrimLeft(path, "/"))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s: %s", addr, resp.Status, strings.TrimSpace(string(body)))
	}
	_, err = fmt.Fprintln(stdout, strings.TrimSpace(string(body)))
	return err
}
