//go:build !linux

package odb

// fillWhole is not used here: spills are always filled by their stream.
func (s *spill) fillWhole(c *blobCache, at *packedAt) bool { return false }
