package odb

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/gitblk/gitblk/internal/testutil"
)

// smallBlobsRepo commits n files of distinct random bytes, each size bytes,
// and returns the repository, the blob ids and their contents.
func smallBlobsRepo(t *testing.T, n, size int) (string, []string, [][]byte) {
	t.Helper()
	dir := testutil.NewRepo(t)
	rng := rand.New(rand.NewSource(7))
	var datas [][]byte
	for i := 0; i < n; i++ {
		b := make([]byte, size)
		rng.Read(b)
		testutil.WriteFile(t, dir, fmt.Sprintf("f%03d", i), b, 0o644)
		datas = append(datas, b)
	}
	testutil.CommitAll(t, dir, "small blobs")
	var ids []string
	for i := 0; i < n; i++ {
		ids = append(ids, testutil.Git(t, dir, "rev-parse", fmt.Sprintf("HEAD:f%03d", i)))
	}
	return dir, ids, datas
}

// readWhole reads a blob through ReadBlob in odd-sized pieces.
func readWhole(r *Store, hexID string, size int, t *testing.T) ([]byte, error) {
	id := blobID(t, hexID)
	var out []byte
	buf := make([]byte, 777)
	for off := 0; ; {
		n, err := r.ReadBlob(id, buf, int64(off))
		out = append(out, buf[:n]...)
		off += n
		if err != nil || n == 0 {
			if off == size {
				return out, nil
			}
			return out, err
		}
	}
}

// TestBlobLogServesEvictedBlobs: small blobs the memory cache drops are
// read back from the on-disk log, not from git: with the object files
// gone, a second pass still returns every blob's bytes.
func TestBlobLogServesEvictedBlobs(t *testing.T) {
	const n, size = 64, 3000
	dir, ids, datas := smallBlobsRepo(t, n, size)
	// 32 KiB of memory holds ~10 blobs: most of them go to the log.
	r := openRepo(t, dir, Options{CacheSize: 32 << 10, CacheDir: t.TempDir()})
	for pass := 0; pass < 2; pass++ {
		for i, id := range ids {
			got, err := readWhole(r, id, size, t)
			if err != nil || !bytes.Equal(got, datas[i]) {
				t.Fatalf("pass %d blob %d: %v (equal %v)", pass, i, err, bytes.Equal(got, datas[i]))
			}
		}
		if pass == 0 {
			// Remove every object: what is read next comes from caches.
			if err := os.RemoveAll(filepath.Join(dir, ".git", "objects")); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestBlobLogBound: a log smaller than the data starts over and stays
// correct; reads of blobs it dropped go back to git.
func TestBlobLogBound(t *testing.T) {
	const n, size = 64, 3000
	dir, ids, datas := smallBlobsRepo(t, n, size)
	// Disk bound 40 KB: the log (a quarter) holds 3 blobs at a time.
	r := openRepo(t, dir, Options{CacheSize: 32 << 10, CacheDir: t.TempDir(), DiskCacheSize: 40000})
	rng := rand.New(rand.NewSource(3))
	for k := 0; k < 4*n; k++ {
		i := rng.Intn(n)
		got, err := readWhole(r, ids[i], size, t)
		if err != nil || !bytes.Equal(got, datas[i]) {
			t.Fatalf("read %d blob %d: %v", k, i, err)
		}
	}
	if l := r.blobs.log; l == nil || l.end > l.max {
		t.Fatalf("log %+v over its bound", l)
	}
}
