package gitfs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitblk/gitblk/internal/testutil"
)

func openRepo(t testing.TB, path string, opts Options) *Repo {
	t.Helper()
	r, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return r
}

func TestOpenForms(t *testing.T) {
	dir, ids := historyRepo(t)
	bare := filepath.Join(t.TempDir(), "bare.git")
	testutil.Git(t, dir, "clone", "-q", "--bare", dir, bare)
	sub := filepath.Join(dir, "deep", "er")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	linked := filepath.Join(t.TempDir(), "linked")
	testutil.Git(t, dir, "worktree", "add", "-q", linked, "side")
	for _, tc := range []struct{ path, rev, want string }{
		{dir, "main", ids[2]},
		{filepath.Join(dir, ".git"), "main", ids[2]},
		{bare, "main", ids[2]},
		{bare, "v1", ids[1]},
		{linked, "HEAD", ids[1]},
		{linked, "main", ids[2]},
		{sub, "main", ids[2]}, // searched upwards, as git does
	} {
		r, err := Open(tc.path, Options{})
		if err != nil {
			t.Errorf("Open(%s): %v", tc.path, err)
			continue
		}
		c, err := r.Resolve(tc.rev)
		if err != nil || c.ID != tc.want {
			t.Errorf("Open(%s).Resolve(%s) = %v, %v; want %s", tc.path, tc.rev, c, err, tc.want)
		}
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	// Not repositories: an empty directory, a file, nothing.
	file := filepath.Join(dir, "f.txt")
	for _, p := range []string{t.TempDir(), file, filepath.Join(dir, "absent")} {
		_, err := Open(p, Options{})
		if !errors.Is(err, ErrNotRepository) || !strings.Contains(err.Error(), p) {
			t.Errorf("Open(%s) = %v, want ErrNotRepository naming the path", p, err)
		}
	}
}

func TestClosed(t *testing.T) {
	dir, ids := historyRepo(t)
	r, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := r.Resolve(ids[0]); !errors.Is(err, ErrClosed) {
		t.Errorf("Resolve after Close: %v, want ErrClosed", err)
	}
	if _, err := r.ReadBlob([20]byte{1}, make([]byte, 1), 0); !errors.Is(err, ErrClosed) {
		t.Errorf("ReadBlob after Close: %v, want ErrClosed", err)
	}
}

func TestAlternates(t *testing.T) {
	dir, _ := richRepo(t)
	testutil.Git(t, dir, "gc", "-q")
	clone := filepath.Join(t.TempDir(), "shared")
	testutil.Git(t, dir, "clone", "-q", "--shared", dir, clone)
	r := openRepo(t, clone, Options{})
	compareListing(t, r, clone, testutil.Git(t, clone, "rev-parse", "HEAD"))
	id := testutil.Git(t, clone, "rev-parse", "HEAD:README")
	p := make([]byte, 6)
	if n, err := r.ReadBlob(testutil.BlobID(t, id), p, 0); n != 6 || err != nil || string(p) != "hello\n" {
		t.Errorf("ReadBlob through alternates = %d %q %v", n, p[:n], err)
	}
}
