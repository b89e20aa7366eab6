package odb

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/gitblk/gitblk/internal/inflate"
	"github.com/go-git/go-git/v5/plumbing"
)

// spill is a big blob being read: its inflate stream and, when the disk
// bound allowed, the file its inflated bytes are written to.
type spill struct {
	id   plumbing.Hash
	size int64
	f    *os.File // nil: stream only

	filled atomic.Int64          // bytes of f written (f != nil)
	failed atomic.Pointer[error] // the blob was found damaged: every read fails
	refs   int                   // guarded by blobCache.mu

	mu  sync.Mutex    // guards rc, pos, at and growing f
	rc  io.ReadCloser // open inflate stream, or nil
	pos int64         // position of rc in the blob
	at  *packedAt     // the blob is a whole object there: fillWhole may inflate it at once

	// A read-only mapping of the complete file, for small reads (see
	// mappedRead): mapUsers counts readers copying from it, so that
	// unmap waits for them; mapMu serializes making and dropping it;
	// noMap is set once it must not be made (mmap failed, too big, or
	// the spill dropped).
	mapping    atomic.Pointer[[]byte]
	mapUsers   atomic.Int32
	smallReads atomic.Int32 // reads short enough for the mapping, before it is made
	mapMu      sync.Mutex
	noMap      atomic.Bool
}

// readAt serves a read from the spill, growing it as needed.
func (s *spill) readAt(c *blobCache, p []byte, off int64) (int, error) {
	if e := s.failed.Load(); e != nil {
		return 0, *e
	}
	if off >= s.size {
		return 0, io.EOF
	}
	want := p
	if rem := s.size - off; int64(len(want)) > rem {
		want = want[:rem]
	}
	if s.f != nil {
		end := off + int64(len(want))
		if s.filled.Load() < end {
			if err := s.grow(c, min(s.size, end+readAhead)); err != nil {
				return 0, err
			}
		}
		if ok, err := s.mappedRead(c, want, off); err != nil {
			return 0, err
		} else if !ok {
			n, err := s.f.ReadAt(want, off)
			if n < len(want) {
				if err == nil || errors.Is(err, io.EOF) {
					err = io.ErrUnexpectedEOF
				}
				return n, fmt.Errorf("odb: blob %s: reading the spill file: %w", s.id, err)
			}
		}
	} else if err := s.streamRead(c, want, off); err != nil {
		return 0, err
	}
	if len(want) < len(p) {
		return len(want), io.EOF
	}
	return len(want), nil
}

// grow inflates the blob into the spill file until at least end bytes
// are there.
func (s *spill) grow(c *blobCache, end int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if at := s.at; at != nil {
		s.at = nil
		if s.filled.Load() == 0 && s.fillWhole(c, at) {
			return nil
		}
	}
	bufp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bufp)
	buf := *bufp
	for {
		filled := s.filled.Load()
		if filled >= end {
			return nil
		}
		if c.closed.Load() {
			return ErrClosed
		}
		k := min(int64(len(buf)), s.size-filled)
		if err := s.readStream(c, buf[:k], filled); err != nil {
			return err
		}
		if _, err := s.f.WriteAt(buf[:k], filled); err != nil {
			return fmt.Errorf("odb: blob %s: writing the spill file: %w", s.id, err)
		}
		s.filled.Store(filled + k)
		if filled+k == s.size && s.rc != nil {
			// Complete: the stream is no longer needed.
			_ = s.rc.Close()
			s.rc = nil
			c.streamClosed()
		}
	}
}

// streamRead reads p at off from the stream alone (no spill file).
func (s *spill) streamRead(c *blobCache, p []byte, off int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.readStream(c, p, off)
}

// readStream fills p with the blob's bytes at off from the inflate
// stream, opening or restarting it as needed; s.mu is held. A failed
// stream is reopened once (objects may have moved under us).
func (s *spill) readStream(c *blobCache, p []byte, off int64) error {
	err := s.readStreamOnce(c, p, off)
	if err != nil && !errors.Is(err, ErrCorruptObject) && !errors.Is(err, ErrClosed) {
		s.closeStream(c)
		err = s.readStreamOnce(c, p, off)
	}
	return err
}

func (s *spill) readStreamOnce(c *blobCache, p []byte, off int64) error {
	if s.rc != nil && s.pos > off {
		s.closeStream(c) // behind us: only a restart goes back
	}
	if s.rc == nil {
		if err := s.openStream(c); err != nil {
			return err
		}
	}
	if skip := off - s.pos; skip > 0 {
		n, err := io.CopyN(io.Discard, s.rc, skip)
		s.pos += n
		if err != nil {
			return s.fail(s.streamErr(err))
		}
	}
	n, err := io.ReadFull(s.rc, p)
	s.pos += int64(n)
	if err != nil {
		return s.fail(s.streamErr(err))
	}
	if s.pos == s.size {
		if err := s.checkEnd(); err != nil {
			return s.fail(err)
		}
	}
	return nil
}

// fail returns err, and when it says the blob's content is damaged makes
// every later read of the spill fail with it. Errors opening the stream
// (a pack reload, a full disk) are never sticky.
func (s *spill) fail(err error) error {
	if errors.Is(err, ErrCorruptObject) {
		s.failed.Store(&err)
	}
	return err
}

// streamErr classifies a stream read error: the stream ending early
// means the object is shorter than its header, and damaged zlib data or a
// malformed delta are damage too: corrupt. Anything else (a pack file
// closed under us by a reload) may pass when the stream is reopened.
func (s *spill) streamErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: blob %s: content ends at %d, before its %d-byte header size", ErrCorruptObject, s.id, s.pos, s.size)
	}
	if isDamage(err) {
		return fmt.Errorf("%w: blob %s: at %d: %w", ErrCorruptObject, s.id, s.pos, err)
	}
	return fmt.Errorf("odb: blob %s: inflating at %d: %w", s.id, s.pos, err)
}

// isDamage reports whether err says an object's data is damaged.
func isDamage(err error) bool {
	return errors.Is(err, ErrCorruptObject) || errors.Is(err, inflate.ErrData) ||
		errors.Is(err, errBadDelta) || errors.Is(err, errDeltaChain)
}

// checkEnd checks, once the stream has given the blob's last byte, that
// the stream ends there: an object longer than its header, or one whose
// zlib checksum (checked at the stream's end) is wrong, is corrupt.
func (s *spill) checkEnd() error {
	err := streamEnds(s.rc, s.size)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrCorruptObject):
		return fmt.Errorf("odb: blob %s: %w", s.id, err)
	}
	return s.streamErr(err)
}

// openStream opens the blob's inflate stream at position 0; s.mu is held.
func (s *spill) openStream(c *blobCache) error {
	h := plumbing.Hash(s.id)
	b, err := c.db.openBlob(h, -1)
	if err != nil {
		return err
	}
	if b.size != s.size {
		_ = b.rc.Close()
		return objectErr("blob", h, fmt.Errorf("%w: now %d bytes, was %d", ErrCorruptObject, b.size, s.size))
	}
	s.rc, s.pos = b.rc, 0
	c.streamOpened(s)
	return nil
}

// closeStream closes the open stream, if any; s.mu is held.
func (s *spill) closeStream(c *blobCache) {
	if s.rc != nil {
		_ = s.rc.Close()
		s.rc = nil
		s.pos = 0
		c.streamClosed()
	}
}

// dropLocked releases an evicted spill; blobCache.mu is held and no reader
// holds a reference.
func (s *spill) dropLocked(c *blobCache) {
	if s.rc != nil {
		_ = s.rc.Close()
		s.rc = nil
		c.streams--
	}
	if s.f != nil {
		s.unmap(c)
		_ = s.f.Close()
	}
}
