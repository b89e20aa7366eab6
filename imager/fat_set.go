package imager

import "hash/maphash"

// nameSet is a set of keys, each with a value, for the names of one
// directory at a time: reset sizes it for n keys and clears only what it
// will use, so a tree of many small directories after a big one does not
// pay for the big one's size at each directory (as clearing a Go map
// does). Open addressing with linear probing, at most half full.
type nameSet[K comparable] struct {
	hash func(maphash.Seed, K) uint64
	seed maphash.Seed
	keys []K
	vals []uint32
	full []bool
	mask uint64
}

func newNameSet[K comparable](hash func(maphash.Seed, K) uint64) *nameSet[K] {
	return &nameSet[K]{hash: hash, seed: maphash.MakeSeed()}
}

// reset empties the set and makes room for n keys.
func (s *nameSet[K]) reset(n int) {
	size := 8
	for size < 2*n {
		size *= 2
	}
	if size > len(s.keys) {
		s.keys, s.vals, s.full = make([]K, size), make([]uint32, size), make([]bool, size)
	} else {
		clear(s.full[:size])
	}
	s.mask = uint64(size - 1)
}

// get returns the value of k.
func (s *nameSet[K]) get(k K) (uint32, bool) {
	for i := s.hash(s.seed, k) & s.mask; s.full[i]; i = (i + 1) & s.mask {
		if s.keys[i] == k {
			return s.vals[i], true
		}
	}
	return 0, false
}

// put sets k's value; the set must hold fewer keys than reset was told.
func (s *nameSet[K]) put(k K, v uint32) {
	i := s.hash(s.seed, k) & s.mask
	for ; s.full[i]; i = (i + 1) & s.mask {
		if s.keys[i] == k {
			break
		}
	}
	s.keys[i], s.vals[i], s.full[i] = k, v, true
}

// add puts k with value v unless k is there; it returns the value k has
// and whether k was there already: a lookup and an insertion for one
// probe sequence. The set must hold fewer keys than reset was told.
func (s *nameSet[K]) add(k K, v uint32) (uint32, bool) {
	i := s.hash(s.seed, k) & s.mask
	for ; s.full[i]; i = (i + 1) & s.mask {
		if s.keys[i] == k {
			return s.vals[i], true
		}
	}
	s.keys[i], s.vals[i], s.full[i] = k, v, true
	return v, false
}

func hashString(seed maphash.Seed, s string) uint64 { return maphash.String(seed, s) }

func hashShort(seed maphash.Seed, s [11]byte) uint64 { return maphash.Bytes(seed, s[:]) }

// has reports whether k is in the set.
func (s *nameSet[K]) has(k K) bool {
	_, ok := s.get(k)
	return ok
}
