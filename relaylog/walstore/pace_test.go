package walstore

import (
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// A log that only ever gets one request at a time is never paced: each
// write here would wait an hour otherwise.
func TestPaceDoesNotDelayALoneRequest(t *testing.T) {
	db, err := open(Options{Path: filepath.Join(t.TempDir(), "wal"), NoSync: true, Pace: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	done := make(chan error, 1)
	go func() {
		for i := uint64(1); i <= 5; i++ {
			if err := db.Shard(0).StoreLog(entry(i, 1)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	within(t, done, "five writes one after another did not commit in 20 s: a lone request was paced")
}

// within fails the test unless done yields nil within 20 s.
func within(t *testing.T, done <-chan error, otherwise string) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal(otherwise)
	}
}

// batchOfTwo opens a log with pace, commits one request alone and then two
// in one batch (the first held in the committer until both queued), and
// returns the log and when the held commit was let go.
func batchOfTwo(t *testing.T, pace time.Duration) (*DB, time.Time) {
	t.Helper()
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hook := func() { once.Do(func() { close(entered); <-release }) }
	db, err := open(Options{Path: filepath.Join(t.TempDir(), "wal"), NoSync: true, Pace: pace}, hook)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 3)
	write := func(shard int) { go func() { done <- db.Shard(shard).StoreLog(entry(1, 1)) }() }
	write(0)
	<-entered // the committer holds a batch of it alone
	write(1)
	write(2)
	for db.queue.Len() != 2 {
		time.Sleep(time.Millisecond) // poll: until both wait behind the first
	}
	released := time.Now()
	close(release)
	for range 3 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	return db, released
}

// After a commit of two requests, the next batch waits for the pace (from
// when that commit began).
func TestPaceWaitsAfterABatch(t *testing.T) {
	const pace = 300 * time.Millisecond
	db, released := batchOfTwo(t, pace)
	defer db.Close()
	if err := db.Shard(3).StoreLog(entry(1, 1)); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(released); took < pace {
		t.Fatalf("the commit after a batch of two came %v after it, before the pace (%v)", took, pace)
	}
}

// Close does not wait for the pace.
func TestCloseEndsThePace(t *testing.T) {
	db, _ := batchOfTwo(t, time.Hour)
	closed := make(chan error, 1)
	go func() { closed <- db.Close() }()
	within(t, closed, "Close waited for the pace")
}
