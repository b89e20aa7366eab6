package inflate

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gitblk/gitblk/internal/testutil"
)

// packEntry is one entry of a pack file: its type, inflated size and zlib
// stream (up to the next entry, which is where git ends it).
type packEntry struct {
	off  int64
	typ  byte
	size int
	z    []byte
}

// readPack reads the entries of pack file path (with its .idx beside it,
// version 2: gitformat-pack(5)).
func readPack(tb testing.TB, path string) []packEntry {
	tb.Helper()
	pack, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	idx, err := os.ReadFile(strings.TrimSuffix(path, ".pack") + ".idx")
	if err != nil {
		tb.Fatal(err)
	}
	if len(idx) < 8+256*4 || !bytes.Equal(idx[:8], []byte{0xff, 't', 'O', 'c', 0, 0, 0, 2}) {
		tb.Fatalf("%s: not a version 2 pack index", path)
	}
	n := int(binary.BigEndian.Uint32(idx[8+255*4:]))
	offTable := 8 + 256*4 + n*20 + n*4
	bigTable := offTable + n*4
	offs := make([]int64, n)
	for i := range offs {
		o := binary.BigEndian.Uint32(idx[offTable+4*i:])
		if o&0x80000000 != 0 {
			offs[i] = int64(binary.BigEndian.Uint64(idx[bigTable+8*int(o&0x7fffffff):]))
		} else {
			offs[i] = int64(o)
		}
	}
	slices.Sort(offs)
	entries := make([]packEntry, n)
	for i, off := range offs {
		end := int64(len(pack) - 20) // the pack's checksum follows the last entry
		if i+1 < n {
			end = offs[i+1]
		}
		p := int(off)
		c := pack[p]
		p++
		e := packEntry{off: off, typ: c >> 4 & 7, size: int(c & 15)}
		for shift := 4; c&0x80 != 0; shift += 7 {
			c = pack[p]
			p++
			e.size |= int(c&0x7f) << shift
		}
		switch e.typ {
		case 6: // OFS_DELTA: a varint offset
			for pack[p]&0x80 != 0 {
				p++
			}
			p++
		case 7: // REF_DELTA: the base's id
			p += 20
		}
		e.z = pack[p:end]
		entries[i] = e
	}
	return entries
}

// makePack commits the files under tree to a new bare repository in dir,
// packs it with git repack and returns the pack's path.
func makePack(tb testing.TB, dir, tree string) string {
	tb.Helper()
	testutil.Git(tb, "", "init", "-q", "--bare", dir)
	testutil.Git(tb, "", "--git-dir", dir, "--work-tree", tree, "add", "-A", "-f", ".")
	testutil.Git(tb, "", "--git-dir", dir, "--work-tree", tree, "commit", "-q", "-m", "pack")
	testutil.Git(tb, dir, "repack", "-a", "-d", "-q")
	packs, err := filepath.Glob(filepath.Join(dir, "objects", "pack", "*.pack"))
	if err != nil || len(packs) != 1 {
		tb.Fatalf("packs %v, %v", packs, err)
	}
	return packs[0]
}

// TestGitPack inflates every entry of a pack written by git, whole and
// streamed, with every inflater: the bytes of compress/zlib, and each
// stream ends exactly where git put the next entry.
func TestGitPack(t *testing.T) {
	tree := t.TempDir()
	rng := rand.New(rand.NewSource(3))
	write := func(name string, data []byte) {
		p := filepath.Join(tree, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	random := make([]byte, 200<<10)
	rng.Read(random)
	write("random.bin", random)
	write("empty", nil)
	write("big.txt", bytes.Repeat([]byte("a big text file that streams\n"), 80000))
	var src bytes.Buffer
	for i := 0; i < 40; i++ {
		fmt.Fprintf(&src, "func f%d(x int) int { return x * %d }\n", i, rng.Intn(1000))
		// Similar files: git stores most as deltas.
		write(fmt.Sprintf("src/v%02d.go", i), src.Bytes())
	}
	entries := readPack(t, makePack(t, filepath.Join(t.TempDir(), "repo.git"), tree))
	deltas := 0
	for _, e := range entries {
		if e.typ >= 6 {
			deltas++
		}
	}
	if len(entries) < 40 || deltas == 0 {
		t.Fatalf("%d entries, %d deltas: want some of each", len(entries), deltas)
	}
	for kind, f := range inflaters(t) {
		p := f.NewPool(4096)
		for _, e := range entries {
			zr, err := zlib.NewReader(bytes.NewReader(e.z))
			if err != nil {
				t.Fatal(err)
			}
			want, err := io.ReadAll(zr)
			if err != nil || len(want) != e.size {
				t.Fatalf("entry at %d: compress/zlib: %d bytes, %v; header says %d", e.off, len(want), err, e.size)
			}
			dst := make([]byte, e.size)
			if n, err := f.Whole(dst, e.z); err != nil || n != len(e.z) || !bytes.Equal(dst, want) {
				t.Errorf("%s: entry at %d: Whole took %d of %d bytes, %v", kind, e.off, n, len(e.z), err)
			}
			r, err := p.Get(bytes.NewReader(e.z))
			if err != nil {
				t.Fatal(err)
			}
			if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s: entry at %d: stream: %d bytes, %v", kind, e.off, len(got), err)
			}
			p.Put(r)
		}
	}
}
