package gitfs

import (
	"errors"
	"fmt"
	"io"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/gitblk/gitblk/imager"
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
var errChainNoDisk = errors.New("gitfs: a delta chain this deep over big blobs cannot be rebuilt without the disk cache")

// errNotHeld: the caches could not keep a level that was built.
var errNotHeld = errors.New("gitfs: the caches cannot hold the blob")

// buildBases builds, deepest first, the bases of the delta at off of p
// (depth deltas deep) that the caches do not hold yet.
func (r *Repo) buildBases(packs []*sizerPack, p *sizerPack, off int64, depth int) error {
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
		if r.blobs.holds(imager.BlobID(base)) {
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
		err := r.buildBlob(ids[i])
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
func (r *Repo) buildBlob(id plumbing.Hash) error {
	size, err := r.sizes.size(id)
	if err != nil {
		return err
	}
	c := r.blobs
	if size > c.smallMax && (c.diskMax <= 0 || 2*size > c.diskMax) {
		// The disk cache cannot keep this level and the next one up
		// (which reads it): building it would be lost work.
		return errNotHeld
	}
	var b [1]byte
	if _, err := r.ReadBlob(imager.BlobID(id), b[:], max(size-1, 0)); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if !c.holds(imager.BlobID(id)) && size > c.smallMax {
		return errNotHeld
	}
	// Building it read its base last: make it the most recently used,
	// so that making room for the next level up does not drop it.
	if s := c.getSpill(imager.BlobID(id)); s != nil {
		c.unref(s)
	}
	return nil
}
