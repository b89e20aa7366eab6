//go:build linux

package odb

import (
	"os"
	"time"

	"github.com/gitblk/gitblk/internal/inflate"
	"golang.org/x/sys/unix"
)

// A big blob stored whole in a pack is inflated into its spill file in
// one call, with the whole-object inflater (libdeflate where it loads),
// which is about twice as fast as a stream: the pack's bytes and the
// spill file are mapped, the output written straight into the file's
// pages. The pages of both mappings would count in the process's resident
// memory while they last, though they are the page cache's (as a spill
// written with pwrite is): dropRSS unmaps them as the inflater goes, so
// they do not. Only blobs up to wholeSpillMax are inflated so, a few at
// a time (wholeSpill), so that a first read waits for at most that much
// inflating.
const wholeSpillMax = 64 << 20

// dropEvery is how often dropRSS unmaps the mappings' pages.
const dropEvery = time.Millisecond

// dropRSS unmaps the pages of the shared file mappings ms from the
// process every dropEvery until done is closed, then closes stopped. For
// a MAP_SHARED file mapping MADV_DONTNEED only drops the page table
// entries: the data stays in the page cache (a dirty page stays dirty)
// and a page touched again is mapped again from there, so the inflater
// writing into one of them loses nothing (madvise(2)).
func dropRSS(done <-chan struct{}, stopped chan<- struct{}, ms ...[]byte) {
	defer close(stopped)
	t := time.NewTicker(dropEvery)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			for _, m := range ms {
				_ = unix.Madvise(m, unix.MADV_DONTNEED)
			}
		}
	}
}

// wholeSpill admits warmWorkers+1 fillWholes at once: the reader's own
// and those of the blobs warmed ahead of it (warm.go).
var wholeSpill = make(chan struct{}, warmWorkers+1)

// fillWhole inflates the blob, a whole object in a pack at at, into the
// spill file at once; s.mu is held. It reports whether it did; when it
// did not (too big, mapping refused, a stream longer than it looked, or
// damaged), nothing is marked filled and the stream fills the file as
// usual, and says what is wrong if anything is.
func (s *spill) fillWhole(c *blobCache, at *packedAt) bool {
	if s.f == nil || s.size <= 0 || s.size > wholeSpillMax || c.closed.Load() {
		return false
	}
	// Waiting for another blob's turn costs less than streaming.
	select {
	case wholeSpill <- struct{}{}:
		defer func() { <-wholeSpill }()
	case <-c.db.closed:
		return false
	}
	fi, err := at.p.f.Stat()
	if err != nil {
		return false
	}
	bound := min(s.size+s.size/8+packEntryHeaderMax, fi.Size()-at.e.dataOff)
	if bound <= 0 {
		return false
	}
	// The spill file's blocks are reserved first: a write through a
	// mapping into a file the disk cannot hold would be a SIGBUS.
	fd := int(s.f.Fd())
	if err := unix.Fallocate(fd, 0, 0, s.size); err != nil {
		return false
	}
	if !zeroFill(s.f, s.size) {
		return false
	}
	out, err := unix.Mmap(fd, 0, int(s.size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return false
	}
	defer unix.Munmap(out)
	page := int64(unix.Getpagesize())
	start := at.e.dataOff / page * page
	in, err := unix.Mmap(int(at.p.f.Fd()), start, int(at.e.dataOff-start+bound), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return false
	}
	defer unix.Munmap(in)
	done, stopped := make(chan struct{}), make(chan struct{})
	go dropRSS(done, stopped, out, in)
	_, err = inflate.Whole(out, in[at.e.dataOff-start:])
	close(done)
	<-stopped
	if err != nil {
		return false
	}
	s.filled.Store(s.size)
	if s.rc != nil {
		_ = s.rc.Close()
		s.rc = nil
		s.pos = 0
		c.streamClosed()
	}
	return true
}

// zeroChunk is the source of zeroFill's writes: never written, so its
// pages are the kernel's zero page and cost no memory.
var zeroChunk [256 << 10]byte

// zeroFill writes size zero bytes to f with pwrite, so that the page
// cache holds all of f's pages before the inflater writes into them
// through a mapping. A write fault on a page that is not cached yet goes
// through the filesystem's page_mkwrite for every 4 KiB (on ext4, a
// journal handle and a block lookup in an unwritten extent); on an
// already cached, dirty page it only maps the page. Measured on ext4 in
// a 2-core VM, 128 MiB written through a mapping: 6.2-6.7 us a page into
// the fallocated file, 1.5-1.6 us after this zero fill, the fill
// included. It reports whether the whole file was written.
func zeroFill(f *os.File, size int64) bool {
	for off := int64(0); off < size; {
		n, err := f.WriteAt(zeroChunk[:min(int64(len(zeroChunk)), size-off)], off)
		if err != nil {
			return false
		}
		off += int64(n)
	}
	return true
}
