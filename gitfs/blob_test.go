package gitfs

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/gitblk/gitblk/imager"
)

// blobSizes are the test blobs' sizes: empty, tiny, under and over the
// in-memory limit, and big enough to spill.
var blobSizes = []int{0, 1, 4095, 70000, 600 << 10, 3<<20 + 17}

// blobRepo makes a repository holding random blobs of blobSizes, a
// compressible big blob, and near copies of the big ones (delta material
// for a repack). It returns the blob ids (as git names them) in order.
func blobRepo(t *testing.T) (dir string, ids []string) {
	dir = newRepo(t)
	rng := rand.New(rand.NewSource(1))
	var names []string
	for i, n := range blobSizes {
		b := make([]byte, n)
		rng.Read(b)
		name := fmt.Sprintf("r%d", i)
		writeFile(t, dir, name, b, 0o644)
		names = append(names, name)
		if n > 100000 {
			v := append([]byte(nil), b...)
			copy(v[n/2:], "a change in the middle")
			v = append(v, "and a tail"...)
			writeFile(t, dir, name+"v", v, 0o644)
			names = append(names, name+"v")
		}
	}
	text := bytes.Repeat([]byte("compressible text line\n"), 200000)
	writeFile(t, dir, "text", text, 0o644)
	names = append(names, "text")
	commitAll(t, dir, "blobs")
	for _, n := range names {
		ids = append(ids, git(t, dir, "rev-parse", "HEAD:"+n))
	}
	return dir, ids
}

func blobID(t testing.TB, hexID string) imager.BlobID {
	var id imager.BlobID
	if _, err := hex.Decode(id[:], []byte(hexID)); err != nil {
		t.Fatal(err)
	}
	return id
}

// readerAt adapts ReadBlob of one blob to io.ReaderAt.
type readerAt struct {
	r  *Repo
	id imager.BlobID
}

func (b readerAt) ReadAt(p []byte, off int64) (int, error) { return b.r.ReadBlob(b.id, p, off) }

// checkBlob compares ReadBlob with git cat-file at random offsets, in
// forward, backward and random order, and through testing/iotest.
func checkBlob(t *testing.T, r *Repo, want []byte, hexID string, rng *rand.Rand) {
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

func checkAllBlobs(t *testing.T, r *Repo, dir string, ids []string) {
	t.Helper()
	rng := rand.New(rand.NewSource(2))
	for _, id := range ids {
		checkBlob(t, r, gitBytes(t, dir, "cat-file", "blob", id), id, rng)
	}
}

func TestReadBlobMatchesCatFile(t *testing.T) {
	dir, ids := blobRepo(t)
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
	git(t, dir, "repack", "-q", "-a", "-d", "-f", "--depth=50", "--window=50")
	git(t, dir, "prune-packed")
	vp := git(t, dir, "verify-pack", "-v", packIdx(t, dir))
	deltas, bigDeltas := 0, 0
	for _, line := range strings.Split(vp, "\n") {
		f := strings.Fields(line) // id type size packed-size offset depth base
		if len(f) >= 7 && f[1] == "blob" {
			for _, id := range ids {
				if f[0] == id {
					deltas++
					if n, _ := strconv.Atoi(git(t, dir, "cat-file", "-s", id)); n > smallBlobMax {
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
	dir, ids := blobRepo(t)
	want := map[string][]byte{}
	for _, id := range ids {
		want[id] = gitBytes(t, dir, "cat-file", "blob", id)
	}
	for _, opts := range []Options{{}, {DiskCacheSize: -1}, {CacheSize: 64 << 10}} {
		r := openRepo(t, dir, opts)
		readConcurrently(t, r, ids, want, 16, 150, nil)
	}
}

// readConcurrently runs goroutines of random ReadBlob calls checked
// against want until each did n reads (and, when stop is not nil, until
// stop is closed).
func readConcurrently(t *testing.T, r *Repo, ids []string, want map[string][]byte, goroutines, n int, stop chan struct{}) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(seed int64) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(seed))
			p := make([]byte, 70000)
			for i := 0; ; i++ {
				if i >= n {
					if stop == nil {
						return
					}
					select {
					case <-stop:
						return
					default:
					}
				}
				id := ids[rng.Intn(len(ids))]
				w := want[id]
				off := rng.Int63n(int64(len(w)) + 1)
				if rng.Intn(3) == 0 { // sequential runs from the start
					off = int64(i%8) * int64(len(p))
				}
				k, err := r.ReadBlob(blobID(t, id), p[:rng.Intn(len(p))+1], off)
				if err != nil && err != io.EOF {
					errs <- fmt.Errorf("ReadBlob(%s, off %d): %w", id, off, err)
					return
				}
				if off <= int64(len(w)) && !bytes.Equal(p[:k], w[off:off+int64(k)]) {
					errs <- fmt.Errorf("ReadBlob(%s, off %d): wrong bytes", id, off)
					return
				}
			}
		}(int64(g))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestReadBlobWhileRepacking(t *testing.T) {
	dir, ids := blobRepo(t)
	want := map[string][]byte{}
	for _, id := range ids {
		want[id] = gitBytes(t, dir, "cat-file", "blob", id)
	}
	// Small caches, so that reads keep going back to the repository; and
	// the default caches, with spills growing while objects move.
	r := openRepo(t, dir, Options{CacheSize: 64 << 10, DiskCacheSize: -1})
	r2 := openRepo(t, dir, Options{})
	c, err := r.Resolve("main")
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{}, 2)
	for _, rr := range []*Repo{r, r2} {
		go func() {
			defer func() { done <- struct{}{} }()
			readConcurrently(t, rr, ids, want, 4, 50, stop)
		}()
	}
	for _, args := range [][]string{
		{"gc", "-q", "--prune=now"},
		{"repack", "-q", "-a", "-d"},
		{"repack", "-q", "-a", "-d", "-f", "--depth=10"},
		{"gc", "-q", "--aggressive", "--prune=now"},
		{"repack", "-q", "-a", "-d"},
	} {
		git(t, dir, args...)
		if _, err := r.Tree(c, true); err != nil {
			t.Errorf("Tree after git %s: %v", strings.Join(args, " "), err)
		}
	}
	close(stop)
	<-done
	<-done
}

func TestReadBlobMissingAndCorrupt(t *testing.T) {
	dir, ids := blobRepo(t)
	r := openRepo(t, dir, Options{})
	// Missing: the loose object file removed.
	small, big := ids[2], ids[len(ids)-2]
	for _, id := range []string{small, big} {
		if err := os.Remove(loosePath(dir, id)); err != nil {
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
		damageLoose(t, dir, id, damage)
		_, err := r.ReadBlob(blobID(t, id), make([]byte, 10), 0)
		if !errors.Is(err, ErrCorruptObject) || !strings.Contains(err.Error(), id) {
			t.Errorf("ReadBlob of damaged small loose blob %d = %v, want ErrCorruptObject naming %s", i, err, id)
		}
	}
	// Corrupt: a big loose blob cut short. Every read is either right or
	// an error; the end of the blob is never silently missing.
	bigID := ids[len(blobSizes)] // r5, 3 MiB + 17 of random bytes
	want := gitBytes(t, dir, "cat-file", "blob", bigID)
	damageLoose(t, dir, bigID, func(b []byte) []byte { return b[:len(b)*2/3] })
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

// damageLoose rewrites the file of loose object id with damage applied.
func damageLoose(t *testing.T, dir, id string, damage func([]byte) []byte) {
	t.Helper()
	p := loosePath(dir, id)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, damage(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReadBlobObjectsDeleted(t *testing.T) {
	dir, ids := blobRepo(t)
	tree := git(t, dir, "rev-parse", "HEAD^{tree}")
	git(t, dir, "gc", "-q", "--prune=now")
	r := openRepo(t, dir, Options{})
	// Every pack deleted before anything was read: every object is gone.
	packs, _ := filepath.Glob(filepath.Join(dir, ".git/objects/pack/*"))
	for _, p := range packs {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range ids {
		_, err := r.ReadBlob(blobID(t, id), make([]byte, 100), 0)
		if !errors.Is(err, ErrMissingObject) || !strings.Contains(err.Error(), id) {
			t.Errorf("ReadBlob(%s) after the packs were deleted: %v, want ErrMissingObject naming it", id, err)
		}
	}
	c := &Commit{ID: "x", Tree: tree}
	if _, err := r.Tree(c, false); !errors.Is(err, ErrMissingObject) || !strings.Contains(err.Error(), tree) {
		t.Errorf("Tree after the packs were deleted: %v, want ErrMissingObject naming %s", err, tree)
	}
}
