package odb

import (
	"bytes"
	"compress/zlib"
	"errors"
	"testing"

	"github.com/gitblk/gitblk/internal/inflate"
	"github.com/gitblk/gitblk/internal/testutil"
	"github.com/go-git/go-git/v5/plumbing"
)

// packBlobEntry is a whole blob's pack entry header (size < 16) and data.
func packBlobEntry(size int, z []byte) []byte {
	return append([]byte{packBlob<<4 | byte(size)}, z...)
}

// TestInflateEntry: a pack entry is inflated whole at once, and one whose
// stream is longer than the bound read for it (another encoder's) is
// still read right; a damaged one is an error.
func TestInflateEntry(t *testing.T) {
	data := []byte("hello, pack")
	var good bytes.Buffer
	w := zlib.NewWriter(&good)
	w.Write(data)
	w.Close()
	padded := testutil.PaddedZlib(data, 100)
	damaged := append([]byte{}, good.Bytes()...)
	damaged[len(damaged)-1] ^= 1

	ids := []plumbing.Hash{
		plumbing.NewHash("1111111111111111111111111111111111111111"),
		plumbing.NewHash("2222222222222222222222222222222222222222"),
		plumbing.NewHash("3333333333333333333333333333333333333333"),
	}
	p, offs := handPack(t, ids, [][]byte{
		packBlobEntry(len(data), good.Bytes()),
		packBlobEntry(len(data), padded),
		packBlobEntry(len(data), damaged),
	})
	for i, want := range []error{nil, nil, inflate.ErrData} {
		e, err := readPackEntry(p.f, offs[i])
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, e.size)
		err = inflateEntry(p.f, offs[i], e, got)
		if want == nil && (err != nil || !bytes.Equal(got, data)) {
			t.Errorf("entry %d: %q, %v; want %q", i, got, err, data)
		}
		if want != nil && !errors.Is(err, want) {
			t.Errorf("entry %d: %v, want %v", i, err, want)
		}
	}
}
