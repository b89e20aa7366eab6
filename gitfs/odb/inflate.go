package odb

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/gitblk/gitblk/internal/inflate"
)

// zpools hold zlib readers by input buffer size: sizeReaderBuf for the
// few bytes of a header, bigger ones for whole blobs, so that inflating a
// blob costs one or a few preads instead of one per 512 bytes.
var zpools = [...]*inflate.Pool{
	inflate.NewPool(sizeReaderBuf), inflate.NewPool(4 << 10), inflate.NewPool(16 << 10), inflate.NewPool(64 << 10),
}

// inflateHead inflates up to len(buf) bytes of the zlib stream in r,
// reading its input in pieces of about len(buf) bytes (a stored zlib
// stream is barely longer than its content).
func inflateHead(r io.Reader, buf []byte) (int, error) {
	class := 0
	for class < len(zpools)-1 && zpools[class].BufSize() < len(buf)+packEntryHeaderMax {
		class++
	}
	z, err := zpools[class].Get(r)
	if err != nil {
		return 0, err
	}
	n, err := io.ReadFull(z, buf)
	zpools[class].Put(z)
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		err = nil // a stream shorter than buf: the caller checks what it got
	}
	return n, err
}

// inflateEntry inflates the data of pack entry off (header e) of f into
// dst, which is e.size bytes, with inflate.Whole: it reads a bound on the
// compressed size, the size plus an eighth (deflate expands incompressible
// data by a few percent at worst with git's zlib). A stream longer than
// that, from another encoder, is inflated as a stream instead.
func inflateEntry(f *os.File, off int64, e *packEntry, dst []byte) error {
	bound := len(dst) + len(dst)/8 + packEntryHeaderMax
	bp := getBuf(bound)
	defer putBuf(bp)
	src := *bp
	n, err := f.ReadAt(src, e.dataOff)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("pack entry at %d: %w", off, err)
	}
	if _, err := inflate.Whole(dst, src[:n]); err == nil {
		return nil
	} else if n < bound {
		return fmt.Errorf("pack entry at %d: %w", off, err)
	}
	z, err := zpools[len(zpools)-1].Get(io.NewSectionReader(f, e.dataOff, 1<<62))
	if err != nil {
		return fmt.Errorf("pack entry at %d: %w", off, err)
	}
	defer zpools[len(zpools)-1].Put(z)
	if got, err := io.ReadFull(z, dst); err != nil {
		return fmt.Errorf("pack entry at %d: %w", off, shortBlob(int64(got), int64(len(dst)), err))
	}
	if err := streamEnds(z, int64(len(dst))); err != nil {
		return fmt.Errorf("pack entry at %d: %w", off, err)
	}
	return nil
}
