package relaylog_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
)

// TestIncarnationBelongsToTheData: the incarnation is created with the
// raft data, kept across restarts, new in a new data dir, added to a data
// dir from before incarnations (and then kept), and it is the node's raft
// address in every shard's configuration.
func TestIncarnationBelongsToTheData(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, nil)
	inc := l.Incarnation()
	if len(inc) != 16 {
		t.Fatalf("incarnation %q, want 16 hex digits", inc)
	}
	if got, want := l.Address(), raft.ServerAddress("n1@"+inc); got != want {
		t.Fatalf("address %q, want %q", got, want)
	}
	f := l.Raft(0).GetConfiguration()
	if err := f.Error(); err != nil {
		t.Fatal(err)
	}
	if s := f.Configuration().Servers; len(s) != 1 || s[0].Address != l.Address() {
		t.Fatalf("bootstrap configuration %+v, want n1 at %s", s, l.Address())
	}
	l.Close()

	l = openLog(t, dir, nil)
	if got := l.Incarnation(); got != inc {
		t.Fatalf("after a restart: incarnation %q, want %q", got, inc)
	}
	l.Close()

	other := openLog(t, t.TempDir(), nil)
	if other.Incarnation() == inc {
		t.Fatalf("two data dirs share incarnation %q", inc)
	}
	other.Close()

	// relaylog.json as versions before incarnations wrote it.
	path := filepath.Join(dir, "relaylog.json")
	if err := os.WriteFile(path, []byte(`{"shards":4,"store":"wal"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, dir, nil)
	added := l.Incarnation()
	l.Close()
	if added == "" || added == inc {
		t.Fatalf("incarnation added to an old data dir: %q (before: %q)", added, inc)
	}
	var m struct{ Incarnation string }
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &m); err != nil || m.Incarnation != added {
		t.Fatalf("relaylog.json %s does not keep the added incarnation %q", b, added)
	}
}
