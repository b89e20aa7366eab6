package gitfs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/gitblk/gitblk/imager"
)

// Blob contents are read here straight from pack files and loose object
// files, with one lookup of the object: go-git resolved every small delta
// in full, hashing it, just to answer its type and size, and copied every
// object once more into its cache. go-git stays the fallback for what
// this path cannot find (a pack written after our last look, say), and
// it reads trees and commits.

// directBlob is a blob opened by readDirect: its bytes when it is small,
// else its open stream.
type directBlob struct {
	data []byte
	rc   io.ReadCloser
	size int64
}

// readDirect opens blob h without go-git: read whole into data when it is
// at most smallMax bytes, else as a stream. found is false when no pack
// we know and no loose file holds h, or when the pack we found it in was
// closed under us (the pack list is reloaded after a repack): go-git then
// looks again.
func (r *Repo) readDirect(h plumbing.Hash, smallMax int64) (b directBlob, found bool, err error) {
	packs, err := r.sizes.current()
	if err == nil {
		for _, p := range packs {
			off, err := p.idx.FindOffset(h)
			if err != nil {
				continue
			}
			b, err := r.readPacked(packs, p, off, h, smallMax)
			if errors.Is(err, os.ErrClosed) {
				return directBlob{}, false, nil
			}
			return b, true, err
		}
	}
	return r.readLoose(h, smallMax)
}

// readLoose is readDirect for a loose object: a small one is read with
// one read of its file and inflated whole.
func (r *Repo) readLoose(h plumbing.Hash, smallMax int64) (directBlob, bool, error) {
	f, err := r.openLoose(h)
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
		rc, err := r.openLooseBlob(h, size)
		if errors.Is(err, os.ErrNotExist) {
			return directBlob{}, false, nil // packed meanwhile
		}
		if err != nil {
			return directBlob{}, true, err
		}
		return readAllSmall(rc, size, smallMax)
	}
	bp := getBuf(int(st.Size()))
	defer putBuf(bp)
	src := *bp
	if n, err := f.ReadAt(src, 0); n < len(src) {
		return directBlob{}, true, fmt.Errorf("loose object %s: %w", h, err)
	}
	dst := make([]byte, whole)
	if _, err := inflateWhole(dst, src); err != nil {
		return directBlob{}, true, fmt.Errorf("loose object %s: %w", h, err)
	}
	return directBlob{data: dst[hdrLen:], size: size}, true, nil
}

// readAllSmall reads a small blob's stream into memory and closes it; a big
// blob's stream is returned open.
func readAllSmall(rc io.ReadCloser, size, smallMax int64) (directBlob, bool, error) {
	if size > smallMax {
		return directBlob{rc: rc, size: size}, true, nil
	}
	defer rc.Close()
	data := make([]byte, size)
	if n, err := io.ReadFull(rc, data); err != nil {
		return directBlob{}, true, shortBlob(int64(n), size, err)
	}
	if err := streamEnds(rc, size); err != nil {
		return directBlob{}, true, err
	}
	return directBlob{data: data, size: size}, true, nil
}

// streamEnds checks that stream r, which gave a blob's size bytes, ends
// there: nothing more, and (for zlib, checked at the end) a good checksum.
func streamEnds(r io.Reader, size int64) error {
	var b [1]byte
	n, err := io.ReadFull(r, b[:])
	switch {
	case n > 0:
		return fmt.Errorf("%w: content goes on past its %d-byte header size", ErrCorruptObject, size)
	case errors.Is(err, io.EOF):
		return nil
	}
	return err
}

// shortBlob is the error of a blob whose content ends before its size.
func shortBlob(n, size int64, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: content ends at %d, before its %d-byte header size", ErrCorruptObject, n, size)
	}
	return err
}

// readPacked reads or opens the blob in pack entry off of p (see
// readDirect).
func (r *Repo) readPacked(packs []*sizerPack, p *sizerPack, off int64, h plumbing.Hash, smallMax int64) (directBlob, error) {
	e, err := readPackEntry(p.f, off)
	if err != nil {
		return directBlob{}, err
	}
	if e.typ == packBlob && e.size <= smallMax {
		// The common case: inflated whole, at once.
		data := make([]byte, e.size)
		if err := inflateEntry(p.f, off, e, data); err != nil {
			return directBlob{}, err
		}
		return directBlob{data: data, size: e.size}, nil
	}
	rc, size, err := r.openPackEntry(packs, p, off, e, h)
	if err != nil {
		return directBlob{}, err
	}
	b, _, err := readAllSmall(rc, size, smallMax)
	return b, err
}

// openPackEntry opens the content of blob h, at pack entry off of p
// (header e), as a stream, and says its size.
func (r *Repo) openPackEntry(packs []*sizerPack, p *sizerPack, off int64, e *packEntry, h plumbing.Hash) (io.ReadCloser, int64, error) {
	// The input buffer: a stored zlib stream is barely longer than its
	// content, so a small entry takes one pread.
	bufSize := int(min(e.size+packEntryHeaderMax, deltaBufSize))
	data := io.NewSectionReader(p.f, e.dataOff, 1<<62)
	var base plumbing.Hash
	switch e.typ {
	case packBlob:
		zr, err := newZlibReader(data, bufSize)
		if err != nil {
			return nil, 0, fmt.Errorf("pack entry at %d: %w", off, err)
		}
		return zr, e.size, nil
	case packOfsDelta:
		var err error
		if base, err = p.idx.FindHash(e.baseOff); err != nil {
			return nil, 0, fmt.Errorf("pack entry at %d: delta base at %d: %w", off, e.baseOff, err)
		}
	case packRefDelta:
		base = e.baseID
	default:
		return nil, 0, fmt.Errorf("is a %s, not a blob", plumbing.ObjectType(e.typ))
	}
	depth, err := checkDeltaChain(packs, p, off)
	if err != nil {
		return nil, 0, err
	}
	if depth > shallowDeltaChain {
		if err := r.buildBases(packs, p, off, depth); err != nil {
			return nil, 0, err
		}
	}
	d := &deltaReader{r: r, base: imager.BlobID(base)}
	if e.size <= wholeDeltaMax {
		// Delta data inflated whole, at once.
		d.buf = getBuf(int(e.size))
		if err := inflateEntry(p.f, off, e, *d.buf); err != nil {
			d.Close()
			return nil, 0, err
		}
		d.src = bytes.NewReader(*d.buf)
	} else {
		zr, err := newZlibReader(data, bufSize)
		if err != nil {
			return nil, 0, fmt.Errorf("pack entry at %d: delta: %w", off, err)
		}
		d.zr, d.src = zr, bufio.NewReaderSize(zr, deltaBufSize)
	}
	baseSize, err := d.varint()
	if err == nil {
		d.left, err = d.varint()
	}
	if err != nil {
		d.Close()
		return nil, 0, fmt.Errorf("pack entry at %d: delta header: %w", off, err)
	}
	d.baseSize = baseSize
	return d, d.left, nil
}

// openDirect opens the content of blob h, expected to be size bytes, as a
// stream, without go-git (see readDirect).
func (r *Repo) openDirect(h plumbing.Hash, size int64) (rc io.ReadCloser, found bool, err error) {
	b, found, err := r.readDirect(h, -1)
	if !found || err != nil {
		return nil, found, err
	}
	if b.size != size {
		_ = b.rc.Close()
		return nil, true, fmt.Errorf("%w: now %d bytes, was %d", ErrCorruptObject, b.size, size)
	}
	return b.rc, true, nil
}

// wholeDeltaMax is the biggest delta data inflated whole rather than
// streamed.
const wholeDeltaMax = 1 << 20

// inflateEntry inflates the data of pack entry off (header e) of f into
// dst, which is e.size bytes, with inflateWhole: it reads a bound on the
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
	if _, err := inflateWhole(dst, src[:n]); err == nil {
		return nil
	} else if n < bound {
		return fmt.Errorf("pack entry at %d: %w", off, err)
	}
	z, err := zpools[len(zpools)-1].get(io.NewSectionReader(f, e.dataOff, 1<<62))
	if err != nil {
		return fmt.Errorf("pack entry at %d: %w", off, err)
	}
	defer zpools[len(zpools)-1].put(z)
	if got, err := io.ReadFull(z, dst); err != nil {
		return fmt.Errorf("pack entry at %d: %w", off, shortBlob(int64(got), int64(len(dst)), err))
	}
	if err := streamEnds(z, int64(len(dst))); err != nil {
		return fmt.Errorf("pack entry at %d: %w", off, err)
	}
	return nil
}

// bufPools hold byte buffers by power-of-two size, from 4 KiB to 4 MiB,
// for compressed input and delta data.
var bufPools [11]sync.Pool

const minBufShift = 12

// getBuf returns a buffer of n bytes, pooled when n is at most 4 MiB.
func getBuf(n int) *[]byte {
	class := 0
	for class < len(bufPools) && 1<<(class+minBufShift) < n {
		class++
	}
	if class == len(bufPools) {
		b := make([]byte, n)
		return &b
	}
	if bp, ok := bufPools[class].Get().(*[]byte); ok {
		*bp = (*bp)[:n]
		return bp
	}
	b := make([]byte, n, 1<<(class+minBufShift))
	return &b
}

// putBuf gives a buffer from getBuf back.
func putBuf(bp *[]byte) {
	c := cap(*bp)
	for class := range bufPools {
		if c == 1<<(class+minBufShift) {
			bufPools[class].Put(bp)
			return
		}
	}
}
