// Command fsyncbench measures the commit latency of a WAL-like writer (one
// pwrite of 2 KiB and one fdatasync per commit, into 64 MiB segments,
// switching to the next segment when one is full) while a housekeeper
// prepares the next segment and removes the dead one, and a snapshotter
// writes a 3 MiB file with fsync every few seconds: what relaylog/walstore
// does, without raft. -mode fallocate prepares segments with fallocate
// (unwritten extents); -mode zero fills them with zeros in 1 MiB writes,
// each followed by fdatasync (PostgreSQL's wal_init_zero), as walstore's
// housekeeper does. It prints p50/p99/p99.9/max of the commits, overall,
// within 2 s after a housekeeping or snapshot event ("near") and otherwise.
//
//	go run ./scripts/fsyncbench -mode fallocate -d 40s -dir /var/tmp/fsb-a
//	go run ./scripts/fsyncbench -mode zero -d 40s -dir /var/tmp/fsb-b
//
// Run the modes alternately, several times: the disk's speed drifts.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"
)

const segSize = 64 << 20

func create(path, mode string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	switch mode {
	case "fallocate":
		if err := syscall.Fallocate(int(f.Fd()), 0, 0, segSize); err != nil {
			return nil, err
		}
	case "zero":
		buf := make([]byte, 1<<20)
		for off := int64(0); off < segSize; off += int64(len(buf)) {
			if _, err := f.WriteAt(buf, off); err != nil {
				return nil, err
			}
			if err := syscall.Fdatasync(int(f.Fd())); err != nil {
				return nil, err
			}
		}
	}
	return f, f.Sync()
}

func main() {
	mode := flag.String("mode", "fallocate", "fallocate or zero")
	dur := flag.Duration("d", 60*time.Second, "duration")
	snapEvery := flag.Duration("snap", 4*time.Second, "snapshot period (0: none)")
	dir := flag.String("dir", "", "directory (created, and removed at the end)")
	flag.Parse()
	if *dir == "" || (*mode != "fallocate" && *mode != "zero") {
		fmt.Fprintln(os.Stderr, "usage: fsyncbench -mode fallocate|zero -dir DIR [-d 60s] [-snap 4s]")
		os.Exit(2)
	}
	os.MkdirAll(*dir, 0o700)
	seg, err := create(filepath.Join(*dir, "seg-0"), *mode)
	if err != nil {
		panic(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var events []time.Time
	mark := func() { mu.Lock(); events = append(events, time.Now()); mu.Unlock() }
	spare := make(chan *os.File)
	dead := make(chan string, 4)
	wg.Add(1)
	go func() { // housekeeper: the next segment ready ahead, dead ones removed
		defer wg.Done()
		for n := 1; ; n++ {
			f, err := create(filepath.Join(*dir, fmt.Sprintf("seg-%d", n)), *mode)
			if err != nil {
				panic(err)
			}
			mark()
			select {
			case spare <- f:
			case <-stop:
				f.Close()
				return
			}
			select {
			case p := <-dead:
				mark()
				os.Remove(p)
			case <-stop:
				return
			}
		}
	}()
	if *snapEvery > 0 {
		wg.Add(1)
		go func() { // snapshotter
			defer wg.Done()
			buf := make([]byte, 3<<20)
			for i := range buf {
				buf[i] = byte(i * 7)
			}
			t := time.NewTicker(*snapEvery)
			defer t.Stop()
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				case <-t.C:
				}
				mark()
				p := filepath.Join(*dir, fmt.Sprintf("snap-%d.tmp", k))
				os.WriteFile(p, buf, 0o600)
				f, _ := os.Open(p)
				f.Sync()
				f.Close()
				os.Rename(p, filepath.Join(*dir, fmt.Sprintf("snap-%d", k)))
				os.Remove(filepath.Join(*dir, fmt.Sprintf("snap-%d", k-2)))
			}
		}()
	}
	rec := make([]byte, 2048)
	for i := range rec {
		rec[i] = byte(i)
	}
	var lat []time.Duration
	var at []time.Time
	off := int64(0)
	rotations := 0
	end := time.Now().Add(*dur)
	for time.Now().Before(end) {
		t0 := time.Now()
		if _, err := seg.WriteAt(rec, off); err != nil {
			panic(err)
		}
		if err := syscall.Fdatasync(int(seg.Fd())); err != nil {
			panic(err)
		}
		lat = append(lat, time.Since(t0))
		at = append(at, t0)
		off += int64(len(rec))
		if off+int64(len(rec)) > segSize {
			t1 := time.Now()
			next := <-spare
			if w := time.Since(t1); w > time.Millisecond {
				fmt.Printf("waited %v for a spare\n", w)
			}
			dead <- seg.Name()
			seg.Close()
			seg, off = next, 0
			rotations++
		}
	}
	close(stop)
	wg.Wait()
	fmt.Printf("%s: %d rotations\n", *mode, rotations)
	// latencies within 2 s after a background event vs the rest
	var near, far []time.Duration
	for i, t := range at {
		isNear := false
		for _, e := range events {
			if t.After(e) && t.Sub(e) < 2*time.Second {
				isNear = true
				break
			}
		}
		if isNear {
			near = append(near, lat[i])
		} else {
			far = append(far, lat[i])
		}
	}
	q := func(l []time.Duration, p float64) time.Duration {
		if len(l) == 0 {
			return 0
		}
		s := slices.Clone(l)
		slices.Sort(s)
		return s[min(len(s)-1, int(float64(len(s))*p))]
	}
	pr := func(name string, l []time.Duration) {
		fmt.Printf("%s %-5s n=%6d commits/s=%6.0f p50=%7v p99=%7v p999=%7v max=%7v\n", *mode, name, len(l), float64(len(l))/dur.Seconds(),
			q(l, 0.5).Round(time.Microsecond), q(l, 0.99).Round(time.Microsecond), q(l, 0.999).Round(time.Microsecond), q(l, 1).Round(time.Microsecond))
	}
	pr("all", lat)
	pr("near", near)
	pr("far", far)
	os.RemoveAll(*dir)
}
