//go:build linux

package odb

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"golang.org/x/sys/unix"
)

// Small reads of a spilled blob are copied from a read-only mapping of
// its spill file rather than read with pread. A random 4 KiB reader (a
// guest's file system, fio) makes one read per request, and a pread is a
// system call, the Go runtime's bookkeeping around it, and a copy out of
// the page cache: a mapping leaves only the copy. On the Go tree's image,
// random 4 KiB reads went from 0.95x to 1.2-1.3x `nbdkit file` with this
// and the request reader's brief wait (nbd/spin_linux.go) together.
//
// The pages of a mapping that have been read count in the process's
// RSS, though they are page cache, so mapped spills share the memory
// cache's bound (--cache-size): a spill is mapped only while the small
// blobs held and the spills mapped leave room for all of it (else it is
// read with pread), and small blobs make room around what is mapped.
// Long reads never use a mapping: they are few per byte, and sent from
// the file to the socket when they can be. Nor does a spill read by a
// few small reads only: a sequential reader's requests cut a blob's
// first and last pieces short, and mapping every big blob for those
// would only add their pages to the RSS.
const (
	mapReadMax = 64 << 10 // longest read served from a mapping
	mapAfter   = 16       // small reads of a spill before it is mapped
)

// mappedRead copies p from s's mapping at off, mapping s first if it is
// complete and fits the bound. It reports false when it did not (no
// mapping to read from): the caller reads the file instead.
func (s *spill) mappedRead(c *blobCache, p []byte, off int64) (ok bool, err error) {
	if len(p) > mapReadMax || s.f == nil || s.filled.Load() < s.size {
		return false, nil
	}
	if s.mapping.Load() == nil {
		if s.noMap.Load() {
			return false, nil
		}
		if s.smallReads.Load() < mapAfter {
			s.smallReads.Add(1)
			return false, nil
		}
		if s.mapFile(c) == nil {
			return false, nil
		}
	}
	// Counted in only around the copy, and before the load that it
	// guards: unmap waits for readers that loaded the mapping, never
	// for one waiting on a lock in mapFile.
	s.mapUsers.Add(1)
	defer s.mapUsers.Add(-1)
	m := s.mapping.Load()
	if m == nil {
		return false, nil // dropped meanwhile
	}
	// A mapped page the kernel cannot read back (an I/O error on the
	// cache directory's disk) would be a fault: it becomes this read's
	// error, not the end of the server.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if v := recover(); v != nil {
			ok, err = true, fmt.Errorf("odb: blob %s: reading the mapped spill file: %v", s.id, v)
		}
	}()
	copy(p, (*m)[off:])
	return true, nil
}

// mapFile maps s, once, if the mapped spills leave room for it, and
// returns the mapping or nil. It reads the cache's size before it takes
// mapMu: unmap may be called with c.mu held, so mapMu is never held
// while c.mu is taken.
func (s *spill) mapFile(c *blobCache) *[]byte {
	c.mu.Lock()
	held := c.memBytes
	c.mu.Unlock()
	s.mapMu.Lock()
	defer s.mapMu.Unlock()
	if m := s.mapping.Load(); m != nil || s.noMap.Load() {
		return m // mapped by another reader, refused, or dropped
	}
	if s.size <= 0 || s.size > c.memMax || s.size > int64(^uint(0)>>1) {
		s.noMap.Store(true) // never fits
		return nil
	}
	if c.mapped.Add(s.size)+held > c.memMax {
		// No room now; there may be later. Another mapAfter small reads
		// come before the next try, so that a spill that does not fit
		// costs its readers no lock per read.
		c.mapped.Add(-s.size)
		s.smallReads.Store(0)
		return nil
	}
	b, err := unix.Mmap(int(s.f.Fd()), 0, int(s.size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		c.mapped.Add(-s.size)
		s.noMap.Store(true) // reads use pread
		return nil
	}
	s.mapping.Store(&b)
	return &b
}

// unmap drops s's mapping, once no reader is copying from it, and gives
// its room back; s is not mapped again. Called when the spill is dropped.
func (s *spill) unmap(c *blobCache) {
	s.mapMu.Lock()
	s.noMap.Store(true)
	m := s.mapping.Swap(nil)
	s.mapMu.Unlock()
	if m == nil {
		return
	}
	for s.mapUsers.Load() > 0 { // readers that loaded m before the swap
		runtime.Gosched()
	}
	_ = unix.Munmap(*m)
	c.mapped.Add(-s.size)
}
