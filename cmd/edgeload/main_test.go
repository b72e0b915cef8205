package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestParseFlags(t *testing.T) {
	var errOut bytes.Buffer
	cfg, out, err := parseFlags([]string{
		"--targets", "http://127.0.0.1:18080, http://127.0.0.1:18081",
		"--jwt-secret", "s", "--users", "19000", "--idle", "--procs", "2",
		"--duration", "30s", "--warmup", "5s", "--json", "out.json", "--cpu-pids", "12,34",
	}, &errOut)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Targets) != 2 || cfg.Targets[1] != "http://127.0.0.1:18081" || !cfg.Idle || cfg.Procs != 2 ||
		cfg.Duration.D() != 30*time.Second || cfg.Warmup != 0 || out.json != "out.json" ||
		cfg.ReportEvery != 0 || out.reportFile != "" || len(cfg.CPUPIDs) != 2 || cfg.CPUPIDs[1] != 34 {
		t.Fatalf("%+v %+v", cfg, out)
	}
	if err := cfg.Validate(20000); err != nil {
		t.Fatal(err)
	}
}

func TestParseReportFlags(t *testing.T) {
	var errOut bytes.Buffer
	cfg, out, err := parseFlags([]string{"--jwt-secret", "s", "--duration", "60m", "--report-every", "1m", "--report-file", "soak.jsonl"}, &errOut)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ReportEvery.D() != time.Minute || out.reportFile != "soak.jsonl" || out.json != "" {
		t.Fatalf("%+v %+v", cfg, out)
	}
	if err := cfg.Validate(20000); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--jwt-secret", "s", "--report-every", "1m"},
		{"--jwt-secret", "s", "--report-file", "x.jsonl"},
	} {
		if _, _, err := parseFlags(args, &errOut); err == nil || !strings.Contains(err.Error(), "go together") {
			t.Fatalf("%q: %v", args, err)
		}
	}
	if code := run([]string{"--jwt-secret", "s", "--report-every", "10ms", "--report-file", t.TempDir() + "/r"}, &bytes.Buffer{}, &errOut); code != 2 ||
		!strings.Contains(errOut.String(), "--report-every") {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
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
