package odb

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
)

// packList is the set of packs every direct read looks objects up in,
// reloaded when objects/pack changes. Safe for concurrent use.
type packList struct {
	db *Store

	mu      sync.RWMutex
	packs   []*pack
	stamp   time.Time // objects/pack modification time at load
	checked time.Time
	loaded  bool
}

// pack is one pack file with its index.
type pack struct {
	idx     *packIndex
	f       *os.File
	chainOK [2]sync.Map // int64 offset -> int depth: its delta chain ends in a whole object (by offset, by id)
}

// current returns the packs, (re)loading them when objects/pack changed.
func (z *packList) current() ([]*pack, error) {
	z.mu.RLock()
	fresh := z.loaded && time.Since(z.checked) < packCheckInterval
	packs := z.packs
	z.mu.RUnlock()
	if fresh {
		return packs, nil
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.loaded && time.Since(z.checked) < packCheckInterval {
		return z.packs, nil
	}
	stamp := z.db.packDirStamp()
	z.checked = time.Now()
	if z.loaded && stamp.Equal(z.stamp) {
		return z.packs, nil
	}
	// A lookup still using the old list fails on the closed file and
	// falls back to go-git: slower, still right.
	packs, err := z.db.loadPacks()
	if err != nil {
		return nil, err
	}
	z.closeLocked()
	z.packs, z.stamp, z.loaded = packs, stamp, true
	return packs, nil
}

func (z *packList) close() {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.closeLocked()
	z.loaded = false
}

func (z *packList) closeLocked() {
	for _, p := range z.packs {
		_ = p.f.Close()
	}
	z.packs = nil
}

// loadPacks opens every pack of the repository with its index.
func (db *Store) loadPacks() ([]*pack, error) {
	dir := filepath.Join(db.objects, "pack")
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var packs []*pack
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), packIdxSuffix)
		if !ok {
			continue
		}
		p, err := openPack(filepath.Join(dir, name))
		if err != nil {
			continue // half-written or being deleted: go-git's path decides
		}
		packs = append(packs, p)
	}
	return packs, nil
}

func openPack(base string) (*pack, error) {
	idx, err := readPackIndex(base + packIdxSuffix)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(base + packSuffix)
	if err != nil {
		return nil, err
	}
	return &pack{idx: idx, f: f}, nil
}

// findIn returns the first pack of packs that holds object h, and the
// offset of h's entry there.
func findIn(packs []*pack, h plumbing.Hash) (*pack, int64, bool) {
	for _, p := range packs {
		if off, err := p.idx.FindOffset(h); err == nil {
			return p, off, true
		}
	}
	return nil, 0, false
}
