package gitfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gitblk/gitblk/imager"
	"github.com/gitblk/gitblk/internal/testutil"
)

// kindMode is the git mode of each entry kind.
var kindMode = map[imager.Kind]string{
	imager.KindFile:       "100644",
	imager.KindExecutable: "100755",
	imager.KindSymlink:    "120000",
	imager.KindSubmodule:  "160000",
	imager.KindDir:        "040000",
}

// richRepo makes a repository with long and non-ASCII names, a deep
// tree, empty files, executables, symlinks, a submodule and names that
// test git's tree order.
func richRepo(t *testing.T) (dir, commit string) {
	dir = testutil.NewRepo(t)
	long := strings.Repeat("l", 120)
	files := map[string]string{
		"README":                          "hello\n",
		"empty":                           "",
		"dir/empty":                       "",
		"dir/a.b":                         "x",
		"dir/a-b":                         "y",
		"dir/a0":                          "z",
		"dir/a/inner":                     "inner\n",
		"dir with space/file name":        "space\n",
		"ünïcødé/日本語.txt":                 "utf8\n",
		long + "/" + long + "/" + long:    "long\n",
		strings.Repeat("n", 255):          "max name\n",
		"big/random.bin":                  string(bytes.Repeat([]byte("0123456789abcdef"), 40000)),
		"a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p": "deep\n",
	}
	for name, data := range files {
		testutil.WriteFile(t, dir, name, []byte(data), 0o644)
	}
	testutil.WriteFile(t, dir, "bin/run.sh", []byte("#!/bin/sh\necho hi\n"), 0o755)
	if err := os.Symlink("README", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../dir/a/inner", filepath.Join(dir, "bin/rel")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/nowhere/at/all", filepath.Join(dir, "dangling")); err != nil {
		t.Fatal(err)
	}
	testutil.Git(t, dir, "add", "-A")
	// A submodule: a gitlink entry naming some commit.
	testutil.Git(t, dir, "update-index", "--add", "--cacheinfo", "160000,1234567890abcdef1234567890abcdef12345678,sub")
	testutil.Git(t, dir, "commit", "-q", "-m", "rich")
	return dir, testutil.Git(t, dir, "rev-parse", "HEAD")
}

// lsTree is `git ls-tree -r -t -l` of commit as "mode id size path" lines.
func lsTree(t *testing.T, dir, commit string) []string {
	out := testutil.GitBytes(t, dir, "ls-tree", "-r", "-t", "-l", "-z", commit)
	var lines []string
	for _, rec := range bytes.Split(bytes.TrimSuffix(out, []byte{0}), []byte{0}) {
		meta, path, ok := bytes.Cut(rec, []byte{'\t'})
		if !ok {
			t.Fatalf("ls-tree record %q", rec)
		}
		f := strings.Fields(string(meta)) // mode type id size
		size := f[3]
		if size == "-" {
			size = "0"
		}
		lines = append(lines, fmt.Sprintf("%s %s %s %s", f[0], f[2], size, path))
	}
	return lines
}

func treeLines(t *testing.T, tr *imager.Tree) []string {
	var lines []string
	for _, e := range tr.Entries {
		// Blob is the blob id, the tree id of a directory, the commit id
		// of a submodule.
		lines = append(lines, fmt.Sprintf("%s %s %d %s", kindMode[e.Kind], e.Blob, e.Size, e.Path))
	}
	return lines
}

// compareListing checks Tree against git ls-tree, entry by entry.
func compareListing(t *testing.T, r *Repo, dir, commit string) *imager.Tree {
	t.Helper()
	c, err := r.Resolve(commit)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := r.Tree(c, false)
	if err != nil {
		t.Fatalf("Tree: %v", err)
	}
	if tr.CommitID != commit || !tr.Time.Equal(c.Time) {
		t.Errorf("Tree commit %s %v, want %s %v", tr.CommitID, tr.Time, commit, c.Time)
	}
	want := lsTree(t, dir, commit)
	got := treeLines(t, tr)
	if len(got) != len(want) {
		t.Errorf("Tree has %d entries, git ls-tree %d", len(got), len(want))
	}
	for i := 0; i < len(got) && i < len(want); i++ {
		w := want[i]
		if got[i] != w {
			t.Errorf("entry %d:\n got  %q\n want %q", i, got[i], w)
		}
	}
	for _, e := range tr.Entries {
		if e.Kind == imager.KindSymlink {
			want := string(testutil.GitBytes(t, dir, "cat-file", "blob", e.Blob.String()))
			if e.Target != want {
				t.Errorf("symlink %s target %q, want %q", e.Path, e.Target, want)
			}
		} else if e.Target != "" {
			t.Errorf("%s %s has a target %q", e.Kind, e.Path, e.Target)
		}
	}
	return tr
}

func TestTreeMatchesLsTree(t *testing.T) {
	dir, commit := richRepo(t)
	r := openRepo(t, dir, Options{})
	tr := compareListing(t, r, dir, commit)
	kinds := map[imager.Kind]int{}
	for _, e := range tr.Entries {
		kinds[e.Kind]++
	}
	for k := imager.KindFile; k <= imager.KindDir; k++ {
		if kinds[k] == 0 {
			t.Errorf("the test tree has no %s", k)
		}
	}
	// Packed, with deltas (sizes then come from pack headers and delta
	// headers): the same listing, through the same open Repo.
	testutil.WriteFile(t, dir, "big/random2.bin", append(bytes.Repeat([]byte("0123456789abcdef"), 40000), "tail"...), 0o644)
	commit2 := testutil.CommitAll(t, dir, "similar")
	testutil.Git(t, dir, "gc", "-q", "--aggressive", "--prune=now")
	if !strings.Contains(testutil.Git(t, dir, "verify-pack", "-v", testutil.PackIdx(t, dir)), "chain length") {
		t.Fatal("expected deltified objects after gc --aggressive")
	}
	compareListing(t, r, dir, commit2)
	compareListing(t, r, dir, commit)
}

// packIdx returns the path of the repository's one pack index.

func TestTreeMissingObjects(t *testing.T) {
	for _, tc := range []struct {
		name, path, kind string
	}{
		{"subtree", "dir/a", "tree"},
		{"root tree", "", "tree"},
		{"blob", "dir/a/inner", "blob"},
		{"symlink blob", "link", "blob"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, commit := richRepo(t)
			r := openRepo(t, dir, Options{})
			c, err := r.Resolve(commit)
			if err != nil {
				t.Fatal(err)
			}
			id := testutil.Git(t, dir, "rev-parse", commit+":"+tc.path)
			if err := os.Remove(testutil.LoosePath(dir, id)); err != nil {
				t.Fatal(err)
			}
			_, err = r.Tree(c, false)
			if !errors.Is(err, ErrMissingObject) {
				t.Fatalf("Tree = %v, want ErrMissingObject", err)
			}
			where := tc.path
			if where == "" {
				where = "/"
			}
			for _, s := range []string{id, strconv.Quote(where), tc.kind} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not name %s", err, s)
				}
			}
		})
	}
}

func TestTreeCorruptObject(t *testing.T) {
	dir, commit := richRepo(t)
	r := openRepo(t, dir, Options{})
	c, err := r.Resolve(commit)
	if err != nil {
		t.Fatal(err)
	}
	id := testutil.Git(t, dir, "rev-parse", commit+":dir")
	// Cut the zlib stream short: the tree is shorter than its header says.
	testutil.DamageLoose(t, dir, id, func(b []byte) []byte { return b[:len(b)/2] })
	_, err = r.Tree(c, false)
	if !errors.Is(err, ErrCorruptObject) || !strings.Contains(err.Error(), id) || !strings.Contains(err.Error(), `"dir"`) {
		t.Fatalf("Tree = %v, want ErrCorruptObject naming %s at dir", err, id)
	}
}

func TestTreeEmptyDirectoriesAsGitArchive(t *testing.T) {
	testutil.NeedTool(t, "tar", "tar")
	dir := testutil.NewRepo(t)
	// A tree holding an empty tree, and a directory holding only that:
	// git archive leaves both out; a submodule alone keeps its directory.
	empty := testutil.Git(t, dir, "mktree", "--missing")
	blob := testutil.Git(t, dir, "hash-object", "-w", "--stdin")
	onlyEmpty := mktree(t, dir, "040000 tree "+empty+"\tnothing")
	withSub := mktree(t, dir, "160000 commit 1234567890abcdef1234567890abcdef12345678\tsub")
	root := mktree(t, dir,
		"100644 blob "+blob+"\tfile",
		"040000 tree "+empty+"\tempty",
		"040000 tree "+onlyEmpty+"\touter",
		"040000 tree "+withSub+"\tmod")
	commit := testutil.Git(t, dir, "commit-tree", "-m", "empty dirs", root)
	got, want := entryList(listTree(t, dir, commit, false)), archiveList(t, dir, commit)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("listing differs from git archive:\n%s", listDiff(got, want))
	}
}

// listTree opens dir and lists the tree of rev.
func listTree(t *testing.T, dir, rev string, exportIgnore bool) *imager.Tree {
	t.Helper()
	r := openRepo(t, dir, Options{})
	c, err := r.Resolve(rev)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := r.Tree(c, exportIgnore)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// mktree writes a tree from ls-tree style lines and returns its id.
func mktree(t *testing.T, dir string, lines ...string) string {
	t.Helper()
	out, err := testutil.GitOutput(dir, strings.NewReader(strings.Join(lines, "\n")+"\n"), "mktree", "--missing")
	if err != nil {
		t.Fatalf("git mktree: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// TestTreeEmptyDirectoriesDeep: directories with nothing but directories
// below are left out at every depth, whether listed as segments of their
// own (near the root) or inline by the segment above (deeper), and the
// order stays git archive's.
func TestTreeEmptyDirectoriesDeep(t *testing.T) {
	testutil.NeedTool(t, "tar", "tar")
	dir := testutil.NewRepo(t)
	empty := testutil.Git(t, dir, "mktree", "--missing")
	blob := testutil.Git(t, dir, "hash-object", "-w", "--stdin")
	onlyEmpty := mktree(t, dir, "040000 tree "+empty+"\tnothing")
	withFile := mktree(t, dir, "100644 blob "+blob+"\tf", "040000 tree "+onlyEmpty+"\tz")
	chainEmpty, chainFile := onlyEmpty, withFile
	for i := 0; i < 5; i++ {
		chainEmpty = mktree(t, dir, "040000 tree "+chainEmpty+"\tl"+strconv.Itoa(i))
		chainFile = mktree(t, dir, "040000 tree "+chainEmpty+"\ta", "040000 tree "+chainFile+"\tl"+strconv.Itoa(i), "100644 blob "+blob+"\tz")
	}
	mid := mktree(t, dir, "040000 tree "+chainEmpty+"\te", "040000 tree "+chainFile+"\tf", "040000 tree "+onlyEmpty+"\tg")
	root := mktree(t, dir,
		"040000 tree "+chainEmpty+"\ta",
		"040000 tree "+mid+"\tb",
		"040000 tree "+chainFile+"\tc",
		"100644 blob "+blob+"\td",
		"040000 tree "+mktree(t, dir, "040000 tree "+mid+"\tx", "040000 tree "+chainEmpty+"\ty")+"\te")
	commit := testutil.Git(t, dir, "commit-tree", "-m", "deep empty dirs", root)
	got, want := entryList(listTree(t, dir, commit, false)), archiveList(t, dir, commit)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("listing differs from git archive:\n%s", listDiff(got, want))
	}
	if len(want) < 20 {
		t.Fatalf("git archive lists only %d entries: the test tree is not what it should be", len(want))
	}
}

// TestTreePlain: a listing is marked plain (imager.Tree.Plain) exactly
// when imager would find it so itself: not with a symlink, nor when a
// crafted tree object lists siblings out of git's order or twice, deep in
// the tree or near the root (segments of their own).
func TestTreePlain(t *testing.T) {
	dir := testutil.NewRepo(t)
	for _, p := range []string{"a0", "a.b", "a-b/c", "a/b/c/d/e/f", "a/b/c/d/e/g", "a/b/x", "z/y/x/w", "z/y/x.txt", "zz"} {
		testutil.WriteFile(t, dir, p, []byte(p), 0o644)
	}
	commit := testutil.CommitAll(t, dir, "plain")
	listing := func(commit string) *imager.Tree { return listTree(t, dir, commit, false) }
	// imagerPlain is imager's own check: FollowSymlinks returns a tree it
	// finds plain as is.
	imagerPlain := func(tr *imager.Tree) bool {
		cp := *tr
		cp.Plain = false
		got, _ := imager.FollowSymlinks(&cp)
		return got == &cp
	}
	if tr := listing(commit); !tr.Plain || !imagerPlain(tr) {
		t.Errorf("plain tree: Plain %v, imager finds it plain: %v; want both", tr.Plain, imagerPlain(tr))
	}
	rich, richCommit := richRepo(t)
	if tr := listTree(t, rich, richCommit, false); tr.Plain {
		t.Error("tree with symlinks: Plain, want false")
	}

	// Crafted trees, written as raw objects: siblings swapped, or twice.
	blob := testutil.Git(t, dir, "rev-parse", commit+":a0")
	rawTree := func(names ...string) string {
		t.Helper()
		var b bytes.Buffer
		for _, n := range names {
			id := blob
			mode := "100644"
			if strings.HasSuffix(n, "/") {
				n, mode, id = strings.TrimSuffix(n, "/"), "40000", testutil.Git(t, dir, "rev-parse", commit+":a-b")
			}
			fmt.Fprintf(&b, "%s %s\x00", mode, n)
			raw := make([]byte, 20)
			for i := range raw {
				v, _ := strconv.ParseUint(id[2*i:2*i+2], 16, 8)
				raw[i] = byte(v)
			}
			b.Write(raw)
		}
		out, err := testutil.GitOutput(dir, &b, "hash-object", "-t", "tree", "--literally", "-w", "--stdin")
		if err != nil {
			t.Fatalf("git hash-object: %v", err)
		}
		return strings.TrimSpace(string(out))
	}
	commitOf := func(tree string) string { return testutil.Git(t, dir, "commit-tree", "-m", "crafted", tree) }
	deep := func(tree string) string { // tree four levels down
		for _, n := range []string{"d3", "d2", "d1", "d0"} {
			tree = mktree(t, dir, "040000 tree "+tree+"\t"+n)
		}
		return tree
	}
	for _, tc := range []struct {
		name  string
		tree  string
		plain bool
	}{
		{"sorted", rawTree("a", "b", "c/"), true},
		{"swapped at the root", rawTree("b", "a"), false},
		{"twice at the root", rawTree("a", "a"), false},
		{"file and directory of one name", rawTree("a", "a/"), false},
		{"directory sorts as name/", rawTree("a.b", "a/"), true},
		{"sorted deep", deep(rawTree("a", "b")), true},
		{"swapped deep", deep(rawTree("b", "a")), false},
		{"twice deep", deep(rawTree("b", "b")), false},
	} {
		tr := listing(commitOf(tc.tree))
		if tr.Plain != tc.plain {
			t.Errorf("%s: Plain %v, want %v", tc.name, tr.Plain, tc.plain)
		}
		if tr.Plain && !imagerPlain(tr) {
			t.Errorf("%s: Plain, but imager does not find it plain", tc.name)
		}
	}
}

// TestTreeHints lists a packed tree big enough to be sized in id order:
// every file comes with a hint for reading its blob, directories with
// none, and the image read with them has git archive's bytes.
func TestTreeHints(t *testing.T) {
	dir := testutil.NewRepo(t)
	for i := range 300 {
		testutil.WriteFile(t, dir, fmt.Sprintf("d%d/f%03d", i%5, i), []byte(fmt.Sprintf("file %d\n", i)), 0o644)
	}
	testutil.CommitAll(t, dir, "files")
	testutil.Git(t, dir, "gc", "-q")
	tr := listTree(t, dir, "HEAD", false)
	if len(tr.Hints) != len(tr.Entries) {
		t.Fatalf("%d hints for %d entries", len(tr.Hints), len(tr.Entries))
	}
	for i, e := range tr.Entries {
		if (e.Kind == imager.KindFile) != (tr.Hints[i] != 0) {
			t.Errorf("%s (%v): hint %#x", e.Path, e.Kind, tr.Hints[i])
		}
	}
	r := openRepo(t, dir, Options{})
	c, err := r.Resolve("HEAD")
	if err != nil {
		t.Fatal(err)
	}
	l, _, err := NewImages(r, 2, t.TempDir()).Image(c, imager.Options{Format: imager.FormatTar})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(io.NewSectionReader(l, 0, l.Size()))
	if err != nil {
		t.Fatal(err)
	}
	// git archive pads to 10 KiB records, gitblk to 4 KiB: the same bytes
	// up to the shorter one's end, zeros after.
	want := testutil.GitBytes(t, dir, "archive", "--format=tar", "HEAD")
	n := min(len(got), len(want))
	if !bytes.Equal(got[:n], want[:n]) || bytes.ContainsFunc(got[n:], func(r rune) bool { return r != 0 }) ||
		bytes.ContainsFunc(want[n:], func(r rune) bool { return r != 0 }) {
		t.Errorf("image with hints differs from git archive (%d bytes, %d)", len(got), len(want))
	}
}
