package gitfs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// historyRepo makes main with three commits, a branch, a lightweight and
// an annotated tag.
func historyRepo(t *testing.T) (dir string, ids []string) {
	dir = testutil.NewRepo(t)
	for i, s := range []string{"one", "two", "three"} {
		testutil.WriteFile(t, dir, "f.txt", []byte(s+"\n"), 0o644)
		testutil.WriteFile(t, dir, "n"+s, []byte{byte(i)}, 0o644)
		ids = append(ids, testutil.CommitAll(t, dir, s))
	}
	testutil.Git(t, dir, "branch", "side", ids[1])
	testutil.Git(t, dir, "tag", "light", ids[0])
	testutil.Git(t, dir, "tag", "-a", "-m", "annotated", "v1", ids[1])
	testutil.Git(t, dir, "-c", "advice.nestedTag=false", "tag", "-a", "-m", "a tag of a tag", "v1n", "v1")
	testutil.Git(t, dir, "-c", "advice.nestedTag=false", "tag", "-a", "-m", "and of that", "v1nn", "v1n")
	return dir, ids
}

func TestResolveForms(t *testing.T) {
	dir, ids := historyRepo(t)
	r := openRepo(t, dir, Options{})
	for _, rev := range []string{
		"main", "HEAD", "side", "light", "v1", "refs/heads/main", "refs/tags/v1",
		"heads/side", "tags/v1", "main~2", "main^", "main^^", "HEAD~1", "v1~1", "side^",
		ids[0], ids[1][:7], ids[2][:12], ids[2][:5] + "~1",
		"v1n", "refs/tags/v1nn", "tags/v1nn", testutil.Git(t, dir, "rev-parse", "v1nn"),
	} {
		want := testutil.Git(t, dir, "rev-parse", rev+"^{commit}")
		c, err := r.Resolve(rev)
		if err != nil {
			t.Errorf("Resolve(%q): %v", rev, err)
			continue
		}
		if c.ID != want {
			t.Errorf("Resolve(%q) = %s, git says %s", rev, c.ID, want)
		}
		if c.Rev != rev {
			t.Errorf("Resolve(%q).Rev = %q", rev, c.Rev)
		}
		if wantTree := testutil.Git(t, dir, "rev-parse", want+"^{tree}"); c.Tree != wantTree {
			t.Errorf("Resolve(%q).Tree = %s, git says %s", rev, c.Tree, wantTree)
		}
		wantTime, _ := time.Parse(time.RFC3339, testutil.GitDate)
		if !c.Time.Equal(wantTime) {
			t.Errorf("Resolve(%q).Time = %v, want %v", rev, c.Time, wantTime)
		}
	}
}

func TestResolveUnknownListsRefs(t *testing.T) {
	dir, _ := historyRepo(t)
	r := openRepo(t, dir, Options{})
	for _, rev := range []string{"nosuch", "main~10", "refs/heads/nope", "0123456789abcdef0123456789abcdef01234567", ""} {
		_, err := r.Resolve(rev)
		if !errors.Is(err, ErrUnknownRevision) {
			t.Errorf("Resolve(%q) = %v, want ErrUnknownRevision", rev, err)
			continue
		}
		for _, ref := range []string{"refs/heads/main", "refs/heads/side", "refs/tags/v1", "refs/tags/light"} {
			if !strings.Contains(err.Error(), ref) {
				t.Errorf("Resolve(%q) error %q does not list %s", rev, err, ref)
			}
		}
	}
}

func TestResolveSeesMovedRef(t *testing.T) {
	dir, ids := historyRepo(t)
	r := openRepo(t, dir, Options{})
	c, err := r.Resolve("side")
	if err != nil || c.ID != ids[1] {
		t.Fatalf("Resolve(side) = %v, %v; want %s", c, err, ids[1])
	}
	// Move side to a brand-new commit (new loose objects), then to a
	// commit that lives only in a new pack.
	testutil.Git(t, dir, "checkout", "-q", "side")
	testutil.WriteFile(t, dir, "new.txt", []byte("new\n"), 0o644)
	id4 := testutil.CommitAll(t, dir, "four")
	if c, err = r.Resolve("side"); err != nil || c.ID != id4 {
		t.Fatalf("after commit: Resolve(side) = %v, %v; want %s", c, err, id4)
	}
	if _, err := r.Tree(c, false); err != nil {
		t.Fatalf("Tree of the new commit: %v", err)
	}
	testutil.WriteFile(t, dir, "newer.txt", []byte("newer\n"), 0o644)
	id5 := testutil.CommitAll(t, dir, "five")
	testutil.Git(t, dir, "repack", "-q", "-a", "-d")
	testutil.Git(t, dir, "prune-packed")
	if c, err = r.Resolve("side"); err != nil || c.ID != id5 {
		t.Fatalf("after repack: Resolve(side) = %v, %v; want %s", c, err, id5)
	}
	if _, err := r.Tree(c, false); err != nil {
		t.Fatalf("Tree after repack: %v", err)
	}
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
