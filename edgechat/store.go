package edgechat

import (
	"context"
	"database/sql"
	_ "embed"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"

	_ "modernc.org/sqlite" // pure-Go SQLite, registered as "sqlite"
)

// schemaV1 creates every table of chats.db in one script, in dependency order.
//
//go:embed schema.sql
var schemaV1 string

// schemaV2 adds the re-stampable idempotency key and the request's
// maybe-accepted and expired marks (the server's 409 request_expired).
//
//go:embed schema_v2.sql
var schemaV2 string

// schemaV3 adds the database's owner (Account) and the server's EXPIRED
// mark on my messages.
//
//go:embed schema_v3.sql
var schemaV3 string

// schemaV4 adds the installation's device id to Account.
//
//go:embed schema_v4.sql
var schemaV4 string

// migrations[i] moves the database from user_version i to i+1. A migration
// is appended, never edited, once released.
var migrations = []string{
	schemaV1,
	schemaV2,
	schemaV3,
	schemaV4,
}

// SchemaVersion is the user_version of a database this package fully
// migrated.
const SchemaVersion = 4

// store owns chats.db. Writes go through one mutex, so that write
// transactions never wait on each other inside SQLite (which would surface
// as SQLITE_BUSY); reads run concurrently thanks to WAL.
type store struct {
	db      *sql.DB
	writeMu sync.Mutex
}

func openStore(path string) (*store, error) {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("client: database dir: %w", err)
		}
	}
	q := url.Values{}
	// foreign_keys is per connection, so it goes in the DSN. synchronous
	// FULL makes a commit durable before we acknowledge what it stored.
	for _, p := range []string{"foreign_keys(1)", "journal_mode(WAL)", "synchronous(FULL)", "busy_timeout(10000)"} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("client: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(4)
	s := &store{db: db}
	if err := s.migrate(context.Background()); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func (s *store) migrate(ctx context.Context) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		var v int
		if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
			return fmt.Errorf("client: schema version: %w", err)
		}
		if v > len(migrations) {
			return fmt.Errorf("client: %w: database is at version %d, this client knows %d", ErrSchemaTooNew, v, len(migrations))
		}
		for ; v < len(migrations); v++ {
			if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
				return fmt.Errorf("client: migration %d: %w", v+1, err)
			}
		}
		// PRAGMA takes no parameters; v is an int we computed.
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v)); err != nil {
			return fmt.Errorf("client: set schema version: %w", err)
		}
		return nil
	})
}

// write runs fn in one immediate transaction and commits it.
func (s *store) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("client: begin: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("client: commit: %w", err)
	}
	return nil
}

func (s *store) close() error { return s.db.Close() }

// ensureUser inserts a placeholder row for a user we have not seen, so that
// foreign keys hold; the app fills in names with PutUser.
func ensureUser(ctx context.Context, tx *sql.Tx, id int64) error {
	_, err := tx.ExecContext(ctx, "INSERT OR IGNORE INTO Users(id, name) VALUES (?, '')", id)
	if err != nil {
		return fmt.Errorf("client: user %d: %w", id, err)
	}
	return nil
}

func getState(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, key string) (int64, error) {
	var v int64
	err := q.QueryRowContext(ctx, "SELECT value FROM SyncState WHERE key = ?", key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return v, err
}

func setStateMax(ctx context.Context, tx *sql.Tx, key string, v int64) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO SyncState(key, value) VALUES (?, ?)
		ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)`, key, v)
	return err
}

const stateCursor = "last_synced_message"
