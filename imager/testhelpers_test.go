package imager

// Test-only helpers shared by the imager tests (tar, fat, layout):
//   - memFile/memTree/memBlobs: an in-memory tree in git's order with git's
//     real object ids, and a BlobReader over a map (testutil.Blobs);
//   - randomFiles: a seeded random tree generator;
//   - readImage, diffBytes: read a whole Image, hex diff on mismatch;
//   - gitRepo: a real git repository in t.TempDir() driven by the git CLI
//     through internal/testutil (fixed identities and dates, so every run
//     makes the same commit ids),
//     whose commits are listed as a *Tree with `git ls-tree -r -t -l -z` and
//     `git cat-file --batch`.

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gitblk/gitblk/internal/testutil"
)

// testTime is the commit time every test repository uses.
var testTime = time.Unix(1700000000, 0).UTC()

// memFile is one non-directory item of an in-memory tree. Directories are
// implied by paths (git stores no empty directories).
type memFile struct {
	Path   string
	Kind   Kind   // KindFile, KindExecutable, KindSymlink or KindSubmodule
	Data   []byte // file content, or the symlink target
	Commit string // KindSubmodule: the gitlink's commit id (40 hex digits)
}

// memBlobs is a BlobReader over a map (internal/testutil's), safe for
// concurrent readers.
type memBlobs = testutil.Blobs[BlobID]

var _ BlobReader = memBlobs(nil)

// gitObjectID is git's SHA-1 object id of an object of type typ.
func gitObjectID(typ string, data []byte) BlobID {
	h := sha1.New()
	fmt.Fprintf(h, "%s %d\x00", typ, len(data))
	h.Write(data)
	var id BlobID
	copy(id[:], h.Sum(nil))
	return id
}

// memNode is a directory or file while building a memTree.
type memNode struct {
	name     string
	file     *memFile            // nil for a directory
	children map[string]*memNode // directories only
}

// gitSortKey is the name git sorts a tree entry by: a directory's name is
// compared as if it ended in "/".
func (n *memNode) gitSortKey() string {
	if n.file == nil {
		return n.name + "/"
	}
	return n.name
}

func (n *memNode) sorted() []*memNode {
	out := make([]*memNode, 0, len(n.children))
	for _, c := range n.children {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].gitSortKey() < out[j].gitSortKey() })
	return out
}

// memTree builds the Tree of files in git's order, with git's blob and tree
// ids, and the blobs it reads. A path that is both a file and a directory,
// or listed twice, fails the test.
func memTree(t testing.TB, files []memFile, commitID string, when time.Time) (*Tree, memBlobs) {
	t.Helper()
	root := &memNode{children: map[string]*memNode{}}
	for i := range files {
		f := &files[i]
		parts := strings.Split(f.Path, "/")
		dir := root
		for _, p := range parts[:len(parts)-1] {
			c := dir.children[p]
			if c == nil {
				c = &memNode{name: p, children: map[string]*memNode{}}
				dir.children[p] = c
			} else if c.file != nil {
				t.Fatalf("memTree: %s is a file and a directory", f.Path)
			}
			dir = c
		}
		last := parts[len(parts)-1]
		if dir.children[last] != nil {
			t.Fatalf("memTree: %s listed twice or also a directory", f.Path)
		}
		dir.children[last] = &memNode{name: last, file: f}
	}
	tree := &Tree{CommitID: commitID, Time: when}
	blobs := memBlobs{}
	var walk func(n *memNode, prefix string) BlobID
	walk = func(n *memNode, prefix string) BlobID {
		var raw bytes.Buffer // the git tree object's content
		type pending struct {
			at   int
			node *memNode
		}
		var dirs []pending
		for _, c := range n.sorted() {
			p := prefix + c.name
			var mode string
			var id BlobID
			if c.file == nil {
				mode = "40000"
				tree.Entries = append(tree.Entries, Entry{Path: p, Kind: KindDir})
				at := len(tree.Entries) - 1
				id = walk(c, p+"/")
				tree.Entries[at].Blob = id
				dirs = append(dirs, pending{at, c})
			} else {
				f := c.file
				e := Entry{Path: p, Kind: f.Kind}
				switch f.Kind {
				case KindFile, KindExecutable, KindSymlink:
					id = gitObjectID("blob", f.Data)
					blobs[id] = f.Data
					e.Size = int64(len(f.Data))
					if f.Kind == KindSymlink {
						e.Target = string(f.Data)
					}
					mode = map[Kind]string{KindFile: "100644", KindExecutable: "100755", KindSymlink: "120000"}[f.Kind]
				case KindSubmodule:
					id = testutil.BlobID(t, f.Commit)
					mode = "160000"
				default:
					t.Fatalf("memTree: %s: bad kind %v", f.Path, f.Kind)
				}
				e.Blob = id
				tree.Entries = append(tree.Entries, e)
			}
			raw.WriteString(mode + " " + c.name + "\x00")
			raw.Write(id[:])
		}
		return gitObjectID("tree", raw.Bytes())
	}
	walk(root, "")
	return tree, blobs
}

// Name material for randomFiles: ASCII, non-ASCII (2, 3 and 4 byte UTF-8)
// and characters tar and FAT handle differently.
var randNameRunes = []rune("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_. +=,~éüßçñøåÆ日本語文字Дж😀🚀")

// randomName returns a name of one path component: mostly short, sometimes
// long (tar's 100-byte name field and 155-byte prefix need both).
func randomName(rng *rand.Rand) string {
	var n int
	switch r := rng.Intn(10); {
	case r < 6:
		n = 1 + rng.Intn(12)
	case r < 9:
		n = 13 + rng.Intn(60)
	default:
		n = 90 + rng.Intn(100)
	}
	var b strings.Builder
	for b.Len() < n {
		b.WriteRune(randNameRunes[rng.Intn(len(randNameRunes))])
	}
	s := b.String()
	if s == "." || s == ".." || strings.EqualFold(s, ".git") {
		s = "x" + s
	}
	return s
}

// randomContent returns file content whose size is often near 512-byte
// block boundaries.
func randomContent(rng *rand.Rand) []byte {
	var n int
	switch r := rng.Intn(10); {
	case r < 2:
		n = 0
	case r < 4:
		n = 512*rng.Intn(4) + rng.Intn(3) - 1
	case r < 9:
		n = rng.Intn(2000)
	default:
		n = rng.Intn(70000)
	}
	if n < 0 {
		n = 0
	}
	b := make([]byte, n)
	rng.Read(b)
	return b
}

// maxRandomPath bounds generated path lengths (bytes) so that trees stay
// cheap; tar needs > 256 to exercise pax paths.
const maxRandomPath = 600

// randomFiles returns about n random entries: files (some empty), executables,
// symlinks (to files in the tree, relative; to outside; long targets) and
// deep directories with long and non-ASCII names. Same seed, same files.
func randomFiles(rng *rand.Rand, n int) []memFile {
	dirs := []string{""} // existing directories ("" is the root)
	isDir := map[string]bool{"": true}
	taken := map[string]bool{} // file paths and directory paths
	var files []memFile
	join := func(dir, name string) string {
		if dir == "" {
			return name
		}
		return dir + "/" + name
	}
	for len(files) < n {
		dir := dirs[rng.Intn(len(dirs))]
		// Sometimes go deeper first.
		if rng.Intn(4) == 0 {
			for depth := 1 + rng.Intn(8); depth > 0; depth-- {
				d := join(dir, randomName(rng))
				if len(d) > maxRandomPath-20 || (taken[d] && !isDir[d]) {
					break
				}
				if !isDir[d] {
					isDir[d], taken[d] = true, true
					dirs = append(dirs, d)
				}
				dir = d
			}
		}
		p := join(dir, randomName(rng))
		if taken[p] || len(p) > maxRandomPath {
			continue
		}
		f := memFile{Path: p}
		switch r := rng.Intn(20); {
		case r < 12:
			f.Kind, f.Data = KindFile, randomContent(rng)
		case r < 15:
			f.Kind, f.Data = KindExecutable, randomContent(rng)
		case r < 19:
			f.Kind = KindSymlink
			depth := strings.Count(dir, "/")
			if dir != "" {
				depth++
			}
			switch k := rng.Intn(4); {
			case k < 2 && len(files) > 0: // to a file in the tree, relative
				f.Data = []byte(strings.Repeat("../", depth) + files[rng.Intn(len(files))].Path)
			case k == 2: // long target, pointing nowhere
				f.Data = []byte(strings.Repeat("long-target/", 10+rng.Intn(20)) + "x")
			default: // outside the tree
				f.Data = []byte(strings.Repeat("../", depth+1) + "outside")
			}
		default:
			f.Kind = KindSubmodule
			var id [20]byte
			rng.Read(id[:])
			f.Commit = hex.EncodeToString(id[:])
		}
		taken[p] = true
		files = append(files, f)
	}
	return files
}

// readImage reads a whole image with ReadAt in odd-sized chunks.
func readImage(t testing.TB, img Image) []byte {
	t.Helper()
	out := make([]byte, img.Size())
	const chunk = 1<<20 + 7
	for off := int64(0); off < img.Size(); off += chunk {
		end := min(off+chunk, img.Size())
		n, err := img.ReadAt(out[off:end], off)
		if n != int(end-off) || (err != nil && err != io.EOF) {
			t.Fatalf("ReadAt(%d bytes at %d) = %d, %v", end-off, off, n, err)
		}
	}
	return out
}

// diffBytes reports whether got equals want; if not, it fails the test with
// the first differing offset, the extent holding it (when l is not nil) and a
// hex dump of both around it.
func diffBytes(t testing.TB, l *Layout, got, want []byte) bool {
	t.Helper()
	if bytes.Equal(got, want) {
		return true
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	from := i &^ 15
	if from >= 64 {
		from -= 64
	}
	dump := func(b []byte) string {
		if from >= len(b) {
			return "(ends before)\n"
		}
		var sb strings.Builder
		for row := from; row < min(from+192, len(b)); row += 16 {
			line := b[row:min(row+16, len(b))]
			fmt.Fprintf(&sb, "%08x  % x", row, line)
			sb.WriteString(strings.Repeat("   ", 16-len(line)) + "  |")
			for _, c := range line {
				if c < 0x20 || c > 0x7e {
					c = '.'
				}
				sb.WriteByte(c)
			}
			sb.WriteString("|\n")
		}
		return sb.String()
	}
	where := ""
	if l != nil {
		for e := range l.Extents() {
			if int64(i) >= e.Off && int64(i) < e.Off+e.Len {
				where = fmt.Sprintf(" in extent %q [%d, %d)", e.Desc, e.Off, e.Off+e.Len)
			}
		}
	}
	t.Errorf("bytes differ at offset %d (0x%x)%s; got %d bytes, want %d\n--- got\n%s--- want\n%s",
		i, i, where, len(got), len(want), dump(got), dump(want))
	return false
}

// gitRepo is a real git repository in a test directory, driven by the git
// CLI with internal/testutil's fixed environment: no user or system config,
// fixed identities and dates.
type gitRepo struct {
	t    testing.TB
	Dir  string
	When time.Time // commit time of commitFiles; testTime unless a test sets it
}

// newGitRepo makes an empty repository (branch main) in t.TempDir().
func newGitRepo(t testing.TB) *gitRepo {
	t.Helper()
	testutil.NeedTool(t, "git", "git")
	r := &gitRepo{t: t, Dir: t.TempDir(), When: testTime}
	r.git("init", "-q", "-b", "main")
	return r
}

// gitIn runs git in the repository with stdin, returning stdout; a failure
// fails the test with stderr.
func (r *gitRepo) gitIn(stdin []byte, args ...string) []byte {
	r.t.Helper()
	out, err := testutil.GitOutput(r.Dir, bytes.NewReader(stdin), args...)
	if err != nil {
		r.t.Fatalf("git %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// git runs git in the repository and returns its stdout, trimmed.
func (r *gitRepo) git(args ...string) string {
	r.t.Helper()
	return strings.TrimSpace(string(r.gitIn(nil, args...)))
}

// fastImportPath quotes a path for git fast-import (C-style quoting: only
// '"', '\\' and newline need escapes; other bytes pass raw).
func fastImportPath(p string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '\n':
			b.WriteString(`\n`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// commitFiles commits exactly files (a root commit: earlier content is not
// kept) to refs/heads/main with git fast-import, and returns the commit id.
// It needs no work tree, so any name git allows works.
func (r *gitRepo) commitFiles(files []memFile) string {
	r.t.Helper()
	var s bytes.Buffer
	for i, f := range files {
		if f.Kind == KindSubmodule {
			continue
		}
		fmt.Fprintf(&s, "blob\nmark :%d\ndata %d\n", i+1, len(f.Data))
		s.Write(f.Data)
		s.WriteByte('\n')
	}
	fmt.Fprintf(&s, "commit refs/heads/main\ncommitter gitblk test <test@gitblk.invalid> %d +0000\ndata 5\ntest\n",
		r.When.Unix())
	for i, f := range files {
		switch f.Kind {
		case KindFile:
			fmt.Fprintf(&s, "M 100644 :%d %s\n", i+1, fastImportPath(f.Path))
		case KindExecutable:
			fmt.Fprintf(&s, "M 100755 :%d %s\n", i+1, fastImportPath(f.Path))
		case KindSymlink:
			fmt.Fprintf(&s, "M 120000 :%d %s\n", i+1, fastImportPath(f.Path))
		case KindSubmodule:
			fmt.Fprintf(&s, "M 160000 %s %s\n", f.Commit, fastImportPath(f.Path))
		default:
			r.t.Fatalf("commitFiles: %s: bad kind %v", f.Path, f.Kind)
		}
	}
	s.WriteString("\n")
	r.gitIn(s.Bytes(), "fast-import", "--quiet", "--force")
	return r.git("rev-parse", "refs/heads/main")
}

// archive returns `git archive --format=tar rev`.
func (r *gitRepo) archive(rev string) []byte {
	r.t.Helper()
	return r.gitIn(nil, "archive", "--format=tar", rev)
}

// tree lists rev's tree as a *Tree (git's order, from `git ls-tree -r -t -l
// -z`) and reads every blob with `git cat-file --batch`.
func (r *gitRepo) tree(rev string) (*Tree, memBlobs) {
	r.t.Helper()
	commit := r.git("rev-parse", rev+"^{commit}")
	secs, err := strconv.ParseInt(r.git("show", "-s", "--format=%ct", commit), 10, 64)
	if err != nil {
		r.t.Fatalf("commit time of %s: %v", rev, err)
	}
	tree := &Tree{CommitID: commit, Time: time.Unix(secs, 0).UTC()}
	out := r.gitIn(nil, "ls-tree", "-r", "-t", "-l", "-z", commit)
	var want bytes.Buffer // blob ids for cat-file
	for _, rec := range bytes.Split(out, []byte{0}) {
		if len(rec) == 0 {
			continue
		}
		meta, p, ok := bytes.Cut(rec, []byte{'\t'})
		fields := strings.Fields(string(meta))
		if !ok || len(fields) != 4 {
			r.t.Fatalf("ls-tree: bad record %q", rec)
		}
		e := Entry{Path: string(p), Blob: testutil.BlobID(r.t, fields[2])}
		switch fields[0] {
		case "100644":
			e.Kind = KindFile
		case "100755":
			e.Kind = KindExecutable
		case "120000":
			e.Kind = KindSymlink
		case "160000":
			e.Kind = KindSubmodule
		case "040000":
			e.Kind = KindDir
		default:
			r.t.Fatalf("ls-tree: %s: unknown mode %s", p, fields[0])
		}
		if fields[1] == "blob" {
			if e.Size, err = strconv.ParseInt(fields[3], 10, 64); err != nil {
				r.t.Fatalf("ls-tree: %s: bad size %q", p, fields[3])
			}
			want.WriteString(fields[2] + "\n")
		}
		tree.Entries = append(tree.Entries, e)
	}
	blobs := r.catBlobs(want.Bytes())
	for i := range tree.Entries {
		if e := &tree.Entries[i]; e.Kind == KindSymlink {
			e.Target = string(blobs[e.Blob])
		}
	}
	return tree, blobs
}

// catBlobs reads the blobs named one per line in ids with cat-file --batch.
func (r *gitRepo) catBlobs(ids []byte) memBlobs {
	r.t.Helper()
	blobs := memBlobs{}
	br := bufio.NewReader(bytes.NewReader(r.gitIn(ids, "cat-file", "--batch")))
	for {
		line, err := br.ReadString('\n')
		if err == io.EOF && line == "" {
			return blobs
		}
		f := strings.Fields(line)
		if err != nil || len(f) != 3 || f[1] != "blob" {
			r.t.Fatalf("cat-file --batch: bad header %q (%v)", line, err)
		}
		n, err := strconv.Atoi(f[2])
		if err != nil {
			r.t.Fatalf("cat-file --batch: bad size in %q", line)
		}
		data := make([]byte, n+1) // content and a newline
		if _, err := io.ReadFull(br, data); err != nil {
			r.t.Fatalf("cat-file --batch: %s: %v", f[0], err)
		}
		blobs[testutil.BlobID(r.t, f[0])] = data[:n]
	}
}

// catFile returns `git cat-file -p obj`.
func (r *gitRepo) catFile(obj string) []byte {
	r.t.Helper()
	return r.gitIn(nil, "cat-file", "-p", obj)
}

// writeFiles writes files into the work tree (for tests that commit with
// `git add`): symlinks as real symlinks, executables with mode 0755.
func (r *gitRepo) writeFiles(files []memFile) {
	r.t.Helper()
	for _, f := range files {
		p := path.Join(r.Dir, f.Path)
		if err := os.MkdirAll(path.Dir(p), 0o755); err != nil {
			r.t.Fatal(err)
		}
		var err error
		switch f.Kind {
		case KindFile:
			err = os.WriteFile(p, f.Data, 0o644)
		case KindExecutable:
			err = os.WriteFile(p, f.Data, 0o755)
		case KindSymlink:
			err = os.Symlink(string(f.Data), p)
		default:
			err = fmt.Errorf("writeFiles: %s: kind %v has no work-tree form", f.Path, f.Kind)
		}
		if err != nil {
			r.t.Fatal(err)
		}
	}
}

// readsAcross reads n bytes (fewer at the end) of l from just before, at
// and just after the start of extent e, and checks them against the whole
// image img.
func readsAcross(t testing.TB, l *Layout, img []byte, e Extent, n int64) {
	t.Helper()
	for _, d := range []int64{-3, 0, 1} {
		off := e.Off + d
		if off < 0 {
			continue
		}
		m := min(n, l.Size()-off)
		p := make([]byte, m)
		if _, err := l.ReadAt(p, off); err != nil && err != io.EOF {
			t.Fatalf("ReadAt(%d, %d): %v", m, off, err)
		}
		if !bytes.Equal(p, img[off:off+m]) {
			t.Fatalf("ReadAt(%d, %d) differs from the whole image (%s)", m, off, e.Desc)
		}
	}
}

// countExtents is the number of extents l.Extents lists.
func countExtents(l *Layout) int {
	n := 0
	for range l.Extents() {
		n++
	}
	return n
}
