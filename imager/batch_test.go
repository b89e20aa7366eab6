package imager

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"sync/atomic"
	"testing"
)

// batchBlobs is a BlobBatchReader over memBlobs that leaves some reads of
// each batch for the layout to finish: every third untouched, every
// fifth half done, the rest done. It counts the batches and reads it got.
type batchBlobs struct {
	memBlobs
	batches, reads atomic.Int64
}

var _ BlobBatchReader = (*batchBlobs)(nil)

func (b *batchBlobs) ReadBlobs(reads []BlobRead) {
	b.batches.Add(1)
	b.reads.Add(int64(len(reads)))
	for k := range reads {
		rd := &reads[k]
		switch {
		case k%3 == 2:
			// left to ReadBlob
		case k%5 == 4:
			half := len(rd.P) / 2
			rd.N, rd.Err = b.ReadBlob(rd.ID, rd.P[:half], rd.Off)
		default:
			rd.N, rd.Err = b.ReadBlob(rd.ID, rd.P, rd.Off)
		}
	}
}

// TestLayoutBatchReads reads random tar and FAT images of many small files
// through a batch reader, whole and in random ranges, and checks that
// every byte is what the plain reader gives, and that the batches were
// used.
func TestLayoutBatchReads(t *testing.T) {
	rng := rand.New(rand.NewSource(12))
	var files []memFile
	for i := range 600 {
		data := make([]byte, rng.Intn(3000))
		rng.Read(data)
		files = append(files, memFile{Path: fmt.Sprintf("d%02d/f%03d", i%17, i), Kind: KindFile, Data: data})
	}
	for _, format := range []Format{FormatTar, FormatFAT} {
		fs := files
		if format == FormatTar { // names FAT cannot hold, symlinks, long paths
			fs = append(fs[:len(fs):len(fs)], randomFiles(rng, 200)...)
		}
		tree, blobs := memTree(t, fs, strings.Repeat("ab", 20), testTime)
		plain, _, err := Build(tree, blobs, Options{Format: format})
		if err != nil {
			t.Fatal(err)
		}
		bb := &batchBlobs{memBlobs: blobs}
		batched, _, err := Build(tree, bb, Options{Format: format})
		if err != nil {
			t.Fatal(err)
		}
		want := readImage(t, plain)
		if !diffBytes(t, batched, readImage(t, batched), want) {
			continue
		}
		for range 300 {
			off := rng.Int63n(batched.Size())
			p := make([]byte, rng.Intn(300<<10))
			n, err := batched.ReadAt(p, off)
			wn := min(len(p), int(batched.Size()-off))
			if n != wn || (err != nil && n == len(p)) || !bytes.Equal(p[:n], want[off:off+int64(n)]) {
				t.Fatalf("%s: ReadAt(%d bytes at %d) = %d, %v; want %d bytes of the image", format, len(p), off, n, err, wn)
			}
		}
		if bb.batches.Load() == 0 || bb.reads.Load() < int64(len(files)) {
			t.Errorf("%s: %d batches of %d reads in all: the batch reader was not used", format, bb.batches.Load(), bb.reads.Load())
		}
	}
}

// TestLayoutBatchErrors: a blob missing or short in a batch is reported
// as by the plain reader: the same error, and the bytes before it.
func TestLayoutBatchErrors(t *testing.T) {
	var files []memFile
	for i := range 40 {
		files = append(files, memFile{Path: fmt.Sprintf("f%02d", i), Kind: KindFile, Data: bytes.Repeat([]byte{byte(i)}, 100+i)})
	}
	tree, blobs := memTree(t, files, "", testTime)
	for _, bad := range []int{0, 7, 39} {
		id := tree.Entries[bad].Blob
		for _, cut := range []string{"missing", "short"} {
			broken := memBlobs{}
			for k, v := range blobs {
				broken[k] = v
			}
			if cut == "missing" {
				delete(broken, id)
			} else {
				broken[id] = broken[id][:50]
			}
			plain, _, err := BuildTar(tree, broken, Options{})
			if err != nil {
				t.Fatal(err)
			}
			batched, _, err := BuildTar(tree, &batchBlobs{memBlobs: broken}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			p, q := make([]byte, plain.Size()), make([]byte, plain.Size())
			n, err := plain.ReadAt(p, 0)
			bn, berr := batched.ReadAt(q, 0)
			if err == nil || berr == nil || err.Error() != berr.Error() || n != bn || !bytes.Equal(p[:n], q[:bn]) {
				t.Errorf("file %d %s: batched ReadAt = %d, %v; plain = %d, %v", bad, cut, bn, berr, n, err)
			}
			if cut == "short" && !errors.Is(berr, ErrShortBlob) {
				t.Errorf("file %d short: %v, want ErrShortBlob", bad, berr)
			}
		}
	}
}
