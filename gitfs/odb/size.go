package odb

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

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

// sizeWindow is the most pack bytes read at once for entry headers: the
// headers of many small entries in a row come with one read.
const sizeWindow = 64 << 10

// BlobSizes sets sizes[i] to the size of blob ids[i], as BlobSize would,
// but reads the entries of each pack in the order they lie there, the
// headers of neighbours with one read. On failure it returns the index
// of an id whose size could not be read, and BlobSize's error for it.
func (db *Store) BlobSizes(ids []plumbing.Hash, sizes []int64) (int, error) {
	if len(sizes) != len(ids) {
		return 0, fmt.Errorf("odb: BlobSizes: %d ids, %d sizes", len(ids), len(sizes))
	}
	type at struct {
		off  int64
		i    int32
		pack int32
	}
	packs, err := db.packs.current()
	if err != nil {
		packs = nil
	}
	// Look the ids up (in the first pack side by side, see FindOffsets),
	// then read in pack order.
	loc := make([]at, len(ids))
	offs := make([]int64, len(ids))
	for i := range loc {
		loc[i] = at{i: int32(i), pack: -1}
	}
	for pi, p := range packs {
		if pi == 0 {
			p.idx.FindOffsets(ids, offs)
			for i, off := range offs {
				if off >= 0 {
					loc[i].off, loc[i].pack = off, 0
				}
			}
			continue
		}
		for i := range loc {
			if loc[i].pack < 0 {
				if off, ferr := p.idx.FindOffset(ids[i]); ferr == nil {
					loc[i].off, loc[i].pack = off, int32(pi)
				}
			}
		}
	}
	var rest []int
	todo := loc[:0]
	for _, t := range loc {
		if t.pack < 0 {
			rest = append(rest, int(t.i))
		} else {
			todo = append(todo, t)
		}
	}
	slices.SortFunc(todo, func(a, b at) int {
		if a.pack != b.pack {
			return int(a.pack - b.pack)
		}
		return cmp.Compare(a.off, b.off)
	})
	bp := getBuf(sizeWindow + packEntryHeaderMax)
	defer putBuf(bp)
	buf := (*bp)[:0]
	var bufPack int32 = -1
	var bufOff int64
	for k, t := range todo {
		p := packs[t.pack]
		if t.pack != bufPack || t.off < bufOff || t.off+packEntryHeaderMax > bufOff+int64(len(buf)) {
			// Read from this entry to the header of the last one within
			// the window.
			end := t.off + packEntryHeaderMax
			for _, u := range todo[k+1:] {
				if u.pack != t.pack || u.off+packEntryHeaderMax-t.off > sizeWindow+packEntryHeaderMax {
					break
				}
				end = u.off + packEntryHeaderMax
			}
			n, _ := p.f.ReadAt(buf[:end-t.off], t.off)
			buf, bufPack, bufOff = buf[:n], t.pack, t.off
		}
		var size int64
		e, err := parsePackEntry(buf[min(t.off-bufOff, int64(len(buf))):], t.off)
		switch {
		case err != nil:
		case e.typ == packBlob:
			size = e.size
		case e.isDelta():
			size, err = packEntrySize(p.f, t.off)
		default:
			err = errNotHere
		}
		if err != nil {
			// BlobSize says what is wrong, or finds it another way.
			if size, err = db.BlobSize(ids[t.i]); err != nil {
				return int(t.i), err
			}
		}
		sizes[t.i] = size
	}
	for _, i := range rest {
		size, err := db.BlobSize(ids[i])
		if err != nil {
			return i, err
		}
		sizes[i] = size
	}
	return 0, nil
}
