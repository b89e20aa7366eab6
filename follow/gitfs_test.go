package follow

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitblk/gitblk/gitfs"
	"github.com/gitblk/gitblk/imager"
)

// readImage reads a whole image at once.
func readImage(t *testing.T, l *imager.Layout) []byte {
	t.Helper()
	b, err := io.ReadAll(io.NewSectionReader(l, 0, l.Size()))
	if err != nil {
		t.Fatalf("read image: %v", err)
	}
	return b
}

// gitArchive is the tar `git archive` makes of commit in the mirror: the
// bytes gitblk's tar export must equal.
func gitArchive(t *testing.T, gitDir, commit string) []byte {
	t.Helper()
	cmd := exec.Command("git", "--git-dir="+gitDir, "archive", "--format=tar", commit)
	cmd.Env = gitEnv(t)
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("git archive: %v", err)
	}
	return b
}

// sameTar reports whether a gitblk tar image equals git archive's bytes:
// the same up to the shorter one's end, zeros after (git archive pads to
// 10 KiB records, gitblk to 4 KiB).
func sameTar(img, archive []byte) bool {
	n := min(len(img), len(archive))
	if !bytes.Equal(img[:n], archive[:n]) {
		return false
	}
	rest := img[n:]
	if len(archive) > n {
		rest = archive[n:]
	}
	return len(bytes.Trim(rest, "\x00")) == 0
}

// TestServedFromMirror is what serve does with a mirror: one gitfs.Repo
// opened on GitDir for all connections, a ref resolved per connection.
// After a fetch, a new resolution gets the new commit while an image laid
// out before keeps reading the old one; after a force-push upstream and gc
// on the mirror, the pinned old image still reads byte for byte as git
// archive made it.
func TestServedFromMirror(t *testing.T) {
	r := newRemote(t)
	oldFiles := map[string]string{"index.html": "<p>old</p>\n", "big.bin": strings.Repeat("old block of bytes\n", 40000)}
	c1 := r.commit(t, "old", oldFiles)
	m, _ := newMirror(t, Config{URL: r.url()})
	if res := m.Fetch(context.Background()); res.Err != nil {
		t.Fatal(res.Err)
	}
	repo, err := gitfs.Open(m.GitDir(), gitfs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	images := gitfs.NewImages(repo, 0, "")
	tar := imager.Options{Format: imager.FormatTar}

	// A connection opens on the old commit and pins it.
	old, err := repo.Resolve("main")
	if err != nil || old.ID != c1 {
		t.Fatalf("resolve main: %v, %v", old, err)
	}
	release, err := m.Pin(old.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	oldImg, _, err := images.Image(old, tar)
	if err != nil {
		t.Fatal(err)
	}
	want := readImage(t, oldImg)
	if !sameTar(want, gitArchive(t, m.GitDir(), c1)) {
		t.Fatalf("old image differs from git archive")
	}

	// Upstream is rewritten: a new root commit replaces main by force,
	// and the old objects are pruned there.
	run(t, r.work, "checkout", "--quiet", "--orphan", "rewrite")
	run(t, r.work, "rm", "-rf", "--quiet", ".")
	if err := os.WriteFile(filepath.Join(r.work, "index.html"), []byte("<p>new</p>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(r.work, "new.bin"), bytes.Repeat([]byte("new block\n"), 50000), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, r.work, "add", "-A")
	run(t, r.work, "commit", "--quiet", "-m", "rewrite")
	run(t, r.work, "push", "--quiet", "--force", "origin", "rewrite:main")
	run(t, r.bare, "gc", "--quiet", "--prune=now")
	c2 := run(t, r.work, "rev-parse", "HEAD")
	if res := m.Fetch(context.Background()); res.Err != nil || !res.Changed {
		t.Fatalf("fetch: %+v", res)
	}

	// A new connection gets the new commit, from the same open Repo.
	cur, err := repo.Resolve("main")
	if err != nil || cur.ID != c2 {
		t.Fatalf("resolve main after the fetch: %v, %v (want %s)", cur, err, c2)
	}
	newImg, _, err := images.Image(cur, tar)
	if err != nil {
		t.Fatal(err)
	}
	if !sameTar(readImage(t, newImg), gitArchive(t, m.GitDir(), c2)) {
		t.Fatalf("new image differs from git archive")
	}

	// gc on the mirror, with the old commit unreachable but pinned.
	run(t, m.GitDir(), "reflog", "expire", "--expire=now", "--all")
	run(t, m.GitDir(), "gc", "--quiet", "--prune=now")
	if got := readImage(t, oldImg); !bytes.Equal(got, want) {
		t.Fatalf("pinned old image reads other bytes after gc")
	}
	// A new Repo, as after a restart, still finds the pinned commit.
	repo2, err := gitfs.Open(m.GitDir(), gitfs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer repo2.Close()
	again, err := repo2.Resolve(c1)
	if err != nil {
		t.Fatal(err)
	}
	img2, _, err := gitfs.NewImages(repo2, 0, "").Image(again, tar)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readImage(t, img2), want) {
		t.Fatalf("the pinned commit's image, laid out again after gc, differs")
	}
}
