//go:build linux

package odb

import (
	"sync"
	"testing"

	"github.com/gitblk/gitblk/internal/testutil"
)

// spillOf returns the spill of id and whether it is mapped, or nil.
func spillOf(t *testing.T, db *Store, id string) (*spill, bool) {
	t.Helper()
	s := db.blobs.getSpill(blobID(t, id))
	if s == nil {
		return nil, false
	}
	db.blobs.unref(s)
	return s, s.mapping.Load() != nil
}

// smallReads makes n random reads of blob id, almost all of at most
// mapReadMax bytes, from 4 goroutines, each checked against want.
func smallReads(t *testing.T, db *Store, id string, want []byte, n int) {
	t.Helper()
	read := func(id string, p []byte, off int64) (int, error) { return db.ReadBlob(blobID(t, id), p, off) }
	testutil.ReadConcurrently(t, read, []string{id}, map[string][]byte{id: want}, 4, n/4, nil)
}

// Small reads of a complete spill come from its mapping once it has had
// mapAfter of them; a spill read a few times only is not mapped; the
// bytes are the blob's either way; dropping a spill and closing the
// store unmap and give the room back.
func TestMappedSpillReads(t *testing.T) {
	dir, ids := testutil.BlobRepo(t)
	db := openRepo(t, dir, Options{CacheDir: t.TempDir()})
	big := bigBlobs(t, dir, ids, db.blobs.smallMax)
	var mappedWant int64
	for id, size := range big {
		want := testutil.GitBytes(t, dir, "cat-file", "blob", id)
		whole := make([]byte, size)
		if n, err := db.ReadBlob(blobID(t, id), whole, 0); int64(n) != size || err != nil {
			t.Fatalf("ReadBlob(%s) = %d, %v", id, n, err)
		}
		smallReads(t, db, id, want, 8)
		if _, mapped := spillOf(t, db, id); mapped {
			t.Errorf("blob %s mapped after 8 small reads, want %d first", id, mapAfter)
		}
		smallReads(t, db, id, want, 400)
		s, mapped := spillOf(t, db, id)
		if s == nil || !mapped {
			t.Fatalf("blob %s (%d bytes) not mapped after 400 small reads (cache %d)", id, size, db.blobs.memMax)
		}
		mappedWant += size
	}
	if got := db.blobs.mapped.Load(); got != mappedWant {
		t.Errorf("mapped bytes %d, want %d", got, mappedWant)
	}

	// Evicting the spills unmaps them.
	db.blobs.mu.Lock()
	for db.blobs.evictSpillLocked(false) {
	}
	db.blobs.mu.Unlock()
	if got := db.blobs.mapped.Load(); got != 0 {
		t.Errorf("after evicting every spill, %d bytes still mapped", got)
	}
	for id := range big { // read afresh, mapped again
		smallReads(t, db, id, testutil.GitBytes(t, dir, "cat-file", "blob", id), 400)
	}
	if db.blobs.mapped.Load() == 0 {
		t.Errorf("spills read again were not mapped again")
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if got := db.blobs.mapped.Load(); got != 0 {
		t.Errorf("after Close, %d bytes still mapped", got)
	}
}

// A spill is mapped only while the memory cache leaves room for it: its
// pages count in the RSS, within --cache-size with the small blobs held.
// A spill bigger than the cache is never mapped, nor one that would not
// fit beside the small blobs, and small blobs make room around what is
// mapped. Reads are right all the same.
func TestMappedSpillBound(t *testing.T) {
	dir, ids := testutil.BlobRepo(t)
	db := openRepo(t, dir, Options{CacheDir: t.TempDir(), CacheSize: 1 << 20})
	for id := range bigBlobs(t, dir, ids, db.blobs.memMax) {
		smallReads(t, db, id, testutil.GitBytes(t, dir, "cat-file", "blob", id), 400)
		if _, mapped := spillOf(t, db, id); mapped {
			t.Errorf("blob %s, over the %d-byte cache, was mapped", id, db.blobs.memMax)
		}
	}
	if got := db.blobs.mapped.Load(); got != 0 {
		t.Errorf("%d bytes mapped beyond the bound", got)
	}

	// A cache with room for one big blob beside the small ones: the
	// second is not mapped while the first is, and small blobs added
	// later keep memory and mappings within the bound.
	big := bigBlobs(t, dir, ids, 2<<20)
	var first, second string
	for id := range big {
		if first == "" || big[id] > big[first] {
			first, second = id, first
		} else if second == "" {
			second = id
		}
	}
	if second == "" {
		t.Fatalf("the test repository has fewer than two blobs over 2 MiB")
	}
	limit := big[first] + big[first]/4
	db2 := openRepo(t, dir, Options{CacheDir: t.TempDir(), CacheSize: limit})
	smallReads(t, db2, first, testutil.GitBytes(t, dir, "cat-file", "blob", first), 400)
	if _, mapped := spillOf(t, db2, first); !mapped {
		t.Fatalf("blob %s (%d bytes) not mapped in a %d-byte cache holding nothing else", first, big[first], limit)
	}
	smallReads(t, db2, second, testutil.GitBytes(t, dir, "cat-file", "blob", second), 400)
	if _, mapped := spillOf(t, db2, second); mapped {
		t.Errorf("blob %s mapped beside %s: %d bytes mapped in a %d-byte cache", second, first, db2.blobs.mapped.Load(), limit)
	}
	checkAllBlobs(t, db2, dir, ids) // small blobs into the memory cache too
	c := db2.blobs
	c.mu.Lock()
	mem := c.memBytes
	c.mu.Unlock()
	if m := c.mapped.Load(); mem+m > limit {
		t.Errorf("memory cache %d bytes + mapped %d bytes > bound %d", mem, m, limit)
	}
}

// Closing the store while readers copy from mappings neither faults nor
// races (run with -race): Close waits for the copies in progress, and
// later reads fail cleanly.
func TestMappedSpillCloseWhileReading(t *testing.T) {
	dir, ids := testutil.BlobRepo(t)
	db, err := openStore(dir, Options{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	big := bigBlobs(t, dir, ids, db.blobs.smallMax)
	for id := range big {
		smallReads(t, db, id, testutil.GitBytes(t, dir, "cat-file", "blob", id), 100)
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for id, size := range big {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := make([]byte, 4096)
			<-start
			for off := int64(0); ; off = (off + 4096*7) % size {
				if _, err := db.ReadBlob(blobID(t, id), p, off); err != nil {
					return // closed
				}
			}
		}()
	}
	close(start)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if got := db.blobs.mapped.Load(); got != 0 {
		t.Errorf("after Close, %d bytes still mapped", got)
	}
}
