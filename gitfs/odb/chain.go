package odb

import (
	"errors"
	"fmt"
	"io"

	"github.com/go-git/go-git/v5/plumbing"
)

// Delta chains are rebuilt as git's unpack_entry (packfile.c) rebuilds
// them: the chain under an entry is walked down iteratively, by entry
// headers alone, to the first base at hand (one the caches hold whole, a
// whole object, or a loose one); then the levels are rebuilt upwards one
// at a time, each reading the level below from the caches, which are the
// bounded cache of bases (git's delta_base_cache): small levels in memory
// and the blob log, big ones in spill files. The memory in use is that of
// one level, whatever the depth.
//
// A big level the caches cannot keep (no disk cache, or one too small for
// two levels) is read instead by the level above through its own stream,
// and so on down: that holds a stream and a page cache per level, so such
// chains are refused beyond maxChainUnheld levels.

// maxChainUnheld bounds the depth of a chain rebuilt level on level when
// the caches cannot hold its levels (big blobs and no disk cache): each
// level then keeps a stream open, a few hundred KiB.
const maxChainUnheld = 64

// errChainNoDisk: a deeper chain of big blobs needs the disk cache to keep
// the levels it has built.
var errChainNoDisk = errors.New("odb: a delta chain this deep over big blobs cannot be rebuilt without the disk cache")

// errNotHeld: the caches could not keep a level that was built.
var errNotHeld = errors.New("odb: the caches cannot hold the blob")

// buildBases makes the caches hold the bases under the delta at off of p
// (depth deltas deep, as checkDeltaChain says), so that reading it reads
// a base at hand: it walks the chain down, then builds the bases it met
// from the deepest up.
func (db *Store) buildBases(packs []*pack, p *pack, off int64, depth int) error {
	ids, err := db.basesToBuild(packs, p, off)
	if err != nil {
		return err
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

// basesToBuild walks the chain down from the delta at off of p, by base
// id, and returns the bases met that are deltas themselves and that the
// caches do not hold, top first; the walk stops at the first base at hand.
func (db *Store) basesToBuild(packs []*pack, p *pack, off int64) ([]plumbing.Hash, error) {
	e, err := readPackEntry(p.f, off)
	if err != nil {
		return nil, err
	}
	var ids []plumbing.Hash
	for len(ids) <= maxDeltaChain {
		base, isDelta, err := p.baseID(e, off)
		if err != nil || !isDelta || db.blobs.holds(base) {
			return ids, err
		}
		q, qoff, ok := findIn(packs, base)
		if !ok {
			return ids, nil // a loose base (never a delta), or missing: reading says which
		}
		if e, err = readPackEntry(q.f, qoff); err != nil {
			return nil, err
		}
		if !e.isDelta() {
			return ids, nil // a whole object
		}
		ids = append(ids, base)
		p, off = q, qoff
	}
	return nil, fmt.Errorf("%w (pack entry at %d)", errDeltaChain, off)
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
		if e.typ == packOfsDelta && !byID {
			off = e.baseOff
			continue
		}
		base, isDelta, err := p.baseID(e, off)
		if err != nil {
			return 0, err
		}
		if !isDelta {
			return ok(0) // a whole object ends the chain
		}
		var found bool
		p, off, found = findIn(packs, base)
		if !found {
			return ok(1) // a loose base (never a delta) or missing: reading says which
		}
	}
}
