package edgechat

import (
	"database/sql"
	"path/filepath"
	"testing"
	"time"
)

// A version 1 chats.db, as the previous client left it, opens with its
// requests intact; every request ever put on the wire counts as maybe
// accepted, since version 1 kept no outcomes.
func TestMigrationFromVersion1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chats.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=foreign_keys(1)")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(migrations[0]); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	at := func(ago time.Duration) string { return formatTime(now.Add(-ago)) }
	type row struct {
		id        int64
		status    string
		fails     int
		lastSent  any
		next      any
		wantMaybe bool
	}
	rows := []row{
		{101, RequestPending, 0, nil, now.UnixMilli(), false},              // never sent
		{102, RequestDraft, 0, nil, nil, false},                            // a draft
		{103, RequestFailed, 2, at(time.Minute), now.UnixMilli(), true},    // waiting for a retry
		{104, RequestFailed, 10, at(time.Hour), nil, true},                 // failed for good
		{105, RequestSent, 0, at(0), nil, true},                            // on the wire
		{106, RequestPending, 0, at(2 * time.Hour), now.UnixMilli(), true}, // queued again by Resend
	}
	if _, err := db.Exec(`INSERT INTO Users(id, name) VALUES (1, ''), (7, '')`); err != nil {
		t.Fatal(err)
	}
	for i, r := range rows {
		_, err := db.Exec(`INSERT INTO MessageRequests(request_id, to_user_id, content, status, last_modified_at, last_sent_at, fail_count, created_at, next_attempt_at, seq)
			VALUES (?, 7, ?, ?, ?, ?, ?, ?, ?, ?)`, r.id, r.status, r.status, at(0), r.lastSent, r.fails, at(time.Duration(10-i)*time.Hour), r.next, i+1)
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec("PRAGMA user_version = 1"); err != nil {
		t.Fatal(err)
	}
	db.Close()

	c, err := Open(&Config{ServerURL: "http://127.0.0.1:1", UserID: 1, DBPath: path})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var v int
	c.store.db.QueryRow("PRAGMA user_version").Scan(&v)
	if v != SchemaVersion {
		t.Fatalf("user_version %d", v)
	}
	for i, want := range rows {
		r, err := c.Request(want.id)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != want.status || r.FailCount != want.fails || r.MaybeAccepted != want.wantMaybe || r.Expired ||
			r.WireRequestID != want.id || r.WireCreatedAt != r.CreatedAt || r.CreatedAt != at(time.Duration(10-i)*time.Hour) {
			t.Fatalf("request %d after migration: %+v, want maybe accepted %v", want.id, r, want.wantMaybe)
		}
	}
	h, err := c.History(7, 0, 50)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range h.Messages() {
		if m.RequestID != rows[i].id || m.Expired {
			t.Fatalf("conversation after migration %+v", h.Messages())
		}
	}
	// New requests get their key in the new columns.
	m, err := c.Send(7, "new")
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := c.Request(m.RequestID); r == nil || r.WireRequestID != m.RequestID || r.WireCreatedAt != m.CreatedAt || r.MaybeAccepted {
		t.Fatalf("new request %+v", r)
	}
}
