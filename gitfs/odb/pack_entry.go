package odb

import (
	"fmt"
	"io"
	"os"

	"github.com/go-git/go-git/v5/plumbing"
)

// A pack entry's header, as git's Documentation/gitformat-pack.txt lays
// it out: the type and inflated size in a little-endian base-128 varint
// (type in bits 4-6 of the first byte), then for an OFS_DELTA the base's
// distance back as a big-endian base-128 number with an implicit +1 per
// continuation byte, or for a REF_DELTA the base's 20-byte id; the zlib
// stream of the entry's data follows.
const (
	packEntryHeaderMax = 64 // type+size varint (<= 10) and a REF_DELTA base id (20)
	deltaHeaderMax     = 20 // two LEB128 varints of a delta's base and target sizes
	packIdxSuffix      = ".idx"
	packSuffix         = ".pack"
	sizeReaderBuf      = 512
)

// Pack entry types (git's pack-format).
const (
	packCommit   = 1
	packTree     = 2
	packBlob     = 3
	packTag      = 4
	packOfsDelta = 6
	packRefDelta = 7
)

// hashLen is the length of a SHA-1 object id.
const hashLen = 20

// packEntry is a parsed pack entry header.
type packEntry struct {
	typ     byte
	size    int64 // inflated size of the entry's data (for a delta: of the delta)
	dataOff int64 // where the zlib stream starts
	baseOff int64 // OFS_DELTA: offset of the base entry
	baseID  plumbing.Hash
}

// readPackEntry parses the header of the pack entry at off.
func readPackEntry(f *os.File, off int64) (*packEntry, error) {
	var hdr [packEntryHeaderMax]byte
	n, err := f.ReadAt(hdr[:], off)
	if n == 0 {
		return nil, fmt.Errorf("pack entry at %d: %w", off, err)
	}
	e := new(packEntry)
	if err := parsePackEntry(e, hdr[:n], off); err != nil {
		return nil, err
	}
	return e, nil
}

// parsePackEntry parses into e the header of the pack entry at off, whose
// first bytes (up to packEntryHeaderMax, fewer at the pack's end) are b.
func parsePackEntry(e *packEntry, b []byte, off int64) error {
	if len(b) == 0 {
		return fmt.Errorf("pack entry at %d: %w", off, io.ErrUnexpectedEOF)
	}
	*e = packEntry{typ: (b[0] >> 4) & 7, size: int64(b[0] & 0x0f)}
	shift := uint(4)
	i := 1
	for c := b[0]; c&0x80 != 0; i++ {
		if i >= len(b) || shift > 56 {
			return fmt.Errorf("pack entry at %d: bad header", off)
		}
		c = b[i]
		e.size |= int64(c&0x7f) << shift
		shift += 7
	}
	switch e.typ {
	case packCommit, packTree, packTag, packBlob:
	case packOfsDelta:
		// Big-endian base-128 with an implicit +1 per continuation byte.
		var rel int64
		for j := 0; ; j++ {
			if i >= len(b) || j > 8 {
				return fmt.Errorf("pack entry at %d: bad delta offset", off)
			}
			c := b[i]
			i++
			if j > 0 {
				rel++
			}
			rel = rel<<7 | int64(c&0x7f)
			if c&0x80 == 0 {
				break
			}
		}
		e.baseOff = off - rel
		if rel <= 0 || e.baseOff < 0 {
			return fmt.Errorf("pack entry at %d: bad delta base offset %d", off, rel)
		}
	case packRefDelta:
		if i+hashLen > len(b) {
			return fmt.Errorf("pack entry at %d: truncated base id", off)
		}
		copy(e.baseID[:], b[i:i+hashLen])
		i += hashLen
	default:
		return fmt.Errorf("pack entry at %d: unknown type %d", off, e.typ)
	}
	e.dataOff = off + int64(i)
	return nil
}

// isDelta reports whether the entry is a delta (OFS_DELTA or REF_DELTA).
func (e *packEntry) isDelta() bool { return e.typ == packOfsDelta || e.typ == packRefDelta }

// baseID returns the id of the base of entry e (at off of p) and true when
// e is a delta; false for a whole object.
func (p *pack) baseID(e *packEntry, off int64) (plumbing.Hash, bool, error) {
	switch e.typ {
	case packOfsDelta:
		base, err := p.idx.FindHash(e.baseOff)
		if err != nil {
			return plumbing.ZeroHash, true, fmt.Errorf("pack entry at %d: delta base at %d: %w", off, e.baseOff, err)
		}
		return base, true, nil
	case packRefDelta:
		return e.baseID, true, nil
	}
	return plumbing.ZeroHash, false, nil
}
