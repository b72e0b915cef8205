package relaylog

import (
	"io"
	"log/slog"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// raft's warnings (its election decisions) reach a node's log from info
// up, its debug lines only with debug, and at warn or error only its
// errors.
func TestRaftRecordsByLogLevel(t *testing.T) {
	for _, c := range []struct {
		level slog.Level
		want  hclog.Level
	}{
		{slog.LevelDebug, hclog.Debug},
		{slog.LevelInfo, hclog.Warn},
		{slog.LevelWarn, hclog.Error},
		{slog.LevelError, hclog.Error},
	} {
		l := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: c.level}))
		if got := raftLevel(l); got != c.want {
			t.Errorf("node logging at %v gets raft's records from %v, want %v", c.level, got, c.want)
		}
	}
}
