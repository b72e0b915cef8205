//go:build unix

package datadir

import (
	"io"
	"io/fs"
	"os"
	"syscall"
)

// checkPerms: whether mode bits say who may write.
const checkPerms = true

func owner(info fs.FileInfo) (int, bool) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return -1, true
	}
	return int(st.Uid), int(st.Uid) == os.Geteuid()
}

func createExcl(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
}

func readNoFollow(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// Umask sets the process's file mode creation mask to 077, so that every
// file and directory the node creates (raft snapshots included, which
// hashicorp/raft creates 0644 in 0755 dirs) is private to its user. It
// returns the previous mask.
func Umask() int { return syscall.Umask(0o077) }
