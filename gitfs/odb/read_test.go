package odb

import (
	"bytes"
	"errors"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/gitblk/gitblk/internal/testutil"
	"github.com/go-git/go-git/v5/plumbing"
)

// blobID parses a hex object id.
func blobID(t testing.TB, hexID string) plumbing.Hash {
	return plumbing.Hash(testutil.BlobID(t, hexID))
}

// readerAt adapts ReadBlob of one blob to io.ReaderAt.
type readerAt struct {
	r  *Store
	id plumbing.Hash
}

func (b readerAt) ReadAt(p []byte, off int64) (int, error) { return b.r.ReadBlob(b.id, p, off) }

// checkBlob compares ReadBlob with git cat-file at random offsets, in
// forward, backward and random order, and through testing/iotest.
func checkBlob(t *testing.T, r *Store, want []byte, hexID string, rng *rand.Rand) {
	t.Helper()
	id := blobID(t, hexID)
	size := int64(len(want))
	check := func(off int64, n int) {
		t.Helper()
		p := make([]byte, n)
		got, err := r.ReadBlob(id, p, off)
		end := min(off+int64(n), size)
		if off > size {
			end = off
		}
		wantN := int(end - off)
		if got != wantN {
			t.Fatalf("blob %s (%d bytes): ReadBlob(off %d, len %d) = %d bytes, %v; want %d", hexID, size, off, n, got, err, wantN)
		}
		if wantN < n && err != io.EOF {
			t.Fatalf("blob %s: ReadBlob(off %d, len %d) short without io.EOF: %v", hexID, off, n, err)
		}
		if wantN == n && err != nil && !(err == io.EOF && end == size) {
			t.Fatalf("blob %s: ReadBlob(off %d, len %d): %v", hexID, off, n, err)
		}
		if !bytes.Equal(p[:got], want[off:off+int64(got)]) {
			t.Fatalf("blob %s: ReadBlob(off %d, len %d): bytes differ from git cat-file", hexID, off, n)
		}
	}
	const step = 64 << 10
	for off := size - size%step; off >= 0; off -= step { // backwards
		check(off, step)
	}
	for i := 0; i < 60; i++ {
		off := rng.Int63n(size + 2)
		check(off, rng.Intn(100000))
	}
	check(size, 10)
	check(size+100, 10)
	check(0, 0)
	// iotest reads a byte or two per call: keep it to small blobs.
	if size <= 100000 {
		if err := iotest.TestReader(io.NewSectionReader(readerAt{r, id}, 0, size), want); err != nil {
			t.Fatalf("blob %s: iotest: %v", hexID, err)
		}
	}
}

func checkAllBlobs(t *testing.T, r *Store, dir string, ids []string) {
	t.Helper()
	rng := rand.New(rand.NewSource(2))
	for _, id := range ids {
		checkBlob(t, r, testutil.GitBytes(t, dir, "cat-file", "blob", id), id, rng)
	}
}

func TestReadBlobMatchesCatFile(t *testing.T) {
	dir, ids := testutil.BlobRepo(t)
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"default", Options{}},
		{"tiny memory cache", Options{CacheSize: 64 << 10}},
		{"stream only", Options{DiskCacheSize: -1}},
		{"disk bound smaller than the blobs", Options{DiskCacheSize: 4 << 20, CacheDir: filepath.Join(t.TempDir(), "spill")}},
	} {
		t.Run(tc.name+"/loose", func(t *testing.T) {
			checkAllBlobs(t, openRepo(t, dir, tc.opts), dir, ids)
		})
	}
	// Packed, deltified against each other.
	testutil.Git(t, dir, "repack", "-q", "-a", "-d", "-f", "--depth=50", "--window=50")
	testutil.Git(t, dir, "prune-packed")
	vp := testutil.Git(t, dir, "verify-pack", "-v", testutil.PackIdx(t, dir))
	deltas, bigDeltas := 0, 0
	for _, line := range strings.Split(vp, "\n") {
		f := strings.Fields(line) // id type size packed-size offset depth base
		if len(f) >= 7 && f[1] == "blob" {
			for _, id := range ids {
				if f[0] == id {
					deltas++
					if n, _ := strconv.Atoi(testutil.Git(t, dir, "cat-file", "-s", id)); n > smallBlobMax {
						bigDeltas++ // streamed, not held whole
					}
				}
			}
		}
	}
	if deltas == 0 || bigDeltas == 0 {
		t.Fatalf("want deltified test blobs, small and big:\n%s", vp)
	}
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"default", Options{}},
		{"stream only", Options{DiskCacheSize: -1}},
	} {
		t.Run(tc.name+"/packed", func(t *testing.T) {
			checkAllBlobs(t, openRepo(t, dir, tc.opts), dir, ids)
		})
	}
}

func TestReadBlobConcurrent(t *testing.T) {
	dir, ids := testutil.BlobRepo(t)
	want := map[string][]byte{}
	for _, id := range ids {
		want[id] = testutil.GitBytes(t, dir, "cat-file", "blob", id)
	}
	for _, opts := range []Options{{}, {DiskCacheSize: -1}, {CacheSize: 64 << 10}} {
		r := openRepo(t, dir, opts)
		testutil.ReadConcurrently(t, readBlobOf(t, r), ids, want, 16, 150, nil)
	}
}

func TestReadBlobMissingAndCorrupt(t *testing.T) {
	dir, ids := testutil.BlobRepo(t)
	r := openRepo(t, dir, Options{})
	// Missing: the loose object file removed.
	small, big := ids[2], ids[len(ids)-2]
	for _, id := range []string{small, big} {
		if err := os.Remove(testutil.LoosePath(dir, id)); err != nil {
			t.Fatal(err)
		}
		_, err := r.ReadBlob(blobID(t, id), make([]byte, 10), 0)
		if !errors.Is(err, ErrMissingObject) || !strings.Contains(err.Error(), id) {
			t.Errorf("ReadBlob of a removed blob = %v, want ErrMissingObject naming %s", err, id)
		}
	}
	// Corrupt: small loose blobs cut short, or with a byte changed: an
	// error naming the blob, never other bytes.
	for i, damage := range []func([]byte) []byte{
		func(b []byte) []byte { return b[:len(b)-3] },
		func(b []byte) []byte { b[len(b)/2] ^= 0x40; return b },
	} {
		id := ids[3+i]
		testutil.DamageLoose(t, dir, id, damage)
		_, err := r.ReadBlob(blobID(t, id), make([]byte, 10), 0)
		if !errors.Is(err, ErrCorruptObject) || !strings.Contains(err.Error(), id) {
			t.Errorf("ReadBlob of damaged small loose blob %d = %v, want ErrCorruptObject naming %s", i, err, id)
		}
	}
	// Corrupt: a big loose blob cut short. Every read is either right or
	// an error; the end of the blob is never silently missing.
	bigID := ids[len(testutil.BlobSizes)] // r5, 3 MiB + 17 of random bytes
	want := testutil.GitBytes(t, dir, "cat-file", "blob", bigID)
	testutil.DamageLoose(t, dir, bigID, func(b []byte) []byte { return b[:len(b)*2/3] })
	for _, opts := range []Options{{}, {DiskCacheSize: -1}} {
		r := openRepo(t, dir, opts)
		sawErr := false
		buf := make([]byte, 256<<10)
		for off := int64(0); off < int64(len(want)); off += int64(len(buf)) {
			n, err := r.ReadBlob(blobID(t, bigID), buf, off)
			if err != nil && err != io.EOF {
				if !errors.Is(err, ErrCorruptObject) || !strings.Contains(err.Error(), bigID) {
					t.Errorf("read at %d: %v, want ErrCorruptObject naming the blob", off, err)
				}
				sawErr = true
				continue
			}
			if !bytes.Equal(buf[:n], want[off:off+int64(n)]) {
				t.Fatalf("read at %d: wrong bytes", off)
			}
		}
		if !sawErr {
			t.Errorf("%+v: a truncated blob read without error", opts)
		}
	}
}

// openStore opens the object store of the work tree repository dir.
func openStore(dir string, opts Options) (*Store, error) {
	gitDir := filepath.Join(dir, ".git")
	return Open(gitDir, gitDir, opts)
}

// openRepo is openStore for a test: it fails the test on error and closes
// the store at the end.
func openRepo(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	r, err := openStore(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return r
}

// readBlobOf reads blobs of r by hex id, for testutil.ReadConcurrently.
func readBlobOf(t testing.TB, r *Store) func(id string, p []byte, off int64) (int, error) {
	return func(id string, p []byte, off int64) (int, error) { return r.ReadBlob(blobID(t, id), p, off) }
}
