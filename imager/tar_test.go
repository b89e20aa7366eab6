package imager

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gitblk/gitblk/internal/testutil"
)

// tarArchiveEnd walks a tar stream's headers (as git writes them: only
// regular files have data, sizes in the header, pax headers carry their own
// size) and returns the offset just past the two zero end blocks.
func tarArchiveEnd(t *testing.T, data []byte) int {
	t.Helper()
	zero := make([]byte, tarBlockSize)
	for off := 0; off+tarEndBlocks <= len(data); {
		hdr := data[off : off+tarBlockSize]
		if bytes.Equal(hdr, zero) {
			if !bytes.Equal(data[off+tarBlockSize:off+tarEndBlocks], zero) {
				t.Fatalf("tar: one zero block at %d, then data", off)
			}
			return off + tarEndBlocks
		}
		field := strings.TrimRight(string(hdr[tarSizeOff:tarSizeOff+tarSizeLen]), "\x00 ")
		size, err := strconv.ParseInt(field, 8, 64)
		if err != nil {
			t.Fatalf("tar: bad size %q at %d", field, off)
		}
		off += tarBlockSize + int(size+tarBlockPadding(size))
	}
	t.Fatalf("tar: no end blocks in %d bytes", len(data))
	return 0
}

// checkAgainstGit builds the tar image of rev (listed through the git CLI)
// and checks it is git archive's output up to the end of the archive, then
// zeros to the next multiple of 4096.
func checkAgainstGit(t *testing.T, r *gitRepo, rev string) (*Tree, memBlobs, []byte) {
	t.Helper()
	tree, blobs := r.tree(rev)
	l, warns, err := BuildTar(tree, blobs, Options{})
	if err != nil {
		t.Fatalf("BuildTar: %v", err)
	}
	for _, w := range warns {
		t.Logf("warning: %s", w)
	}
	img := readImage(t, l)
	want := r.archive(rev)
	end := tarArchiveEnd(t, want)
	if wantSize := (end + SectorAlign - 1) / SectorAlign * SectorAlign; len(img) != wantSize {
		t.Errorf("image size %d, want %d (git archive ends at %d)", len(img), wantSize, end)
	}
	diffBytes(t, l, img[:min(end, len(img))], want[:end])
	if i := bytes.IndexFunc(img[min(end, len(img)):], func(r rune) bool { return r != 0 }); i >= 0 {
		t.Errorf("non-zero byte %d bytes after the end of the archive", i)
	}
	return tree, blobs, img
}

// checkBsdtar extracts img with bsdtar and checks every file's sha256
// against `git cat-file -p`, executables' mode, and symlink targets.
func checkBsdtar(t *testing.T, r *gitRepo, tree *Tree, img []byte) {
	t.Helper()
	bsdtar := testutil.NeedTool(t, "bsdtar", "libarchive-tools")
	dir := t.TempDir()
	cmd := exec.Command(bsdtar, "-x", "-f", "-", "-C", dir)
	cmd.Stdin = bytes.NewReader(img)
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bsdtar -x: %v\n%s", err, out)
	}
	files := 0
	for _, e := range tree.Entries {
		p := filepath.Join(dir, filepath.FromSlash(e.Path))
		fi, err := os.Lstat(p)
		if err != nil {
			t.Errorf("%s: not extracted: %v", e.Path, err)
			continue
		}
		switch e.Kind {
		case KindFile, KindExecutable:
			files++
			got, err := os.ReadFile(p)
			if err != nil {
				t.Errorf("%s: %v", e.Path, err)
				continue
			}
			want := r.catFile(e.Blob.String())
			if sha256.Sum256(got) != sha256.Sum256(want) {
				t.Errorf("%s: extracted %d bytes, sha256 differs from git cat-file -p (%d bytes)", e.Path, len(got), len(want))
			}
			if exec := fi.Mode()&0o100 != 0; exec != (e.Kind == KindExecutable) {
				t.Errorf("%s: mode %v for a %v", e.Path, fi.Mode(), e.Kind)
			}
		case KindSymlink:
			if target, err := os.Readlink(p); err != nil || target != string(r.catFile(e.Blob.String())) {
				t.Errorf("%s: readlink = %q, %v; want %q", e.Path, target, err, e.Target)
			}
		case KindDir, KindSubmodule:
			if !fi.IsDir() {
				t.Errorf("%s: %v extracted as %v", e.Path, e.Kind, fi.Mode())
			}
		}
	}
	// Nothing extra was extracted.
	n := 0
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != dir {
			n++
		}
		return err
	})
	if n != len(tree.Entries) {
		t.Errorf("bsdtar extracted %d paths, the tree has %d entries", n, len(tree.Entries))
	}
	t.Logf("bsdtar: %d entries, %d files checked", len(tree.Entries), files)
}

// longNameFiles covers every branch of git's path handling: names of 99,
// 100 and 101 bytes, prefix splits at 154/155/156 bytes, paths that cannot
// be split (last component over 100 bytes, no '/' in the first 155 bytes),
// long directory paths (named after their tree id), and long symlink targets.
func longNameFiles() []memFile {
	rep := strings.Repeat
	var fs []memFile
	add := func(kind Kind, p, data string) { fs = append(fs, memFile{Path: p, Kind: kind, Data: []byte(data)}) }
	add(KindFile, rep("a", 99), "99")
	add(KindFile, rep("b", 100), "100")
	add(KindFile, rep("c", 101), "101: no slash, pax path")
	add(KindFile, "d/"+rep("x", 98), "path of 100")
	add(KindFile, "d/"+rep("y", 99), "path of 101, split after d")
	add(KindFile, "d/"+rep("z", 101), "rest of 101 bytes: pax")
	add(KindFile, "d/"+rep("z", 100), "rest of exactly 100")
	for _, plen := range []int{153, 154, 155, 156, 157} {
		dir := rep("p", plen-4) + "/sub"[:0] // plen-4 bytes, then "/q12" below
		add(KindFile, dir+"/q12/"+rep("n", 60), fmt.Sprintf("prefix candidate %d", plen))
	}
	add(KindFile, rep("s", 200)+"/"+rep("t", 50), "first slash after 155: pax")
	add(KindFile, rep("u/", 120)+"leaf", "deep short components, 244 bytes")
	add(KindFile, rep("v/", 200)+"leaf", "over 255 bytes: pax")
	add(KindFile, rep("w", 150)+"/"+rep("x", 100), "255 bytes: longest split")
	add(KindFile, rep("é", 60)+"/"+rep("ü", 45), "non-ASCII bytes counted, not runes")
	add(KindExecutable, rep("long-dir-", 14)+"/exe", "#!/bin/sh\n")
	add(KindSymlink, "link99", rep("t", 99))
	add(KindSymlink, "link100", rep("t", 100))
	add(KindSymlink, "link101", rep("t", 101))
	add(KindSymlink, rep("L", 120), rep("../", 40)+"target")
	add(KindSymlink, "mirage-too-long", rep("target/", 80))
	add(KindFile, rep("m/", 300)+"too-long-for-mirage", "path pax record over 512 bytes")
	return fs
}

func TestTarMatchesGitArchive(t *testing.T) {
	rep := strings.Repeat
	basic := []memFile{
		{Path: "README", Kind: KindFile, Data: []byte("hello\n")},
		{Path: "empty", Kind: KindFile},
		{Path: "bin/run", Kind: KindExecutable, Data: []byte("#!/bin/sh\necho hi\n")},
		{Path: "bin/empty-exe", Kind: KindExecutable},
		{Path: "exact512", Kind: KindFile, Data: bytes.Repeat([]byte{'x'}, 512)},
		{Path: "big", Kind: KindFile, Data: bytes.Repeat([]byte("0123456789abcdef"), 70000)},
		{Path: "link", Kind: KindSymlink, Data: []byte("README")},
		{Path: "dirlink", Kind: KindSymlink, Data: []byte("bin")},
		{Path: "dangling", Kind: KindSymlink, Data: []byte("../../nowhere")},
		{Path: "sub", Kind: KindSubmodule, Commit: "0123456789abcdef0123456789abcdef01234567"},
		{Path: "a/sub2", Kind: KindSubmodule, Commit: "89abcdef0123456789abcdef0123456789abcdef"},
		{Path: "日本語/ファイル.txt", Kind: KindFile, Data: []byte("non-ASCII")},
		{Path: "Ünïcødé-ñame 😀", Kind: KindFile, Data: []byte("x")},
		{Path: "a b/c\td", Kind: KindFile, Data: []byte("space and tab")},
		{Path: "a-b", Kind: KindFile}, // sorts between "a b/" and "a/" as git sorts
		{Path: "a.", Kind: KindFile},
	}
	deep := []memFile{{Path: rep("d/", 60) + "bottom", Kind: KindFile, Data: []byte("deep")}}
	for i := 0; i < 30; i++ {
		deep = append(deep, memFile{Path: rep("dir/", i) + "f" + strconv.Itoa(i), Kind: KindFile, Data: []byte(strconv.Itoa(i))})
	}
	cases := []struct {
		name  string
		files []memFile
		when  time.Time
	}{
		{"basic", basic, testTime},
		{"long-names", longNameFiles(), testTime},
		{"deep", deep, testTime},
		{"empty-tree", nil, testTime},
		{"random", randomFiles(rand.New(rand.NewSource(7)), 300), testTime},
		// Past 11 octal digits (year 2242): a pax mtime in the global header.
		{"far-future", basic[:3], time.Unix(tarMaxOctal11+12345, 0)},
		{"epoch", basic[:3], time.Unix(0, 0)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newGitRepo(t)
			r.When = c.when
			commit := r.commitFiles(c.files)
			tree, _, img := checkAgainstGit(t, r, commit)
			if !tree.Time.Equal(c.when) {
				t.Fatalf("git recorded commit time %v, want %v", tree.Time, c.when)
			}
			checkBsdtar(t, r, tree, img)
		})
	}
}

// TestTarWorkTreeCommit commits through the ordinary git porcelain (a work
// tree, `git add`, a gitlink added with update-index) rather than
// fast-import, and compares with git archive for a branch name too.
func TestTarWorkTreeCommit(t *testing.T) {
	r := newGitRepo(t)
	r.writeFiles([]memFile{
		{Path: "index.html", Kind: KindFile, Data: []byte("<h1>hi</h1>\n")},
		{Path: "static/app.js", Kind: KindFile, Data: bytes.Repeat([]byte("js;"), 1000)},
		{Path: "static/latest", Kind: KindSymlink, Data: []byte("app.js")},
		{Path: "tools/build.sh", Kind: KindExecutable, Data: []byte("#!/bin/sh\n")},
		{Path: "empty.txt", Kind: KindFile},
	})
	r.git("add", "-A")
	r.git("update-index", "--add", "--cacheinfo", "160000,1234567890123456789012345678901234567890,vendor/lib")
	r.git("commit", "-q", "-m", "site")
	tree, _, img := checkAgainstGit(t, r, "main")
	kinds := map[Kind]int{}
	for _, e := range tree.Entries {
		kinds[e.Kind]++
	}
	if kinds[KindSubmodule] != 1 || kinds[KindSymlink] != 1 || kinds[KindExecutable] != 1 {
		t.Fatalf("tree kinds %v: the test repository is not what it should be", kinds)
	}
	checkBsdtar(t, r, tree, img)
}

// TestTarMemTreeEqualsGitTree checks the test helpers against each other:
// the in-memory tree of random files (git ids computed here) equals the
// tree git lists for the same files, so tests on memory trees test what
// git would produce.
func TestTarMemTreeEqualsGitTree(t *testing.T) {
	files := randomFiles(rand.New(rand.NewSource(1)), 200)
	r := newGitRepo(t)
	commit := r.commitFiles(files)
	gt, gb := r.tree(commit)
	mt, mb := memTree(t, files, commit, testTime)
	if len(gt.Entries) != len(mt.Entries) {
		t.Fatalf("git lists %d entries, memTree %d", len(gt.Entries), len(mt.Entries))
	}
	for i := range gt.Entries {
		if !reflect.DeepEqual(gt.Entries[i], mt.Entries[i]) {
			t.Fatalf("entry %d: git %+v\nmemTree %+v", i, gt.Entries[i], mt.Entries[i])
		}
	}
	if gt.CommitID != mt.CommitID || !gt.Time.Equal(mt.Time) || !reflect.DeepEqual(gb, mb) {
		t.Fatal("commit id, time or blobs differ")
	}
}

// tarOf builds the tar image of files as a memory tree.
func tarOf(t *testing.T, files []memFile, commit string, opts Options) (*Layout, []Warning, []byte) {
	t.Helper()
	tree, blobs := memTree(t, files, commit, testTime)
	l, warns, err := BuildTar(tree, blobs, opts)
	if err != nil {
		t.Fatalf("BuildTar: %v", err)
	}
	return l, warns, readImage(t, l)
}

func TestTarPaddingAndZeroTail(t *testing.T) {
	for _, size := range []int{0, 1, 511, 512, 513, 2560, 2561, 4096, 10000} {
		for _, commit := range []string{"", "0123456789abcdef0123456789abcdef01234567"} {
			files := []memFile{{Path: "f", Kind: KindFile, Data: bytes.Repeat([]byte{0xA5}, size)}}
			l, _, img := tarOf(t, files, commit, Options{})
			// header, content padded to 512, two end blocks, plus the
			// global header (one header block and one record block).
			end := tarBlockSize + size + int(tarBlockPadding(int64(size))) + tarEndBlocks
			if commit != "" {
				end += 2 * tarBlockSize
			}
			if got := tarArchiveEnd(t, img); got != end {
				t.Errorf("size %d: archive ends at %d, want %d", size, got, end)
			}
			if l.Size()%SectorAlign != 0 || l.Size() < int64(end) || l.Size()-int64(end) >= SectorAlign {
				t.Errorf("size %d commit %q: image size %d for an archive of %d", size, commit, l.Size(), end)
			}
			if bytes.ContainsFunc(img[end:], func(r rune) bool { return r != 0 }) {
				t.Errorf("size %d: non-zero bytes after the archive", size)
			}
			// The tail (end blocks and padding) is one zero run.
			tailStart := end - tarEndBlocks - int(tarBlockPadding(int64(size)))
			if n, zero := l.ExtentAt(int64(tailStart)); !zero || n != l.Size()-int64(tailStart) {
				t.Errorf("size %d: ExtentAt(%d) = %d, %v; want the zero tail of %d", size, tailStart, n, zero, l.Size()-int64(tailStart))
			}
		}
	}
	// An archive ending exactly on 4096 gets no padding: 512 header + 2560
	// content + 1024 end blocks.
	l, _, _ := tarOf(t, []memFile{{Path: "f", Kind: KindFile, Data: make([]byte, 2560)}}, "", Options{})
	if l.Size() != SectorAlign {
		t.Errorf("archive of exactly 4096 bytes: image size %d", l.Size())
	}
}

func TestTarMirageWarnings(t *testing.T) {
	rep := strings.Repeat
	files := []memFile{
		{Path: "ok-link", Kind: KindSymlink, Data: []byte(rep("t/", 200))},           // 400-byte linkpath record: fine
		{Path: "long-link", Kind: KindSymlink, Data: []byte(rep("t/", 260))},         // over 512
		{Path: "d/" + rep("p", 600), Kind: KindFile, Data: []byte("x")},              // 602-byte path
		{Path: rep("q", 120), Kind: KindSymlink, Data: []byte(rep("r", 101))},        // pax path + linkpath, small
		{Path: rep("w", 300), Kind: KindSymlink, Data: []byte(rep("r", 250))},        // both, together over 512
		{Path: rep("e/", 240) + "exactly", Kind: KindFile, Data: []byte("boundary")}, // see below
	}
	_, warns, _ := tarOf(t, files, "", Options{Symlinks: SymlinksKeep})
	got := map[string]bool{}
	for _, w := range warns {
		got[w.Path] = true
		if !strings.Contains(w.Msg, "512") || !strings.Contains(w.Msg, "MirageOS") {
			t.Errorf("warning %q does not say why", w)
		}
	}
	// The path record of rep("e/",240)+"exactly" (487 bytes) is
	// "491 path=...\n": 9 + 487 = 496 bytes, at most 512: no warning.
	// Directories over the limit would warn too: the parents here are short.
	want := map[string]bool{"long-link": true, "d/" + rep("p", 600): true, rep("w", 300): true}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("warnings for %v, want %v", short(keys(got)), short(keys(want)))
	}
	// The image itself stays git's: archive/tar reads every entry back.
	_, _, img := tarOf(t, files, "", Options{})
	if hdrs, _ := tarEntries(t, img); len(hdrs) != len(files)+1+240 { // + d/ + e/... dirs
		t.Errorf("%d entries read back, want %d", len(hdrs), len(files)+1+240)
	}
}

// short abbreviates long paths for messages.
func short(ps []string) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		if len(p) > 40 {
			p = fmt.Sprintf("%s...(%d bytes)", p[:30], len(p))
		}
		out[i] = p
	}
	return out
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// tarEntries reads an image back with archive/tar: name -> header and
// content; global headers are skipped.
func tarEntries(t testing.TB, img []byte) ([]*tar.Header, map[string][]byte) {
	t.Helper()
	var hdrs []*tar.Header
	content := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(img))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return hdrs, content
		}
		if err != nil {
			t.Fatalf("archive/tar: %v", err)
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("archive/tar: %s: %v", h.Name, err)
		}
		hdrs = append(hdrs, h)
		content[h.Name] = b
	}
}

func TestTarSymlinkModes(t *testing.T) {
	files := []memFile{
		{Path: "data/file.txt", Kind: KindFile, Data: []byte("the target's content")},
		{Path: "data/run", Kind: KindExecutable, Data: []byte("#!/bin/sh\n")},
		{Path: "link.txt", Kind: KindSymlink, Data: []byte("data/file.txt")},
		{Path: "data/up", Kind: KindSymlink, Data: []byte("../link.txt")}, // a chain
		{Path: "runme", Kind: KindSymlink, Data: []byte("data/run")},
		{Path: "outside", Kind: KindSymlink, Data: []byte("../etc/passwd")},
	}
	t.Run("keep", func(t *testing.T) {
		for _, mode := range []SymlinkMode{SymlinksDefault, SymlinksKeep} {
			_, warns, img := tarOf(t, files, "", Options{Symlinks: mode})
			hdrs, _ := tarEntries(t, img)
			links := 0
			for _, h := range hdrs {
				if h.Typeflag == tar.TypeSymlink {
					links++
				}
			}
			if links != 4 || len(warns) != 0 {
				t.Errorf("mode %q: %d symlinks, warnings %v; want 4 and none", mode, links, warns)
			}
		}
	})
	t.Run("follow", func(t *testing.T) {
		_, warns, img := tarOf(t, files, "", Options{Symlinks: SymlinksFollow})
		hdrs, content := tarEntries(t, img)
		for _, h := range hdrs {
			if h.Typeflag == tar.TypeSymlink {
				t.Errorf("%s: still a symlink", h.Name)
			}
		}
		for p, want := range map[string]string{"link.txt": "the target's content", "data/up": "the target's content", "runme": "#!/bin/sh\n"} {
			if got, ok := content[p]; !ok || string(got) != want {
				t.Errorf("%s: content %q (present %v), want %q", p, got, ok, want)
			}
		}
		for _, h := range hdrs {
			if h.Name == "runme" && h.Mode != 0o775 {
				t.Errorf("runme: mode %o, want 0775 (an executable target)", h.Mode)
			}
		}
		if _, ok := content["outside"]; ok || len(warns) != 1 || warns[0].Path != "outside" {
			t.Errorf("outside link: present %v, warnings %v; want dropped with one warning", ok, warns)
		}
	})
	t.Run("skip", func(t *testing.T) {
		_, warns, img := tarOf(t, files, "", Options{Symlinks: SymlinksSkip})
		hdrs, _ := tarEntries(t, img)
		if len(hdrs) != 3 || len(warns) != 4 {
			t.Errorf("%d entries and %d warnings, want 3 (data/, data/file.txt, data/run) and 4", len(hdrs), len(warns))
		}
	})
}

func TestTarHeaderFields(t *testing.T) {
	// Field values as archive/tar reads them (git archive equality is
	// checked above; this says what the bytes mean).
	files := []memFile{
		{Path: "f", Kind: KindFile, Data: []byte("x")},
		{Path: "x", Kind: KindExecutable, Data: []byte("y")},
		{Path: "l", Kind: KindSymlink, Data: []byte("f")},
		{Path: "s", Kind: KindSubmodule, Commit: "0123456789abcdef0123456789abcdef01234567"},
	}
	_, _, img := tarOf(t, files, "", Options{})
	hdrs, _ := tarEntries(t, img)
	want := map[string]struct {
		typ  byte
		mode int64
	}{"f": {tar.TypeReg, 0o664}, "x": {tar.TypeReg, 0o775}, "l": {tar.TypeSymlink, 0o777}, "s/": {tar.TypeDir, 0o775}}
	for _, h := range hdrs {
		w, ok := want[h.Name]
		if !ok || h.Typeflag != w.typ || h.Mode != w.mode || h.Uid != 0 || h.Gid != 0 || h.Uname != "root" ||
			h.Gname != "root" || !h.ModTime.Equal(testTime) || h.Format&tar.FormatUSTAR == 0 && h.Format != tar.FormatPAX {
			t.Errorf("%s: %+v", h.Name, h)
		}
	}
	if len(hdrs) != len(want) {
		t.Errorf("%d entries, want %d", len(hdrs), len(want))
	}
}

func TestTarMtimeBeyondOctal(t *testing.T) {
	tree, blobs := memTree(t, []memFile{{Path: "f", Kind: KindFile, Data: []byte("x")}}, "", time.Unix(tarMaxOctal11+1, 0))
	l, _, err := BuildTar(tree, blobs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	img := readImage(t, l)
	tr := tar.NewReader(bytes.NewReader(img))
	h, err := tr.Next()
	if err != nil || h.Typeflag != tar.TypeXGlobalHeader || h.PAXRecords["mtime"] != strconv.Itoa(tarMaxOctal11+1) {
		t.Fatalf("first entry %+v, %v: want a global header with the mtime", h, err)
	}
	if h, err = tr.Next(); err != nil || h.Name != "f" {
		t.Fatalf("second entry %+v, %v", h, err)
	}
	if got := string(img[2*tarBlockSize+tarMtimeOff : 2*tarBlockSize+tarMtimeOff+tarMtimeLen]); got != "77777777777\x00" {
		t.Errorf("entry mtime field %q, want the clamped 77777777777", got)
	}
}

// failingBlobs fails every read.
type failingBlobs struct{}

func (failingBlobs) ReadBlob(id BlobID, p []byte, off int64) (int, error) {
	return 0, errors.New("failingBlobs: no reads allowed")
}

// TestTarHugeFileLaysOutWithoutReading: a 1 TiB entry and a reader that
// fails: layout never reads a blob nor allocates for its size.
func TestTarHugeFileLaysOutWithoutReading(t *testing.T) {
	const huge = 1 << 40
	var id BlobID
	id[0] = 1
	tree := &Tree{Time: testTime, Entries: []Entry{
		{Path: "huge.bin", Kind: KindFile, Size: huge, Blob: id},
		{Path: "limit", Kind: KindFile, Size: tarMaxOctal11, Blob: id},
		{Path: "over", Kind: KindFile, Size: tarMaxOctal11 + 1, Blob: id},
	}}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	l, _, err := BuildTar(tree, failingBlobs{}, Options{})
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
		t.Errorf("BuildTar allocated %d bytes for three headers", alloc)
	}
	if l.Size()%SectorAlign != 0 || l.Size() < huge+2*tarMaxOctal11 {
		t.Errorf("size %d", l.Size())
	}
	// Headers read back through the Layout (no blob read needed).
	sr := io.NewSectionReader(l, 0, l.Size())
	tr := tar.NewReader(sr)
	h, err := tr.Next()
	if err != nil || h.Name != "huge.bin" || h.Size != huge || h.PAXRecords["size"] != strconv.Itoa(huge) {
		t.Fatalf("huge.bin: %+v, %v", h, err)
	}
	if _, err := io.CopyN(io.Discard, tr, 1); err == nil || !strings.Contains(err.Error(), "huge.bin") || !strings.Contains(err.Error(), id.String()) {
		t.Errorf("reading content: %v; want the blob reader's error naming the path and blob", err)
	}
	// "limit" (8 GiB - 1) fits the header; "over" needs a pax size record.
	off := int64(tarBlockSize) * 2 // pax header of huge.bin: header + one record block
	off += tarBlockSize + huge
	checkSize := func(name string, size int64, pax bool) {
		t.Helper()
		hdr := make([]byte, tarBlockSize, 2*tarBlockSize)
		if _, err := l.ReadAt(hdr, off); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if isPax := hdr[tarTypeflagOff] == tarTypePax; isPax != pax {
			t.Fatalf("%s: pax header %v, want %v", name, isPax, pax)
		}
		if pax {
			hdr = hdr[:2*tarBlockSize]
			if _, err := l.ReadAt(hdr[tarBlockSize:], off+tarBlockSize); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if rec := fmt.Sprintf("size=%d\n", size); !bytes.Contains(hdr[tarBlockSize:], []byte(rec)) {
				t.Errorf("%s: no record %q", name, rec)
			}
			off += 2 * tarBlockSize
		}
		off += tarBlockSize + size + tarBlockPadding(size)
	}
	checkSize("limit", tarMaxOctal11, false)
	checkSize("over", tarMaxOctal11+1, true)
}

func TestTarBadTrees(t *testing.T) {
	var id BlobID
	bad := []struct {
		name string
		tree *Tree
		opts Options
	}{
		{"nil tree", nil, Options{}},
		{"empty path", &Tree{Entries: []Entry{{Path: "", Kind: KindFile}}}, Options{}},
		{"NUL in path", &Tree{Entries: []Entry{{Path: "a\x00b", Kind: KindFile}}}, Options{}},
		{"negative size", &Tree{Entries: []Entry{{Path: "a", Kind: KindFile, Size: -1, Blob: id}}}, Options{}},
		{"unknown kind", &Tree{Entries: []Entry{{Path: "a", Kind: Kind(99)}}}, Options{}},
		{"target size mismatch", &Tree{Entries: []Entry{{Path: "a", Kind: KindSymlink, Size: 3, Target: "ab"}}}, Options{}},
		{"unknown symlink mode", &Tree{}, Options{Symlinks: "sideways"}},
	}
	for _, c := range bad {
		l, _, err := BuildTar(c.tree, memBlobs{}, c.opts)
		if err == nil || l != nil || !strings.HasPrefix(err.Error(), "imager: tar") {
			t.Errorf("%s: got %v, %v; want an imager: tar error", c.name, l, err)
		}
	}
}

func TestPaxRecordLength(t *testing.T) {
	// Every record's length prefix counts the whole record, across the
	// digit-count boundaries.
	for n := 0; n < 2000; n++ {
		rec := paxRecord(nil, "path", strings.Repeat("x", n))
		num, _, ok := strings.Cut(string(rec), " ")
		if got, err := strconv.Atoi(num); err != nil || !ok || got != len(rec) {
			t.Fatalf("value of %d bytes: record %q... says %s, is %d bytes", n, rec[:8], num, len(rec))
		}
	}
}

func TestTarExtentTable(t *testing.T) {
	files := []memFile{
		{Path: "a/long-" + strings.Repeat("x", 120), Kind: KindFile, Data: []byte("x")},
		{Path: "b", Kind: KindFile, Data: make([]byte, 512)},
		{Path: "c", Kind: KindFile, Data: []byte("yz")},
	}
	l, _, _ := tarOf(t, files, "0123456789abcdef0123456789abcdef01234567", Options{})
	long := files[0].Path
	type ext struct {
		kind ExtentKind
		desc string
		n    int64
	}
	want := []ext{
		{ExtentData, "tar pax global header", 1024},
		{ExtentData, "tar header a", 512},
		{ExtentData, "tar pax header " + long, 1024},
		{ExtentData, "tar header " + long, 512},
		{ExtentBlob, long, 1},
		{ExtentZero, "tar padding", 511},
		{ExtentData, "tar header b", 512},
		{ExtentBlob, "b", 512},
		{ExtentData, "tar header c", 512},
		{ExtentBlob, "c", 2},
		{ExtentZero, "tar padding and end blocks, zeros to 4 KiB", 510 + 1024 + 1536}, // 6656 -> 8192
	}
	var got []ext
	for e := range l.Extents() {
		got = append(got, ext{e.Kind, e.Desc, e.Len})
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("extent table:\n got %v\nwant %v", got, want)
	}
}

// TestTarExportSubstNotExpanded pins the documented difference from git
// archive: a file marked export-subst is served as stored in git, with its
// $Format:...$ placeholder, where git archive expands it.
func TestTarExportSubstNotExpanded(t *testing.T) {
	r := newGitRepo(t)
	raw := "commit $Format:%H$\n"
	commit := r.commitFiles([]memFile{
		{Path: ".gitattributes", Kind: KindFile, Data: []byte("version.txt export-subst\n")},
		{Path: "version.txt", Kind: KindFile, Data: []byte(raw)},
	})
	tree, blobs := r.tree(commit)
	l, _, err := BuildTar(tree, blobs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, ours := tarEntries(t, readImage(t, l))
	_, gits := tarEntries(t, r.archive(commit))
	if string(ours["version.txt"]) != raw {
		t.Errorf("image: version.txt = %q, want the blob as stored, %q", ours["version.txt"], raw)
	}
	if want := "commit " + commit + "\n"; string(gits["version.txt"]) != want {
		t.Errorf("git archive: version.txt = %q, want %q (git expands export-subst)", gits["version.txt"], want)
	}
}

// TestTarHeaderTemplate: headers made from the shared template are those
// marshal makes from zeros, for every kind of field content.
func TestTarHeaderTemplate(t *testing.T) {
	for _, mtime := range []int64{0, 1704067200, tarMaxOctal11} {
		tmpl := newTarTemplate(mtime)
		for _, h := range []tarHeader{
			{name: "a", typeflag: tarTypeReg, mode: 0o664, size: 25},
			{name: strings.Repeat("n", tarNameLen), prefix: strings.Repeat("p", tarPrefixLen), typeflag: tarTypeDir, mode: 0o775},
			{name: "l", linkname: strings.Repeat("t", tarLinknameLen), typeflag: tarTypeSymlnk, mode: 0o777},
			{name: "big", typeflag: tarTypeReg, mode: 0o775, size: tarMaxOctal11},
			{name: "\xff\xfe", typeflag: tarTypeReg, mode: 0o664},
		} {
			h.mtime = mtime
			var want, got [tarBlockSize]byte
			h.marshal(want[:])
			got[7] = 'x' // marshalFrom must not depend on b's old bytes
			h.marshalFrom(got[:], tmpl)
			if want != got {
				t.Errorf("mtime %d, %q: template header differs:\n got %q\nwant %q", mtime, h.name, got, want)
			}
		}
	}
}

// zeroBlobs serves every blob as 25 zero bytes.
type zeroBlobs struct{}

func (zeroBlobs) ReadBlob(id BlobID, p []byte, off int64) (int, error) {
	if off >= 25 {
		return 0, io.EOF
	}
	n := min(len(p), int(25-off))
	clear(p[:n])
	return n, nil
}

// BenchmarkTarReadManyFiles reads the tar image of 300,000 files of 25
// bytes (issue 12's shape) in 256 KiB reads: what making headers on demand
// costs a full read.
func BenchmarkTarReadManyFiles(b *testing.B) {
	tr := &Tree{CommitID: "0123456789abcdef0123456789abcdef01234567", Time: testTime}
	for d := 0; d < 600; d++ {
		tr.Entries = append(tr.Entries, Entry{Path: fmt.Sprintf("d%03d", d), Kind: KindDir})
		for s := 0; s < 10; s++ {
			tr.Entries = append(tr.Entries, Entry{Path: fmt.Sprintf("d%03d/s%d", d, s), Kind: KindDir})
			for f := 0; f < 50; f++ {
				tr.Entries = append(tr.Entries, Entry{Path: fmt.Sprintf("d%03d/s%d/f%02d.txt", d, s, f), Kind: KindFile, Size: 25})
			}
		}
	}
	l, _, _ := Build(tr, zeroBlobs{}, Options{Format: FormatTar})
	buf := make([]byte, 256<<10)
	b.SetBytes(l.Size())
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for off := int64(0); off < l.Size(); off += int64(len(buf)) {
			l.ReadAt(buf, off)
		}
	}
}

// TestTarOctal: header fields hold the value as zero-padded octal digits
// and a NUL, for every field width and values up to the largest each
// holds.
func TestTarOctal(t *testing.T) {
	for _, width := range []int{tarModeLen, tarSizeLen, tarChksumLen} {
		max := int64(1)<<(3*(width-1)) - 1
		for _, v := range []int64{0, 1, 7, 8, 0o644, 0o755, 511, 512, 1 << 20, 1<<33 - 1, max / 2, max} {
			if v > max {
				continue
			}
			field := bytes.Repeat([]byte{'x'}, width)
			octal(field, v)
			want := fmt.Sprintf("%0*o\x00", width-1, v)
			if string(field) != want {
				t.Errorf("octal(%d bytes, %d) = %q, want %q", width, v, field, want)
			}
		}
	}
}
