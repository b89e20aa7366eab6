package odb

import (
	"errors"
	"fmt"
	"os"

	"github.com/gitblk/gitblk/internal/inflate"
	"github.com/go-git/go-git/v5/plumbing"
)

// Small objects (trees, commits, tags, small blobs) are read whole here,
// straight from the packs through this package's own index: go-git would
// load its own copy of every pack index into the storage that reads them,
// and hash each object as it reads it. Deltas are applied in memory, the
// chain walked down by entry headers and rebuilt upwards, as git's
// unpack_entry (packfile.c) does; instructions as patch-delta.c reads them
// (Documentation/gitformat-pack.txt, "Deltified representation").

// minLevelMax bounds every level of a delta chain rebuilt in memory for
// an object asked with a smaller bound: a base may be bigger than the
// object made from it.
const minLevelMax = 16 << 20

// firstRead is how much of a pack entry is read at first: the header and
// the data of most trees and commits.
const firstRead = 8 << 10

// errTooBig: the object is over the size asked for.
var errTooBig = errors.New("odb: object over the size limit")

// readPackedObject reads object h whole when one of our packs holds it:
// its type, its bytes. found is false when no pack we know holds it, when
// a delta's base is not in our packs (a loose base), or when the pack was
// closed under us: the caller then asks go-git. An object over max bytes,
// or a blob over blobMax, is errTooBig, with its type and size (data nil)
// when the size is known.
func (db *Store) readPackedObject(h plumbing.Hash, max, blobMax int64, dst []byte) (typ plumbing.ObjectType, size int64, data []byte, found bool, err error) {
	packs, err := db.packs.current()
	if err != nil {
		return 0, 0, nil, false, nil
	}
	p, off, ok := findIn(packs, h)
	if !ok {
		return 0, 0, nil, false, nil
	}
	typ, size, data, err = readEntryWhole(packs, p, off, max, blobMax, dst)
	if errors.Is(err, errNotHere) || isClosedFile(err) {
		return 0, 0, nil, false, nil
	}
	return typ, size, data, true, err
}

// readEntryWhole rebuilds the object at off of p, into dst's memory when
// it has room (see Store.ReadObjectTo).
func readEntryWhole(packs []*pack, p *pack, off int64, limit, blobLimit int64, dst []byte) (plumbing.ObjectType, int64, []byte, error) {
	// One read for the header and, for a small object, its data.
	bp := getBuf(firstRead)
	defer putBuf(bp)
	head := (*bp)[:firstRead]
	n, err := p.f.ReadAt(head, off)
	if n == 0 {
		return 0, 0, nil, fmt.Errorf("pack entry at %d: %w", off, err)
	}
	head = head[:n]
	pe, err := parsePackEntry(head, off)
	if err != nil {
		return 0, 0, nil, err
	}
	e := &pe
	if !e.isDelta() {
		typ := plumbing.ObjectType(e.typ)
		if e.size > limit || (typ == plumbing.BlobObject && e.size > blobLimit) {
			return typ, e.size, nil, errTooBig
		}
		data := sized(dst, e.size)
		if err := inflateFrom(p.f, off, e, head[e.dataOff-off:], data); err != nil {
			return 0, 0, nil, err
		}
		return typ, e.size, data, nil
	}
	// No checkDeltaChain pass first: this walk follows the route that
	// checks (OFS_DELTA by offset, REF_DELTA by id) one level at a time,
	// bounded by maxDeltaChain, so a looping chain fails here as one too
	// deep, without reading every header twice more.
	levelMax := max(limit, minLevelMax)
	// Down the chain to a whole object. Each level is read once, header
	// and the start of its data: a delta between two versions of a tree
	// is a few dozen bytes, so most levels inflate from that read on the
	// way up, without another.
	type level struct {
		p   *pack
		off int64
		e   packEntry
		src []byte // the entry's bytes from its zlib stream on, as far as read
	}
	var chain []level
	var arena []byte
	q, qoff, src := p, off, head[e.dataOff-off:]
	for e.isDelta() {
		if len(chain) > maxDeltaChain {
			return 0, 0, nil, fmt.Errorf("%w (pack entry at %d)", errDeltaChain, off)
		}
		if e.size > levelMax {
			return 0, 0, nil, fmt.Errorf("pack entry at %d: delta of %d bytes is over the %d-byte limit here", qoff, e.size, levelMax)
		}
		chain = append(chain, level{q, qoff, *e, src})
		if e.typ == packOfsDelta {
			qoff = e.baseOff
		} else {
			var ok bool
			if q, qoff, ok = findIn(packs, e.baseID); !ok {
				return 0, 0, nil, errNotHere // a loose base: go-git reads it
			}
		}
		if len(arena) < levelRead {
			arena = make([]byte, levelRead*levelsPerArena)
		}
		b := arena[:levelRead:levelRead]
		arena = arena[levelRead:]
		n, err := q.f.ReadAt(b, qoff)
		if n == 0 {
			return 0, 0, nil, fmt.Errorf("pack entry at %d: %w", qoff, err)
		}
		pe, err := parsePackEntry(b[:n], qoff)
		if err != nil {
			return 0, 0, nil, err
		}
		e, src = &pe, b[pe.dataOff-qoff:n]
	}
	typ := plumbing.ObjectType(e.typ)
	if typ == plumbing.BlobObject {
		limit = min(limit, blobLimit)
	}
	if e.size > levelMax {
		return 0, 0, nil, fmt.Errorf("pack entry at %d: delta base of %d bytes is over the %d-byte limit here", qoff, e.size, levelMax)
	}
	data := make([]byte, e.size)
	if err := inflateFrom(q.f, qoff, e, src, data); err != nil {
		return 0, 0, nil, err
	}
	// Up the chain, one delta at a time.
	for i := len(chain) - 1; i >= 0; i-- {
		l := &chain[i]
		bp := getBuf(int(l.e.size))
		delta := (*bp)[:l.e.size]
		if err := inflateFrom(l.p.f, l.off, &l.e, l.src, delta); err != nil {
			putBuf(bp)
			return 0, 0, nil, err
		}
		lim, into := levelMax, []byte(nil)
		if i == 0 {
			lim, into = limit, dst // the object itself; the levels below are never in dst
		}
		out, size, err := applyDelta(data, delta, lim, into)
		putBuf(bp)
		if errors.Is(err, errTooBig) {
			return typ, size, nil, err
		}
		if err != nil {
			return 0, 0, nil, fmt.Errorf("pack entry at %d: %w", l.off, err)
		}
		data = out
	}
	return typ, int64(len(data)), data, nil
}

// levelRead is how much of each level of a delta chain is read at first,
// and levelsPerArena how many levels share an allocation.
const (
	levelRead      = 512
	levelsPerArena = 32
)

// inflateFrom inflates entry e (at off of f) into dst from src, the part
// of its stream already read, or, when src holds less than the whole
// stream (or is damaged), with inflateEntry, which reads it again and
// says what is wrong.
func inflateFrom(f *os.File, off int64, e *packEntry, src, dst []byte) error {
	if _, err := inflate.Whole(dst, src); err == nil {
		return nil
	}
	return inflateEntry(f, off, e, dst)
}

// sized returns dst's memory as n bytes when it has room, else new memory.
func sized(dst []byte, n int64) []byte {
	if int64(cap(dst)) >= n {
		return dst[:n]
	}
	return make([]byte, n)
}

// applyDelta applies delta to base and says the result's size. A result
// over max bytes is errTooBig, with its size. The result is built in
// dst's memory when it has room; dst must not overlap base.
func applyDelta(base, delta []byte, max int64, dst []byte) ([]byte, int64, error) {
	baseSize, rest, err := leb128(delta)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %w", errBadDelta, err)
	}
	size, rest, err := leb128(rest)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %w", errBadDelta, err)
	}
	if baseSize != int64(len(base)) {
		return nil, 0, fmt.Errorf("%w: delta wants a base of %d bytes, it has %d", ErrCorruptObject, baseSize, len(base))
	}
	if size > max {
		return nil, size, errTooBig
	}
	out := sized(dst, size)[:0]
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		switch {
		case c&0x80 != 0:
			var off, n int64
			for i := uint(0); i < 7; i++ {
				if c&(1<<i) == 0 {
					continue
				}
				if len(rest) == 0 {
					return nil, 0, errBadDelta
				}
				if i < 4 {
					off |= int64(rest[0]) << (8 * i)
				} else {
					n |= int64(rest[0]) << (8 * (i - 4))
				}
				rest = rest[1:]
			}
			if n == 0 {
				n = deltaCopyMax
			}
			if off+n > int64(len(base)) || int64(len(out))+n > size {
				return nil, 0, fmt.Errorf("%w: copy of %d bytes at %d is out of bounds", errBadDelta, n, off)
			}
			out = append(out, base[off:off+n]...)
		case c != 0:
			n := int(c)
			if n > len(rest) || int64(len(out)+n) > size {
				return nil, 0, fmt.Errorf("%w: insert of %d bytes is out of bounds", errBadDelta, n)
			}
			out = append(out, rest[:n]...)
			rest = rest[n:]
		default:
			return nil, 0, fmt.Errorf("%w: reserved instruction 0", errBadDelta)
		}
	}
	if int64(len(out)) != size {
		return nil, 0, fmt.Errorf("%w: delta makes %d bytes, its header says %d", errBadDelta, len(out), size)
	}
	return out, size, nil
}

// isClosedFile reports whether err comes from a pack file closed under us
// (the pack list was reloaded).
func isClosedFile(err error) bool { return errors.Is(err, os.ErrClosed) }

// readObjectDirect is ReadObject from our packs, without a go-git
// storage; found is false when go-git must look (see readPackedObject).
func (db *Store) readObjectDirect(id plumbing.Hash, typ plumbing.ObjectType, max int64, dst []byte) ([]byte, bool, error) {
	got, size, data, found, err := db.readPackedObject(id, max, max, dst)
	switch {
	case !found:
		return nil, false, nil
	case errors.Is(err, errTooBig) && got == typ:
		return nil, true, fmt.Errorf("%s of %d bytes is over the %d-byte limit here", typ, size, max)
	case errors.Is(err, errTooBig):
		return nil, true, fmt.Errorf("is a %s, not a %s", got, typ)
	case err != nil:
		return nil, true, err
	case got != typ:
		return nil, true, fmt.Errorf("is a %s, not a %s", got, typ)
	}
	return data, true, nil
}
