package gitfs

import (
	"bytes"
	"fmt"
	"os/exec"
	"testing"

	"github.com/gitblk/gitblk/imager"
	"github.com/gitblk/gitblk/internal/testutil"
)

// TestPrefetch: an image of at most half the memory cache is read once,
// after which a full read of it misses nothing and gives git archive's
// bytes; a bigger image is left alone.
func TestPrefetch(t *testing.T) {
	dir := testutil.NewRepo(t)
	for i := range 40 {
		data := bytes.Repeat([]byte(fmt.Sprintf("page %d\n", i)), 1000+i*50)
		testutil.WriteFile(t, dir, fmt.Sprintf("site/p%02d.html", i), data, 0o644)
	}
	testutil.CommitAll(t, dir, "site")
	want, err := exec.Command("git", "-C", dir, "archive", "--format=tar", "main").Output()
	if err != nil {
		t.Fatal(err)
	}

	layout := func(r *Repo) *imager.Layout {
		c, err := r.Resolve("main")
		if err != nil {
			t.Fatal(err)
		}
		l, _, err := NewImages(r, 2, t.TempDir()).Image(c, imager.Options{Format: imager.FormatTar})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}

	r := openRepo(t, dir, Options{CacheSize: 8 << 20})
	l := layout(r)
	if l.Size() > 4<<20 {
		t.Fatalf("test image of %d bytes is not small", l.Size())
	}
	done, err := r.Prefetch(l)
	if err != nil || !done {
		t.Fatalf("Prefetch of a %d-byte image with an 8 MiB cache: %v, %v; want it read", l.Size(), done, err)
	}
	before := r.CacheStats()
	if before.MemBytes == 0 {
		t.Fatal("Prefetch left nothing in the memory cache")
	}
	got := make([]byte, l.Size())
	if _, err := l.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	after := r.CacheStats()
	if after.Misses != before.Misses {
		t.Errorf("a full read after Prefetch opened %d blobs, want 0", after.Misses-before.Misses)
	}
	if !bytes.Equal(got, want) {
		t.Error("image read after Prefetch differs from git archive")
	}

	small := openRepo(t, dir, Options{CacheSize: l.Size()}) // the image is more than half of it
	if done, err := small.Prefetch(layout(small)); done || err != nil {
		t.Errorf("Prefetch of an image bigger than half the cache: %v, %v; want it left alone", done, err)
	}
	if st := small.CacheStats(); st.Misses != 0 || st.MemBytes != 0 {
		t.Errorf("Prefetch that declined read blobs: %+v", st)
	}
}
