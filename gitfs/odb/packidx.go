package odb

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"slices"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
)

// A pack index, read here rather than by go-git: go-git keeps one
// in-memory index per storage and builds a map from offset to id for
// each, so the pool of storages held several copies of every index. Here
// the file is read once per pack per process into one table. The format
// is git's Documentation/gitformat-pack.txt: version 2 is a magic
// "\377tOc", the version, a 256-entry fan-out table (big-endian counts of
// ids whose first byte is at most i), the sorted ids, their CRC-32s,
// their 31-bit offsets (MSB set: an index into a table of 64-bit offsets
// that follows), then two checksums. Version 1 has the fan-out table, then
// (4-byte offset, id) pairs.
const (
	idxMagic      = "\377tOc"
	idxFanout     = 256 * 4
	idxTrailer    = 2 * hashLen
	idxLargeFlag  = 1 << 31
	idxV1EntryLen = 4 + hashLen
	idxRecord     = hashLen + 4
)

var errBadIndex = errors.New("odb: malformed pack index")

// packIndex is one pack's index: ids sorted, with their pack offsets.
// Each id is stored with its offset (idxRecord bytes): a lookup finds
// the offset in the cache line where it found the id, and the CRC table
// of the file is not kept.
type packIndex struct {
	fanout [256]uint32
	recs   []byte // n records: the id, then a big-endian uint32 offset (version 2 rules)
	large  []byte // big-endian uint64 offsets
	n      int

	revOnce sync.Once
	rev     []uint32 // positions in id order, sorted by offset: for FindHash
}

// readPackIndex reads and checks the index file at path.
func readPackIndex(path string) (*packIndex, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	x, err := parsePackIndexAt(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return x, nil
}

// parsePackIndex parses an index file's bytes into a table of its own.
func parsePackIndex(b []byte) (*packIndex, error) {
	return parsePackIndexAt(bytes.NewReader(b), int64(len(b)))
}

// idxChunk is how much of an index file one read takes: the file is read
// a piece at a time into the table, never whole (a pack of a million
// objects has an index of 28 MB, most of which the table copies).
const idxChunk = 256 << 10

// parsePackIndexAt parses the size bytes of an index file read from r
// into a table of its own, checking as it copies that the ids are
// strictly increasing and agree with the fan-out table (binary search
// relies on both). The CRC-32s of a version 2 index are not read.
func parsePackIndexAt(r io.ReaderAt, size int64) (*packIndex, error) {
	x := &packIndex{}
	base := int64(0)
	v2 := false
	if size >= 8 {
		var head [8]byte
		if err := readIdx(r, head[:], 0); err != nil {
			return nil, err
		}
		if string(head[:4]) == idxMagic {
			if v := binary.BigEndian.Uint32(head[4:]); v != 2 {
				return nil, fmt.Errorf("%w: version %d", errBadIndex, v)
			}
			v2, base = true, 8
		}
	}
	if size-base < idxFanout+idxTrailer {
		return nil, fmt.Errorf("%w: truncated", errBadIndex)
	}
	var fan [idxFanout]byte
	if err := readIdx(r, fan[:], base); err != nil {
		return nil, err
	}
	prev := uint32(0)
	for i := range x.fanout {
		c := binary.BigEndian.Uint32(fan[i*4:])
		if c < prev {
			return nil, fmt.Errorf("%w: fan-out table not sorted", errBadIndex)
		}
		x.fanout[i], prev = c, c
	}
	n := int64(prev)
	x.n = int(n)
	at := base + idxFanout // where the records start
	rest := size - at
	buf := make([]byte, idxChunk)
	order := idOrder{x: x}
	if !v2 {
		if rest != n*idxV1EntryLen+idxTrailer {
			return nil, fmt.Errorf("%w: size does not match %d objects", errBadIndex, n)
		}
		x.recs = make([]byte, n*idxRecord)
		err := eachIdxChunk(r, buf, at, n, idxV1EntryLen, func(i0 int64, b []byte) error {
			for j := 0; j < len(b); j += idxV1EntryLen {
				e, i := b[j:j+idxV1EntryLen], i0+int64(j/idxV1EntryLen)
				if e[0]&0x80 != 0 {
					return fmt.Errorf("%w: offset over 2 GiB in a version 1 index", errBadIndex)
				}
				rec := x.recs[i*idxRecord : (i+1)*idxRecord]
				copy(rec[:hashLen], e[4:])
				copy(rec[hashLen:], e[:4])
				if err := order.next(int(i), rec[:hashLen]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		return x, nil
	}
	small := n * (hashLen + 4 + 4)
	if rest < small+idxTrailer || (rest-small-idxTrailer)%8 != 0 {
		return nil, fmt.Errorf("%w: size does not match %d objects", errBadIndex, n)
	}
	x.recs = make([]byte, n*idxRecord)
	err := eachIdxChunk(r, buf, at, n, hashLen, func(i0 int64, b []byte) error {
		recs := x.recs[i0*idxRecord:]
		for j := 0; j < len(b); j += hashLen {
			id := recs[:hashLen]
			copy(id, b[j:j+hashLen])
			if err := order.next(int(i0)+j/hashLen, id); err != nil {
				return err
			}
			recs = recs[idxRecord:]
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = eachIdxChunk(r, buf, at+n*(hashLen+4), n, 4, func(i0 int64, b []byte) error {
		recs := x.recs[i0*idxRecord:]
		for j := 0; j < len(b); j += 4 {
			copy(recs[hashLen:idxRecord], b[j:j+4])
			recs = recs[idxRecord:]
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	x.large = make([]byte, rest-small-idxTrailer)
	if err := readIdx(r, x.large, at+small); err != nil {
		return nil, err
	}
	return x, nil
}

// readIdx fills p from r at off; an index shorter than that is
// truncated.
func readIdx(r io.ReaderAt, p []byte, off int64) error {
	if _, err := r.ReadAt(p, off); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: truncated", errBadIndex)
		}
		return fmt.Errorf("%w: %w", errBadIndex, err)
	}
	return nil
}

// eachIdxChunk reads n records of size bytes each from r at off, a
// bufful at a time, and calls f with each bufful and the number of its
// first record.
func eachIdxChunk(r io.ReaderAt, buf []byte, off, n, size int64, f func(i0 int64, b []byte) error) error {
	per := int64(len(buf)) / size
	for i := int64(0); i < n; {
		k := min(per, n-i)
		b := buf[:k*size]
		if err := readIdx(r, b, off+i*size); err != nil {
			return err
		}
		if err := f(i, b); err != nil {
			return err
		}
		i += k
	}
	return nil
}

// idOrder checks ids as they are read: each above the one before it, and
// where the fan-out table puts its first byte.
type idOrder struct {
	x       *packIndex
	prev    []byte // the id before, in x.recs
	prevKey uint64
}

func (o *idOrder) next(i int, id []byte) error {
	key := binary.BigEndian.Uint64(id)
	if o.prev != nil && (key < o.prevKey || key == o.prevKey && bytes.Compare(o.prev[8:], id[8:]) >= 0) {
		return fmt.Errorf("%w: ids not sorted at %d", errBadIndex, i)
	}
	f := id[0]
	if uint32(i) >= o.x.fanout[f] || (f > 0 && uint32(i) < o.x.fanout[f-1]) {
		return fmt.Errorf("%w: fan-out table disagrees with id %d", errBadIndex, i)
	}
	o.prev, o.prevKey = id, key
	return nil
}

func (x *packIndex) name(i int) []byte { return x.recs[i*idxRecord : i*idxRecord+hashLen] }

// offset returns the pack offset of the object at position i.
func (x *packIndex) offset(i int) (int64, error) {
	o := binary.BigEndian.Uint32(x.recs[i*idxRecord+hashLen:])
	if o&idxLargeFlag == 0 {
		return int64(o), nil
	}
	j := int(o &^ idxLargeFlag)
	if j >= len(x.large)/8 {
		return 0, fmt.Errorf("%w: large offset %d of %d", errBadIndex, j, len(x.large)/8)
	}
	v := binary.BigEndian.Uint64(x.large[j*8:])
	if v > 1<<62 {
		return 0, fmt.Errorf("%w: offset %d", errBadIndex, v)
	}
	return int64(v), nil
}

// find returns the position of id h. Ids are uniformly spread (they are
// hashes), so it first guesses where h lies between the ends of the
// range, a few times, as an interpolation search: a lookup then touches
// a few cache lines of the table instead of a dozen. A binary search
// finishes, so a crafted index costs no more than that.
func (x *packIndex) find(h plumbing.Hash) (int, bool) {
	lo := 0
	if h[0] > 0 {
		lo = int(x.fanout[h[0]-1])
	}
	hi := int(x.fanout[h[0]])
	key := binary.BigEndian.Uint64(h[:8])
	// The keys in [lo, hi) lie between kl and kh: at first, all keys
	// with h's first byte; then the keys of the last probes.
	kl := uint64(h[0]) << 56
	kh := kl | (1<<56 - 1)
	for step := 0; step < interpolationSteps && hi-lo > 16; step++ {
		m := lo + int(float64(key-kl)/float64(kh-kl+1)*float64(hi-lo))
		m = min(max(m, lo), hi-1)
		km := x.key(m)
		switch c := x.compare(m, key, h); {
		case c == 0:
			return m, true
		case c < 0:
			lo, kl = m+1, km
		default:
			hi, kh = m, km
		}
		if kl > key || kh < key {
			break
		}
	}
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		switch c := x.compare(m, key, h); {
		case c == 0:
			return m, true
		case c < 0:
			lo = m + 1
		default:
			hi = m
		}
	}
	return 0, false
}

// interpolationSteps bounds the guesses of find before it bisects.
const interpolationSteps = 4

// key is the first 8 bytes of the id at position i, as a number.
func (x *packIndex) key(i int) uint64 { return binary.BigEndian.Uint64(x.recs[i*idxRecord:]) }

// compare compares the id at position i with h (whose key is key).
func (x *packIndex) compare(i int, key uint64, h plumbing.Hash) int {
	if c := cmp.Compare(x.key(i), key); c != 0 {
		return c
	}
	return bytes.Compare(x.name(i)[8:], h[8:])
}

// FindOffset returns the pack offset of object h, or
// plumbing.ErrObjectNotFound.
func (x *packIndex) FindOffset(h plumbing.Hash) (int64, error) {
	i, ok := x.find(h)
	if !ok {
		return 0, plumbing.ErrObjectNotFound
	}
	return x.offset(i)
}

// FindHash returns the id of the object whose entry starts at off, or
// plumbing.ErrObjectNotFound. The first call sorts the positions by
// offset (4 bytes per object, kept).
func (x *packIndex) FindHash(off int64) (plumbing.Hash, error) {
	x.revOnce.Do(x.buildRev)
	var h plumbing.Hash
	i, ok := slices.BinarySearchFunc(x.rev, off, func(p uint32, off int64) int {
		o, _ := x.offset(int(p))
		switch {
		case o < off:
			return -1
		case o > off:
			return 1
		}
		return 0
	})
	if !ok {
		return h, plumbing.ErrObjectNotFound
	}
	copy(h[:], x.name(int(x.rev[i])))
	return h, nil
}

func (x *packIndex) buildRev() {
	rev := make([]uint32, x.n)
	// Sort numbers, offset above position, when they fit in 64 bits (any
	// pack under a terabyte): several times faster than sorting positions
	// with a comparison that decodes two offsets each time. An offset
	// that does not decode sorts as 0, as FindHash looks it up.
	shift := uint(bits.Len(uint(x.n)))
	keys := make([]uint64, x.n)
	fits := true
	for i := range keys {
		o, _ := x.offset(i)
		if uint64(o)>>(64-shift) != 0 {
			fits = false
			break
		}
		keys[i] = uint64(o)<<shift | uint64(i)
	}
	if fits {
		slices.Sort(keys)
		for i, k := range keys {
			rev[i] = uint32(k & (1<<shift - 1))
		}
		x.rev = rev
		return
	}
	for i := range rev {
		rev[i] = uint32(i)
	}
	slices.SortFunc(rev, func(a, b uint32) int {
		oa, _ := x.offset(int(a))
		ob, _ := x.offset(int(b))
		return cmp.Compare(oa, ob)
	})
	x.rev = rev
}

// findGroup is how many lookups FindOffsets runs side by side.
const findGroup = 16

// FindOffsets sets offs[i] to the pack offset of hs[i], or -1 when the
// pack does not hold it (or its offset is malformed). It is FindOffset
// for many ids, run findGroup at a time in lockstep: each round probes
// the table once for each of them, and those probes do not wait on one
// another, so their cache misses overlap.
func (x *packIndex) FindOffsets(hs []plumbing.Hash, offs []int64) {
	for g := 0; g < len(hs); g += findGroup {
		n := min(findGroup, len(hs)-g)
		var lo, hi [findGroup]int
		var kl, kh, key [findGroup]uint64
		var open [findGroup]bool
		for j := 0; j < n; j++ {
			h := &hs[g+j]
			offs[g+j] = -1
			if h[0] > 0 {
				lo[j] = int(x.fanout[h[0]-1])
			}
			hi[j] = int(x.fanout[h[0]])
			key[j] = binary.BigEndian.Uint64(h[:8])
			kl[j] = uint64(h[0]) << 56
			kh[j] = kl[j] | (1<<56 - 1)
			open[j] = lo[j] < hi[j]
		}
		for step := 0; step < interpolationSteps; step++ {
			for j := 0; j < n; j++ {
				if !open[j] || hi[j]-lo[j] <= 16 {
					continue
				}
				m := lo[j] + int(float64(key[j]-kl[j])/float64(kh[j]-kl[j]+1)*float64(hi[j]-lo[j]))
				m = min(max(m, lo[j]), hi[j]-1)
				km := x.key(m)
				switch c := x.compare(m, key[j], hs[g+j]); {
				case c == 0:
					offs[g+j] = x.offsetOr(m)
					open[j] = false
				case c < 0:
					lo[j], kl[j] = m+1, km
				default:
					hi[j], kh[j] = m, km
				}
				if kl[j] > key[j] || kh[j] < key[j] {
					open[j] = false
				}
			}
		}
		for j := 0; j < n; j++ {
			if !open[j] {
				continue
			}
			l, h := lo[j], hi[j]
			for l < h {
				m := int(uint(l+h) >> 1)
				switch c := x.compare(m, key[j], hs[g+j]); {
				case c == 0:
					offs[g+j] = x.offsetOr(m)
					l, h = 0, 0
				case c < 0:
					l = m + 1
				default:
					h = m
				}
			}
		}
	}
}

// A hint (see BlobRead.Hint) names an index position: pack (its place in
// the pack list, plus one) in the high 32 bits, the id's position in that
// pack's index in the low ones. It is checked against the id it is for,
// so a hint from another pack list, or for another id, only costs the
// lookup it would have spared.
func indexHint(pack, pos int) uint64 { return uint64(pack+1)<<32 | uint64(uint32(pos)) }

// hinted returns the pack offset of id h from hint: pack index hint names
// it, and its position there holds h. ok is false when it does not.
func hinted(packs []*pack, hint uint64, h plumbing.Hash) (pi int, off int64, ok bool) {
	pi, pos, ok := hintPlace(packs, hint)
	if !ok || !bytes.Equal(packs[pi].idx.name(pos), h[:]) {
		return 0, 0, false
	}
	off = packs[pi].idx.offsetOr(pos)
	return pi, off, off >= 0
}

// hintPlace decodes hint: the pack and index position it names, when
// they exist (what they hold is not checked).
func hintPlace(packs []*pack, hint uint64) (pi, pos int, ok bool) {
	pi, pos = int(hint>>32)-1, int(uint32(hint))
	return pi, pos, pi >= 0 && pi < len(packs) && pos < packs[pi].idx.n
}

// offsetOr is offset, or -1 when it is malformed.
func (x *packIndex) offsetOr(i int) int64 {
	o, err := x.offset(i)
	if err != nil {
		return -1
	}
	return o
}

// query is an id to look up, with its position in the caller's list: a
// sorted batch of them is read in order, without going back to the list.
type query struct {
	key  uint64   // the id's first 8 bytes, as a number
	rest [12]byte // the others
	i    uint32
}

// compareQuery compares the id at position i with q's.
func (x *packIndex) compareQuery(i int, q *query) int {
	if c := cmp.Compare(x.key(i), q.key); c != 0 {
		return c
	}
	return bytes.Compare(x.name(i)[8:], q.rest[:])
}

// hashOrder returns the ids of hs in id order, with their positions. Ids
// are uniformly spread (they are hashes), so a counting sort on their
// leading bits leaves a few in each bucket, sorted then on their own. The
// counting sort makes two passes of at most 9 bits each, so that each
// pass writes to few places at a time (cache lines kept) instead of to a
// bucket anywhere among hundreds of thousands.
func hashOrder(hs []plumbing.Hash) []query { return hashOrderPart(hs, 0, 1) }

// maxOrderParts is the most parts hashOrderPart cuts a batch into.
const maxOrderParts = 1 << 9

// hashOrderPart is hashOrder of the ids of hs whose first bits, read as a
// number below parts (a power of two, at most maxOrderParts), are part:
// the parts of a batch, each sorted on a core of its own, are the batch
// in id order. Each part reads all of hs but writes only its own ids.
func hashOrderPart(hs []plumbing.Hash, part, parts int) []query {
	pb := bits.Len(uint(parts)) - 1 // bits naming the part
	b := min(max(bits.Len(uint(len(hs)))-2, 1, pb), 18)
	b1 := max(min(b, 9), pb)
	b2 := b - b1
	// Pass 1: count on the first b1 bits; the part's buckets are the
	// ones from d0 to d1.
	var ends [1<<9 + 1]int
	for i := range hs {
		ends[binary.BigEndian.Uint64(hs[i][:8])>>(64-b1)+1]++
	}
	d0, d1 := part<<(b1-pb), (part+1)<<(b1-pb)
	ends[d0] = 0 // ends[d+1] counts bucket d: from here, where it starts
	for d := d0 + 1; d <= d1; d++ {
		ends[d] += ends[d-1]
	}
	qs := make([]query, ends[d1])
	// Spread the part's ids into qs, by bucket.
	next := ends
	for i := range hs {
		key := binary.BigEndian.Uint64(hs[i][:8])
		d := int(key >> (64 - b1))
		if d < d0 || d >= d1 {
			continue
		}
		q := query{key: key, i: uint32(i)}
		copy(q.rest[:], hs[i][8:])
		qs[next[d]] = q
		next[d]++
	}
	// Pass 2, bucket by bucket: each is copied to a scratch slice (one,
	// reused: a bucket is a few hundred queries, not a second copy of the
	// whole list in fresh memory) and spread back on the next b2 bits;
	// then each final bucket is sorted. (Sharing one part's buckets
	// between two cores was no faster on the 300k corpus: cores share a
	// batch by parts.)
	var sub [1<<9 + 1]int
	var tmp []query
	for d := d0; d < d1; d++ {
		lo, hi := ends[d], ends[d+1]
		dst := qs[lo:hi]
		if b2 == 0 {
			sortBucket(dst)
			continue
		}
		tmp = append(tmp[:0], dst...)
		clear(sub[:])
		mask := uint64(1)<<b2 - 1
		for _, q := range tmp {
			sub[(q.key>>(64-b))&mask+1]++
		}
		for e := 1; e <= 1<<b2; e++ {
			sub[e] += sub[e-1]
		}
		at := sub
		for _, q := range tmp {
			e := (q.key >> (64 - b)) & mask
			dst[at[e]] = q
			at[e]++
		}
		for e := 0; e < 1<<b2; e++ {
			sortBucket(dst[sub[e]:sub[e+1]])
		}
	}
	return qs
}

// sortBucket sorts a few queries by id: by insertion, or by pdqsort when
// there are more than a few (ids made to share their leading bits).
func sortBucket(qs []query) {
	if len(qs) > 16 {
		slices.SortFunc(qs, func(a, b query) int { return compareQueries(&a, &b) })
		return
	}
	for j := 1; j < len(qs); j++ {
		for k := j; k > 0 && compareQueries(&qs[k-1], &qs[k]) > 0; k-- {
			qs[k-1], qs[k] = qs[k], qs[k-1]
		}
	}
}

// compareQueries compares two queries' ids.
func compareQueries(a, b *query) int {
	if c := cmp.Compare(a.key, b.key); c != 0 {
		return c
	}
	return bytes.Compare(a.rest[:], b.rest[:])
}

// findSorted sets loc[k] to the offset of qs[k]'s id in this index, pack
// pi, for every k whose id no pack held so far (loc[k].pack < 0). The ids
// are in id order, so each search starts where the last one ended and
// gallops forward: a batch holding most of the index reads it once, in
// order, instead of probing it at random (cache misses).
func (x *packIndex) findSorted(qs []query, loc []at, pi int32) {
	pos := 0
	for k := range qs {
		if loc[k].pack >= 0 {
			continue
		}
		q := &qs[k]
		first := int(q.key >> 56)
		lo, hi := 0, int(x.fanout[first])
		if first > 0 {
			lo = int(x.fanout[first-1])
		}
		// Entries before pos are below the last id, so below this one.
		lo = min(max(lo, pos), hi)
		// Gallop: probe lo, lo+2, lo+6... until an entry is not below.
		l, r := lo, hi
		for step := 1; l+step-1 < r; step *= 2 {
			p := l + step - 1
			if x.compareQuery(p, q) >= 0 {
				r = p
				break
			}
			l = p + 1
		}
		for l < r {
			m := int(uint(l+r) >> 1)
			if x.compareQuery(m, q) < 0 {
				l = m + 1
			} else {
				r = m
			}
		}
		pos = l
		if l < hi && x.compareQuery(l, q) == 0 {
			if off := x.offsetOr(l); off >= 0 {
				loc[k].off, loc[k].pack, loc[k].pos = off, pi, int32(l)
			}
		}
	}
}
