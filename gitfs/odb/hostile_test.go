package odb

import (
	"bytes"
	"compress/zlib"
	"crypto/sha1"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gitblk/gitblk/internal/testutil"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
)

// Hand-made packs for the damage a hostile or broken repository can hold:
// every such read is an error wrapping ErrCorruptObject, never other
// bytes, and never poisons what other blobs read.

func zlibOf(data []byte) []byte {
	var b bytes.Buffer
	w := zlib.NewWriter(&b)
	w.Write(data)
	w.Close()
	return b.Bytes()
}

// deltaVarint is a delta header's size varint.
func deltaVarint(v int64) []byte {
	var out []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(out, c)
		}
		out = append(out, c|0x80)
	}
}

// entryHeader is a pack entry's type and size header.
func entryHeader(typ byte, size int64) []byte {
	c := typ<<4 | byte(size&0x0f)
	size >>= 4
	var out []byte
	for size != 0 {
		out = append(out, c|0x80)
		c = byte(size & 0x7f)
		size >>= 7
	}
	return append(out, c)
}

func refDeltaEntry(base plumbing.Hash, delta []byte) []byte {
	e := append(entryHeader(packRefDelta, int64(len(delta))), base[:]...)
	return append(e, zlibOf(delta)...)
}

func blobEntry(data []byte) []byte {
	return append(entryHeader(packBlob, int64(len(data))), zlibOf(data)...)
}

// installPack writes a pack of raw entries, with an index naming them ids,
// into the repository at dir.
func installPack(t testing.TB, dir string, ids []plumbing.Hash, entries [][]byte) {
	t.Helper()
	n := len(entries)
	body := []byte{'P', 'A', 'C', 'K', 0, 0, 0, 2, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
	var offs []int64
	for _, e := range entries {
		offs = append(offs, int64(len(body)))
		body = append(body, e...)
	}
	sum := sha1.Sum(body)
	body = append(body, sum[:]...)
	w := new(idxfile.Writer)
	w.OnHeader(uint32(len(ids)))
	for i, id := range ids {
		if err := w.OnInflatedObjectContent(id, offs[i], 0, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.OnFooter(plumbing.Hash(sum)); err != nil {
		t.Fatal(err)
	}
	idx, err := w.Index()
	if err != nil {
		t.Fatal(err)
	}
	pdir := filepath.Join(dir, ".git", "objects", "pack")
	if err := os.MkdirAll(pdir, 0o755); err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(pdir, "pack-"+plumbing.Hash(sum).String())
	if err := os.WriteFile(name+".pack", body, 0o644); err != nil {
		t.Fatal(err)
	}
	var ib bytes.Buffer
	if _, err := idxfile.NewEncoder(&ib).Encode(idx); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name+".idx", ib.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// hashObject writes data as a loose blob with git.
func hashObject(t testing.TB, dir string, data []byte) plumbing.Hash {
	t.Helper()
	out, err := testutil.GitOutput(dir, bytes.NewReader(data), "hash-object", "-w", "--stdin")
	if err != nil {
		t.Fatal(err)
	}
	return plumbing.NewHash(strings.TrimSpace(string(out)))
}

func wantCorrupt(t *testing.T, what string, n int, err error) {
	t.Helper()
	if !errors.Is(err, ErrCorruptObject) {
		t.Errorf("%s: %d bytes, %v; want ErrCorruptObject", what, n, err)
	}
}

// A delta whose header gives its base a wrong size is corrupt, and does
// not leave a cut-down copy of the base in the cache.
func TestDeltaBaseSizeMismatch(t *testing.T) {
	dir := testutil.NewRepo(t)
	base := make([]byte, 20000)
	rand.New(rand.NewSource(1)).Read(base)
	b := hashObject(t, dir, base) // loose, and bigger than smallMax below
	delta := append(deltaVarint(100), deltaVarint(100)...)
	delta = append(delta, 0x90, 100) // copy 100 bytes from 0
	d := plumbing.NewHash("dddddddddddddddddddddddddddddddddddddddd")
	installPack(t, dir, []plumbing.Hash{d}, [][]byte{refDeltaEntry(b, delta)})
	r := openRepo(t, dir, Options{CacheSize: 64 << 10})
	n, err := r.ReadBlob(blobID(t, d.String()), make([]byte, 100), 0)
	wantCorrupt(t, "delta with a lying base size", n, err)
	got := make([]byte, len(base))
	if n, err := r.ReadBlob(blobID(t, b.String()), got, 0); n != len(base) || !bytes.Equal(got, base) {
		t.Errorf("the base after the delta was read: %d bytes, %v; want its %d bytes", n, err, len(base))
	}
}

// A pack closed under a streaming read (the pack list is reloaded after
// a repack) is not damage: the stream is reopened.
func TestPackClosedUnderStream(t *testing.T) {
	for _, asDelta := range []bool{false, true} {
		dir := testutil.NewRepo(t)
		rng := rand.New(rand.NewSource(2))
		base := make([]byte, 1000)
		rng.Read(base)
		b := hashObject(t, dir, base)
		target := make([]byte, 3<<20)
		rng.Read(target)
		delta := append(deltaVarint(int64(len(base))), deltaVarint(int64(len(target)))...)
		for i := 0; i < len(target); i += 127 { // inserts only: delta data over 1 MiB is streamed
			k := min(127, len(target)-i)
			delta = append(append(delta, byte(k)), target[i:i+k]...)
		}
		d := plumbing.NewHash("dddddddddddddddddddddddddddddddddddddddd")
		entry := blobEntry(target)
		if asDelta {
			entry = refDeltaEntry(b, delta)
		}
		installPack(t, dir, []plumbing.Hash{d}, [][]byte{entry})
		for _, opts := range []Options{{}, {DiskCacheSize: -1}} {
			r := openRepo(t, dir, opts)
			id := blobID(t, d.String())
			p := make([]byte, 4096)
			if _, err := r.ReadBlob(id, p, 0); err != nil || !bytes.Equal(p, target[:4096]) {
				t.Fatal(err)
			}
			r.packs.close() // as a reload does: the old pack files are closed
			if _, err := r.ReadBlob(id, p, 2<<20); err != nil || !bytes.Equal(p, target[2<<20:2<<20+4096]) {
				t.Errorf("delta %v, %+v: read after the pack was closed: %v", asDelta, opts, err)
			}
		}
	}
}

// A stream that goes on past the size its header gives is corrupt, packed
// or loose, compact or padded.
func TestStreamLongerThanHeader(t *testing.T) {
	dir := testutil.NewRepo(t)
	long := []byte("hello, and much more than five bytes")
	a := plumbing.NewHash("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	b := plumbing.NewHash("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
	installPack(t, dir, []plumbing.Hash{a, b}, [][]byte{
		append(entryHeader(packBlob, 5), zlibOf(long)...),
		append(entryHeader(packBlob, 5), testutil.PaddedZlib(long, 100)...),
	})
	lc := plumbing.NewHash("cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd")
	testutil.WriteLooseRaw(t, dir, lc.String(), zlibOf(append([]byte("blob 5\x00"), long...)))
	lp := plumbing.NewHash("cccccccccccccccccccccccccccccccccccccccc")
	testutil.WriteLooseRaw(t, dir, lp.String(), testutil.PaddedZlib(append([]byte("blob 5\x00"), long...), 100))
	r := openRepo(t, dir, Options{})
	for _, h := range []plumbing.Hash{a, b, lc, lp} {
		n, err := r.ReadBlob(blobID(t, h.String()), make([]byte, 64), 0)
		wantCorrupt(t, "blob "+h.String()[:4], n, err)
	}
}

// A stored byte changed in a pack entry (only zlib's checksum can tell)
// is caught whatever the entry's size and what follows it.
func TestDamagedStoredEntry(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	sizes := []int{1 << 10}
	for i := 131040; i < 131080; i += 3 { // the checksum across the 64 KiB input buffers
		sizes = append(sizes, i)
	}
	for _, size := range sizes {
		dir := testutil.NewRepo(t)
		data := make([]byte, size)
		rng.Read(data)
		var zb bytes.Buffer
		w, _ := zlib.NewWriterLevel(&zb, zlib.NoCompression)
		w.Write(data)
		w.Close()
		z := zb.Bytes()
		z[100] ^= 0x20
		a := plumbing.NewHash("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
		b := plumbing.NewHash("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
		filler := make([]byte, size/4+4096)
		rng.Read(filler)
		installPack(t, dir, []plumbing.Hash{a, b}, [][]byte{
			append(entryHeader(packBlob, int64(size)), z...),
			blobEntry(filler),
		})
		r := openRepo(t, dir, Options{})
		n, err := r.ReadBlob(blobID(t, a.String()), make([]byte, size), 0)
		wantCorrupt(t, "damaged entry", n, err)
	}
}

// Damage met while streaming a big blob, or a big delta's bad copy, is
// ErrCorruptObject, and stays so for later reads.
func TestBigBlobDamage(t *testing.T) {
	dir := testutil.NewRepo(t)
	rng := rand.New(rand.NewSource(5))
	target := make([]byte, 3<<20)
	for i := range target {
		target[i] = byte('a' + rng.Intn(4)) // compressible: Huffman blocks
	}
	z := zlibOf(target)
	z[len(z)/2] ^= 0xff
	base := make([]byte, 1000)
	rng.Read(base)
	b := hashObject(t, dir, base)
	delta := append(deltaVarint(int64(len(base))), deltaVarint(int64(len(target)))...)
	for i := 0; i < len(target)-100; i += 127 {
		k := min(127, len(target)-100-i)
		delta = append(append(delta, byte(k)), target[i:i+k]...)
	}
	delta = append(delta, 0x93, 0xff, 0xff, 100) // copy 100 bytes from 65535: past the 1000-byte base
	x := plumbing.NewHash("1111111111111111111111111111111111111111")
	d := plumbing.NewHash("dddddddddddddddddddddddddddddddddddddddd")
	installPack(t, dir, []plumbing.Hash{x, d}, [][]byte{
		append(entryHeader(packBlob, int64(len(target))), z...),
		refDeltaEntry(b, delta),
	})
	for _, opts := range []Options{{}, {DiskCacheSize: -1}} {
		r := openRepo(t, dir, opts)
		for _, h := range []plumbing.Hash{x, d} {
			for try := 0; try < 2; try++ {
				n, err := r.ReadBlob(blobID(t, h.String()), make([]byte, 4096), int64(len(target)-4096))
				wantCorrupt(t, "big blob "+h.String()[:4], n, err)
			}
		}
	}
}

// chainPack installs a whole blob of size random bytes and n deltas on
// top of it, each a copy of its base made of copies of cp bytes, and
// returns the ids, deepest first.
func chainPack(t *testing.T, dir string, n, size, cp int) []plumbing.Hash {
	t.Helper()
	base := make([]byte, size)
	rand.New(rand.NewSource(4)).Read(base)
	ids := []plumbing.Hash{plumbing.NewHash(fmt.Sprintf("%040x", 1))}
	entries := [][]byte{blobEntry(base)}
	for i := 1; i <= n; i++ {
		delta := append(deltaVarint(int64(size)), deltaVarint(int64(size))...)
		for off := 0; off < size; off += cp {
			// copy cp bytes (< 64 KiB, a multiple of 256) from off
			delta = append(delta, 0x80|0x01|0x02|0x04|0x20, byte(off), byte(off>>8), byte(off>>16), byte(cp>>8))
		}
		ids = append(ids, plumbing.NewHash(fmt.Sprintf("%040x", i+1)))
		entries = append(entries, refDeltaEntry(ids[i-1], delta))
	}
	installPack(t, dir, ids, entries)
	return ids
}

// peakHeap runs f and samples the heap in use meanwhile.
func peakHeap(f func()) uint64 {
	var peak atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	f()
	close(stop)
	<-done
	return peak.Load()
}

// A deep delta chain costs the memory of one level, not of all: it is
// built from the bottom up.
func TestDeepDeltaChainMemory(t *testing.T) {
	for _, tc := range []struct {
		name     string
		n, size  int
		cp       int // bytes per copy: under 4 KiB, copies go through the page cache
		opts     Options
		maxHeap  uint64
		wantFail error
	}{
		{"small blobs", 300, 1 << 20, 0x2000, Options{}, 64 << 20, nil},
		{"big blobs", 100, 2 << 20, 0x800, Options{}, 64 << 20, nil},
		{"big blobs, no disk cache", maxChainUnheld - 4, 2 << 20, 0x800, Options{DiskCacheSize: -1}, 64 << 20, nil},
		{"big blobs, no disk cache, too deep", maxChainUnheld + 36, 2 << 20, 0x800, Options{DiskCacheSize: -1}, 64 << 20, errChainNoDisk},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := testutil.NewRepo(t)
			ids := chainPack(t, dir, tc.n, tc.size, tc.cp)
			want := make([]byte, tc.size)
			rand.New(rand.NewSource(4)).Read(want)
			r := openRepo(t, dir, tc.opts)
			runtime.GC()
			p := make([]byte, 4096)
			var n int
			var err error
			peak := peakHeap(func() { n, err = r.ReadBlob(blobID(t, ids[tc.n].String()), p, 12345) })
			t.Logf("%d levels of %d bytes: peak heap in use %d MiB", tc.n, tc.size, peak>>20)
			if tc.wantFail != nil {
				if !errors.Is(err, tc.wantFail) {
					t.Errorf("read: %v, want %v", err, tc.wantFail)
				}
			} else if err != nil || !bytes.Equal(p[:n], want[12345:12345+4096]) {
				t.Errorf("read: %d bytes, %v", n, err)
			}
			if peak > tc.maxHeap {
				t.Errorf("peak heap in use %d MiB, want at most %d MiB", peak>>20, tc.maxHeap>>20)
			}
		})
	}
}

// minDeepChain is the depth a chain from git must pass to count as deep
// in TestDeepChainFromGit: well past the one or two levels of a shallow
// read.
const minDeepChain = 8

// A file edited many times and repacked with deep chains (as git repack
// --depth=N writes them): every version reads as git has it, the deep
// ones through the bottom-up build.
func TestDeepChainFromGit(t *testing.T) {
	dir := testutil.NewRepo(t)
	rng := rand.New(rand.NewSource(6))
	text := make([]byte, 200<<10)
	for i := range text {
		text[i] = "abcdefgh \n"[rng.Intn(10)]
	}
	var ids []string
	for i := 0; i < 40; i++ {
		at := rng.Intn(len(text) - 100)
		copy(text[at:], fmt.Sprintf("edit %d", i))
		testutil.WriteFile(t, dir, "f.txt", text, 0o644)
		testutil.CommitAll(t, dir, fmt.Sprintf("edit %d", i))
		ids = append(ids, testutil.Git(t, dir, "rev-parse", "HEAD:f.txt"))
	}
	testutil.Git(t, dir, "repack", "-q", "-a", "-d", "-f", "--depth=100", "--window=100")
	idx, _ := filepath.Glob(filepath.Join(dir, ".git", "objects", "pack", "*.idx"))
	if len(idx) != 1 {
		t.Fatalf("packs: %v", idx)
	}
	deepest := 0
	for _, line := range strings.Split(testutil.Git(t, dir, "verify-pack", "-v", idx[0]), "\n") {
		if f := strings.Fields(line); len(f) == 7 && f[1] == "blob" {
			var d int
			fmt.Sscan(f[5], &d)
			deepest = max(deepest, d)
		}
	}
	if deepest <= minDeepChain {
		t.Fatalf("deepest chain %d: the test needs one deeper than %d", deepest, minDeepChain)
	}
	for _, opts := range []Options{{}, {CacheSize: 1 << 20}, {DiskCacheSize: -1}} {
		r := openRepo(t, dir, opts)
		for i := len(ids) - 1; i >= 0; i-- { // newest first: the deepest chains before their bases are cached
			want := testutil.GitBytes(t, dir, "cat-file", "blob", ids[i])
			got := make([]byte, len(want))
			if n, err := r.ReadBlob(blobID(t, ids[i]), got, 0); n != len(want) || !bytes.Equal(got, want) {
				t.Fatalf("%+v: version %d: %d bytes, %v", opts, i, n, err)
			}
		}
	}
}

// ofsDeltaEntry is an OFS_DELTA entry rel bytes after its base.
func ofsDeltaEntry(rel int64, delta []byte) []byte {
	e := entryHeader(packOfsDelta, int64(len(delta)))
	enc := []byte{byte(rel & 0x7f)}
	for rel >>= 7; rel != 0; rel >>= 7 {
		rel--
		enc = append([]byte{byte(0x80 | rel&0x7f)}, enc...)
	}
	return append(append(e, enc...), zlibOf(delta)...)
}

// A deep chain of big blobs with a disk cache of a few levels: the level
// just built stays for the next one up; with room for less than two it is
// refused, not reported as damage.
func TestDeepChainSmallDiskCache(t *testing.T) {
	const n, size = 100, 2 << 20
	dir := testutil.NewRepo(t)
	ids := chainPack(t, dir, n, size, 0x800)
	want := make([]byte, size)
	rand.New(rand.NewSource(4)).Read(want)
	for _, room := range []int64{1, 2, 3} {
		r := openRepo(t, dir, Options{DiskCacheSize: room*size + size/2})
		p := make([]byte, 4096)
		got, err := r.ReadBlob(blobID(t, ids[n].String()), p, 12345)
		if room < 2 {
			if !errors.Is(err, errChainNoDisk) || errors.Is(err, ErrCorruptObject) {
				t.Errorf("room for %d level: %v; want errChainNoDisk, not corrupt", room, err)
			}
			continue
		}
		if err != nil || !bytes.Equal(p[:got], want[12345:12345+4096]) {
			t.Errorf("room for %d levels: %d bytes, %v", room, got, err)
		}
	}
}

// A delta that copies nothing from its base still needs a base of the
// size it names, and of a blob: git refuses both.
func TestInsertOnlyDeltaChecksBase(t *testing.T) {
	dir := testutil.NewRepo(t)
	insert := func(baseSize int) []byte {
		d := append(deltaVarint(int64(baseSize)), deltaVarint(5)...)
		return append(d, 5, 'h', 'e', 'l', 'l', 'o')
	}
	tree := []byte("100644 a\x00" + string(make([]byte, 20)))
	treeEntry := append(entryHeader(packTree, int64(len(tree))), zlibOf(tree)...)
	missing := plumbing.NewHash("1234123412341234123412341234123412341234")
	blob := []byte("sixteen bytes!!!")
	b := plumbing.NewHash("b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0")
	tr := plumbing.NewHash("7171717171717171717171717171717171717171")
	onMissing := plumbing.NewHash("d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1")
	onTree := plumbing.NewHash("d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2")
	wrongSize := plumbing.NewHash("d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3")
	good := plumbing.NewHash("d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4")
	installPack(t, dir,
		[]plumbing.Hash{tr, onTree, b, onMissing, wrongSize, good},
		[][]byte{
			treeEntry,
			ofsDeltaEntry(int64(len(treeEntry)), insert(len(tree))),
			blobEntry(blob),
			refDeltaEntry(missing, insert(999)),
			refDeltaEntry(b, insert(999)),
			refDeltaEntry(b, insert(len(blob))),
		})
	r := openRepo(t, dir, Options{})
	for name, id := range map[string]plumbing.Hash{"missing base": onMissing, "tree base": onTree, "wrong base size": wrongSize} {
		p := make([]byte, 5)
		if n, err := r.ReadBlob(blobID(t, id.String()), p, 0); err == nil {
			t.Errorf("%s: read %q without error", name, p[:n])
		}
	}
	p := make([]byte, 5)
	if n, err := r.ReadBlob(blobID(t, good.String()), p, 0); n != 5 || string(p) != "hello" {
		t.Errorf("insert-only delta on a good base: %q, %v", p[:n], err)
	}
}

// The chain limit holds whatever order the levels were read in (depths
// are remembered per entry).
func TestDeltaChainLimitWithMemo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a pack of 8,000 deltas; skipped with -short")
	}
	dir := testutil.NewRepo(t)
	n := maxDeltaChain + 50
	base := []byte("0123456789abcdef")
	ids := []plumbing.Hash{plumbing.NewHash(fmt.Sprintf("%040x", 1))}
	entries := [][]byte{blobEntry(base)}
	delta := append(deltaVarint(16), deltaVarint(16)...)
	delta = append(delta, 0x90, 16)
	for i := 1; i <= n; i++ {
		ids = append(ids, plumbing.NewHash(fmt.Sprintf("%040x", i+1)))
		entries = append(entries, refDeltaEntry(ids[i-1], delta))
	}
	installPack(t, dir, ids, entries)
	r := openRepo(t, dir, Options{})
	p := make([]byte, 16)
	for i := 1; i <= maxDeltaChain; i++ { // bottom up: every level within the limit reads
		if _, err := r.ReadBlob(blobID(t, ids[i].String()), p, 0); err != nil {
			t.Fatalf("level %d: %v", i, err)
		}
	}
	if _, err := r.ReadBlob(blobID(t, ids[n].String()), p, 0); !errors.Is(err, errDeltaChain) {
		t.Errorf("a chain %d deep: %v, want errDeltaChain", n, err)
	}
}

// copyDelta is a delta of targetSize bytes made of the copies emitted.
func copyDelta(baseSize, targetSize int64, pieces func(emit func(off, n int))) []byte {
	d := append(deltaVarint(baseSize), deltaVarint(targetSize)...)
	pieces(func(off, n int) {
		d = append(d, 0x80|0x01|0x02|0x04|0x20, byte(off), byte(off>>8), byte(off>>16), byte(n>>8))
	})
	return d
}

// A failure to reopen a big blob's stream that comes from the moment (the
// disk cache in use by another reader) is not damage: it does not stick.
func TestTransientFailureDoesNotStick(t *testing.T) {
	dir := testutil.NewRepo(t)
	const n, size, cp = 80, 1200 << 10, 0x8000
	base := make([]byte, size)
	rand.New(rand.NewSource(4)).Read(base)
	ids := []plumbing.Hash{plumbing.NewHash(fmt.Sprintf("%040x", 1))}
	entries := [][]byte{blobEntry(base)}
	same := copyDelta(size, size, func(emit func(int, int)) {
		for off := 0; off < size; off += cp {
			emit(off, min(cp, size-off))
		}
	})
	for i := 1; i <= n; i++ {
		ids = append(ids, plumbing.NewHash(fmt.Sprintf("%040x", i+1)))
		entries = append(entries, refDeltaEntry(ids[i-1], same))
	}
	const reps = 33 // a top blob bigger than the disk cache: stream only
	top := copyDelta(size, size*reps, func(emit func(int, int)) {
		for r := 0; r < reps; r++ {
			for off := 0; off < size; off += cp {
				emit(off, min(cp, size-off))
			}
		}
	})
	T := plumbing.NewHash("eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee")
	ids = append(ids, T)
	entries = append(entries, refDeltaEntry(ids[n], top))
	installPack(t, dir, ids, entries)

	const disk = 32 << 20
	r := openRepo(t, dir, Options{DiskCacheSize: disk})
	id := blobID(t, T.String())
	p := make([]byte, 4096)
	if _, err := r.ReadBlob(id, p, 0); err != nil || !bytes.Equal(p, base[:4096]) {
		t.Fatalf("first read: %v", err)
	}
	if _, err := r.ReadBlob(id, p, 20<<20); err != nil {
		t.Fatalf("second read: %v", err)
	}
	// Another reader's spill takes the whole disk cache, and the levels
	// built go with it; a read behind the stream must reopen it.
	other := r.blobs.addSpill(&spill{id: plumbing.Hash(plumbing.NewHash("ffffffffffffffffffffffffffffffffffffffff")), size: disk})
	_, err := r.ReadBlob(id, p, 0)
	if errors.Is(err, ErrCorruptObject) {
		t.Errorf("while the disk cache is taken: %v; want an error that is not corruption", err)
	}
	r.blobs.unref(other)
	r.blobs.mu.Lock()
	for r.blobs.evictSpillLocked(true) {
	}
	r.blobs.mu.Unlock()
	if _, err := r.ReadBlob(id, p, 0); err != nil || !bytes.Equal(p, base[:4096]) {
		t.Errorf("once the disk cache is free again: %v", err)
	}
}
