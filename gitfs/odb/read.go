package odb

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/gitblk/gitblk/internal/inflate"
	"github.com/go-git/go-git/v5/plumbing"
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
	at   *packedAt // a stream of a whole object in a pack: where
}

// packedAt is where a blob lies in a pack as a whole object (no delta).
type packedAt struct {
	p *pack
	e packEntry
}

// readDirect opens blob h without go-git: read whole into data when it is
// at most smallMax bytes, else as a stream. found is false when no pack
// we know and no loose file holds h, or when the pack we found it in was
// closed under us (the pack list is reloaded after a repack): go-git then
// looks again.
func (db *Store) readDirect(h plumbing.Hash, smallMax int64) (b directBlob, found bool, err error) {
	packs, err := db.packs.current()
	if err == nil {
		if p, off, ok := findIn(packs, h); ok {
			b, err := db.readPacked(packs, p, off, h, smallMax)
			if errors.Is(err, os.ErrClosed) {
				return directBlob{}, false, nil
			}
			return b, true, err
		}
	}
	return db.readLoose(h, smallMax)
}

// openedBlob is the directBlob of a blob of size bytes opened as stream
// rc: the stream itself when the blob is over smallMax bytes, else its
// bytes, read whole (and rc closed).
func openedBlob(rc io.ReadCloser, size, smallMax int64) (directBlob, error) {
	if size > smallMax {
		return directBlob{rc: rc, size: size}, nil
	}
	if d, ok := rc.(*deltaReader); ok {
		if data, ok, err := d.readWhole(); ok {
			d.Close()
			if err != nil {
				return directBlob{}, err
			}
			return directBlob{data: data, size: size}, nil
		}
	}
	data, err := readAllSmall(rc, size)
	if err != nil {
		return directBlob{}, err
	}
	return directBlob{data: data, size: size}, nil
}

// readAllSmall reads the size bytes of a small blob's stream rc, checks
// that the stream ends there, and closes it.
func readAllSmall(rc io.ReadCloser, size int64) ([]byte, error) {
	defer rc.Close()
	data := blobBytes(size)
	if n, err := io.ReadFull(rc, data); err != nil {
		return nil, shortBlob(int64(n), size, err)
	}
	if err := streamEnds(rc, size); err != nil {
		return nil, err
	}
	return data, nil
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
func (db *Store) readPacked(packs []*pack, p *pack, off int64, h plumbing.Hash, smallMax int64) (directBlob, error) {
	e, err := readPackEntry(p.f, off)
	if err != nil {
		return directBlob{}, err
	}
	if e.typ == packBlob && e.size <= smallMax {
		// The common case: inflated whole, at once.
		data := blobBytes(e.size)
		if err := inflateEntry(p.f, off, e, data); err != nil {
			return directBlob{}, err
		}
		return directBlob{data: data, size: e.size}, nil
	}
	rc, size, err := db.openPackEntry(packs, p, off, e, h)
	if err != nil {
		return directBlob{}, err
	}
	b, err := openedBlob(rc, size, smallMax)
	if err == nil && b.rc != nil && e.typ == packBlob {
		b.at = &packedAt{p: p, e: *e}
	}
	return b, err
}

// openPackEntry opens the content of blob h, at pack entry off of p
// (header e), as a stream, and says its size.
func (db *Store) openPackEntry(packs []*pack, p *pack, off int64, e *packEntry, h plumbing.Hash) (io.ReadCloser, int64, error) {
	// The input buffer: a stored zlib stream is barely longer than its
	// content, so a small entry takes one pread.
	bufSize := int(min(e.size+packEntryHeaderMax, deltaBufSize))
	data := io.NewSectionReader(p.f, e.dataOff, 1<<62)
	if e.typ == packBlob {
		zr, err := inflate.NewReader(data, bufSize)
		if err != nil {
			return nil, 0, fmt.Errorf("pack entry at %d: %w", off, err)
		}
		return zr, e.size, nil
	}
	base, isDelta, err := p.baseID(e, off)
	if err != nil {
		return nil, 0, err
	}
	if !isDelta {
		return nil, 0, fmt.Errorf("is a %s, not a blob", plumbing.ObjectType(e.typ))
	}
	depth, err := checkDeltaChain(packs, p, off)
	if err != nil {
		return nil, 0, err
	}
	if depth > 1 { // the base is a delta too: see chain.go
		if err := db.buildBases(packs, p, off, depth); err != nil {
			return nil, 0, err
		}
	}
	d := &deltaReader{db: db, base: plumbing.Hash(base)}
	if e.size <= wholeDeltaMax {
		// Delta data inflated whole, at once.
		d.buf = getBuf(int(e.size))
		if err := inflateEntry(p.f, off, e, *d.buf); err != nil {
			d.Close()
			return nil, 0, err
		}
		d.src = bytes.NewReader(*d.buf)
	} else {
		zr, err := inflate.NewReader(data, bufSize)
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

// openBlob opens blob h from its pack entry or loose file when readDirect
// finds it there, else through go-git: read whole when it is at most
// smallMax bytes, else as a stream.
func (db *Store) openBlob(h plumbing.Hash, smallMax int64) (directBlob, error) {
	b, found, err := db.readDirect(h, smallMax)
	if !found {
		b, err = db.readByGit(h, smallMax)
	}
	if err != nil {
		return directBlob{}, objectErr("blob", h, err)
	}
	return b, nil
}

// wholeDeltaMax is the biggest delta data inflated whole rather than
// streamed.
const wholeDeltaMax = 1 << 20

// readNewSpill serves a first read of big blob id (size bytes) whose
// stream rc was just opened (at says where it lies when it is a whole
// object in a pack): it becomes the spill's stream unless another reader
// got there first.
func (c *blobCache) readNewSpill(id plumbing.Hash, size int64, rc io.ReadCloser, at *packedAt, p []byte, off int64) (int, error) {
	s := c.startSpill(id, size, rc, at)
	defer c.unref(s)
	return s.readAt(c, p, off)
}

// startSpill registers the spill of big blob id (size bytes), whose
// stream rc was just opened, and returns it with a reference held: rc
// becomes its stream, unless another reader got there first (rc is then
// closed).
func (c *blobCache) startSpill(id plumbing.Hash, size int64, rc io.ReadCloser, at *packedAt) *spill {
	s := c.addSpill(&spill{id: id, size: size})
	s.mu.Lock()
	if s.rc == nil && s.pos == 0 && s.filled.Load() == 0 {
		s.rc = rc // hand our fresh stream to the new spill
		s.at = at
		s.mu.Unlock()
		c.streamOpened(s)
	} else {
		s.mu.Unlock()
		_ = rc.Close()
	}
	return s
}
