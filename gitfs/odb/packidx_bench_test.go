package odb

import (
	"crypto/sha1"
	"encoding/binary"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
)

// TestPackIndexLookupsAtScale: every one of 300,000 ids is found at its
// offset, and ids next to them are not found (the interpolation search
// on a full-size table).
func TestPackIndexLookupsAtScale(t *testing.T) {
	x, ids := bigIndex(t, 300000)
	for i, h := range ids {
		off, err := x.FindOffset(h)
		if err != nil || off != int64(12+i*32) {
			t.Fatalf("id %d: offset %d, %v", i, off, err)
		}
		h[19] ^= 1
		if _, err := x.FindOffset(h); err == nil {
			t.Fatalf("id %d with its last bit flipped is found", i)
		}
	}
	// FindOffsets agrees, for ids held and not, in groups of every size.
	var hs []plumbing.Hash
	for i := 0; i < 1000; i++ {
		h := ids[(i*7919)%len(ids)]
		if i%3 == 0 {
			h[19] ^= 1
		}
		hs = append(hs, h)
	}
	for _, n := range []int{0, 1, findGroup - 1, findGroup, findGroup + 1, len(hs)} {
		offs := make([]int64, n)
		x.FindOffsets(hs[:n], offs)
		for i, h := range hs[:n] {
			want, err := x.FindOffset(h)
			if err != nil {
				want = -1
			}
			if offs[i] != want {
				t.Fatalf("FindOffsets of %d ids: id %d at %d, FindOffset says %d", n, i, offs[i], want)
			}
		}
	}
}

func bigIndex(t testing.TB, n int) (*packIndex, []plumbing.Hash) {
	ids := make([]plumbing.Hash, n)
	offs := make([]int64, n)
	for i := range ids {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(i))
		ids[i] = sha1.Sum(b[:])
		offs[i] = int64(12 + i*32)
	}
	return indexOf(t, ids, offs), ids
}

func BenchmarkPackIndexFind(b *testing.B) {
	x, ids := bigIndex(b, 300000)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := x.FindOffset(ids[(i*7919)%len(ids)]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPackIndexFindOffsets(b *testing.B) {
	x, ids := bigIndex(b, 300000)
	hs := make([]plumbing.Hash, 4096)
	for i := range hs {
		hs[i] = ids[(i*7919)%len(ids)]
	}
	offs := make([]int64, len(hs))
	b.ResetTimer()
	for i := 0; i < b.N; i += len(hs) {
		x.FindOffsets(hs, offs)
	}
}
