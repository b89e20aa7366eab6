package imager

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/gitblk/gitblk/internal/testutil"
)

// fatTools returns the paths of fsck.fat, mdir and mcopy, failing the test
// when a package is missing.
func fatTools(t *testing.T) (fsck, mdir, mcopy string) {
	t.Helper()
	return testutil.NeedTool(t, "fsck.fat", "dosfstools"), testutil.NeedTool(t, "mdir", "mtools"), testutil.NeedTool(t, "mcopy", "mtools")
}

// mtoolsEnv runs mtools in a UTF-8 locale (long names are converted with
// the locale's charset) and without a user configuration.
func mtoolsEnv() []string {
	return append(os.Environ(), "LC_ALL=C.UTF-8", "MTOOLSRC=/dev/null")
}

// runFsck runs `fsck.fat -n -v` and fails on a non-zero exit or on any
// line that reports a problem.
func runFsck(t *testing.T, img string) string {
	t.Helper()
	fsck, _, _ := fatTools(t)
	out, err := exec.Command(fsck, "-n", "-v", img).CombinedOutput()
	if err != nil {
		t.Fatalf("fsck.fat -n -v %s: %v\n%s", img, err, out)
	}
	// fsck.fat exits 0 with -n even for some repairs it would offer; a
	// clean run has no questions, warnings or "differ"/"free" complaints.
	for _, bad := range []string{"Warning", "warning", "differ", "wrong", "invalid", "Invalid", "?", "Free cluster summary", "Reclaimed", "Dirty bit"} {
		if strings.Contains(string(out), bad) {
			t.Fatalf("fsck.fat -n -v %s reports %q:\n%s", img, bad, out)
		}
	}
	return string(out)
}

// buildFATFile builds the image, checks it structurally and writes it
// (sparse) to a temporary file.
func buildFATFile(t *testing.T, tr *Tree, blobs BlobReader, opts Options, skipBlob int64) (string, *Layout, *fatVol, []fatItem) {
	t.Helper()
	l, _, err := BuildFAT(tr, blobs, opts)
	if err != nil {
		t.Fatalf("BuildFAT: %v", err)
	}
	if l.Size()%SectorAlign != 0 {
		t.Fatalf("size %d not a multiple of %d", l.Size(), SectorAlign)
	}
	v, items, err := parseFAT(l, l.Size())
	if err != nil {
		t.Fatalf("structure: %v", err)
	}
	img := filepath.Join(t.TempDir(), "fat.img")
	if err := writeSparse(l, img, skipBlob); err != nil {
		t.Fatal(err)
	}
	return img, l, v, items
}

// wantFiles lists what the image must hold once symlinks are followed: path
// -> content ("" for directories, marked by a trailing "/" key).
func richTree() (*Tree, fblobs) {
	long := strings.Repeat("long-name-", 20) + "end.txt" // 207 characters
	m := newFmem().
		file("README.md", "# readme\n").
		file("readme.txt", "exact 8.3 once upper-cased\n").
		file("Long Name With Spaces.markdown", "spaces\n").
		file("longname1.txt", "1").
		file("longname2.txt", "2").
		file("LONGNA~1.TXT", "an exact name that looks like an alias").
		file("exactly13char", "13 units: the NUL needs a second LFN entry").
		file("twenty-six-characters-abc", "26").
		file(long, "a long name").
		file(strings.Repeat("x", 250)+".text", "the longest name: 255 units, 20 LFN entries with the NUL").
		file("déjà vu/naïve café.txt", "non-ASCII\n").
		file("日本語/ファイル.txt", "日本語の内容\n").
		file("emoji 😀/🚀.bin", "astral plane").
		file("empty", "").
		file("dir/empty-too", "").
		exe("bin/run.sh", "#!/bin/sh\necho hi\n").
		file("a/b/c/d/e/f/g/h/i/j/deep.txt", "deep\n").
		file(".hidden", "dot file").
		file("name.with.dots.tar.gz", "dots").
		file("UPPER.TXT", "upper").
		file("mixed+chars,;=[].txt", "chars 8.3 lacks").
		file("big.bin", strings.Repeat("0123456789abcdef", 5000)).
		link("link-to-readme", "README.md").
		link("link-dir", "a/b").
		link("dangling", "nowhere").
		sub("vendor/lib").
		dir("emptydir")
	for i := 0; i < 300; i++ { // many files in one directory: several clusters
		m.file(fmt.Sprintf("many/file number %03d with a long name.txt", i), fmt.Sprintf("content %d\n", i))
	}
	return m.tree(), m.blobs
}

// expected returns the files and directories the image must show.
func expected(t *testing.T, tr *Tree, blobs BlobReader) (files map[string][]byte, dirs map[string]bool) {
	t.Helper()
	ft, _ := FollowSymlinks(tr)
	files, dirs = map[string][]byte{}, map[string]bool{}
	for _, e := range ft.Entries {
		switch e.Kind {
		case KindDir, KindSubmodule:
			dirs[e.Path] = true
		default:
			b := make([]byte, e.Size)
			if e.Size > 0 {
				if _, err := readFull(func(p []byte, off int64) (int, error) { return blobs.ReadBlob(e.Blob, p, off) }, b, 0); err != nil {
					t.Fatalf("blob of %s: %v", e.Path, err)
				}
			}
			files[e.Path] = b
		}
	}
	return files, dirs
}

// checkItems compares the parsed image with the expected files, reading
// contents through the parser.
func checkItems(t *testing.T, v *fatVol, items []fatItem, files map[string][]byte, dirs map[string]bool) {
	t.Helper()
	seen := map[string]bool{}
	for _, it := range items {
		seen[it.path] = true
		if it.dir {
			if !dirs[it.path] {
				t.Errorf("unexpected directory %q", it.path)
			}
			continue
		}
		want, ok := files[it.path]
		if !ok {
			t.Errorf("unexpected file %q", it.path)
			continue
		}
		got, err := v.readFile(it)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%q: content differs (%d bytes, want %d; %v)", it.path, len(got), len(want), err)
		}
	}
	for p := range files {
		if !seen[p] {
			t.Errorf("file %q missing", p)
		}
	}
	for p := range dirs {
		if !seen[p] {
			t.Errorf("directory %q missing", p)
		}
	}
}

// mcopyAll extracts the whole image with `mcopy -s` and compares every file.
func mcopyAll(t *testing.T, img string, files map[string][]byte, dirs map[string]bool) {
	t.Helper()
	_, _, mcopy := fatTools(t)
	dst := t.TempDir()
	cmd := exec.Command(mcopy, "-s", "-n", "-i", img, "::/", dst)
	cmd.Env = mtoolsEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mcopy -s: %v\n%s", err, out)
	}
	// mtools converts each UTF-16 unit on its own: a character outside the
	// BMP (a surrogate pair) comes out as "__". Expect that spelling.
	files, dirs = mtoolsNames(files), mtoolsNames(dirs)
	var got []string
	err := filepath.Walk(dst, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dst, p)
		if rel == "." {
			return nil
		}
		got = append(got, rel)
		if fi.IsDir() {
			if !dirs[rel] {
				t.Errorf("mcopy: unexpected directory %q", rel)
			}
			return nil
		}
		want, ok := files[rel]
		if !ok {
			t.Errorf("mcopy: unexpected file %q", rel)
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if !bytes.Equal(b, want) {
			t.Errorf("mcopy: %q differs (%d bytes, want %d)", rel, len(b), len(want))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(files)+len(dirs) {
		t.Errorf("mcopy extracted %d items, want %d files and %d directories", len(got), len(files), len(dirs))
	}
}

// mtoolsNames respells keys as mtools extracts them (see mcopyAll).
func mtoolsNames[V any](m map[string]V) map[string]V {
	out := make(map[string]V, len(m))
	for k, v := range m {
		var b strings.Builder
		for _, r := range k {
			if r > 0xFFFF {
				b.WriteString("__")
			} else {
				b.WriteRune(r)
			}
		}
		out[b.String()] = v
	}
	return out
}

// TestFATTools checks images of a tree with every kind of name against
// fsck.fat and mtools, under each FAT type and sector size.
func TestFATTools(t *testing.T) {
	tr, blobs := richTree()
	files, dirs := expected(t, tr, blobs)
	_, mdir, mcopy := fatTools(t)
	for _, tc := range []struct {
		opts   Options
		fat32  bool
		sector int64
	}{
		{Options{}, false, 512},
		{Options{SectorSize: 4096}, false, 4096},
		{Options{FATType: 32}, true, 512},
		{Options{FATType: 32, SectorSize: 4096}, true, 4096},
		{Options{FATType: 16, SectorSize: 512, Symlinks: SymlinksFollow}, false, 512},
	} {
		t.Run(fmt.Sprintf("fat%d-%d", map[bool]int{false: 16, true: 32}[tc.fat32], tc.sector), func(t *testing.T) {
			img, _, v, items := buildFATFile(t, tr, blobs, tc.opts, 0)
			if v.fat32 != tc.fat32 || v.bps != tc.sector {
				t.Fatalf("got fat32=%v, %d-byte sectors", v.fat32, v.bps)
			}
			if !tc.fat32 && (v.clusters < 4085 || v.clusters > 65524) {
				t.Errorf("FAT16 with %d clusters", v.clusters)
			}
			// Fields Linux's vfat reads.
			if v.media != 0xF8 || v.hidden != 0 || v.secPerTrk == 0 || v.secPerTrk > 63 || v.heads == 0 || v.heads > 255 {
				t.Errorf("media %#x hidden %d geometry %d/%d", v.media, v.hidden, v.secPerTrk, v.heads)
			}
			checkItems(t, v, items, files, dirs)
			runFsck(t, img)
			mcopyAll(t, img, files, dirs)
			// Single files by their long (UTF-8) names.
			for _, p := range []string{"déjà vu/naïve café.txt", "日本語/ファイル.txt", "link-dir/c/d/e/f/g/h/i/j/deep.txt", "many/file number 299 with a long name.txt"} {
				cmd := exec.Command(mcopy, "-n", "-i", img, "::/"+p, "-")
				cmd.Env = mtoolsEnv()
				out, err := cmd.Output()
				if err != nil || !bytes.Equal(out, files[p]) {
					t.Errorf("mcopy ::/%s = %q, %v; want %q", p, out, err, files[p])
				}
			}
			// mdir lists long names and, without a label entry, no label.
			cmd := exec.Command(mdir, "-i", img, "::/")
			cmd.Env = mtoolsEnv()
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("mdir: %v\n%s", err, out)
			}
			for _, want := range []string{"has no label", "Long Name With Spaces.markdown", "LONGNA~1 MAR", "LONGNA~1 TXT", "LONGNA~2 TXT", "README   TXT", "UPPER    TXT"} {
				if !strings.Contains(string(out), want) {
					t.Errorf("mdir output lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

// TestFATShortNames checks aliases against the Windows/Linux scheme.
func TestFATShortNames(t *testing.T) {
	m := newFmem()
	names := []string{"readme.txt", "LONGNA~1.TXT", "longname1.txt", "longname2.txt", "Long Name With Spaces.markdown",
		".hidden", "name.with.dots.tar.gz", "mixed+chars,;=[].txt", "日本語.txt", "a", "ab cd", "x.y.z",
		// No name here is MirageOS's own 8.3 name: the exact names are
		// given theirs without the set of names taken, until an alias
		// needs it.
		"lower/longna~1.txt", "lower/longname1.txt", "lower/readme.txt"}
	for _, n := range names {
		m.file(n, n)
	}
	l, _, err := BuildFAT(m.tree(), m.blobs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, items, err := parseFAT(l, l.Size())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, it := range items {
		got[it.path] = it.short
	}
	want := map[string]string{
		"readme.txt":                     "README.TXT",
		"LONGNA~1.TXT":                   "LONGNA~1.TXT", // exact names keep theirs,
		"longname1.txt":                  "LONGNA~2.TXT", // and aliases skip them
		"longname2.txt":                  "LONGNA~3.TXT",
		"Long Name With Spaces.markdown": "LONGNA~1.MAR",
		".hidden":                        "HIDDEN~1",
		"name.with.dots.tar.gz":          "NAMEWI~1.GZ",
		"mixed+chars,;=[].txt":           "MIXED_~1.TXT",
		"日本語.txt":                        "___~1.TXT",
		"a":                              "A",
		"ab cd":                          "ABCD~1",
		"x.y.z":                          "XY~1.Z",
		"lower/longna~1.txt":             "LONGNA~1.TXT",
		"lower/longname1.txt":            "LONGNA~2.TXT",
		"lower/readme.txt":               "README.TXT",
	}
	for n, w := range want {
		if got[n] != w {
			t.Errorf("alias of %q = %q, want %q", n, got[n], w)
		}
	}
}

// TestFATRandomTrees builds random trees (long and non-ASCII names, deep
// directories, empty files) and checks them with fsck.fat and mcopy.
func TestFATRandomTrees(t *testing.T) {
	for seed := int64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewSource(seed))
			fs := fatSafeFiles(randomFiles(rng, 150))
			tr, blobs := memTree(t, fs, "89abcdef0123456789abcdef0123456789abcdef", testTime)
			files, dirs := expected(t, tr, blobs)
			for _, opts := range []Options{{}, {FATType: 32, SectorSize: 4096}} {
				img, _, v, items := buildFATFile(t, tr, blobs, opts, 0)
				checkItems(t, v, items, files, dirs)
				runFsck(t, img)
				mcopyAll(t, img, files, dirs)
			}
		})
	}
}

// fatSafeFiles drops the random files FAT must refuse (names ending in a
// dot or a space, paths equal to an earlier one but for case) and symlinks
// (their targets are random).
func fatSafeFiles(in []memFile) []memFile {
	var out []memFile
	canon := map[string]string{} // upper-cased path prefix -> its spelling
next:
	for _, f := range in {
		if f.Kind == KindSymlink {
			continue
		}
		parts := strings.Split(f.Path, "/")
		for i, p := range parts {
			if strings.HasSuffix(p, ".") || strings.HasSuffix(p, " ") || badFATName(p) != "" {
				continue next
			}
			pre := strings.Join(parts[:i+1], "/")
			if s, ok := canon[strings.ToUpper(pre)]; ok && (s != pre || i == len(parts)-1) {
				continue next
			}
		}
		for i := range parts {
			pre := strings.Join(parts[:i+1], "/")
			canon[strings.ToUpper(pre)] = pre
		}
		out = append(out, f)
	}
	return out
}

// TestFATTypeChoice: FAT16 for small trees, FAT32 when a file or the data
// outgrow FAT16, a clear error when FAT16 is forced on such a tree.
func TestFATTypeChoice(t *testing.T) {
	small := newFmem().file("a", "a")
	l, _, err := BuildFAT(small.tree(), small.blobs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	v, _, err := parseFAT(l, l.Size())
	if err != nil || v.fat32 || v.clusters < 4085 || v.clusters > 65524 {
		t.Fatalf("small tree: %+v, %v", v, err)
	}
	if l.Size() > 4<<20 {
		t.Errorf("small tree makes a %d-byte image", l.Size())
	}

	// A file of 2 GiB (virtual): too big for Mirage's int32 sizes.
	big := newFmem().file("small.txt", "small\n").synthFile("videos/big.mp4", 2<<30)
	tr := big.tree()
	img, l, v, items := buildFATFile(t, tr, big.blobs, Options{}, 1<<20)
	if !v.fat32 {
		t.Errorf("2 GiB file: got FAT16")
	}
	runFsck(t, img)
	for _, it := range items {
		if it.path == "videos/big.mp4" {
			if it.size != 2<<30 {
				t.Errorf("size %d", it.size)
			}
			// Spot-check content through ReadAt near the end.
			p := make([]byte, 100)
			off := v.clusterOff(it.cluster) + it.size - 100
			if _, err := l.ReadAt(p, off); err != nil {
				t.Fatal(err)
			}
			id := tr.Entries[len(tr.Entries)-1].Blob
			for i := range p {
				if p[i] != synthByte(id, it.size-100+int64(i)) {
					t.Fatalf("byte %d of the tail differs", i)
				}
			}
		}
	}
	if _, warns, _ := BuildFAT(tr, big.blobs, Options{}); !warned(warns, "/", "FAT32 chosen") || !warned(warns, "/", "videos/big.mp4") {
		t.Errorf("no warning that FAT32 was chosen and why: %v", warns)
	}
	_, _, err = BuildFAT(tr, big.blobs, Options{FATType: 16})
	var ref *FATRefusal
	if !errors.As(err, &ref) || !errors.Is(err, ErrFATUnrepresentable) || !strings.Contains(err.Error(), "videos/big.mp4") || !strings.Contains(err.Error(), "2 GiB") {
		t.Errorf("forced FAT16 with a 2 GiB file: %v", err)
	}

	// Many files of 1 GiB - 1: FAT16's 2 GiB of clusters overflow, FAT32.
	many := newFmem()
	for i := 0; i < 3; i++ {
		many.synthFile(fmt.Sprintf("part%d", i), 1<<30-1)
	}
	img, _, v, _ = buildFATFile(t, many.tree(), many.blobs, Options{SectorSize: 4096}, 1<<20)
	if !v.fat32 {
		t.Error("3 GiB of data: got FAT16")
	}
	runFsck(t, img)
	_, _, err = BuildFAT(many.tree(), many.blobs, Options{FATType: 16})
	if !errors.Is(err, ErrFATUnrepresentable) || !strings.Contains(err.Error(), "clusters") {
		t.Errorf("forced FAT16 with 3 GiB: %v", err)
	}
}

// TestFATHuge lays out about 2.2 TiB of virtual files: the FAT is generated
// on demand (the extent table stays small) and its structure parses.
func TestFATHuge(t *testing.T) {
	m := newFmem()
	const n = 520 // 520 * (4 GiB - 1) is over 2^32 512-byte sectors
	for i := 0; i < n; i++ {
		m.synthFile(fmt.Sprintf("d%d/f%03d", i%7, i), 1<<32-1)
	}
	tr := m.tree()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	l, _, err := BuildFAT(tr, m.blobs, Options{SectorSize: 4096})
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	// Its FATs are 2 x 256 MiB; the layout must not allocate them.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Errorf("laying out allocated %d bytes", alloc)
	}
	if l.Size() < n*(1<<32-1) {
		t.Fatalf("size %d", l.Size())
	}
	gen, data := 0, int64(0)
	for e := range l.Extents() {
		switch e.Kind {
		case ExtentGen:
			gen++
		case ExtentData:
			data += e.Len
		}
	}
	if gen != 2 || data > 1<<20 || countExtents(l) > 4*n+64 {
		t.Errorf("%d generated extents, %d bytes of data, %d extents", gen, data, countExtents(l))
	}
	v, items, err := parseFAT(l, l.Size())
	if err != nil {
		t.Fatal(err)
	}
	if !v.fat32 || len(items) != n+7 {
		t.Errorf("fat32=%v, %d items", v.fat32, len(items))
	}
	// The same size at 512-byte sectors exceeds 2^32 sectors: refused.
	_, _, err = BuildFAT(tr, m.blobs, Options{})
	if !errors.Is(err, ErrFATUnrepresentable) || !strings.Contains(err.Error(), "4096-byte sectors") {
		t.Errorf("2 TiB at 512-byte sectors: %v", err)
	}
}

// TestFATRefusals: one error names every path FAT cannot hold, and why.
func TestFATRefusals(t *testing.T) {
	m := newFmem().
		file("Readme", "1").file("README", "2").
		file("dir/a", "x").file("Dir/b", "y").
		file(`what?`, "q").file("a:b", "c").file("pipe|", "p").file("tab\there", "t").
		file("trailing.", "d").file("trailing ", "s").
		file(strings.Repeat("n", 256), "long").
		synthFile("huge.iso", 1<<32)
	tr := m.tree()
	_, _, err := BuildFAT(tr, m.blobs, Options{})
	var ref *FATRefusal
	if !errors.As(err, &ref) {
		t.Fatalf("err = %v", err)
	}
	msg := err.Error()
	for p, why := range map[string]string{
		"Readme":                 `same name as "README" but for case`, // the later one in git's order
		"dir":                    `same name as "Dir" but for case`,
		"what?":                  "forbids",
		"a:b":                    "forbids",
		"pipe|":                  "forbids",
		"tab\there":              "control character",
		"trailing.":              "ends with a dot or a space",
		"trailing ":              "ends with a dot or a space",
		strings.Repeat("n", 256): "255",
		"huge.iso":               "4 GiB",
	} {
		found := false
		for _, w := range ref.Problems {
			if w.Path == p && strings.Contains(w.Msg, why) {
				found = true
			}
		}
		if !found || !strings.Contains(msg, p) {
			t.Errorf("no problem for %q saying %q in:\n%s", p, why, msg)
		}
	}
	if len(ref.Problems) != 10 {
		t.Errorf("%d problems, want 10:\n%s", len(ref.Problems), msg)
	}

	// A directory of exactly 65536 entries: "." and "..", 21844 names of
	// 13..25 characters (2 LFN entries + 8.3 each), "x" (1 LFN + 8.3). One
	// more name is over the limit.
	full := newFmem()
	for i := 0; i < 21844; i++ {
		full.file(fmt.Sprintf("full/entry-%08d.txt", i), "")
	}
	full.file("full/x", "")
	if _, _, err = BuildFAT(full.tree(), full.blobs, Options{}); err != nil {
		t.Errorf("directory of 65536 entries: %v", err)
	}
	full.file("full/y", "")
	_, _, err = BuildFAT(full.tree(), full.blobs, Options{})
	if !errors.As(err, &ref) || len(ref.Problems) != 1 || ref.Problems[0].Path != "full" || !strings.Contains(err.Error(), "65538") {
		t.Errorf("directory of 65538 entries: %v", err)
	}

	// Forced FAT16: the names' problems and the type's in one error.
	_, _, err = BuildFAT(tr, m.blobs, Options{FATType: 16})
	if !errors.As(err, &ref) || len(ref.Problems) != 11 || !strings.Contains(err.Error(), "FAT16 holds at most 65524") {
		t.Errorf("forced FAT16: %v", err)
	}
	mixed := newFmem().file("a?", "x").synthFile("two-gig", 2<<30)
	_, _, err = BuildFAT(mixed.tree(), mixed.blobs, Options{FATType: 16})
	if !errors.As(err, &ref) || len(ref.Problems) != 3 || !strings.Contains(err.Error(), "a?") || !strings.Contains(err.Error(), "two-gig: is 2147483648 bytes: FAT16") {
		t.Errorf("forced FAT16, a bad name and a 2 GiB file: %v", err)
	}

	// Options FAT cannot honor.
	small := newFmem().file("a", "a")
	for _, o := range []Options{{Symlinks: SymlinksKeep}, {FATType: 12}, {SectorSize: 1024}} {
		if _, _, err := BuildFAT(small.tree(), small.blobs, o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

// TestFATSymlinkModes: skip drops links with a warning; follow copies.
func TestFATSymlinkModes(t *testing.T) {
	m := newFmem().file("f", "content").link("l", "f").link("bad", "../out")
	tr := m.tree()
	l, warns, err := BuildFAT(tr, m.blobs, Options{Symlinks: SymlinksSkip})
	if err != nil {
		t.Fatal(err)
	}
	_, items, err := parseFAT(l, l.Size())
	if err != nil || len(items) != 1 || len(warns) != 2 {
		t.Errorf("skip: items %v, warnings %v, %v", items, warns, err)
	}
	l, warns, err = BuildFAT(tr, m.blobs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, items, err = parseFAT(l, l.Size())
	if err != nil || len(items) != 2 || len(warns) != 1 || warns[0].Path != "bad" {
		t.Errorf("follow: items %v, warnings %v, %v", items, warns, err)
	}
}

// TestFATTimestamps: the commit time, clamped to FAT's range, as mdir
// shows it.
func TestFATTimestamps(t *testing.T) {
	_, mdir, _ := fatTools(t)
	for _, tc := range []struct {
		when time.Time
		want string
	}{
		{time.Date(2024, 3, 5, 14, 7, 31, 0, time.UTC), "2024-03-05  14:07"},
		{time.Unix(0, 0), "1980-01-01   0:00"},
		{time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC), "2107-12-31  23:59"},
	} {
		m := newFmem().file("f.txt", "x")
		tr := m.tree()
		tr.Time = tc.when
		img, _, _, _ := buildFATFile(t, tr, m.blobs, Options{}, 0)
		cmd := exec.Command(mdir, "-i", img, "::/")
		cmd.Env = mtoolsEnv()
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("%v: mdir shows\n%s\nwant %q (%v)", tc.when, out, tc.want, err)
		}
	}
}

// TestFATDeterministicReadAt: same input, same bytes, and ReadAt at any
// offset returns the slice of the whole image.
func TestFATDeterministicReadAt(t *testing.T) {
	tr, blobs := richTree()
	l1, _, err := BuildFAT(tr, blobs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	l2, _, _ := BuildFAT(tr, blobs, Options{})
	a, b := readImage(t, l1), readImage(t, l2)
	if !bytes.Equal(a, b) {
		t.Fatal("two builds differ")
	}
	other := *tr
	other.CommitID = strings.Repeat("f", 40)
	l3, _, _ := BuildFAT(&other, blobs, Options{})
	if bytes.Equal(a[:512], readImage(t, l3)[:512]) {
		t.Error("the volume serial does not depend on the commit")
	}
	if err := iotest.TestReader(io.NewSectionReader(l1, 0, l1.Size()), a); err != nil {
		t.Error(err)
	}
	// Reads across every extent boundary.
	for e := range l1.Extents() {
		readsAcross(t, l1, a, e, 777)
	}
	// A large generated FAT agrees with the same FAT kept as data.
	gen := &fatGen{runs: []fatRun{{2, 3}, {5, 1}, {9, 100000}}, fat32: true}
	whole := make([]byte, 4*200000)
	gen.ReadAt(whole, 0)
	for _, off := range []int64{0, 1, 3, 7, 4*9 - 1, 4 * 100008, 4*100009 + 2} {
		p := make([]byte, 13)
		gen.ReadAt(p, off)
		if !bytes.Equal(p, whole[off:off+13]) {
			t.Errorf("generator at %d differs", off)
		}
	}
}

// FuzzFAT builds trees shaped by the input: no panic, and either a clean
// refusal or an image padded to 4 KiB that parses back with every file.
func FuzzFAT(f *testing.F) {
	f.Add([]byte("\x05a\x00b/c\x10d"), uint8(0))
	f.Add([]byte("\x80\xff\x01long name éé\x02x/y/z"), uint8(1))
	f.Add(bytes.Repeat([]byte("\x30name"), 40), uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, mode uint8) {
		m := newFmem()
		seen := map[string]bool{}
		for i := 0; len(data) > 0 && i < 64; i++ {
			size := int64(data[0]) * 37
			if data[0] >= 0xF0 {
				size = int64(data[0]-0xF0) << 28 // virtual big files up to ~4 GiB
			}
			data = data[1:]
			j := bytes.IndexByte(data, 0)
			if j < 0 {
				j = len(data)
			}
			name := string(data[:min(j, 300)])
			data = data[min(j+1, len(data)):]
			if name == "" || seen[name] {
				continue
			}
			// Keep the listing a valid tree: no path under a file.
			clash := false
			for p := range seen {
				if strings.HasPrefix(name, p+"/") || strings.HasPrefix(p, name+"/") {
					clash = true
				}
			}
			if clash || strings.HasPrefix(name, "/") || strings.HasSuffix(name, "/") || strings.Contains(name, "//") {
				continue
			}
			seen[name] = true
			if size > 1<<20 {
				m.synthFile(name, size)
			} else {
				m.file(name, strings.Repeat(string(rune('a'+i%26)), int(size)))
			}
		}
		tr := m.tree()
		opts := Options{FATType: []int{0, 16, 32}[mode%3], SectorSize: []int{512, 4096}[mode/3%2]}
		l, _, err := BuildFAT(tr, m.blobs, opts)
		if err != nil {
			if !errors.Is(err, ErrFATUnrepresentable) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if l.Size()%SectorAlign != 0 {
			t.Fatalf("size %d", l.Size())
		}
		v, items, err := parseFAT(l, l.Size())
		if err != nil {
			t.Fatalf("parse: %v", err)
		}
		var want []string
		for _, e := range tr.Entries {
			want = append(want, e.Path)
		}
		var got []string
		for _, it := range items {
			got = append(got, it.path)
			if !it.dir && it.size <= 1<<20 {
				b, err := v.readFile(it)
				if err != nil || int64(len(b)) != it.size || (it.size > 0 && b[0] < 'a') {
					t.Fatalf("%q: %v", it.path, err)
				}
			}
		}
		sort.Strings(want)
		sort.Strings(got)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("paths differ:\n%q\n%q", got, want)
		}
	})
}

// TestFATMirageNames: names MirageOS looks up by their 8.3 name only are
// stored as exactly that 8.3 name (ocaml-fat's fat_name.ml name_match);
// names it cannot find are reported.
func TestFATMirageNames(t *testing.T) {
	m := newFmem().
		file("MY FILE.TXT", "space inside").
		file(".PROFILE", "leading dot").
		file("PROFILE", "clashes with .PROFILE's 8.3 name").
		file("CAFÉ.TXT", "bytes >= 0x80 are DOS characters for Mirage").
		file("naïve.txt", "non-ASCII long name").
		file("A..B", "empty parts dropped").
		file("lower.txt", "long name lookup")
	tr := m.tree()
	img, _, _, items := buildFATFile(t, tr, m.blobs, Options{}, 0)
	short := map[string]string{}
	for _, it := range items {
		short[it.path] = it.short
	}
	for name, want := range map[string]string{
		"MY FILE.TXT": "MY FILE.TXT",
		".PROFILE":    "PROFILE",
		"CAFÉ.TXT":    "CAFÉ.TXT",
		"A..B":        "A.B",
		"lower.txt":   "LOWER.TXT",
	} {
		if short[name] != want {
			t.Errorf("8.3 name of %q = %q, want %q", name, short[name], want)
		}
	}
	if short["PROFILE"] == "PROFILE" {
		t.Error("PROFILE shares its 8.3 name")
	}
	runFsck(t, img)
	files, dirs := expected(t, tr, m.blobs)
	mcopyAll(t, img, files, dirs)
	_, warns, err := BuildFAT(tr, m.blobs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 2 || !warned(warns, "PROFILE", "another entry") || !warned(warns, "naïve.txt", "non-ASCII") {
		t.Errorf("warnings: %v", warns)
	}
	// FAT32 images are not for Mirage: no such warnings.
	if _, warns, _ = BuildFAT(tr, m.blobs, Options{FATType: 32}); len(warns) != 0 {
		t.Errorf("FAT32 warnings: %v", warns)
	}
}

// TestFATEmptyTree: a commit with no files still makes a valid volume.
func TestFATEmptyTree(t *testing.T) {
	for _, opts := range []Options{{}, {FATType: 32}} {
		tr := &Tree{CommitID: strings.Repeat("a", 40), Time: testTime}
		img, _, _, items := buildFATFile(t, tr, fblobs{}, opts, 0)
		if len(items) != 0 {
			t.Errorf("items %v", items)
		}
		runFsck(t, img)
	}
}

// BenchmarkBuildFATHuge lays out 520 virtual files of 4 GiB - 1 (2.2 TiB):
// allocations stay proportional to the number of files.
func BenchmarkBuildFATHuge(b *testing.B) {
	m := newFmem()
	for i := 0; i < 520; i++ {
		m.synthFile(fmt.Sprintf("d%d/f%03d", i%7, i), 1<<32-1)
	}
	tr := m.tree()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, _, err := BuildFAT(tr, m.blobs, Options{SectorSize: 4096}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBuildFATManyFiles lays out 100000 small files in 1000
// directories.
func BenchmarkBuildFATManyFiles(b *testing.B) {
	m := newFmem()
	for i := 0; i < 100000; i++ {
		m.file(fmt.Sprintf("dir %03d/file number %06d.txt", i%1000, i), "x")
	}
	benchBuildFAT(b, m)
}

// BenchmarkFATGenRead reads a generated FAT32 FAT in 64 KiB chunks.
func BenchmarkFATGenRead(b *testing.B) {
	runs := make([]fatRun, 0, 1000)
	for i := uint32(0); i < 1000; i++ {
		runs = append(runs, fatRun{start: 2 + i*100000, n: 100000})
	}
	g := &fatGen{runs: runs, fat32: true}
	p := make([]byte, 64<<10)
	b.SetBytes(int64(len(p)))
	for i := 0; i < b.N; i++ {
		g.ReadAt(p, int64(i%4000)*int64(len(p)))
	}
}

// goldenFATTree is the tree of testdata/fat16-small.img.gz.
func goldenFATTree() (*Tree, fblobs) {
	m := newFmem().
		file("README.md", "# golden\n").
		file("docs/Long Name.html", "<p>long</p>\n").
		file("docs/naïve.txt", "utf-8\n").
		exe("bin/tool", "#!/bin/sh\n").
		file("empty", "").
		link("latest", "docs")
	return m.tree(), m.blobs
}

// TestFATGolden pins the bytes of a small FAT16 image, so that a change of
// layout is a deliberate one: the same commit must give the same image on
// every host and every version. The golden file was made by this test with
// GITBLK_UPDATE_GOLDEN=1 (go test ./imager/ -run TestFATGolden) after
// checking the image with fsck.fat -n -v and mdir -/ ; a mismatch prints a
// hex diff naming the extent.
func TestFATGolden(t *testing.T) {
	tr, blobs := goldenFATTree()
	l, _, err := BuildFAT(tr, blobs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := readImage(t, l)
	const name = "testdata/fat16-small.img.gz"
	if os.Getenv("GITBLK_UPDATE_GOLDEN") != "" {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		zw.Write(got)
		zw.Close()
		if err := os.WriteFile(name, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	want, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	diffBytes(t, l, got, want)
	img := filepath.Join(t.TempDir(), "golden.img")
	if err := os.WriteFile(img, want, 0o644); err != nil {
		t.Fatal(err)
	}
	runFsck(t, img)
}

// TestFATGitRepo builds the image of a commit made by git and compares
// every file mcopy extracts with `git cat-file`.
func TestFATGitRepo(t *testing.T) {
	r := newGitRepo(t)
	commit := r.commitFiles([]memFile{
		{Path: "src/main.go", Kind: KindFile, Data: []byte("package main\n")},
		{Path: "bin/run", Kind: KindExecutable, Data: []byte("#!/bin/sh\nexit 0\n")},
		{Path: "docs/guide/intro.md", Kind: KindFile, Data: []byte("# intro\n")},
		{Path: "empty", Kind: KindFile},
		{Path: "naïve/ünïcode.txt", Kind: KindFile, Data: []byte("ü\n")},
		{Path: "a/b/c/d/e/f/deep.txt", Kind: KindFile, Data: []byte("deep\n")},
		{Path: "link-file", Kind: KindSymlink, Data: []byte("src/main.go")},
		{Path: "link-dir", Kind: KindSymlink, Data: []byte("docs")},
		{Path: "dangling", Kind: KindSymlink, Data: []byte("missing")},
		{Path: "sub", Kind: KindSubmodule, Commit: "0123456789abcdef0123456789abcdef01234567"},
	})
	tr, blobs := r.tree(commit)
	img, _, _, _ := buildFATFile(t, tr, blobs, Options{}, 0)
	runFsck(t, img)
	cat := func(p string) []byte { return r.gitIn(nil, "cat-file", "blob", commit+":"+p) }
	files := map[string][]byte{
		"src/main.go": cat("src/main.go"), "bin/run": cat("bin/run"), "docs/guide/intro.md": cat("docs/guide/intro.md"),
		"empty": cat("empty"), "naïve/ünïcode.txt": cat("naïve/ünïcode.txt"), "a/b/c/d/e/f/deep.txt": cat("a/b/c/d/e/f/deep.txt"),
		"link-file": cat("src/main.go"), "link-dir/guide/intro.md": cat("docs/guide/intro.md"),
	}
	dirs := map[string]bool{"sub": true, "link-dir": true, "link-dir/guide": true}
	for _, d := range strings.Fields(r.git("ls-tree", "-r", "-d", "--name-only", "-z", commit)) {
		for _, p := range strings.Split(d, "\x00") {
			if p != "" && p != "sub" {
				dirs[p] = true
			}
		}
	}
	mcopyAll(t, img, files, dirs)
}

// BenchmarkBuildFATCorpus lays out the tree of bench/run's many-files
// corpus: 600 directories of 10 subdirectories of 50 short-named files
// (300,000 files, names valid 8.3 names once upper-cased).
func BenchmarkBuildFATCorpus(b *testing.B) { benchBuildFAT(b, corpusFmem()) }

// corpusFmem is the tree of bench/run's many-files corpus.
func corpusFmem() *fmem {
	m := newFmem()
	for d := 0; d < 600; d++ {
		for s := 0; s < 10; s++ {
			for f := 0; f < 50; f++ {
				m.file(fmt.Sprintf("d%03d/s%d/f%02d.txt", d, s, f), "x")
			}
		}
	}
	return m
}

// benchBuildFAT times laying out m's tree as FAT.
func benchBuildFAT(b *testing.B, m *fmem) {
	tr := m.tree()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := BuildFAT(tr, m.blobs, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestClusterCounts: the one-pass counts give, at every cluster size and
// for both types, the clusters a node-by-node count gives (a file of
// cb bytes takes one cluster, of cb+1 two; the FAT16 root none, the
// FAT32 root at least one).
func TestClusterCounts(t *testing.T) {
	if fatMinClusterLen<<(fatClusterSizes-1) != fatMaxClusterLen {
		t.Fatalf("cluster sizes %d << %d do not end at %d", fatMinClusterLen, fatClusterSizes-1, fatMaxClusterLen)
	}
	m := newFmem().file("empty", "").file("one", "1")
	for _, n := range []int64{511, 512, 513, 4095, 4096, 4097, 32767, 32768, 32769, 3 << 20} {
		m.synthFile(fmt.Sprintf("d/s%d", n), n)
	}
	for i := 0; i < 40; i++ {
		m.file(fmt.Sprintf("wide/a-long-name-of-some-length-%03d.txt", i), "x")
	}
	for _, tr := range []*Tree{m.tree(), newFmem().tree()} {
		ft, problems := fatTree(tr)
		if len(problems) > 0 {
			t.Fatal(problems)
		}
		cc := countClusters(ft)
		for cb := int64(fatMinClusterLen); cb <= fatMaxClusterLen; cb *= 2 {
			for _, fat32 := range []bool{false, true} {
				var want int64
				for i := range ft.nodes {
					switch n := &ft.nodes[i]; {
					case n.dir && i == 0 && !fat32:
					case n.dir:
						ents := int64(ft.dirOf(i).entries)
						want += max((ents*dirEntrySize+cb-1)/cb, 1)
					default:
						want += (ft.size(i) + cb - 1) / cb
					}
				}
				if got := cc.needed(ft, cb, fat32); got != want {
					t.Errorf("%d entries, %d-byte clusters, FAT32 %v: %d clusters, want %d", len(tr.Entries), cb, fat32, got, want)
				}
			}
		}
	}
}
