package secrets

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// lockedMem is plaintext memory outside the Go heap: an anonymous private
// mapping, locked so it is never swapped out when the limit on locked
// memory allows (RLIMIT_MEMLOCK), left out of core dumps, read-only once
// filled, and zeroed and unmapped by free. The Go heap cannot promise any
// of that: the collector frees without zeroing, and its pages may be
// swapped.
type lockedMem struct {
	b      []byte // the whole mapping
	locked bool
}

// allocLocked maps n bytes (n > 0).
func allocLocked(n int) (*lockedMem, error) {
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("secrets: mmap %d bytes: %w", n, err)
	}
	m := &lockedMem{b: b}
	_ = unix.Madvise(b, unix.MADV_DONTDUMP)
	m.locked = unix.Mlock(b) == nil
	return m, nil
}

// seal makes the mapping read-only: a stray write faults instead of
// changing a served byte.
func (m *lockedMem) seal() { _ = unix.Mprotect(m.b, unix.PROT_READ) }

// free zeroes and unmaps the memory; m must not be used afterwards.
func (m *lockedMem) free() {
	if m == nil || m.b == nil {
		return
	}
	if unix.Mprotect(m.b, unix.PROT_READ|unix.PROT_WRITE) == nil {
		clear(m.b)
	}
	if m.locked {
		_ = unix.Munlock(m.b)
	}
	_ = unix.Munmap(m.b)
	m.b = nil
}
