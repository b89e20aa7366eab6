package integration

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitblk/gitblk/internal/testutil"
)

// richFiles is a tree with the shapes that trip image writers up.
func richFiles() map[string]string {
	long := strings.Repeat("very-long-directory-name-", 5)
	return map[string]string{
		"README.md":                     "# site\n",
		"index.html":                    "<h1>hello</h1>\n",
		"empty":                         "",
		"assets/css/site.css":           "body{}\n",
		"assets/img/blob.bin":           strings.Repeat("\x00\x01\x02binary", 40000),
		"deep/a/b/c/d/e/f/g/h/file.txt": "deep\n",
		long + "/" + long + "/name.txt": "long path\n",
		"ünïcødé/日本語のファイル名.txt":              "non-ascii\n",
		"private/secret.txt":                 "not exported\n",
		"notes.draft":                        "not exported\n",
		"docs/keep.txt":                      "kept\n",
		"docs/internal.draft":                "not exported\n",
		".gitattributes":                     "private export-ignore\n*.draft export-ignore\n",
		"Space In Name/file with spaces.txt": "spaces\n",
	}
}

// richRepo makes a repository from richFiles plus an executable and symlinks.
func richRepo(t *testing.T) string {
	t.Helper()
	repo := newRepo(t, richFiles())
	if err := os.WriteFile(filepath.Join(repo, "run.sh"), []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("index.html", filepath.Join(repo, "home.html")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("assets/css", filepath.Join(repo, "css")); err != nil {
		t.Fatal(err)
	}
	testutil.Git(t, repo, "add", "-A")
	testutil.Git(t, repo, "commit", "-q", "-m", "exec and links")
	return repo
}

// gitArchive returns `git archive --format=tar ref` of repo.
func gitArchive(t *testing.T, repo, ref string) []byte {
	t.Helper()
	out, err := testutil.GitOutput(repo, nil, "archive", "--format=tar", ref)
	if err != nil {
		t.Fatalf("git archive: %v", err)
	}
	return out
}

// checkTarPrefix checks img begins with git archive's bytes up to its two
// end blocks, then holds only zeros, and is a multiple of 4096.
func checkTarPrefix(t *testing.T, img, archive []byte) {
	t.Helper()
	if len(img)%4096 != 0 {
		t.Errorf("image size %d is not a multiple of 4096", len(img))
	}
	// git archive pads to 10240-byte records with zeros: compare the
	// common prefix, then require zeros in whichever is longer.
	n := min(len(img), len(archive))
	if !bytes.Equal(img[:n], archive[:n]) {
		i := 0
		for i < n && img[i] == archive[i] {
			i++
		}
		t.Fatalf("image differs from git archive at byte %d (block %d)", i, i/512)
	}
	for _, tail := range [][]byte{img[n:], archive[n:]} {
		if len(bytes.Trim(tail, "\x00")) != 0 {
			t.Fatalf("non-zero bytes after the common prefix of image and git archive")
		}
	}
}

func TestBuildTarEqualsGitArchive(t *testing.T) {
	repo := richRepo(t)
	img := buildImage(t, "tar", repo, "main")
	checkTarPrefix(t, img, gitArchive(t, repo, "main"))

	// bsdtar extracts every exported file with git's content.
	testutil.NeedTool(t, "bsdtar", "libarchive-tools")
	dir := t.TempDir()
	cmd := exec.Command("bsdtar", "-xf", "-", "-C", dir)
	cmd.Stdin = bytes.NewReader(img)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bsdtar -x: %v\n%s", err, out)
	}
	for _, name := range []string{"private/secret.txt", "notes.draft", "docs/internal.draft"} {
		if _, err := os.Lstat(filepath.Join(dir, name)); !os.IsNotExist(err) {
			t.Errorf("%s: export-ignore not honored (lstat: %v)", name, err)
		}
	}
	for path, sum := range gitFileSums(t, repo, "main") {
		if strings.HasPrefix(path, "private/") || strings.HasSuffix(path, ".draft") {
			continue
		}
		p := filepath.Join(dir, filepath.FromSlash(path))
		st, err := os.Lstat(p)
		if err != nil {
			t.Errorf("%s: missing from extraction: %v", path, err)
			continue
		}
		var data []byte
		if st.Mode()&os.ModeSymlink != 0 {
			target, _ := os.Readlink(p)
			data = []byte(target)
		} else if data, err = os.ReadFile(p); err != nil {
			t.Fatal(err)
		}
		if got := sha256.Sum256(data); hex.EncodeToString(got[:]) != sum {
			t.Errorf("%s: extracted content differs from git's blob", path)
		}
	}
	if st, err := os.Stat(filepath.Join(dir, "run.sh")); err != nil || st.Mode().Perm()&0o100 == 0 {
		t.Errorf("run.sh: not executable after extraction (%v, %v)", st, err)
	}
}

// gitFileSums maps every file and symlink path of ref to the sha256 of its
// blob, computed by git cat-file.
func gitFileSums(t *testing.T, repo, ref string) map[string]string {
	t.Helper()
	sums := map[string]string{}
	for _, line := range strings.Split(testutil.Git(t, repo, "ls-tree", "-r", "-z", ref), "\x00") {
		if line == "" {
			continue
		}
		meta, path, _ := strings.Cut(line, "\t")
		f := strings.Fields(meta)
		if f[1] != "blob" {
			continue
		}
		data, err := testutil.GitOutput(repo, nil, "cat-file", "blob", f[2])
		if err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256(data)
		sums[path] = hex.EncodeToString(s[:])
	}
	return sums
}

func TestBuildFATChecks(t *testing.T) {
	testutil.NeedTool(t, "fsck.fat", "dosfstools")
	testutil.NeedTool(t, "mcopy", "mtools")
	repo := richRepo(t)
	for _, sector := range []string{"512", "4096"} {
		t.Run("sector"+sector, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "site.img")
			cmd := exec.Command(gitblkBin, "build", "--format", "fat", "--sector-size", sector, "-o", out, repo, "main")
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("gitblk build: %v\n%s", err, b)
			}
			if b, err := exec.Command("fsck.fat", "-n", "-v", out).CombinedOutput(); err != nil {
				t.Fatalf("fsck.fat -n: %v\n%s", err, b)
			}
			for path, sum := range gitFileSums(t, repo, "main") {
				if strings.HasPrefix(path, "private/") || strings.HasSuffix(path, ".draft") {
					continue
				}
				if path == "home.html" || path == "css" {
					continue // symlinks: checked below as copies of their targets
				}
				cmd := exec.Command("mcopy", "-n", "-i", out, "::/"+path, "-")
				cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8")
				data, err := cmd.Output()
				if err != nil {
					t.Errorf("mcopy %s: %v", path, err)
					continue
				}
				if got := sha256.Sum256(data); hex.EncodeToString(got[:]) != sum {
					t.Errorf("%s: mcopy content differs from git's blob", path)
				}
			}
			// Followed links hold copies of their targets, file and directory.
			for path, want := range map[string]string{"home.html": "<h1>hello</h1>\n", "css/site.css": "body{}\n"} {
				cmd := exec.Command("mcopy", "-n", "-i", out, "::/"+path, "-")
				if data, err := cmd.Output(); err != nil || string(data) != want {
					t.Errorf("%s through the followed link: %q, %v", path, data, err)
				}
			}
		})
	}
}

func TestBuildWritesAtomically(t *testing.T) {
	repo := newRepo(t, map[string]string{"a.txt": "a\n"})
	dir := t.TempDir()
	out := filepath.Join(dir, "out.img")
	if err := os.WriteFile(out, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A failing build (unknown rev) leaves the old file and no temporary.
	if b, err := exec.Command(gitblkBin, "build", "-o", out, repo, "nope").CombinedOutput(); err == nil {
		t.Fatalf("build of unknown rev succeeded:\n%s", b)
	}
	if data, _ := os.ReadFile(out); string(data) != "old" {
		t.Errorf("failed build changed the output file")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("failed build left files behind: %v", ents)
	}
	// Standard output: the same bytes as -o FILE.
	cmd := exec.Command(gitblkBin, "build", repo, "main")
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stdout.Bytes(), buildImage(t, "tar", repo, "main")) {
		t.Errorf("build to stdout differs from build -o FILE")
	}
}

func TestCLIErrors(t *testing.T) {
	repo := newRepo(t, map[string]string{"a.txt": "a\n"})
	testutil.Git(t, repo, "tag", "v1")
	notRepo := t.TempDir()
	cases := []struct {
		args []string
		want []string // substrings of stderr
		code int
	}{
		{[]string{"build", "-o", "-", notRepo, "main"}, []string{notRepo, "not a git repository"}, 1},
		{[]string{"build", "-o", "-", repo, "nosuchref"}, []string{"nosuchref", "main", "v1"}, 1},
		{[]string{"build", "-o", filepath.Join(notRepo, "no", "such", "dir", "x.img"), repo, "main"}, []string{"x.img"}, 1},
		{[]string{"build", "--format", "iso", repo, "main"}, []string{"iso"}, 2},
		{[]string{"build", repo}, []string{"want 2 arguments"}, 2},
		{[]string{"frob"}, []string{"unknown command"}, 2},
		{[]string{"serve", "--listen", "nonsense", repo, "main"}, []string{"nonsense"}, 2},
		{[]string{"serve", "--listen", "unix:" + filepath.Join(notRepo, "s.sock"), repo, "nosuchref"}, []string{"nosuchref"}, 1},
	}
	for _, c := range cases {
		cmd := exec.Command(gitblkBin, c.args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if code != c.code {
			t.Errorf("gitblk %s: exit %d, want %d\n%s", strings.Join(c.args, " "), code, c.code, stderr.String())
		}
		for _, w := range c.want {
			if !strings.Contains(stderr.String(), w) {
				t.Errorf("gitblk %s: stderr does not mention %q:\n%s", strings.Join(c.args, " "), w, stderr.String())
			}
		}
	}
	// Missing object: a blob deleted from a loose repository.
	blob := testutil.Git(t, repo, "rev-parse", "main:a.txt")
	if err := os.Remove(filepath.Join(repo, ".git", "objects", blob[:2], blob[2:])); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(gitblkBin, "build", "-o", filepath.Join(t.TempDir(), "x"), repo, "main")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), blob) {
		t.Errorf("build with a missing blob: %v, want an error naming %s:\n%s", err, blob, out)
	}
}

func TestLsWarnsAndListsExtents(t *testing.T) {
	// A name over 512 bytes of pax data: Mirage's tar reader cannot take it.
	long := strings.Repeat("d", 200) + "/" + strings.Repeat("e", 200) + "/" + strings.Repeat("f", 200)
	repo := newRepo(t, map[string]string{"short.txt": "s\n", long: "long\n"})
	cmd := exec.Command(gitblkBin, "ls", "--json", repo, "main")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("gitblk ls --json: %v", err)
	}
	var ls struct {
		Commit  string
		Size    int64
		Extents []struct {
			Offset, Length int64
			Kind, What     string
		}
		Warnings []struct{ Path, Message string }
	}
	if err := json.Unmarshal(out, &ls); err != nil {
		t.Fatalf("ls --json output: %v\n%s", err, out)
	}
	if ls.Commit != testutil.Git(t, repo, "rev-parse", "main") {
		t.Errorf("ls commit %q", ls.Commit)
	}
	var next int64
	for _, e := range ls.Extents {
		if e.Offset != next || e.Length <= 0 {
			t.Fatalf("extent table not contiguous at %+v (want offset %d)", e, next)
		}
		next += e.Length
	}
	if next != ls.Size || ls.Size%4096 != 0 {
		t.Errorf("extents end at %d, size %d", next, ls.Size)
	}
	if len(ls.Warnings) != 1 || ls.Warnings[0].Path != long {
		t.Errorf("warnings = %+v, want one naming the long path", ls.Warnings)
	}
	// build reports the same warning on stderr and still writes the image.
	cmd = exec.Command(gitblkBin, "build", "-o", filepath.Join(t.TempDir(), "x.tar"), repo, "main")
	b, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(b), long) || !strings.Contains(string(b), "warning") {
		t.Errorf("build: %v, want a warning naming the long path:\n%s", err, b)
	}
}

// TestBuildOutputModeAndLinks: an existing output keeps its mode, a
// symlinked output replaces the link's target and keeps the link.
func TestBuildOutputModeAndLinks(t *testing.T) {
	repo := newRepo(t, map[string]string{"a.txt": "a\n"})
	dir := t.TempDir()
	target := filepath.Join(dir, "real.img")
	if err := os.WriteFile(target, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.img")
	if err := os.Symlink("real.img", link); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command(gitblkBin, "build", "-o", link, repo, "main").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, b)
	}
	if st, err := os.Lstat(link); err != nil || st.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the output symlink was replaced: %v %v", st, err)
	}
	st, err := os.Stat(target)
	if err != nil || st.Mode().Perm() != 0o600 || st.Size() < 4096 {
		t.Errorf("target after build: %v %v, want the image with mode 0600", st, err)
	}
}
