package odb

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/gitblk/gitblk/internal/testutil"
)

// TestCacheBounds reads every test blob with small bounds and checks that
// the memory cache and the spill stay within them, that spill files leave
// nothing behind in a given directory, and that a private directory is
// removed by Close.
func TestCacheBounds(t *testing.T) {
	dir, ids := testutil.BlobRepo(t)
	const memMax, diskMax = 200 << 10, 5 << 20
	spillDir := filepath.Join(t.TempDir(), "spill")
	r, err := openStore(dir, Options{CacheSize: memMax, CacheDir: spillDir, DiskCacheSize: diskMax})
	if err != nil {
		t.Fatal(err)
	}
	c := r.blobs
	if c.smallMax != memMax/8 {
		t.Errorf("small blob limit %d, want an eighth of the memory cache", c.smallMax)
	}
	checkAllBlobs(t, r, dir, ids)
	c.mu.Lock()
	mem, disk, spills, streams := c.memBytes, c.diskUsed, len(c.spills), c.streams
	var sum int64
	for _, b := range c.mem {
		sum += int64(len(b.data)) + memEntryCost
	}
	c.mu.Unlock()
	if mem > memMax || mem != sum || mem == 0 {
		t.Errorf("memory cache holds %d bytes (entries sum to %d), bound %d", mem, sum, memMax)
	}
	if disk > diskMax || disk == 0 {
		t.Errorf("spill holds %d bytes, bound %d", disk, diskMax)
	}
	if spills == 0 || streams < 0 || streams > maxOpenStreams {
		t.Errorf("%d spills, %d open streams (max %d)", spills, streams, maxOpenStreams)
	}
	if ents, err := os.ReadDir(spillDir); err != nil || len(ents) != 0 {
		t.Errorf("spill directory holds %d names (%v): spill files must be unlinked", len(ents), err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(spillDir); err != nil {
		t.Errorf("a given spill directory must stay: %v", err)
	}

	r2, err := openStore(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	private := r2.blobs.dir
	if _, err := os.Stat(private); err != nil {
		t.Fatalf("private spill directory: %v", err)
	}
	if err := r2.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(private); !os.IsNotExist(err) {
		t.Errorf("private spill directory %s left after Close: %v", private, err)
	}
}
