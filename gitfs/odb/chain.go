package odb

import (
	"errors"
	"fmt"
	"io"

	"github.com/go-git/go-git/v5/plumbing"
)

// Deep delta chains are rebuilt from the bottom up. A delta reads its
// base through ReadBlob, which opens the base's own delta, and so on down
// the chain: every level holds its buffers (a small target whole, a big
// one's stream and page cache) until the bottom answers. A hand-made pack
// of 300 one-MiB deltas made one 4 KiB read take 605 MiB of heap, and a
// 1.5 MB pack of 8,192 levels would take about 16 GiB. So before a delta
// more than shallowDeltaChain deep is opened, its bases are built one at
// a time from the deepest: each then reads a base the caches already hold
// whole (memory, the blob log or a complete spill), and the memory in use
// is that of one level. git's own packs go 50 deep by default.
const shallowDeltaChain = 8

// maxChainUnheld bounds the depth of a chain rebuilt level on level when
// the caches cannot hold its levels (big blobs and no disk cache): each
// level then keeps a stream open, a few hundred KiB.
const maxChainUnheld = 64

// errChainNoDisk: a deeper chain of big blobs needs the disk cache to keep
// the levels it has built.
var errChainNoDisk = errors.New("odb: a delta chain this deep over big blobs cannot be rebuilt without the disk cache")

// errNotHeld: the caches could not keep a level that was built.
var errNotHeld = errors.New("odb: the caches cannot hold the blob")

// buildBases builds, deepest first, the bases of the delta at off of p
// (depth deltas deep) that the caches do not hold yet.
func (db *Store) buildBases(packs []*pack, p *pack, off int64, depth int) error {
	var ids []plumbing.Hash
walk:
	for step := 0; step <= depth && step <= maxDeltaChain; step++ {
		e, err := readPackEntry(p.f, off)
		if err != nil {
			return err
		}
		var base plumbing.Hash
		switch e.typ {
		case packOfsDelta:
			if base, err = p.idx.FindHash(e.baseOff); err != nil {
				return fmt.Errorf("pack entry at %d: delta base at %d: %w", off, e.baseOff, err)
			}
		case packRefDelta:
			base = e.baseID
		default:
			break walk // a whole object: nothing below
		}
		if db.blobs.holds(plumbing.Hash(base)) {
			break
		}
		found := false
		for _, q := range packs {
			if o, err := q.idx.FindOffset(base); err == nil {
				be, err := readPackEntry(q.f, o)
				if err != nil {
					return err
				}
				if be.typ == packOfsDelta || be.typ == packRefDelta {
					p, off, found = q, o, true
				}
				break
			}
		}
		if !found {
			break // a whole or loose base: read directly when needed
		}
		ids = append(ids, base)
	}
	for i := len(ids) - 1; i >= 0; i-- {
		err := db.buildBlob(ids[i])
		if errors.Is(err, errNotHeld) {
			if depth > maxChainUnheld {
				return fmt.Errorf("%w (%d deep)", errChainNoDisk, depth)
			}
			return nil // short enough to rebuild level on level
		}
		if err != nil {
			return fmt.Errorf("delta base %s: %w", ids[i], err)
		}
	}
	return nil
}

// buildBlob reads blob id through to its last byte, so that the caches
// hold it whole.
func (db *Store) buildBlob(id plumbing.Hash) error {
	size, err := db.headerSize(id)
	if err != nil {
		return err
	}
	c := db.blobs
	if size > c.smallMax && (c.diskMax <= 0 || 2*size > c.diskMax) {
		// The disk cache cannot keep this level and the next one up
		// (which reads it): building it would be lost work.
		return errNotHeld
	}
	var b [1]byte
	if _, err := db.ReadBlob(plumbing.Hash(id), b[:], max(size-1, 0)); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if !c.holds(plumbing.Hash(id)) && size > c.smallMax {
		return errNotHeld
	}
	// Building it read its base last: make it the most recently used,
	// so that making room for the next level up does not drop it.
	if s := c.getSpill(plumbing.Hash(id)); s != nil {
		c.unref(s)
	}
	return nil
}

// maxDeltaChain bounds a delta chain's length; git's own packs stop at
// 4095 (pack.depth's ceiling), so a longer chain is a corrupt pack.
const maxDeltaChain = 1 << 13

// errDeltaChain marks a pack whose delta chain loops or never ends.
var errDeltaChain = errors.New("odb: corrupt pack: delta chain loops or exceeds the maximum depth")

// checkDeltaChain follows the chain of delta bases from the entry at off
// in pack p through pack headers only (no inflating) and fails on a loop
// or an absurd length: rebuilding a looping delta would otherwise wait on
// itself forever, each blob's reader waiting for its base's. It returns
// the chain's depth: how many deltas are applied to build the entry's
// object (0 for a whole object).
//
// go-git follows an OFS_DELTA base by its offset, our delta reader by the
// base's id (an index may list an id twice, at another entry): both routes
// are checked, and the deeper one counts.
func checkDeltaChain(packs []*pack, p *pack, off int64) (int, error) {
	depth := 0
	for _, byID := range []bool{false, true} {
		d, err := checkDeltaRoute(packs, p, off, byID)
		if err != nil {
			return 0, err
		}
		depth = max(depth, d)
	}
	return depth, nil
}

// checkDeltaRoute follows one route of delta bases (see checkDeltaChain).
// Entries on a chain found good are remembered with their depth.
func checkDeltaRoute(packs []*pack, p *pack, off int64, byID bool) (int, error) {
	route := 0
	if byID {
		route = 1
	}
	type at struct {
		p   *pack
		off int64
	}
	var path []at
	seen := map[at]bool{}
	// ok records the chain as good: path[i] is len(path)-1-i+below
	// deltas deep, below counting those under the last entry of path.
	ok := func(below int) (int, error) {
		for i, a := range path {
			a.p.chainOK[route].Store(a.off, len(path)-1-i+below)
		}
		if len(path) == 0 {
			return below - 1, nil
		}
		return len(path) - 1 + below, nil
	}
	for step := 0; ; step++ {
		if d, good := p.chainOK[route].Load(off); good {
			if d.(int)+len(path) > maxDeltaChain {
				return 0, fmt.Errorf("%w (pack entry at %d)", errDeltaChain, off)
			}
			return ok(d.(int) + 1)
		}
		if seen[at{p, off}] || step > maxDeltaChain {
			return 0, fmt.Errorf("%w (pack entry at %d)", errDeltaChain, off)
		}
		seen[at{p, off}] = true
		path = append(path, at{p, off})
		e, err := readPackEntry(p.f, off)
		if err != nil {
			return 0, err
		}
		var base plumbing.Hash
		switch e.typ {
		case packOfsDelta:
			if !byID {
				off = e.baseOff
				continue
			}
			if base, err = p.idx.FindHash(e.baseOff); err != nil {
				return 0, fmt.Errorf("pack entry at %d: delta base at %d: %w", off, e.baseOff, err)
			}
		case packRefDelta:
			base = e.baseID
		default:
			return ok(0) // a whole object ends the chain
		}
		found := false
		for _, q := range packs {
			if o, err := q.idx.FindOffset(base); err == nil {
				p, off, found = q, o, true
				break
			}
		}
		if !found {
			return ok(1) // a loose base (never a delta) or missing: reading says which
		}
	}
}
