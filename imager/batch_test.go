package imager

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"strings"
	"sync"
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

// TestLayoutNextHole checks NextHole against the image's bytes and its
// extents, on tar and FAT images with long zero runs (FAT clusters' slack
// with 4 KiB sectors, free space) and many short ones (tar padding): every
// run it reports is zeros and is the run ExtentAt reports there, and every
// long zero run in a range is found.
func TestLayoutNextHole(t *testing.T) {
	rng := rand.New(rand.NewSource(13))
	var files []memFile
	for i := range 300 {
		size := rng.Intn(600)
		if i%7 == 0 {
			size = rng.Intn(70000)
		}
		files = append(files, memFile{Path: fmt.Sprintf("d%d/f%03d", i%9, i), Kind: KindFile, Data: bytes.Repeat([]byte{byte(i) | 1}, size)})
	}
	tree, blobs := memTree(t, files, "", testTime)
	for _, opts := range []Options{{Format: FormatTar}, {Format: FormatFAT}, {Format: FormatFAT, SectorSize: 4096}} {
		l, _, err := Build(tree, blobs, opts)
		if err != nil {
			t.Fatal(err)
		}
		img := readImage(t, l)
		var long []Extent
		for e := range l.Extents() {
			if e.Kind == ExtentZero && e.Len >= SectorAlign {
				long = append(long, e)
			}
		}
		if opts.Format == FormatFAT && len(long) == 0 {
			t.Fatalf("%+v: no zero extent of %d bytes: the test needs some", opts, SectorAlign)
		}
		for round := range 400 {
			off := rng.Int63n(l.Size())
			end := min(l.Size(), off+1+rng.Int63n(2<<20))
			if round == 0 {
				off, end = 0, l.Size()
			}
			var found [][2]int64
			for pos := off; pos < end; {
				s, n := l.NextHole(pos, end)
				if n <= 0 {
					break
				}
				if s < pos || s >= end {
					t.Fatalf("%+v: NextHole(%d, %d) = %d, %d: outside the range", opts, pos, end, s, n)
				}
				if en, zero := l.ExtentAt(s); !zero || en != n {
					t.Fatalf("%+v: NextHole(%d, %d) = %d, %d; ExtentAt there = %d, %v", opts, pos, end, s, n, en, zero)
				}
				if !bytes.Equal(img[s:s+n], make([]byte, n)) {
					t.Fatalf("%+v: NextHole(%d, %d) = %d, %d: not all zeros", opts, pos, end, s, n)
				}
				found = append(found, [2]int64{s, s + n})
				pos = s + n
			}
			// Extents merges adjacent zeros: a long run may start with a
			// short piece, which NextHole skips; it must find the run.
			for _, e := range long {
				s, se := max(e.Off, off), min(end, e.Off+e.Len)
				if se-s < 2*SectorAlign {
					continue
				}
				covered := false
				for _, h := range found {
					covered = covered || (h[0] < se && s < h[1])
				}
				if !covered {
					t.Fatalf("%+v: range [%d, %d): zero extent %s at %d (%d bytes) not found (found %v)", opts, off, end, e.Desc, e.Off, e.Len, found)
				}
			}
		}
	}
}

// hintBlobs is a BlobBatchReader that records the hint each read of a
// blob came with.
type hintBlobs struct {
	memBlobs
	mu    sync.Mutex
	hints map[BlobID]uint64
}

func (b *hintBlobs) ReadBlobs(reads []BlobRead) {
	b.mu.Lock()
	for _, rd := range reads {
		b.hints[rd.ID] = rd.Hint
	}
	b.mu.Unlock()
	for k := range reads {
		rd := &reads[k]
		rd.N, rd.Err = b.ReadBlob(rd.ID, rd.P, rd.Off)
	}
}

// TestTarHints builds a tar image of a tree with hints and checks that
// every batch read of a blob carries its entry's hint; hints of the
// wrong length, or too big for a tar entry to keep, are dropped (0).
func TestTarHints(t *testing.T) {
	var files []memFile
	for i := range 300 {
		files = append(files, memFile{Path: fmt.Sprintf("d%02d/f%03d", i%7, i), Kind: KindFile, Data: []byte(fmt.Sprintf("file %d\n", i))})
	}
	tree, blobs := memTree(t, files, strings.Repeat("ab", 20), testTime)
	for _, tc := range []struct {
		name  string
		hints func(i int) uint64
		n     int // len(hints) - len(entries)
		want  func(i int) uint64
	}{
		{"hints", func(i int) uint64 { return uint64(i%3+1)<<32 | uint64(i*7) }, 0, nil},
		{"wrong length", func(i int) uint64 { return uint64(i + 1) }, -1, func(int) uint64 { return 0 }},
		{"over 48 bits", func(i int) uint64 { return 1<<48 | uint64(i) }, 0, func(int) uint64 { return 0 }},
	} {
		hinted := *tree
		hinted.Hints = make([]uint64, len(tree.Entries)+tc.n)
		want := map[BlobID]uint64{}
		for i := range hinted.Hints {
			hinted.Hints[i] = tc.hints(i)
		}
		for i, e := range tree.Entries {
			if e.Kind == KindFile {
				w := tc.hints(i)
				if tc.want != nil {
					w = tc.want(i)
				}
				want[e.Blob] = w
			}
		}
		hb := &hintBlobs{memBlobs: blobs, hints: map[BlobID]uint64{}}
		l, _, err := Build(&hinted, hb, Options{Format: FormatTar})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadAll(io.NewSectionReader(l, 0, l.Size())); err != nil {
			t.Fatal(err)
		}
		// The few blobs of a request too small for a batch are read one
		// by one, without hints.
		if len(hb.hints) < len(want)*9/10 {
			t.Errorf("%s: %d of %d blobs read in batches", tc.name, len(hb.hints), len(want))
		}
		for id, h := range hb.hints {
			if h != want[id] {
				t.Errorf("%s: blob %s read with hint %#x, want %#x", tc.name, id, h, want[id])
			}
		}
	}
}
