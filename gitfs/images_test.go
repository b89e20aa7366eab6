package gitfs

import (
	"strings"
	"sync"
	"testing"

	"github.com/gitblk/gitblk/imager"
	"github.com/gitblk/gitblk/internal/testutil"
)

// TestImagesShareLayouts: a layout is made once per tree and options and
// shared (two commits with one tree share it; concurrent callers wait for
// one layout); failures are not kept.
func TestImagesShareLayouts(t *testing.T) {
	dir := testutil.NewRepo(t)
	testutil.WriteFile(t, dir, "a.txt", []byte("a\n"), 0o644)
	testutil.CommitAll(t, dir, "one")
	testutil.Git(t, dir, "commit", "-q", "--allow-empty", "-m", "same tree")
	testutil.WriteFile(t, dir, "a.txt", []byte("changed\n"), 0o644)
	testutil.CommitAll(t, dir, "three")
	r := openRepo(t, dir, Options{})
	im := NewImages(r, 2, t.TempDir())
	resolve := func(rev string) *Commit {
		c, err := r.Resolve(rev)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	tarOpts := imager.Options{Format: imager.FormatTar}
	first, second, third := resolve("main~2"), resolve("main~1"), resolve("main")

	var wg sync.WaitGroup
	got := make([]*imager.Layout, 8)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, _, err := im.Image(first, tarOpts)
			if err != nil {
				t.Error(err)
			}
			got[i] = l
		}()
	}
	wg.Wait()
	for _, l := range got {
		if l != got[0] {
			t.Fatal("concurrent callers got different layouts for one tree")
		}
	}
	if l, _, _ := im.Image(second, tarOpts); l != got[0] {
		t.Error("a commit with the same tree got a new layout")
	}
	if l, _, _ := im.Image(third, tarOpts); l == got[0] {
		t.Error("a different tree got the old layout")
	}
	if l, _, _ := im.Image(first, imager.Options{Format: imager.FormatFAT}); l == got[0] {
		t.Error("another format got the tar layout")
	}

	// A tree FAT cannot hold fails, and the failure is not kept.
	testutil.WriteFile(t, dir, "A.TXT", []byte("clash\n"), 0o644)
	testutil.CommitAll(t, dir, "case clash")
	clash := resolve("main")
	for i := 0; i < 2; i++ {
		if _, _, err := im.Image(clash, imager.Options{Format: imager.FormatFAT}); err == nil || !strings.Contains(err.Error(), "A.TXT") {
			t.Errorf("FAT image of a case clash: %v, want an error naming A.TXT", err)
		}
	}
	im.mu.Lock()
	n := len(im.entries)
	im.mu.Unlock()
	if n > 2 {
		t.Errorf("%d layouts kept, want at most 2", n)
	}
}

func TestRefs(t *testing.T) {
	dir := testutil.NewRepo(t)
	testutil.WriteFile(t, dir, "a.txt", []byte("a\n"), 0o644)
	testutil.CommitAll(t, dir, "one")
	testutil.Git(t, dir, "tag", "v1")
	testutil.Git(t, dir, "branch", "dev")
	r := openRepo(t, dir, Options{})
	refs, err := r.Refs()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(refs, " "); got != "refs/heads/dev refs/heads/main refs/tags/v1" {
		t.Errorf("Refs = %s", got)
	}
	testutil.Git(t, dir, "tag", "v2")
	if refs, _ := r.Refs(); len(refs) != 4 {
		t.Errorf("a new tag not seen: %v", refs)
	}
}
