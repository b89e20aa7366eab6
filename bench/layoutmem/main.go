// Command layoutmem measures what the layouts of a tree of many small files
// cost in the Go heap: a synthetic in-memory tree (by default 600
// directories of 10 subdirectories of 50 files of 25 bytes, 300,000 files,
// as in issue 12) is laid out as tar and as FAT, both images are read in
// full, and the heap in use after a GC is printed at each step, with the
// bytes per file and the build times.
//
// With -repo, the tree is a real commit's, listed by gitfs (sizes from
// object headers) and read through gitfs's blob reader: the same steps with
// the repository's own costs included. VmHWM, the process's peak resident
// memory, is printed last.
//
//	go run ./bench/layoutmem                          # 300,000 files
//	go run ./bench/layoutmem -dirs 60                 # 30,000
//	go run ./bench/layoutmem -repo bench/out/corpora/manyfiles.git
package main

import (
	"bytes"
	"crypto/sha1"
	"encoding/binary"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/gitblk/gitblk/gitfs"
	"github.com/gitblk/gitblk/imager"
)

// synthBlobs serves the content of file n, whose blob id holds n in its
// first 4 bytes: 25 bytes, "file NNNNNNN of the tree" and a newline.
type synthBlobs struct{}

func content(n uint32) []byte { return []byte(fmt.Sprintf("file %07d of the tree\n", n)[:25]) }

func (synthBlobs) ReadBlob(id imager.BlobID, p []byte, off int64) (int, error) {
	return bytes.NewReader(content(binary.BigEndian.Uint32(id[:4]))).ReadAt(p, off)
}

// tree lists dirs top directories of subs subdirectories of files files
// each, in git's order.
func tree(dirs, subs, files int) *imager.Tree {
	t := &imager.Tree{CommitID: "0123456789abcdef0123456789abcdef01234567", Time: time.Unix(1704067200, 0)}
	t.Entries = make([]imager.Entry, 0, dirs*(1+subs*(1+files)))
	var n uint32
	treeID := func(p string) imager.BlobID { return sha1.Sum([]byte("tree " + p)) }
	for d := 0; d < dirs; d++ {
		dp := fmt.Sprintf("d%03d", d)
		t.Entries = append(t.Entries, imager.Entry{Path: dp, Kind: imager.KindDir, Blob: treeID(dp)})
		for s := 0; s < subs; s++ {
			sp := fmt.Sprintf("%s/s%d", dp, s)
			t.Entries = append(t.Entries, imager.Entry{Path: sp, Kind: imager.KindDir, Blob: treeID(sp)})
			for f := 0; f < files; f++ {
				var id imager.BlobID
				binary.BigEndian.PutUint32(id[:4], n)
				h := sha1.Sum(content(n))
				copy(id[4:], h[:16])
				t.Entries = append(t.Entries, imager.Entry{
					Path: fmt.Sprintf("%s/f%02d.txt", sp, f), Kind: imager.KindFile, Size: 25, Blob: id})
				n++
			}
		}
	}
	return t
}

func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

func readAll(img imager.Image) (uint32, time.Duration, error) {
	t0 := time.Now()
	buf := make([]byte, 1<<20)
	h := crc32.NewIEEE()
	for off := int64(0); off < img.Size(); {
		n, err := img.ReadAt(buf, off)
		if err != nil && err != io.EOF {
			return 0, 0, fmt.Errorf("read at %d: %w", off, err)
		}
		h.Write(buf[:n])
		off += int64(n)
		if n == 0 {
			return 0, 0, fmt.Errorf("read at %d: no progress", off)
		}
	}
	return h.Sum32(), time.Since(t0), nil
}

func main() {
	dirs := flag.Int("dirs", 600, "top directories")
	subs := flag.Int("subs", 10, "subdirectories per top directory")
	files := flag.Int("files", 50, "files per subdirectory")
	repo := flag.String("repo", "", "list this repository's commit instead of the synthetic tree")
	rev := flag.String("rev", "HEAD", "with -repo: the commit")
	memprofile := flag.String("memprofile", "", "write a heap profile here after the reads")
	flag.Parse()
	debug.SetGCPercent(100)
	nfiles := *dirs * *subs * *files
	var blobs imager.BlobReader = synthBlobs{}
	h0 := heap()
	var t *imager.Tree
	if *repo != "" {
		r, err := gitfs.Open(*repo, gitfs.Options{})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer r.Close()
		c, err := r.Resolve(*rev)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Printf("repository opened:        heap %.1f MiB\n", float64(heap()-h0)/(1<<20))
		t0 := time.Now()
		if t, err = r.Tree(c, true); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Printf("gitfs listing: %v\n", time.Since(t0).Round(time.Millisecond))
		blobs = r
		nfiles = 0
		for _, e := range t.Entries {
			if e.Kind != imager.KindDir {
				nfiles++
			}
		}
	} else {
		t = tree(*dirs, *subs, *files)
	}
	mib := func(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	per := func(b, base uint64) string {
		return fmt.Sprintf("%.0f B/file", float64(int64(b)-int64(base))/float64(nfiles))
	}

	h1 := heap()
	fmt.Printf("files %d, entries %d\n", nfiles, len(t.Entries))
	what := "imager.Tree:             "
	if *repo != "" {
		what = "listed (tree, gitfs):    "
	}
	fmt.Printf("%s heap %s  (%s)\n", what, mib(h1-h0), per(h1, h0))

	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	t0 := time.Now()
	tl, _, err := imager.Build(t, blobs, imager.Options{Format: imager.FormatTar})
	dt := time.Since(t0)
	runtime.ReadMemStats(&m1)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("tar layout build: %v, allocated %s\n", dt.Round(time.Millisecond), mib(m1.TotalAlloc-m0.TotalAlloc))
	runtime.ReadMemStats(&m0)
	t0 = time.Now()
	fl, _, err := imager.Build(t, blobs, imager.Options{Format: imager.FormatFAT})
	dt = time.Since(t0)
	runtime.ReadMemStats(&m1)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("fat layout build: %v, allocated %s\n", dt.Round(time.Millisecond), mib(m1.TotalAlloc-m0.TotalAlloc))
	h2 := heap()
	runtime.KeepAlive(t) // t is live up to here: h2 counts it
	fmt.Printf("tree + both layouts:      heap %s  (%s)\n", mib(h2-h0), per(h2, h0))
	t = nil
	h3 := heap()
	fmt.Printf("both layouts, tree freed: heap %s  (%s)\n", mib(h3-h0), per(h3, h0))

	for _, x := range []struct {
		name string
		l    *imager.Layout
	}{{"tar", tl}, {"fat", fl}} {
		sum, d, err := readAll(x.l)
		if err != nil {
			fmt.Fprintln(os.Stderr, x.name, err)
			os.Exit(1)
		}
		fmt.Printf("%s image: %d bytes, crc32 %08x, read in %v\n", x.name, x.l.Size(), sum, d.Round(time.Millisecond))
	}
	h4 := heap()
	fmt.Printf("after full reads of both: heap %s  (%s)\n", mib(h4-h0), per(h4, h0))
	if *memprofile != "" {
		f, err := os.Create(*memprofile)
		if err == nil {
			err = pprof.WriteHeapProfile(f)
			f.Close()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	runtime.KeepAlive(tl)
	runtime.KeepAlive(fl)
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "VmHWM:") {
				fmt.Println("peak RSS (" + strings.Join(strings.Fields(line), " ") + ")")
			}
		}
	}
}
