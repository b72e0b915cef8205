package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"
)

// inspect asks a running node (--addr HOST:PORT, or a URL) for a cluster
// view and prints it as a table, or as the node's JSON with --json.
func inspect(args []string, stdout io.Writer, path string, table func(w io.Writer, body []byte) error) error {
	addr, args, err := extract(args, "addr")
	if err != nil {
		return err
	}
	asJSON := false
	for _, a := range args {
		switch a {
		case "--json", "-json":
			asJSON = true
		default:
			return fmt.Errorf("unknown argument %q", a)
		}
	}
	if addr == "" {
		addr = "127.0.0.1:8080"
	}
	base := addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	client := &http.Client{Timeout: 15 * time.Second}
	resp, err := client.Get(strings.TrimRight(base, "/") + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
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

func membersTable(w io.Writer, body []byte) error {
	var ms []struct{ NodeID, Region, Status, Addr string }
	if err := json.Unmarshal(body, &ms); err != nil {
		return errors.New("unexpected answer: " + err.Error())
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tREGION\tSTATUS\tGOSSIP ADDR")
	for _, m := range ms {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.NodeID, m.Region, m.Status, m.Addr)
	}
	return tw.Flush()
}

func shardsTable(w io.Writer, body []byte) error {
	var ss []struct {
		Shard  int
		Leader string
		Voters []string
	}
	if err := json.Unmarshal(body, &ss); err != nil {
		return errors.New("unexpected answer: " + err.Error())
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SHARD\tLEADER\tVOTERS")
	for _, s := range ss {
		leader := s.Leader
		if leader == "" {
			leader = "(none)"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\n", s.Shard, leader, strings.Join(s.Voters, ","))
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
