package inflate

import (
	"bytes"
	"compress/zlib"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// extraInflaters are more inflaters to benchmark (cgoref_test.go adds the
// former cgo one with -tags cgoref).
var extraInflaters = map[string]*Inflater{}

// benchInflaters are the inflaters benchmarked, in a stable order.
func benchInflaters(b *testing.B) []*Inflater {
	m := inflaters(b)
	var fs []*Inflater
	for _, kind := range []string{KindGo, KindZlib, KindLibdeflate} {
		if f := m[kind]; f != nil {
			fs = append(fs, f)
		}
	}
	for _, f := range extraInflaters {
		fs = append(fs, f)
	}
	return fs
}

// benchName is f's name as a sub-benchmark name.
func benchName(f *Inflater) string {
	return strings.NewReplacer(" ", "_", "(", "", ")", "", "/", "_").Replace(f.Name())
}

var (
	benchPackOnce    sync.Once
	benchPackEntries []packEntry
)

// benchPack is the pack GITBLK_INFLATE_PACK names (bench/inflate makes
// the Go tree's), or else one of $(go env GOROOT)/src/compress, made once.
func benchPack(b *testing.B) []packEntry {
	benchPackOnce.Do(func() {
		path := os.Getenv("GITBLK_INFLATE_PACK")
		if path == "" {
			dir, err := os.MkdirTemp("", "inflate-bench")
			if err != nil {
				b.Fatal(err)
			}
			defer os.RemoveAll(dir)
			path = makePack(b, filepath.Join(dir, "repo.git"), filepath.Join(runtime.GOROOT(), "src", "compress"))
		}
		benchPackEntries = readPack(b, path)
	})
	if benchPackEntries == nil {
		b.Fatal("no pack")
	}
	return benchPackEntries
}

// BenchmarkPack inflates every entry of a pack (objects and deltas), each
// whole into a buffer of its size ("whole": the path of small objects) or
// as a stream read in 64 KiB pieces ("stream": the path of big ones).
func BenchmarkPack(b *testing.B) {
	entries := benchPack(b)
	var inflated int64
	maxSize := 0
	for _, e := range entries {
		inflated += int64(e.size)
		maxSize = max(maxSize, e.size)
	}
	for _, f := range benchInflaters(b) {
		b.Run("whole/"+benchName(f), func(b *testing.B) {
			b.SetBytes(inflated)
			dst := make([]byte, maxSize)
			for b.Loop() {
				for _, e := range entries {
					if _, err := f.Whole(dst[:e.size], e.z); err != nil {
						b.Fatalf("entry at %d: %v", e.off, err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(entries)), "ns/entry")
		})
		b.Run("stream/"+benchName(f), func(b *testing.B) {
			b.SetBytes(inflated)
			p := f.NewPool(64 << 10)
			buf := make([]byte, 64<<10)
			var src bytes.Reader
			for b.Loop() {
				for _, e := range entries {
					src.Reset(e.z)
					r, err := p.Get(&src)
					if err != nil {
						b.Fatal(err)
					}
					for err == nil {
						_, err = r.Read(buf)
					}
					if err != io.EOF {
						b.Fatalf("entry at %d: %v", e.off, err)
					}
					p.Put(r)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(entries)), "ns/entry")
		})
	}
}

// BenchmarkSmall inflates one small object whole: the per-call cost.
func BenchmarkSmall(b *testing.B) {
	for _, size := range []int{100, 1000, 10000} {
		words := strings.Fields("func return if err != nil { } ( ) int64 byte string for range := = the a of blob tree pack")
		rng := rand.New(rand.NewSource(2))
		var tb bytes.Buffer
		for tb.Len() < size {
			tb.WriteString(words[rng.Intn(len(words))])
			tb.WriteByte(" \n\t"[rng.Intn(3)])
		}
		text := tb.Bytes()[:size]
		z := deflated(b, text, zlib.DefaultCompression)
		for _, f := range benchInflaters(b) {
			b.Run(benchName(f)+"/"+strconv.Itoa(size), func(b *testing.B) {
				b.SetBytes(int64(size))
				dst := make([]byte, size)
				for b.Loop() {
					if _, err := f.Whole(dst, z); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
