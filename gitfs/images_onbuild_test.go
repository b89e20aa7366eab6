package gitfs

import (
	"sync"
	"testing"
	"time"

	"github.com/gitblk/gitblk/imager"
	"github.com/gitblk/gitblk/internal/testutil"
)

// TestImagesOnBuild: OnBuild hears of layouts really computed, once for
// concurrent callers of one tree, never for a layout kept in memory, and
// of failures with their error.
func TestImagesOnBuild(t *testing.T) {
	dir := testutil.NewRepo(t)
	testutil.WriteFile(t, dir, "a.txt", []byte("a\n"), 0o644)
	testutil.CommitAll(t, dir, "one")
	testutil.Git(t, dir, "commit", "-q", "--allow-empty", "-m", "same tree")
	r := openRepo(t, dir, Options{})
	im := NewImages(r, 0, "")
	var mu sync.Mutex
	var builds, failures int
	im.OnBuild = func(opts imager.Options, d time.Duration, err error) {
		mu.Lock()
		defer mu.Unlock()
		if d < 0 {
			t.Errorf("negative build time %v", d)
		}
		if err != nil {
			failures++
		} else {
			builds++
		}
	}
	resolve := func(rev string) *Commit {
		c, err := r.Resolve(rev)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	tarOpts := imager.Options{Format: imager.FormatTar}
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := im.Image(resolve("main~1"), tarOpts); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if _, _, err := im.Image(resolve("main"), tarOpts); err != nil { // same tree
		t.Fatal(err)
	}
	if builds != 1 || failures != 0 {
		t.Fatalf("after one tree: %d builds, %d failures reported, want 1, 0", builds, failures)
	}
	testutil.WriteFile(t, dir, "A.TXT", []byte("clash\n"), 0o644)
	testutil.CommitAll(t, dir, "case clash")
	if _, _, err := im.Image(resolve("main"), imager.Options{Format: imager.FormatFAT}); err == nil {
		t.Fatal("FAT image of a case clash built")
	}
	if builds != 1 || failures != 1 {
		t.Fatalf("after a failure: %d builds, %d failures reported, want 1, 1", builds, failures)
	}
}
