package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestParseFlags(t *testing.T) {
	var errOut bytes.Buffer
	cfg, jsonPath, err := parseFlags([]string{
		"--targets", "http://127.0.0.1:18080, http://127.0.0.1:18081",
		"--jwt-secret", "s", "--users", "19000", "--idle", "--procs", "2",
		"--duration", "30s", "--warmup", "5s", "--json", "out.json",
	}, &errOut)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Targets) != 2 || cfg.Targets[1] != "http://127.0.0.1:18081" || !cfg.Idle || cfg.Procs != 2 ||
		cfg.Duration.D() != 30*time.Second || cfg.Warmup != 0 || jsonPath != "out.json" {
		t.Fatalf("%+v %q", cfg, jsonPath)
	}
	if err := cfg.Validate(20000); err != nil {
		t.Fatal(err)
	}
}

func TestRunRejectsInvalidFlags(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"--jwt-secret", "s", "--size", "3"}, &out, &errOut); code != 2 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(errOut.String(), "--size") {
		t.Fatalf("stderr %q", errOut.String())
	}
	errOut.Reset()
	if code := run([]string{"--jwt-secret", "s", "stray"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "unexpected") {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
}
