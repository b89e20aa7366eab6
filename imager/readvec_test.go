package imager

import (
	"bytes"
	"fmt"
	"io"
	"math/rand"
	"strings"
	"testing"

	"github.com/gitblk/gitblk/internal/iovec"
)

// lendBlobs is a batch reader that also lends: every other blob range it
// is asked for, as a slice of the blob's bytes. It counts what it lent.
type lendBlobs struct {
	batchBlobs
	asked, lent int
}

var _ BlobLender = (*lendBlobs)(nil)

func (b *lendBlobs) LendBlob(id BlobID, off int64, n int) (iovec.Piece, bool) {
	b.asked++
	data, ok := b.memBlobs[id]
	if !ok || b.asked%2 == 0 || off+int64(n) > int64(len(data)) {
		return iovec.Piece{}, false
	}
	b.lent++
	return iovec.Piece{Mem: data[off : off+int64(n)]}, true
}

// vecBytes joins a List's pieces (memory only).
func vecBytes(t *testing.T, v *iovec.List) []byte {
	var out []byte
	for _, p := range v.Pieces {
		if p.File != nil {
			t.Fatal("file piece from an in-memory lender")
		}
		out = append(out, p.Mem...)
	}
	return out
}

// TestLayoutReadVec reads tar and FAT images of small and big files with
// ReadVec in random ranges and checks that the pieces join to the bytes
// ReadAt gives, that blobs were lent, and that a p poisoned beforehand
// does not leak into the result (lent ranges are not read into p).
func TestLayoutReadVec(t *testing.T) {
	rng := rand.New(rand.NewSource(13))
	var files []memFile
	for i := range 300 {
		n := rng.Intn(3000)
		if i%7 == 0 {
			n = lendMin + rng.Intn(200<<10)
		}
		data := make([]byte, n)
		rng.Read(data)
		files = append(files, memFile{Path: fmt.Sprintf("d%02d/f%03d", i%11, i), Kind: KindFile, Data: data})
	}
	for _, format := range []Format{FormatTar, FormatFAT} {
		tree, blobs := memTree(t, files, strings.Repeat("cd", 20), testTime)
		plain, _, err := Build(tree, blobs, Options{Format: format})
		if err != nil {
			t.Fatal(err)
		}
		lb := &lendBlobs{batchBlobs: batchBlobs{memBlobs: blobs}}
		l, _, err := Build(tree, lb, Options{Format: format})
		if err != nil {
			t.Fatal(err)
		}
		want := readImage(t, plain)
		var v iovec.List
		for range 300 {
			off := rng.Int63n(l.Size())
			p := bytes.Repeat([]byte{0xa5}, rng.Intn(600<<10))
			n, err := l.ReadVec(p, off, &v)
			wn := min(len(p), int(l.Size()-off))
			if n != wn || (err != nil && err != io.EOF) || (err == nil && n < len(p)) {
				t.Fatalf("%s: ReadVec(%d bytes at %d) = %d, %v; want %d", format, len(p), off, n, err, wn)
			}
			if got := vecBytes(t, &v); !bytes.Equal(got, want[off:off+int64(n)]) {
				t.Fatalf("%s: ReadVec(%d bytes at %d): pieces differ from the image at %d", format, len(p), off, firstDiffBytes(got, want[off:off+int64(n)]))
			}
			v.Release()
		}
		if lb.lent == 0 {
			t.Errorf("%s: nothing lent", format)
		}
	}
}

// TestLayoutReadVecPlain: without a lender, ReadVec is ReadAt in one piece.
func TestLayoutReadVecPlain(t *testing.T) {
	tree, blobs := memTree(t, []memFile{{Path: "a", Kind: KindFile, Data: bytes.Repeat([]byte("x"), 50000)}}, "", testTime)
	l, _, err := Build(tree, blobs, Options{Format: FormatTar})
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, l.Size())
	var v iovec.List
	if _, err := l.ReadVec(p, 0, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Pieces) != 1 || &v.Pieces[0].Mem[0] != &p[0] || len(v.Pieces[0].Mem) != len(p) {
		t.Fatalf("%d pieces, want p whole", len(v.Pieces))
	}
}

func firstDiffBytes(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
