package odb

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"hash/adler32"
	"testing"

	"github.com/gitblk/gitblk/internal/inflate"
	"github.com/go-git/go-git/v5/plumbing"
)

// paddedZlib is a valid zlib stream of data that starts with n empty
// stored blocks: far longer than any bound on its compressed size.
func paddedZlib(data []byte, n int) []byte {
	z := []byte{0x78, 0x01}
	for i := 0; i < n; i++ {
		z = append(z, 0x00, 0x00, 0x00, 0xff, 0xff) // not final, stored, LEN 0
	}
	z = append(z, 0x01) // final, stored
	z = binary.LittleEndian.AppendUint16(z, uint16(len(data)))
	z = binary.LittleEndian.AppendUint16(z, ^uint16(len(data)))
	z = append(z, data...)
	return binary.BigEndian.AppendUint32(z, adler32.Checksum(data))
}

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
	padded := paddedZlib(data, 100)
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
