package gitfs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitblk/gitblk/internal/testutil"
)

func TestReadBlobWhileRepacking(t *testing.T) {
	dir, ids := testutil.BlobRepo(t)
	want := map[string][]byte{}
	for _, id := range ids {
		want[id] = testutil.GitBytes(t, dir, "cat-file", "blob", id)
	}
	// Small caches, so that reads keep going back to the repository; and
	// the default caches, with spills growing while objects move.
	r := openRepo(t, dir, Options{CacheSize: 64 << 10, DiskCacheSize: -1})
	r2 := openRepo(t, dir, Options{})
	c, err := r.Resolve("main")
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{}, 2)
	for _, rr := range []*Repo{r, r2} {
		go func() {
			defer func() { done <- struct{}{} }()
			testutil.ReadConcurrently(t, readBlobOf(t, rr), ids, want, 4, 50, stop)
		}()
	}
	for _, args := range [][]string{
		{"gc", "-q", "--prune=now"},
		{"repack", "-q", "-a", "-d"},
		{"repack", "-q", "-a", "-d", "-f", "--depth=10"},
		{"gc", "-q", "--aggressive", "--prune=now"},
		{"repack", "-q", "-a", "-d"},
	} {
		testutil.Git(t, dir, args...)
		if _, err := r.Tree(c, true); err != nil {
			t.Errorf("Tree after git %s: %v", strings.Join(args, " "), err)
		}
	}
	close(stop)
	<-done
	<-done
}

// readBlobOf reads blobs of r by hex id, for testutil.ReadConcurrently.
func readBlobOf(t testing.TB, r *Repo) func(id string, p []byte, off int64) (int, error) {
	return func(id string, p []byte, off int64) (int, error) { return r.ReadBlob(testutil.BlobID(t, id), p, off) }
}

func TestReadBlobObjectsDeleted(t *testing.T) {
	dir, ids := testutil.BlobRepo(t)
	tree := testutil.Git(t, dir, "rev-parse", "HEAD^{tree}")
	testutil.Git(t, dir, "gc", "-q", "--prune=now")
	r := openRepo(t, dir, Options{})
	// Every pack deleted before anything was read: every object is gone.
	packs, _ := filepath.Glob(filepath.Join(dir, ".git/objects/pack/*"))
	for _, p := range packs {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range ids {
		_, err := r.ReadBlob(testutil.BlobID(t, id), make([]byte, 100), 0)
		if !errors.Is(err, ErrMissingObject) || !strings.Contains(err.Error(), id) {
			t.Errorf("ReadBlob(%s) after the packs were deleted: %v, want ErrMissingObject naming it", id, err)
		}
	}
	c := &Commit{ID: "x", Tree: tree}
	if _, err := r.Tree(c, false); !errors.Is(err, ErrMissingObject) || !strings.Contains(err.Error(), tree) {
		t.Errorf("Tree after the packs were deleted: %v, want ErrMissingObject naming %s", err, tree)
	}
}
