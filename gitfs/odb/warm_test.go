package odb

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gitblk/gitblk/internal/testutil"
)

// bigBlobs returns the ids and sizes of the blobs of dir over min bytes.
func bigBlobs(t *testing.T, dir string, ids []string, min int64) map[string]int64 {
	t.Helper()
	big := map[string]int64{}
	for _, id := range ids {
		n, err := strconv.ParseInt(strings.TrimSpace(testutil.Git(t, dir, "cat-file", "-s", id)), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		if n > min {
			big[id] = n
		}
	}
	if len(big) == 0 {
		t.Fatalf("the test repository has no blob over %d bytes", min)
	}
	return big
}

// Warming inflates big blobs into their spills in the background, whole
// objects and deltas alike; later reads are hits and give the blob's
// bytes.
func TestWarmBlob(t *testing.T) {
	dir, ids := testutil.BlobRepo(t)
	testutil.Git(t, dir, "repack", "-q", "-a", "-d", "-f", "--depth=50", "--window=50")
	testutil.Git(t, dir, "prune-packed")
	db := openRepo(t, dir, Options{CacheDir: t.TempDir()})
	big := bigBlobs(t, dir, ids, db.blobs.smallMax)
	for id, size := range big {
		db.WarmBlob(blobID(t, id), size)
	}
	deadline := time.Now().Add(30 * time.Second)
	for id := range big {
		for !db.blobs.holds(blobID(t, id)) {
			if time.Now().After(deadline) {
				t.Fatalf("blob %s not warmed after 30 s", id)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	before := db.Stats() // what warming read of delta bases
	for id, size := range big {
		want := testutil.GitBytes(t, dir, "cat-file", "blob", id)
		got := make([]byte, size)
		if n, err := db.ReadBlob(blobID(t, id), got, 0); int64(n) != size || err != nil {
			t.Fatalf("ReadBlob(%s) = %d, %v; want %d", id, n, err, size)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("blob %s: warmed bytes differ from git cat-file", id)
		}
	}
	if st := db.Stats(); st.Misses != before.Misses || st.Hits != before.Hits+int64(len(big)) {
		t.Errorf("reads of warmed blobs: %+v, want %d more hits than %+v and no more miss", st, len(big), before)
	}
}

// WarmBlob ignores small blobs and any request without a disk cache, and
// a store closed while warming waits for its workers.
func TestWarmBlobIgnoredAndClose(t *testing.T) {
	dir, ids := testutil.BlobRepo(t)
	db := openRepo(t, dir, Options{DiskCacheSize: -1})
	for id, size := range bigBlobs(t, dir, ids, db.blobs.smallMax) {
		db.WarmBlob(blobID(t, id), size)
	}
	if db.warm.running != 0 || len(db.warm.queue) != 0 {
		t.Errorf("without a disk cache, warming started: %d workers, %d queued", db.warm.running, len(db.warm.queue))
	}

	db2, err := openStore(dir, Options{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	db2.WarmBlob(blobID(t, ids[0]), 10) // small: ignored
	if len(db2.warm.queue) != 0 {
		t.Errorf("a small blob was queued")
	}
	for id, size := range bigBlobs(t, dir, ids, db2.blobs.smallMax) {
		db2.WarmBlob(blobID(t, id), size)
	}
	if err := db2.Close(); err != nil {
		t.Fatalf("Close while warming: %v", err)
	}
	db2.warm.mu.Lock()
	running := db2.warm.running
	db2.warm.mu.Unlock()
	if running != 0 {
		t.Errorf("%d warm workers still running after Close", running)
	}
	db2.WarmBlob(blobID(t, ids[0]), 1<<30)
	if len(db2.warm.queue) != 0 {
		t.Errorf("a closed store queued a blob")
	}
}
