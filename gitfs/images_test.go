package gitfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

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

// TestImagesPinBound: Images refuses to pin one distinct layout more than
// MaxImages, always pins one it holds, and pins again after a release.
func TestImagesPinBound(t *testing.T) {
	im := NewImages(nil, 0, "")
	var releases []func()
	layouts := make([]*imager.Layout, MaxImages+1)
	for i := range layouts {
		layouts[i] = new(imager.Layout)
	}
	for _, l := range layouts[:MaxImages] {
		r, err := im.Pin(l)
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, r)
	}
	if _, err := im.Pin(layouts[MaxImages]); !errors.Is(err, ErrTooManyImages) {
		t.Fatalf("pin of one image too many: %v", err)
	}
	r, err := im.Pin(layouts[0]) // an image already held is always fine
	if err != nil {
		t.Fatal(err)
	}
	r()
	releases[0]()
	if _, err := im.Pin(layouts[MaxImages]); err != nil {
		t.Errorf("pin after a release: %v", err)
	}
}

// TestImagesSharePins: Images that share one Pins are bounded together:
// MaxImages layouts pinned across two of them refuse one more in either,
// and a release in one makes room in the other. A layout pinned through
// the shared Pins is not dropped by its Images.
func TestImagesSharePins(t *testing.T) {
	pins := NewPins()
	a, b := NewImages(nil, 0, ""), NewImages(nil, 0, "")
	a.SetPins(pins)
	b.SetPins(pins)
	var releases []func()
	for i := 0; i < MaxImages; i++ {
		im := a
		if i%2 == 1 {
			im = b
		}
		r, err := im.Pin(new(imager.Layout))
		if err != nil {
			t.Fatalf("pin %d: %v", i, err)
		}
		releases = append(releases, r)
	}
	for name, im := range map[string]*Images{"a": a, "b": b} {
		if _, err := im.Pin(new(imager.Layout)); !errors.Is(err, ErrTooManyImages) {
			t.Errorf("%s: pin of one image too many over both: %v", name, err)
		}
	}
	if _, err := NewImages(nil, 0, "").Pin(new(imager.Layout)); err != nil {
		t.Errorf("an Images with its own pins is bounded by the others: %v", err)
	}
	releases[0]() // pinned through a
	r, err := b.Pin(new(imager.Layout))
	if err != nil {
		t.Fatalf("pin in b after a release in a: %v", err)
	}
	r()

	dir := testutil.NewRepo(t)
	repo := openRepo(t, dir, Options{})
	var commits []*Commit
	for i := 0; i < 2; i++ {
		testutil.WriteFile(t, dir, "a.txt", []byte(fmt.Sprintf("version %d\n", i)), 0o644)
		c, err := repo.Resolve(testutil.CommitAll(t, dir, "edit"))
		if err != nil {
			t.Fatal(err)
		}
		commits = append(commits, c)
	}
	shared := NewPins()
	im := NewImages(repo, 1, "")
	im.SetPins(shared)
	tarOpts := imager.Options{Format: imager.FormatTar}
	first, _, err := im.Image(commits[0], tarOpts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := shared.Pin(first); err != nil {
		t.Fatal(err)
	}
	if _, _, err := im.Image(commits[1], tarOpts); err != nil {
		t.Fatal(err)
	}
	if l, _, _ := im.Image(commits[0], tarOpts); l != first {
		t.Error("a layout pinned through the shared Pins was dropped")
	}
}

// TestImagesKeepPinned: a pinned layout is never dropped to make room; once
// released it may be.
func TestImagesKeepPinned(t *testing.T) {
	dir := testutil.NewRepo(t)
	var commits []*Commit
	r := openRepo(t, dir, Options{})
	for i := 0; i < 3; i++ {
		testutil.WriteFile(t, dir, "a.txt", []byte(fmt.Sprintf("version %d\n", i)), 0o644)
		c, err := r.Resolve(testutil.CommitAll(t, dir, "edit"))
		if err != nil {
			t.Fatal(err)
		}
		commits = append(commits, c)
	}
	im := NewImages(r, 1, "")
	tarOpts := imager.Options{Format: imager.FormatTar}
	image := func(c *Commit) *imager.Layout {
		l, _, err := im.Image(c, tarOpts)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	first := image(commits[0])
	release, err := im.Pin(first)
	if err != nil {
		t.Fatal(err)
	}
	image(commits[1])
	image(commits[2])
	if image(commits[0]) != first {
		t.Error("a pinned layout was dropped")
	}
	release()
	image(commits[1])
	image(commits[2])
	if image(commits[0]) == first {
		t.Error("a released layout was kept beyond the bound of 1")
	}
}

// TestImagesAllShareListing: All lays the formats out over one listing,
// held until the last layout is made (a layout made alone drops it when
// done), saves the listing to the cache only after the layouts, and
// returns what Image returns.
func TestImagesAllShareListing(t *testing.T) {
	dir := testutil.NewRepo(t)
	testutil.WriteFile(t, dir, "a.txt", []byte("a\n"), 0o644)
	testutil.WriteFile(t, dir, "d/b.txt", []byte("b\n"), 0o644)
	testutil.CommitAll(t, dir, "one")
	r := openRepo(t, dir, Options{})
	cache := t.TempDir()
	im := NewImages(r, 4, cache)
	c, err := r.Resolve("main")
	if err != nil {
		t.Fatal(err)
	}
	saved := func() bool {
		ents, _ := os.ReadDir(filepath.Join(cache, treeCacheSubdir))
		return len(ents) > 0
	}
	var mu sync.Mutex
	built := map[imager.Format]int{}
	var held, early []bool
	im.OnBuild = func(o imager.Options, _ time.Duration, _ error) {
		im.mu.Lock()
		_, ok := im.lists[c.Tree]
		im.mu.Unlock()
		time.Sleep(50 * time.Millisecond) // time for a save started early to finish
		mu.Lock()
		built[o.Format]++
		held, early = append(held, ok), append(early, saved())
		mu.Unlock()
	}
	tarOpts, fatOpts := imager.Options{Format: imager.FormatTar}, imager.Options{Format: imager.FormatFAT}
	got := im.All(c, tarOpts, fatOpts)
	if len(built) != 2 || built[imager.FormatTar] != 1 || built[imager.FormatFAT] != 1 {
		t.Fatalf("built %v, want tar and fat once each", built)
	}
	for i := range held {
		if !held[i] {
			t.Error("the listing was dropped before the last layout was made")
		}
		if early[i] {
			t.Error("the listing was saved to the cache before the layouts were made")
		}
	}
	r.saves.Wait()
	if !saved() {
		t.Error("the listing was not saved to the cache after the layouts")
	}
	for i, o := range []imager.Options{tarOpts, fatOpts} {
		l, _, err := im.Image(c, o)
		if err != nil || got[i].Err != nil || got[i].Layout != l || got[i].Opts != o {
			t.Errorf("%s: All gave %p (%v), Image %p (%v)", o.Format, got[i].Layout, got[i].Err, l, err)
		}
	}
	im.mu.Lock()
	n := len(im.lists)
	im.mu.Unlock()
	if n != 0 {
		t.Errorf("%d listings held after All", n)
	}
	// Laid out already: All makes nothing more.
	im.All(c, tarOpts, fatOpts)
	if len(built) != 2 || built[imager.FormatTar] != 1 || built[imager.FormatFAT] != 1 {
		t.Errorf("All built again: %v", built)
	}
}
