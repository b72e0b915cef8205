//go:build !unix

package datadir

import (
	"io/fs"
	"os"
)

// Ownership and O_NOFOLLOW are not checked on this platform.

// checkPerms: whether mode bits say who may write.
const checkPerms = false

func owner(fs.FileInfo) (int, bool) { return -1, true }

func createExcl(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
}

func readNoFollow(path string) ([]byte, error) { return os.ReadFile(path) }

// Umask does nothing on this platform.
func Umask() int { return 0 }
