package odb

import (
	"bytes"
	"io"
	"testing"

	"github.com/gitblk/gitblk/internal/iovec"
	"github.com/gitblk/gitblk/internal/testutil"
	"github.com/go-git/go-git/v5/plumbing"
)

// pieceBytes reads a lent piece's bytes.
func pieceBytes(t *testing.T, p iovec.Piece) []byte {
	t.Helper()
	if p.File == nil {
		return p.Mem
	}
	b := make([]byte, p.Len)
	if _, err := p.File.ReadAt(b, p.Off); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	return b
}

// TestLendBlob: nothing is lent before a blob was read; after a read,
// ranges the caches hold are lent with the blob's bytes (from memory for
// small blobs, from the spill file for big ones), a lent spill is not
// dropped until released, and ranges past the end are refused.
func TestLendBlob(t *testing.T) {
	dir, ids := testutil.BlobRepo(t)
	r := openRepo(t, dir, Options{CacheSize: 1 << 20})
	for _, hex := range ids {
		id := plumbing.NewHash(hex)
		want := testutil.GitBytes(t, dir, "cat-file", "blob", hex)
		if len(want) == 0 {
			if _, ok := r.LendBlob(id, 0, 1); ok {
				t.Errorf("%s: empty blob lent", hex)
			}
			continue
		}
		if _, ok := r.LendBlob(id, 0, len(want)); ok {
			t.Fatalf("%s: lent before it was read", hex)
		}
		buf := make([]byte, len(want))
		if n, err := r.ReadBlob(id, buf, 0); n != len(want) {
			t.Fatalf("%s: ReadBlob: %d, %v", hex, n, err)
		}
		off, n := int64(len(want)/3), len(want)-len(want)/3
		p, ok := r.LendBlob(id, off, n)
		if !ok {
			t.Fatalf("%s (%d bytes): not lent after a full read", hex, len(want))
		}
		if got := pieceBytes(t, p); !bytes.Equal(got, want[off:]) {
			t.Fatalf("%s: lent bytes differ", hex)
		}
		if big := len(want) > int(r.blobs.smallMax); big != (p.File != nil) {
			t.Errorf("%s (%d bytes): lent from a file: %v", hex, len(want), p.File != nil)
		}
		if p.File != nil {
			r.blobs.mu.Lock()
			for r.blobs.evictSpillLocked(false) {
			}
			_, held := r.blobs.spills[id]
			r.blobs.mu.Unlock()
			if !held {
				t.Errorf("%s: a lent spill was dropped", hex)
			}
		}
		if p.Ref != nil {
			p.Ref.Release()
		}
		if _, ok := r.LendBlob(id, off+1, n); ok {
			t.Errorf("%s: range past the end lent", hex)
		}
	}
	r.blobs.mu.Lock()
	for e := r.blobs.spillLRU.Front(); e != nil; e = e.Next() {
		if s := e.Value.(*spill); s.refs != 0 {
			t.Errorf("spill %s: %d references left", s.id, s.refs)
		}
	}
	r.blobs.mu.Unlock()
}
