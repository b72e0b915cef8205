//go:build linux

package walstore

import (
	"os"
	"syscall"
)

// fdatasync flushes f's data and only the metadata needed to read it back
// (not mtime). See preallocate for why the size is not part of that.
func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}

// preallocate reserves size bytes for a new segment and sets its size, so
// that appends inside it never change the file size: fdatasync then does
// not have to write the inode's size with every commit, which it must do
// whenever an append grows the file. (On ext4 and xfs the first write into a
// fallocated block still converts its extent from "unwritten" to "written",
// a journalled metadata change that the commit's fdatasync waits for; the
// housekeeper's spare segments are therefore zero-filled instead (see
// DB.createFile), and this is used only where a segment must exist at
// once.) Falls back to a sparse Truncate where fallocate is not supported.
func preallocate(f *os.File, size int64) error {
	for {
		err := syscall.Fallocate(int(f.Fd()), 0, 0, size)
		switch err {
		case nil:
			return nil
		case syscall.EINTR:
			continue
		case syscall.EOPNOTSUPP, syscall.ENOSYS:
			return f.Truncate(size)
		default:
			return err
		}
	}
}

// lockDir takes an exclusive advisory lock on dir/LOCK so that two
// processes cannot append to the same log.
func lockDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
