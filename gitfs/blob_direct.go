package gitfs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"

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
// we know and no loose file holds h.
func (r *Repo) readDirect(h plumbing.Hash, smallMax int64) (b directBlob, found bool, err error) {
	packs, err := r.sizes.current()
	if err == nil {
		for _, p := range packs {
			off, err := p.idx.FindOffset(h)
			if err != nil {
				continue
			}
			b, err := r.readPacked(packs, p, off, h, smallMax)
			return b, true, err
		}
	}
	size, err := r.looseSize(h)
	if errors.Is(err, errNotHere) {
		return directBlob{}, false, nil
	}
	if err != nil {
		return directBlob{}, true, err
	}
	rc, err := r.openLooseBlob(h, size)
	if errors.Is(err, os.ErrNotExist) {
		return directBlob{}, false, nil // packed meanwhile
	}
	if err != nil {
		return directBlob{}, true, err
	}
	return whole(rc, size, smallMax)
}

// whole reads a small blob's stream into memory and closes it; a big
// blob's stream is returned open.
func whole(rc io.ReadCloser, size, smallMax int64) (directBlob, bool, error) {
	if size > smallMax {
		return directBlob{rc: rc, size: size}, true, nil
	}
	defer rc.Close()
	data := make([]byte, size)
	if n, err := io.ReadFull(rc, data); err != nil {
		return directBlob{}, true, shortBlob(int64(n), size, err)
	}
	return directBlob{data: data, size: size}, true, nil
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
		// The common case: inflated with a pooled reader, one pread.
		data := make([]byte, e.size)
		n, err := inflateHead(io.NewSectionReader(p.f, e.dataOff, 1<<62), data)
		if err != nil {
			return directBlob{}, fmt.Errorf("pack entry at %d: %w", off, err)
		}
		if int64(n) != e.size {
			return directBlob{}, shortBlob(int64(n), e.size, io.EOF)
		}
		return directBlob{data: data, size: e.size}, nil
	}
	rc, size, err := r.openPackEntry(packs, p, off, e, h)
	if err != nil {
		return directBlob{}, err
	}
	b, _, err := whole(rc, size, smallMax)
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
	if err := checkDeltaChain(packs, p, off); err != nil {
		return nil, 0, err
	}
	zr, err := newZlibReader(data, bufSize)
	if err != nil {
		return nil, 0, fmt.Errorf("pack entry at %d: delta: %w", off, err)
	}
	d := &deltaReader{r: r, base: imager.BlobID(base), zr: zr, br: bufio.NewReaderSize(zr, int(min(max(e.size, 16), deltaBufSize)))}
	baseSize, err := d.varint()
	if err == nil {
		d.left, err = d.varint()
	}
	if err != nil {
		_ = zr.Close()
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

// openPacked opens blob h, expected to be size bytes, from a pack we
// know; found is false when none holds it.
func (r *Repo) openPacked(h plumbing.Hash, size int64) (rc io.ReadCloser, found bool, err error) {
	packs, err := r.sizes.current()
	if err != nil {
		return nil, false, nil
	}
	for _, p := range packs {
		off, err := p.idx.FindOffset(h)
		if err != nil {
			continue
		}
		e, err := readPackEntry(p.f, off)
		if err != nil {
			return nil, true, err
		}
		rc, n, err := r.openPackEntry(packs, p, off, e, h)
		if err == nil && n != size {
			_ = rc.Close()
			err = fmt.Errorf("%w: pack entry at %d holds %d bytes, want %d", ErrCorruptObject, off, n, size)
		}
		return rc, true, err
	}
	return nil, false, nil
}
