package odb

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/go-git/go-git/v5/plumbing"
)

// Blob sizes for tree listings are read here from pack entry headers and
// loose object headers, without go-git: go-git's EncodedObjectSize opens
// the loose path through billy's chroot (an lstat per path component)
// even for packed objects, and inflates whole deltas to read their
// two-varint header. Anything these headers cannot answer falls back to
// go-git, which also names the error.

// errNotHere: the headers this package reads do not hold the object.
var errNotHere = errors.New("odb: not found by the fast size lookup")

// headerSize returns the size of blob h from its pack entry or loose
// header.
func (db *Store) headerSize(h plumbing.Hash) (int64, error) {
	packs, err := db.packs.current()
	if err != nil {
		return 0, err
	}
	if p, off, ok := findIn(packs, h); ok {
		return packEntrySize(p.f, off)
	}
	return db.looseSize(h)
}

// packEntrySize reads the size of the blob at off: from its header, or
// for a delta from the target size at the start of the delta data.
func packEntrySize(f *os.File, off int64) (int64, error) {
	e, err := readPackEntry(f, off)
	if err != nil {
		return 0, err
	}
	switch e.typ {
	case packBlob:
		return e.size, nil
	case packOfsDelta, packRefDelta:
	default:
		return 0, fmt.Errorf("pack entry at %d: type %d, not a blob", off, e.typ)
	}
	var d [deltaHeaderMax]byte
	dn, err := inflateHead(io.NewSectionReader(f, e.dataOff, 1<<62), d[:])
	if err != nil {
		return 0, fmt.Errorf("pack entry at %d: delta: %w", off, err)
	}
	rest := d[:dn]
	if _, rest, err = leb128(rest); err != nil { // base size
		return 0, fmt.Errorf("pack entry at %d: delta: %w", off, err)
	}
	target, _, err := leb128(rest)
	if err != nil {
		return 0, fmt.Errorf("pack entry at %d: delta: %w", off, err)
	}
	return target, nil
}

// leb128 decodes a little-endian base-128 varint (delta headers).
func leb128(b []byte) (int64, []byte, error) {
	var v int64
	for i, shift := 0, uint(0); i < len(b) && shift <= 56; i, shift = i+1, shift+7 {
		v |= int64(b[i]&0x7f) << shift
		if b[i]&0x80 == 0 {
			return v, b[i+1:], nil
		}
	}
	return 0, nil, errors.New("bad size varint")
}

// looseSize reads the size of loose blob h from its header.
func (db *Store) looseSize(h plumbing.Hash) (int64, error) {
	f, err := db.openLoose(h)
	if err != nil {
		return 0, errNotHere
	}
	defer f.Close()
	size, _, err := looseHeader(f, h)
	return size, err
}
