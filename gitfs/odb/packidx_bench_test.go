package odb

import (
	"crypto/sha1"
	"encoding/binary"
	"testing"

	"bytes"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
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
}

func bigIndex(t testing.TB, n int) (*packIndex, []plumbing.Hash) {
	w := new(idxfile.Writer)
	w.OnHeader(uint32(n))
	ids := make([]plumbing.Hash, n)
	for i := range ids {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(i))
		ids[i] = sha1.Sum(b[:])
		if err := w.OnInflatedObjectContent(ids[i], int64(12+i*32), 0, nil); err != nil {
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
	x, err := parsePackIndex(ib.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return x, ids
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
