package edgechat

import (
	"testing"
	"time"
)

func TestBackoffDoublesWithJitterUpToTheCap(t *testing.T) {
	base, maxD := time.Second, 30*time.Second
	for _, tc := range []struct {
		fails    int
		lo, high time.Duration
	}{
		{1, 500 * time.Millisecond, time.Second},
		{2, time.Second, 2 * time.Second},
		{3, 2 * time.Second, 4 * time.Second},
		{6, 15 * time.Second, 30 * time.Second},
		{60, 15 * time.Second, 30 * time.Second},
	} {
		seen := map[time.Duration]bool{}
		for range 200 {
			d := backoff(tc.fails, base, maxD)
			if d < tc.lo || d > tc.high {
				t.Fatalf("backoff(%d) = %v, want in [%v, %v]", tc.fails, d, tc.lo, tc.high)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Fatalf("backoff(%d) has no jitter: %d distinct values", tc.fails, len(seen))
		}
	}
}

func TestUserFromToken(t *testing.T) {
	// header.{"sub":"42","exp":1}.sig
	if got := userFromToken("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiIsImV4cCI6MX0.x"); got != 42 {
		t.Fatalf("got %d", got)
	}
	for _, bad := range []string{"", "a.b", "a.!!!.c", "a.eyJzdWIiOiJ4In0.c"} {
		if got := userFromToken(bad); got != 0 {
			t.Fatalf("%q gave %d", bad, got)
		}
	}
}

func TestMigrationsAreVersioned(t *testing.T) {
	path := t.TempDir() + "/chats.db"
	s, err := openStore(path)
	if err != nil {
		t.Fatal(err)
	}
	var v int
	s.db.QueryRow("PRAGMA user_version").Scan(&v)
	var fk int
	s.db.QueryRow("PRAGMA foreign_keys").Scan(&fk)
	s.close()
	if v != SchemaVersion || fk != 1 {
		t.Fatalf("user_version %d, foreign_keys %d", v, fk)
	}
	// Reopening runs nothing twice (CREATE TABLE would fail).
	s, err = openStore(path)
	if err != nil {
		t.Fatal(err)
	}
	// A database from a newer client is refused, not damaged.
	s.db.Exec("PRAGMA user_version = 99")
	s.close()
	if _, err := openStore(path); err == nil {
		t.Fatal("opened a newer schema")
	}
}
