package odb

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
)

// handPack writes a pack body of raw entries (each at the offset it
// lands on, after the 12-byte pack header) and indexes ids at them.
func handPack(t *testing.T, ids []plumbing.Hash, entries [][]byte) (*pack, []int64) {
	t.Helper()
	body := []byte("PACK\x00\x00\x00\x02\x00\x00\x00\x02")
	var offs []int64
	for _, e := range entries {
		offs = append(offs, int64(len(body)))
		body = append(body, e...)
	}
	path := filepath.Join(t.TempDir(), "hand.pack")
	if err := os.WriteFile(path, body, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	idx := indexOf(t, ids, offs)
	return &pack{idx: idx, f: f}, offs
}

// refDelta is a REF_DELTA entry header of a 5-byte delta against base.
func refDelta(base plumbing.Hash) []byte {
	return append([]byte{packRefDelta<<4 | 5}, base[:]...)
}

// TestCheckDeltaChain: a pack whose deltas point at each other is refused
// (rebuilding it would wait on itself forever); a chain that ends in a
// whole object is fine.
func TestCheckDeltaChain(t *testing.T) {
	a := plumbing.NewHash("1111111111111111111111111111111111111111")
	b := plumbing.NewHash("2222222222222222222222222222222222222222")
	c := plumbing.NewHash("3333333333333333333333333333333333333333")

	loop, offs := handPack(t, []plumbing.Hash{a, b}, [][]byte{refDelta(b), refDelta(a)})
	if _, err := checkDeltaChain([]*pack{loop}, loop, offs[0]); !errors.Is(err, errDeltaChain) {
		t.Errorf("a <-> b loop: %v, want errDeltaChain", err)
	}
	self, offs := handPack(t, []plumbing.Hash{a}, [][]byte{refDelta(a)})
	if _, err := checkDeltaChain([]*pack{self}, self, offs[0]); !errors.Is(err, errDeltaChain) {
		t.Errorf("delta against itself: %v, want errDeltaChain", err)
	}
	// a -> b -> c, c a whole 5-byte blob: fine.
	chain, offs := handPack(t, []plumbing.Hash{a, b, c}, [][]byte{refDelta(b), refDelta(c), {packBlob<<4 | 5}})
	if depth, err := checkDeltaChain([]*pack{chain}, chain, offs[0]); err != nil || depth != 2 {
		t.Errorf("a -> b -> blob: depth %d, %v; want 2", depth, err)
	}
	// Remembered depths: b is 1 deep, c 0, and a again 2.
	for i, want := range []int{2, 1, 0, 2} {
		if depth, err := checkDeltaChain([]*pack{chain}, chain, offs[i%3]); err != nil || depth != want {
			t.Errorf("entry %d: depth %d, %v; want %d", i%3, depth, err, want)
		}
	}
}

// TestReadEntryWholeLoop: reading a whole object through a looping delta
// chain (by id, and by offset: an OFS_DELTA whose base is a REF_DELTA back
// to it) fails as a chain too deep, without a checkDeltaChain pass first.
func TestReadEntryWholeLoop(t *testing.T) {
	a := plumbing.NewHash("1111111111111111111111111111111111111111")
	b := plumbing.NewHash("2222222222222222222222222222222222222222")
	loop, offs := handPack(t, []plumbing.Hash{a, b}, [][]byte{refDelta(b), refDelta(a)})
	if _, _, _, err := readEntryWhole([]*pack{loop}, loop, offs[0], 1<<20, 1<<20, nil); !errors.Is(err, errDeltaChain) {
		t.Errorf("a <-> b loop: %v, want errDeltaChain", err)
	}
	// Entry 0 (a) is REF_DELTA against b; entry 1 (b) is OFS_DELTA back
	// to entry 0, 21 bytes before it.
	mixed, offs := handPack(t, []plumbing.Hash{a, b}, [][]byte{refDelta(b), {packOfsDelta<<4 | 5, 21}})
	if _, _, _, err := readEntryWhole([]*pack{mixed}, mixed, offs[1], 1<<20, 1<<20, nil); !errors.Is(err, errDeltaChain) {
		t.Errorf("ofs -> ref loop: %v, want errDeltaChain", err)
	}
}

// indexOf writes ids at offs as a pack index, with go-git's encoder, and
// parses it back with ours.
func indexOf(t testing.TB, ids []plumbing.Hash, offs []int64) *packIndex {
	t.Helper()
	w := new(idxfile.Writer)
	w.OnHeader(uint32(len(ids)))
	for i, id := range ids {
		if err := w.OnInflatedObjectContent(id, offs[i], 0, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.OnFooter(plumbing.ZeroHash); err != nil {
		t.Fatal(err)
	}
	mi, err := w.Index()
	if err != nil {
		t.Fatal(err)
	}
	var ib bytes.Buffer
	if _, err := idxfile.NewEncoder(&ib).Encode(mi); err != nil {
		t.Fatal(err)
	}
	idx, err := parsePackIndex(ib.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return idx
}
