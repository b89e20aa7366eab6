package odb

import (
	"bytes"
	"fmt"
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

// TestLendFromLog: blobs the memory cache dropped into the blob log are
// lent as ranges of its file, and a lent range keeps its bytes while the
// log starts over in a new file, until released.
func TestLendFromLog(t *testing.T) {
	const files = 60
	dir, ids, want := packedFiles(t, files, func(i int) string {
		return fmt.Sprintf("content of file %d, %s\n", i, bytes.Repeat([]byte{'y'}, logLendMin+i))
	})
	r := openRepo(t, dir, Options{CacheSize: 1 << 20, CacheDir: t.TempDir(), DiskCacheSize: 64 << 20})
	read := func() {
		for _, id := range ids {
			buf := make([]byte, len(want[id]))
			if n, err := r.ReadBlob(id, buf, 0); n != len(buf) || !bytes.Equal(buf, want[id]) {
				t.Fatalf("ReadBlob %s: %d, %v", id, n, err)
			}
		}
	}
	read()
	var lent []iovec.Piece
	var lentIDs []plumbing.Hash
	for _, id := range ids {
		if !r.blobs.log.has(id) {
			continue
		}
		if _, ok := r.LendBlob(id, 0, logLendMin-1); ok {
			t.Fatalf("%s: a range shorter than logLendMin lent from the log", id)
		}
		p, ok := r.LendBlob(id, 10, len(want[id])-10)
		if !ok || p.File == nil {
			t.Fatalf("%s: in the log, not lent from it", id)
		}
		if got := pieceBytes(t, p); !bytes.Equal(got, want[id][10:]) {
			t.Fatalf("%s: lent bytes differ", id)
		}
		lent, lentIDs = append(lent, p), append(lentIDs, id)
	}
	if len(lent) == 0 {
		t.Fatal("nothing in the blob log")
	}
	// Make the log start over: put more than its bound through it.
	l := r.blobs.log
	l.mu.RLock()
	first := l.f
	l.mu.RUnlock()
	var filler []*memBlob
	for i := int64(0); i*4096 <= l.max; i++ {
		b := &memBlob{data: bytes.Repeat([]byte{byte(i)}, 4096)}
		b.id[0], b.id[1], b.id[2] = 0xee, byte(i), byte(i>>8)
		filler = append(filler, b)
	}
	l.put(filler)
	l.mu.RLock()
	again := l.f
	l.mu.RUnlock()
	if again == first {
		t.Fatalf("the log did not start over in a new file (bound %d, end %d, bad %v)", l.max, l.end, l.bad)
	}
	for k, p := range lent {
		if got := pieceBytes(t, p); !bytes.Equal(got, want[lentIDs[k]][10:]) {
			t.Fatalf("%s: lent bytes changed when the log started over", lentIDs[k])
		}
		p.Ref.Release()
	}
	if _, err := first.Stat(); err == nil {
		t.Error("the old log file is still open after its last lent range was released")
	}
}
