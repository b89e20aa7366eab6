//go:build !linux

package odb

// mappedRead never maps here: spills are read with pread.
func (s *spill) mappedRead(c *blobCache, p []byte, off int64) (bool, error) { return false, nil }

// unmap has nothing to drop here.
func (s *spill) unmap(c *blobCache) {}
