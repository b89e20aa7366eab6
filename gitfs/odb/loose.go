package odb

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/gitblk/gitblk/internal/inflate"
	"github.com/go-git/go-git/v5/plumbing"
)

// Loose big blobs are inflated here rather than by go-git: go-git's loose
// object reader hashes every byte with collision-detecting SHA-1 as it
// streams, which costs about as much as inflating; and the hash is never
// checked on a partial read anyway. The loose format is git's: a zlib
// stream of "<type> <size>\x00" and the content.
const (
	looseBufSize   = 64 << 10
	maxLooseHeader = 32 // "blob " + 19 digits + NUL fits
)

// openLooseBlob opens loose object h, checks that it is a blob of size
// bytes, and returns its inflated content. A file that is gone (packed
// meanwhile) gives an error wrapping os.ErrNotExist.
func (db *Store) openLooseBlob(h plumbing.Hash, size int64) (io.ReadCloser, error) {
	f, err := db.openLoose(h)
	if err != nil {
		return nil, err
	}
	zr, err := inflate.NewReader(f, looseBufSize)
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("loose object: %w", err)
	}
	br := bufio.NewReaderSize(zr, maxLooseHeader)
	hdr, err := br.ReadSlice(0)
	if err != nil {
		_ = zr.Close()
		_ = f.Close()
		return nil, fmt.Errorf("loose object header: %w", err)
	}
	typ, num, ok := bytes.Cut(hdr[:len(hdr)-1], []byte{' '})
	n, perr := strconv.ParseInt(string(num), 10, 64)
	if !ok || perr != nil || string(typ) != "blob" || n != size {
		_ = zr.Close()
		_ = f.Close()
		return nil, fmt.Errorf("loose object header %q, want a blob of %d bytes", hdr, size)
	}
	return &looseReader{Reader: br, zr: zr, f: f}, nil
}

// looseReader is an inflating loose object stream.
type looseReader struct {
	*bufio.Reader
	zr io.ReadCloser
	f  *os.File
}

func (l *looseReader) Close() error {
	_ = l.zr.Close()
	return l.f.Close()
}

// openLoose opens the file of loose object h.
func (db *Store) openLoose(h plumbing.Hash) (*os.File, error) {
	hex := h.String()
	return os.Open(filepath.Join(db.objects, hex[:2], hex[2:]))
}

// looseHeader reads the header of loose object h from f, checks that it
// is a blob's, and returns the blob's size and the header's length.
func looseHeader(f *os.File, h plumbing.Hash) (size int64, hdrLen int, err error) {
	var buf [maxLooseHeader]byte
	n, err := inflateHead(io.NewSectionReader(f, 0, 1<<62), buf[:])
	if err != nil {
		return 0, 0, fmt.Errorf("loose object %s: %w", h, err)
	}
	hdr, _, ok := bytes.Cut(buf[:n], []byte{0})
	if !ok {
		return 0, 0, fmt.Errorf("loose object %s: bad header", h)
	}
	typ, num, ok := bytes.Cut(hdr, []byte{' '})
	if !ok || string(typ) != "blob" {
		return 0, 0, fmt.Errorf("loose object %s: header %q, not a blob", h, hdr)
	}
	size, err = strconv.ParseInt(string(num), 10, 64)
	if err != nil || size < 0 {
		return 0, 0, fmt.Errorf("loose object %s: header %q", h, hdr)
	}
	return size, len(hdr) + 1, nil
}

// readLoose is readDirect for a loose object: a small one is read with
// one read of its file and inflated whole.
func (db *Store) readLoose(h plumbing.Hash, smallMax int64) (directBlob, bool, error) {
	f, err := db.openLoose(h)
	if err != nil {
		return directBlob{}, false, nil
	}
	defer f.Close()
	size, hdrLen, err := looseHeader(f, h)
	if err != nil {
		return directBlob{}, true, err
	}
	st, err := f.Stat()
	if err != nil {
		return directBlob{}, true, fmt.Errorf("loose object %s: %w", h, err)
	}
	whole := int64(hdrLen) + size
	if size > smallMax || st.Size() > whole+whole/8+packEntryHeaderMax {
		// Big, or compressed oddly: streamed.
		rc, err := db.openLooseBlob(h, size)
		if errors.Is(err, os.ErrNotExist) {
			return directBlob{}, false, nil // packed meanwhile
		}
		if err != nil {
			return directBlob{}, true, err
		}
		b, err := openedBlob(rc, size, smallMax)
		return b, true, err
	}
	bp := getBuf(int(st.Size()))
	defer putBuf(bp)
	src := *bp
	if n, err := f.ReadAt(src, 0); n < len(src) {
		return directBlob{}, true, fmt.Errorf("loose object %s: %w", h, err)
	}
	dst := make([]byte, whole)
	if _, err := inflate.Whole(dst, src); err != nil {
		return directBlob{}, true, fmt.Errorf("loose object %s: %w", h, err)
	}
	return directBlob{data: dst[hdrLen:], size: size}, true, nil
}
