package odb

import (
	"github.com/gitblk/gitblk/internal/iovec"
	"github.com/go-git/go-git/v5/plumbing"
)

// LendBlob describes bytes [off, off+n) of blob id as a piece to send
// instead of copying them, when the caches hold them all and no work is
// needed: a slice of a blob held in memory (never written again, and kept
// alive by the slice alone), or a range of a spill file already inflated
// that far (never rewritten), with a reference that keeps the spill from
// being dropped until the piece is released, or a range of the blob log
// with a hold on its file (see blobLog). It reports false otherwise; the
// caller then reads with ReadBlob.
func (db *Store) LendBlob(id plumbing.Hash, off int64, n int) (iovec.Piece, bool) {
	c := db.blobs
	if off < 0 || n <= 0 || c.closed.Load() {
		return iovec.Piece{}, false
	}
	end := off + int64(n)
	c.mu.Lock()
	if b, ok := c.mem[id]; ok {
		if end > int64(len(b.data)) {
			c.mu.Unlock()
			return iovec.Piece{}, false
		}
		c.memLRU.moveToFront(b)
		c.mu.Unlock()
		c.hit(n, nil)
		return iovec.Piece{Mem: b.data[off:end:end]}, true
	}
	e, ok := c.spills[id]
	if !ok {
		c.mu.Unlock()
		if p, ok := c.log.lend(id, off, n); ok {
			c.hit(n, nil)
			return p, true
		}
		return iovec.Piece{}, false
	}
	s := e.Value.(*spill)
	if s.f == nil || s.failed.Load() != nil || end > s.size || s.filled.Load() < end {
		c.mu.Unlock()
		return iovec.Piece{}, false
	}
	c.spillLRU.MoveToFront(e)
	s.refs++
	c.mu.Unlock()
	c.hit(n, nil)
	return iovec.Piece{File: s.f, Off: off, Len: n, Ref: spillRef{c, s}}, true
}

// spillRef is a reference on a lent spill.
type spillRef struct {
	c *blobCache
	s *spill
}

func (r spillRef) Release() { r.c.unref(r.s) }
