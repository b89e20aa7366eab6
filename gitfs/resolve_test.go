package gitfs

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gitblk/gitblk/internal/testutil"
)

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

// TestResolveAmbiguousShortID: a short id that two commits start with is
// refused, as git refuses it, naming both; one that a commit and a blob
// start with names the commit, as git rev-parse X^{commit} does.
func TestResolveAmbiguousShortID(t *testing.T) {
	dir := testutil.NewRepo(t)
	emptyTree := strings.TrimSpace(string(gitStdin(t, dir, nil, "hash-object", "-t", "tree", "-w", "--stdin")))
	commitBody := func(i int) []byte {
		return []byte(fmt.Sprintf("tree %s\nauthor A <a@example.com> 0 +0000\ncommitter A <a@example.com> 0 +0000\n\ncommit %d\n", emptyTree, i))
	}
	objectID := func(typ string, body []byte) string {
		sum := sha1.Sum(append([]byte(fmt.Sprintf("%s %d\x00", typ, len(body))), body...))
		return hex.EncodeToString(sum[:])
	}
	// Commits until two ids share their first 4 hex digits (a few hundred
	// by the birthday bound), and a blob that shares them too.
	seen := map[string]int{}
	var a, b []byte
	for i := 0; a == nil; i++ {
		p := objectID("commit", commitBody(i))[:minShortID]
		if j, ok := seen[p]; ok {
			a, b = commitBody(j), commitBody(i)
		}
		seen[p] = i
	}
	prefix := objectID("commit", a)[:minShortID]
	// A blob that a and b share their prefix with, and a third commit c
	// with a blob of its own sharing c's prefix.
	blobWithPrefix := func(p string) []byte {
		for i := 0; ; i++ {
			if d := []byte(fmt.Sprintf("blob %d\n", i)); objectID("blob", d)[:minShortID] == p {
				return d
			}
		}
	}
	c := commitBody(0)
	for i := 1; objectID("commit", c)[:minShortID] == prefix; i++ {
		c = commitBody(-i)
	}
	var ids []string
	for _, o := range []struct {
		typ  string
		body []byte
	}{{"commit", a}, {"commit", b}, {"blob", blobWithPrefix(prefix)}, {"commit", c}, {"blob", blobWithPrefix(objectID("commit", c)[:minShortID])}} {
		id := strings.TrimSpace(string(gitStdin(t, dir, o.body, "hash-object", "-t", o.typ, "-w", "--stdin")))
		if id != objectID(o.typ, o.body) {
			t.Fatalf("git names the %s %s, we computed %s", o.typ, id, objectID(o.typ, o.body))
		}
		ids = append(ids, id)
	}
	testutil.Git(t, dir, "update-ref", "refs/heads/main", ids[0])
	if out, err := testutil.GitOutput(dir, nil, "rev-parse", "--verify", prefix+"^{commit}"); err == nil {
		t.Fatalf("git resolves the ambiguous %s to %s; the test needs git to refuse it", prefix, out)
	}

	r := openRepo(t, dir, Options{})
	for _, rev := range []string{prefix, prefix + "~0", strings.ToUpper(prefix)} {
		_, err := r.Resolve(rev)
		if !errors.Is(err, ErrAmbiguousRevision) || !errors.Is(err, ErrUnknownRevision) {
			t.Errorf("Resolve(%q) = %v, want ErrAmbiguousRevision", rev, err)
			continue
		}
		for _, id := range ids[:2] {
			if !strings.Contains(err.Error(), id) {
				t.Errorf("Resolve(%q) error %q does not name candidate %s", rev, err, id)
			}
		}
		if strings.Contains(err.Error(), ids[2]) {
			t.Errorf("Resolve(%q) error %q names the blob, which no commit-ish name can mean", rev, err)
		}
	}
	// Long enough to tell the commits apart: each resolves, as git has it.
	for _, id := range ids[:2] {
		short := id[:minShortID]
		for n := minShortID + 1; n < len(id); n++ {
			if !strings.HasPrefix(ids[0], id[:n]) || !strings.HasPrefix(ids[1], id[:n]) {
				short = id[:n]
				break
			}
		}
		want := testutil.Git(t, dir, "rev-parse", short+"^{commit}")
		if c, err := r.Resolve(short); err != nil || c.ID != want || want != id {
			t.Errorf("Resolve(%q) = %v, %v; git says %s", short, c, err, want)
		}
	}
	// A commit and a blob sharing a prefix: the commit, as git picks it.
	pair := ids[3][:minShortID]
	if !strings.HasPrefix(ids[4], pair) {
		t.Fatalf("blob %s does not start with %s", ids[4], pair)
	}
	want := testutil.Git(t, dir, "rev-parse", pair+"^{commit}")
	if c, err := r.Resolve(pair); err != nil || c.ID != want || want != ids[3] {
		t.Errorf("Resolve(%q) (a commit and a blob) = %v, %v; git says %s", pair, c, err, want)
	}
}

// gitStdin runs git in dir with stdin and returns its standard output.
func gitStdin(t *testing.T, dir string, stdin []byte, args ...string) []byte {
	t.Helper()
	out, err := testutil.GitOutput(dir, bytes.NewReader(stdin), args...)
	if err != nil {
		t.Fatalf("git %s: %v", strings.Join(args, " "), err)
	}
	return out
}
