package odb

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"runtime"
	"slices"
	"sync"

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

// sizeGap is the widest gap between two entries' headers that one read
// spans: past it, copying the bytes between them costs more than a pread
// of its own (the blobs of a tree of big files lie far apart, and a window
// over them would copy the whole pack to read a few headers).
const sizeGap = 4 << 10

// BlobSizes sets sizes[i] to the size of blob ids[i], as BlobSize would,
// but many at a time: the ids are looked up in each pack's index, then
// the entries of each pack are read in the order they lie there, the
// headers of neighbours with one read. A batch that asks for a good part
// of a pack's objects (a whole tree's listing) is looked up in id order,
// walking each index once from start to end instead of probing it at
// random; a big batch is split between the cores, sorting included. On
// failure it returns the index of an id whose size could not be read (the
// lowest of those each part stopped at), and BlobSize's error for it.
func (db *Store) BlobSizes(ids []plumbing.Hash, sizes []int64) (int, error) {
	return db.BlobSizesHints(ids, sizes, nil)
}

// BlobSizesHints is BlobSizes that also sets hints[i] (when hints is not
// nil) to where ids[i] lies in the pack indexes, for BlobRead.Hint; 0 where
// it found none. Only a batch looked up in id order gets hints.
func (db *Store) BlobSizesHints(ids []plumbing.Hash, sizes []int64, hints []uint64) (int, error) {
	if len(sizes) != len(ids) || hints != nil && len(hints) != len(ids) {
		return 0, fmt.Errorf("odb: BlobSizes: %d ids, %d sizes, %d hints", len(ids), len(sizes), len(hints))
	}
	packs, err := db.packs.current()
	if err != nil {
		packs = nil
	}
	// A dense batch is looked up in id order, each part of it (ids
	// starting with the same bits) put in order by the core that sizes it.
	dense := len(packs) > 0 && len(ids)*denseLookup >= packs[0].idx.n
	parts := 1
	if len(ids) >= parallelSizes {
		parts = min(runtime.GOMAXPROCS(0), maxSizeParts)
		parts = 1 << (bits.Len(uint(parts)) - 1) // a power of two, for hashOrderPart
	}
	type result struct {
		bad int
		err error
	}
	res := make([]result, parts)
	var wg sync.WaitGroup
	part := func(p int) {
		var qs []query // loc's ids, in id order; nil: loc is in ids' order
		var loc []at
		if dense {
			qs = hashOrderPart(ids, p, parts)
			loc = make([]at, len(qs))
			for k, q := range qs {
				loc[k] = at{i: int32(q.i), pack: -1, pos: -1}
			}
		} else {
			lo, hi := len(ids)*p/parts, len(ids)*(p+1)/parts
			loc = make([]at, hi-lo)
			for k := range loc {
				loc[k] = at{i: int32(lo + k), pack: -1, pos: -1}
			}
		}
		res[p].bad, res[p].err = db.sizesOf(packs, ids, qs, loc, sizes, hints)
	}
	for p := 1; p < parts; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			part(p)
		}()
	}
	part(0) // on this goroutine: no wait for a second to start
	wg.Wait()
	bad, badErr := 0, error(nil)
	for _, r := range res {
		if r.err != nil && (badErr == nil || r.bad < bad) {
			bad, badErr = r.bad, r.err
		}
	}
	return bad, badErr
}

const (
	// denseLookup: a batch of at least 1/denseLookup of the first pack's
	// objects is looked up in id order (see BlobSizes).
	denseLookup = 8
	// parallelSizes is the smallest batch BlobSizes splits between cores;
	// maxSizeParts the most parts it makes.
	parallelSizes = 16 << 10
	maxSizeParts  = 4
)

// at is where the entry of ids[i] lies: in packs[pack] at off (pack -1:
// in none of them).
type at struct {
	off  int64
	i    int32
	pack int32
	pos  int32 // the id's position in the pack's index, when findSorted found it; else -1
}

// sizesOf sets the sizes of loc's ids (qs: the same ids with their keys,
// in id order; nil when loc is not in id order). It stops at the first id
// it cannot size and returns its index and error.
func (db *Store) sizesOf(packs []*pack, ids []plumbing.Hash, qs []query, loc []at, sizes []int64, hints []uint64) (int, error) {
	for pi, p := range packs {
		switch {
		case qs != nil:
			p.idx.findSorted(qs, loc, int32(pi))
		case pi == 0:
			// Side by side, see FindOffsets. Out of id order, loc is a
			// run of ids in their own order.
			if len(loc) == 0 {
				continue
			}
			offs := make([]int64, len(loc))
			p.idx.FindOffsets(ids[loc[0].i:][:len(loc)], offs)
			for k, off := range offs {
				if off >= 0 {
					loc[k].off, loc[k].pack = off, 0
				}
			}
		default:
			for k := range loc {
				if loc[k].pack < 0 {
					if off, ferr := p.idx.FindOffset(ids[loc[k].i]); ferr == nil {
						loc[k].off, loc[k].pack = off, int32(pi)
					}
				}
			}
		}
	}
	var rest []int
	todo := loc[:0]
	for _, t := range loc {
		if hints != nil && t.pack >= 0 && t.pos >= 0 {
			hints[t.i] = indexHint(int(t.pack), int(t.pos))
		}
		if t.pack < 0 {
			rest = append(rest, int(t.i))
		} else {
			todo = append(todo, t)
		}
	}
	sortByPlace(todo)
	bp := getBuf(sizeWindow + packEntryHeaderMax)
	defer putBuf(bp)
	buf := (*bp)[:0]
	var bufPack int32 = -1
	var bufOff int64
	for k, t := range todo {
		p := packs[t.pack]
		if t.pack != bufPack || t.off < bufOff || t.off+packEntryHeaderMax > bufOff+int64(len(buf)) {
			// Read from this entry to the header of the last one within
			// the window that no wide gap separates from it.
			end := t.off + packEntryHeaderMax
			for _, u := range todo[k+1:] {
				if u.pack != t.pack || u.off+packEntryHeaderMax-t.off > sizeWindow+packEntryHeaderMax || u.off-end > sizeGap {
					break
				}
				end = max(end, u.off+packEntryHeaderMax)
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

// byPlace orders entries by pack, then offset.
func byPlace(a, b at) int {
	if a.pack != b.pack {
		return cmp.Compare(a.pack, b.pack)
	}
	return cmp.Compare(a.off, b.off)
}

// placeDigit is the bits sortByPlace sorts on at each pass.
const placeDigit = 11

// sortByPlace sorts loc by pack, then offset. A listing's hundreds of
// thousands of entries are radix-sorted on (pack, offset): a comparison
// sort of them costs more than reading their headers.
func sortByPlace(loc []at) {
	if len(loc) < 1<<placeDigit {
		slices.SortFunc(loc, byPlace)
		return
	}
	key := func(t at) uint64 { return uint64(t.pack)<<48 | uint64(t.off) }
	var all uint64
	for _, t := range loc {
		if t.pack < 0 || t.pack >= 1<<15 || t.off < 0 || t.off >= 1<<48 {
			slices.SortFunc(loc, byPlace)
			return
		}
		all |= key(t)
	}
	src, dst := loc, make([]at, len(loc))
	for shift := 0; shift < bits.Len64(all); shift += placeDigit {
		var start [1<<placeDigit + 1]int
		for _, t := range src {
			start[(key(t)>>shift)&(1<<placeDigit-1)+1]++
		}
		for d := 1; d < len(start); d++ {
			start[d] += start[d-1]
		}
		for _, t := range src {
			d := (key(t) >> shift) & (1<<placeDigit - 1)
			dst[start[d]] = t
			start[d]++
		}
		src, dst = dst, src
	}
	if &src[0] != &loc[0] {
		copy(loc, src)
	}
}
