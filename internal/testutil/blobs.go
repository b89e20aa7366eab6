package testutil

import (
	"bytes"
	"fmt"
	"io"
	"math/rand"
	"sync"
	"testing"
)

// BlobSizes are the test blobs' sizes: empty, tiny, under and over the
// in-memory limit, and big enough to spill.
var BlobSizes = []int{0, 1, 4095, 70000, 600 << 10, 3<<20 + 17}

// BlobRepo makes a repository holding random blobs of BlobSizes, a
// compressible big blob, and near copies of the big ones (delta material
// for a repack). It returns the blob ids (as git names them) in order.
func BlobRepo(t testing.TB) (dir string, ids []string) {
	dir = NewRepo(t)
	rng := rand.New(rand.NewSource(1))
	var names []string
	for i, n := range BlobSizes {
		b := make([]byte, n)
		rng.Read(b)
		name := fmt.Sprintf("r%d", i)
		WriteFile(t, dir, name, b, 0o644)
		names = append(names, name)
		if n > 100000 {
			v := append([]byte(nil), b...)
			copy(v[n/2:], "a change in the middle")
			v = append(v, "and a tail"...)
			WriteFile(t, dir, name+"v", v, 0o644)
			names = append(names, name+"v")
		}
	}
	text := bytes.Repeat([]byte("compressible text line\n"), 200000)
	WriteFile(t, dir, "text", text, 0o644)
	names = append(names, "text")
	CommitAll(t, dir, "blobs")
	for _, n := range names {
		ids = append(ids, Git(t, dir, "rev-parse", "HEAD:"+n))
	}
	return dir, ids
}

// ReadConcurrently runs goroutines of random reads (read of blob id, as
// io.ReaderAt.ReadAt) checked
// against want until each did n reads (and, when stop is not nil, until
// stop is closed).
func ReadConcurrently(t testing.TB, read func(id string, p []byte, off int64) (int, error), ids []string, want map[string][]byte, goroutines, n int, stop chan struct{}) {
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
				k, err := read(id, p[:rng.Intn(len(p))+1], off)
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
