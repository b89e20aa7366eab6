// Package iovec describes a read's bytes as pieces to send rather than
// copy: runs of a caller's buffer, slices of immutable cached memory, and
// ranges of cache files, which a server can hand to writev and sendfile(2)
// so that a re-read of cached data costs no copy in user space (and, for
// file ranges, none in the kernel either).
//
// A List is filled by one reader (imager.Layout.ReadVec) and drained by
// one writer (the NBD server); it is not safe for concurrent use.
package iovec

import "os"

// Piece is one run of a List: Mem, or, when File is set, Len bytes of
// File at Off. A lent piece's bytes must not change until Ref is
// released: memory that is never written again, a file range that is
// never rewritten and a file kept open by Ref.
type Piece struct {
	Mem  []byte
	File *os.File
	Off  int64
	Len  int
	Ref  Ref // released by List.Release; nil: nothing to release
}

// Size is the piece's length in bytes.
func (p *Piece) Size() int {
	if p.File != nil {
		return p.Len
	}
	return len(p.Mem)
}

// Ref is a hold on a lent piece's source (a cache entry that must not be
// dropped while it is sent).
type Ref interface{ Release() }

// List is a read's bytes: the pieces of buf that the reader filled, in
// between pieces it lent instead.
type List struct {
	Pieces []Piece
	buf    []byte // the caller's buffer; its runs between lent pieces are pieces
	done   int    // buf bytes up to here are in Pieces
	lent   int    // bytes lent so far
}

// Reset starts a List over buf, the buffer a plain read would fill.
func (l *List) Reset(buf []byte) {
	l.Release()
	l.buf, l.done, l.lent = buf, 0, 0
}

// Lend puts p in place of buf[pos:pos+p.Size()], which the reader leaves
// unfilled. Lent pieces come in increasing pos, without overlap.
func (l *List) Lend(pos int, p Piece) {
	if pos > l.done {
		l.Pieces = append(l.Pieces, Piece{Mem: l.buf[l.done:pos]})
	}
	l.Pieces = append(l.Pieces, p)
	l.done = pos + p.Size()
	l.lent += p.Size()
}

// Lent reports how many bytes were lent.
func (l *List) Lent() int { return l.lent }

// Finish ends the List at buf[:n]: what follows the last lent piece is
// the last piece.
func (l *List) Finish(n int) {
	if n > l.done {
		l.Pieces = append(l.Pieces, Piece{Mem: l.buf[l.done:n]})
		l.done = n
	}
}

// Release releases every lent piece's hold and empties the List. A List
// may be released more than once.
func (l *List) Release() {
	for i := range l.Pieces {
		if r := l.Pieces[i].Ref; r != nil {
			r.Release()
		}
	}
	clear(l.Pieces)
	l.Pieces = l.Pieces[:0]
	l.buf, l.done, l.lent = nil, 0, 0
}
