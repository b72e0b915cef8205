// Package datadir keeps a node's data dir safe from its neighbours on the
// machine and from power loss: it refuses a data dir (or a secret file)
// that another user could write, never follows a symbolic link when it
// creates or reads a file the node keeps there, and writes every small
// identity file (node id, secrets, relaylog.json, peers.json) atomically and
// durably: a new file opened with O_EXCL|O_NOFOLLOW, written, fsynced,
// renamed into place, and its directory fsynced.
//
// A data dir must be owned by the user the node runs as and must not be
// writable by its group or others; files holding secrets must, besides,
// be regular files (not links). Everything the node creates is 0600 in 0700
// directories (Umask; Tighten fixes a data dir written by an older build).
package datadir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrUnsafe is wrapped by every refusal of Check and ReadSecret.
var ErrUnsafe = errors.New("unsafe data dir")

// Prepare creates dir (0700, with its parents) if it does not exist, then
// checks it (see Check).
func Prepare(dir string) error {
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
	}
	return Check(dir)
}

// Check refuses a data dir that is not a directory, is owned by another
// user, or is writable by its group or others. The dir itself may be a
// symbolic link (to a volume); what it resolves to is checked.
func Check(dir string) error {
	info, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if !info.IsDir() {
		return fmt.Errorf("%w: %s is not a directory", ErrUnsafe, dir)
	}
	return checkOwner(dir, info, "data dir")
}

func checkOwner(path string, info fs.FileInfo, what string) error {
	if uid, mine := owner(info); !mine {
		return fmt.Errorf("%w: %s %s is owned by uid %d, not by the user running edgenode (uid %d); chown it", ErrUnsafe, what, path, uid, os.Geteuid())
	}
	if checkPerms && info.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%w: %s %s is writable by its group or others (mode %04o); chmod go-w it (0700 for a dir, 0600 for a file)", ErrUnsafe, what, path, info.Mode().Perm())
	}
	return nil
}

// ReadSecret reads a file the node keeps in its data dir (node id, secrets,
// ids), trimmed; "" with no error when there is none. It refuses a link, a
// non-regular file, or one that another user owns or could write.
func ReadSecret(path string) (string, error) {
	info, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if info.Mode()&fs.ModeSymlink != 0 {
		return "", fmt.Errorf("%w: %s is a symbolic link; edgenode only reads its own files there (remove it)", ErrUnsafe, path)
	}
	if !info.Mode().IsRegular() {
		return "", fmt.Errorf("%w: %s is not a regular file", ErrUnsafe, path)
	}
	if err := checkOwner(path, info, "file"); err != nil {
		return "", err
	}
	b, err := readNoFollow(path)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// WriteFile replaces path with data atomically and durably: it removes a
// stale path+".tmp" (a link planted there is removed, not followed),
// creates it anew with O_EXCL|O_NOFOLLOW and mode 0600, writes, fsyncs,
// renames it over path and fsyncs the directory. After a crash path holds
// either the old or the new contents, never an empty or partial file.
func WriteFile(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	f, err := createExcl(tmp)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// SyncDir fsyncs a directory, so that the names created, renamed or removed
// in it survive a power loss.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Tighten removes the group and other permission bits of everything under
// dir (files 0600-like, directories 0700-like), not following links, and
// returns how many it changed. Snapshots and logs hold message text and
// device tokens; builds before this check wrote some 0644 in 0755 dirs.
func Tighten(dir string) (int, error) {
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p != dir {
				return nil // removed while we walk (a snapshot being replaced)
			}
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if perm := info.Mode().Perm(); perm&0o077 != 0 {
			if err := os.Chmod(p, perm&^0o077); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}
