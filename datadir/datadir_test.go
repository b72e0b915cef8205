//go:build unix

package datadir

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPrepareCreatesAPrivateDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "data")
	if err := Prepare(dir); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(dir)
	if err != nil || info.Mode().Perm()&0o077 != 0 {
		t.Fatalf("%v %v", info.Mode(), err)
	}
	if err := Prepare(dir); err != nil {
		t.Fatalf("Prepare of an existing private dir: %v", err)
	}
}

func TestCheckRefusesWritableByOthers(t *testing.T) {
	for _, mode := range []fs.FileMode{0o777, 0o770, 0o702} {
		dir := t.TempDir()
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		err := Check(dir)
		if !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), "writable by its group or others") {
			t.Errorf("mode %04o: %v", mode, err)
		}
	}
	// Readable by others is not a refusal (Tighten fixes it).
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	if err := Check(dir); err != nil {
		t.Errorf("0755: %v", err)
	}
	// A file is not a data dir.
	f := filepath.Join(t.TempDir(), "f")
	os.WriteFile(f, nil, 0o600)
	if err := Check(f); !errors.Is(err, ErrUnsafe) {
		t.Errorf("a file as data dir: %v", err)
	}
}

func TestCheckRefusesAnotherOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a directory to another user")
	}
	dir := t.TempDir()
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if err := Check(dir); !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), "owned by uid 65534") {
		t.Fatalf("a dir of uid 65534: %v", err)
	}
	f := filepath.Join(t.TempDir(), "cluster-secret")
	os.WriteFile(f, []byte("s\n"), 0o600)
	os.Chown(f, 65534, 65534)
	if _, err := ReadSecret(f); !errors.Is(err, ErrUnsafe) {
		t.Fatalf("a secret of uid 65534: %v", err)
	}
}

func TestReadSecret(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "cluster-secret")
	if v, err := ReadSecret(p); v != "" || err != nil {
		t.Fatalf("missing file: %q %v", v, err)
	}
	os.WriteFile(p, []byte("  the-secret \n"), 0o600)
	if v, err := ReadSecret(p); v != "the-secret" || err != nil {
		t.Fatalf("%q %v", v, err)
	}
	os.Chmod(p, 0o620)
	if _, err := ReadSecret(p); !errors.Is(err, ErrUnsafe) {
		t.Fatalf("a group-writable secret: %v", err)
	}
	// A planted link is refused, not followed.
	target := filepath.Join(dir, "elsewhere")
	os.WriteFile(target, []byte("planted\n"), 0o600)
	link := filepath.Join(dir, "jwt-secret")
	os.Symlink(target, link)
	if v, err := ReadSecret(link); !errors.Is(err, ErrUnsafe) || v != "" || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("a link: %q %v", v, err)
	}
	os.Mkdir(filepath.Join(dir, "node-id"), 0o700)
	if _, err := ReadSecret(filepath.Join(dir, "node-id")); !errors.Is(err, ErrUnsafe) {
		t.Fatalf("a directory: %v", err)
	}
}

func TestWriteFileNeverFollowsALink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "attacker")
	os.WriteFile(target, []byte("attacker\n"), 0o644)
	p := filepath.Join(dir, "cluster-secret")
	if err := os.Symlink(target, p+".tmp"); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, []byte("secret\n")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(target); string(b) != "attacker\n" {
		t.Fatalf("written through the link: %q", b)
	}
	info, err := os.Lstat(p)
	if err != nil || !info.Mode().IsRegular() || info.Mode().Perm() != 0o600 {
		t.Fatalf("%v %v", info, err)
	}
	if b, _ := os.ReadFile(p); string(b) != "secret\n" {
		t.Fatalf("%q", b)
	}
	if _, err := os.Lstat(p + ".tmp"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("tmp left behind: %v", err)
	}
	// Replacing keeps the file whole.
	if err := WriteFile(p, []byte("second\n")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "second\n" {
		t.Fatalf("%q", b)
	}
}

func TestTighten(t *testing.T) {
	dir := t.TempDir()
	os.Chmod(dir, 0o700) // t.TempDir's own mode follows the umask
	sub := filepath.Join(dir, "relaylog", "snapshots")
	os.MkdirAll(sub, 0o755)
	os.Chmod(filepath.Join(dir, "relaylog"), 0o755)
	os.Chmod(sub, 0o755)
	os.WriteFile(filepath.Join(sub, "state.bin"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(dir, "node-id"), []byte("x"), 0o600)
	outside := filepath.Join(t.TempDir(), "outside")
	os.WriteFile(outside, nil, 0o644)
	os.Symlink(outside, filepath.Join(dir, "link"))
	n, err := Tighten(dir)
	if err != nil || n != 3 {
		t.Fatalf("Tighten changed %d (want 3): %v", n, err)
	}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		info, _ := os.Lstat(p)
		if d.Type()&fs.ModeSymlink == 0 && info.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s is %04o", p, info.Mode().Perm())
		}
		return nil
	})
	if info, _ := os.Stat(outside); info.Mode().Perm() != 0o644 {
		t.Errorf("followed the link: %04o", info.Mode().Perm())
	}
	if n, _ := Tighten(dir); n != 0 {
		t.Errorf("a second Tighten changed %d", n)
	}
}
