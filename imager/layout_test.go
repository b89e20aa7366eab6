package imager

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/gitblk/gitblk/internal/testutil"
)

// genBytes is a Generator whose byte at off is a function of off.
type genBytes struct{ seed byte }

func (g genBytes) at(off int64) byte { return byte(off*7) ^ g.seed }

func (g genBytes) ReadAt(p []byte, off int64) (int, error) {
	for i := range p {
		p[i] = g.at(off + int64(i))
	}
	return len(p), nil
}

// mixedLayout builds a Layout of every extent kind, with extents of sizes
// 1 to a few thousand bytes, and the image bytes computed independently of
// Layout.ReadAt.
func mixedLayout(t *testing.T, seed int64) (*Layout, []byte) {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	blobs := memBlobs{}
	var b Builder
	var want []byte
	sizes := []int{1, 2, 511, 512, 513, 4095, 4096, 4097, 3000}
	for i := 0; i < 60; i++ {
		n := sizes[rng.Intn(len(sizes))]
		switch rng.Intn(4) {
		case 0:
			p := make([]byte, n)
			rng.Read(p)
			b.Data("data", p)
			want = append(want, p...)
		case 1:
			p := make([]byte, n+100)
			rng.Read(p)
			id := gitObjectID("blob", p)
			blobs[id] = p
			off := rng.Intn(100)
			b.Blob("blob", id, int64(off), int64(n))
			want = append(want, p[off:off+n]...)
		case 2:
			b.Zeros("zeros", int64(n))
			want = append(want, make([]byte, n)...)
		case 3:
			g := genBytes{seed: byte(i)}
			b.Gen("gen", g, int64(n))
			for j := 0; j < n; j++ {
				want = append(want, g.at(int64(j)))
			}
		}
	}
	l := b.Layout(blobs)
	if pad := int(l.Size()) - len(want); pad < 0 || pad >= SectorAlign {
		t.Fatalf("size %d for %d bytes of extents", l.Size(), len(want))
	}
	want = append(want, make([]byte, int(l.Size())-len(want))...)
	return l, want
}

func TestLayoutReadAtAcrossBoundaries(t *testing.T) {
	l, want := mixedLayout(t, 1)
	if l.Size()%SectorAlign != 0 {
		t.Fatalf("size %d is not a multiple of %d", l.Size(), SectorAlign)
	}
	check := func(off int64, n int) {
		t.Helper()
		p := make([]byte, n)
		got, err := l.ReadAt(p, off)
		wantN := int(max(0, min(int64(n), l.Size()-off)))
		if got != wantN || !bytes.Equal(p[:got], want[off:off+int64(got)]) {
			t.Fatalf("ReadAt(%d bytes at %d) = %d, %v: wrong bytes or count (want %d)", n, off, got, err, wantN)
		}
		if (wantN < n) != (err == io.EOF) || (err != nil && err != io.EOF) {
			t.Fatalf("ReadAt(%d bytes at %d) = %d, %v", n, off, got, err)
		}
	}
	// Every extent boundary, approached from both sides, with lengths
	// that stay inside, reach and cross it and its neighbours.
	for e := range l.Extents() {
		for _, d := range []int64{-3, -1, 0, 1, 2} {
			off := e.Off + d
			if off < 0 || off >= l.Size() {
				continue
			}
			for _, n := range []int{1, 2, 3, 512, 4097, 10000} {
				check(off, n)
			}
		}
	}
	rng := rand.New(rand.NewSource(2))
	for i := 0; i < 2000; i++ {
		check(rng.Int63n(l.Size()), 1+rng.Intn(20000))
	}
	// The whole image in one read, and reads at and past the end.
	check(0, int(l.Size()))
	check(l.Size()-1, 2)
	if n, err := l.ReadAt(make([]byte, 1), l.Size()); n != 0 || err != io.EOF {
		t.Errorf("ReadAt at the end = %d, %v; want 0, EOF", n, err)
	}
	if n, err := l.ReadAt(nil, l.Size()); n != 0 || err != nil {
		t.Errorf("empty ReadAt at the end = %d, %v; want 0, nil", n, err)
	}
	if _, err := l.ReadAt(make([]byte, 1), -1); !errors.Is(err, ErrNegative) {
		t.Errorf("ReadAt(-1) = %v, want ErrNegative", err)
	}
}

func TestLayoutIOTest(t *testing.T) {
	l, want := mixedLayout(t, 3)
	if err := iotest.TestReader(io.NewSectionReader(l, 0, l.Size()), want); err != nil {
		t.Fatal(err)
	}
	// And a real tar image through the same reader checks.
	files := randomFiles(rand.New(rand.NewSource(4)), 50)
	tree, blobs := memTree(t, files, "0123456789abcdef0123456789abcdef01234567", testTime)
	tl, _, err := BuildTar(tree, blobs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	img := readImage(t, tl)
	if err := iotest.TestReader(io.NewSectionReader(tl, 0, tl.Size()), img); err != nil {
		t.Fatal(err)
	}
}

func TestLayoutConcurrentReads(t *testing.T) {
	l, want := mixedLayout(t, 5)
	read := func(_ string, p []byte, off int64) (int, error) { return l.ReadAt(p, off) }
	testutil.ReadConcurrently(t, read, []string{"layout"}, map[string][]byte{"layout": want}, 8, 300, nil)
}

func TestLayoutExtentAt(t *testing.T) {
	id := gitObjectID("blob", []byte("0123456789"))
	blobs := memBlobs{id: []byte("0123456789")}
	var b Builder
	b.Zeros("z1", 100)
	b.Zeros("z2", 50) // merged with z1
	b.Data("d", []byte("abc"))
	b.Blob("b", id, 2, 5) // data and blob: one non-zero run
	b.Gen("g", genBytes{}, 7)
	b.Zeros("z3", 10)
	b.Data("d2", []byte("x"))
	l := b.Layout(blobs) // zeros to 4096, after d2
	if n := countExtents(l); n != 7 {
		t.Errorf("%d extents, want 7 (z1+z2 merged, padding separate)", n)
	}
	cases := []struct {
		off  int64
		n    int64
		zero bool
	}{
		{0, 150, true},
		{149, 1, true},
		{150, 15, false}, // abc, 5 blob bytes, 7 generated
		{160, 5, false},
		{165, 10, true},
		{175, 1, false},
		{176, 4096 - 176, true},
		{4095, 1, true},
		{4096, 0, false}, // past the end
		{-1, 0, false},
	}
	for _, c := range cases {
		if n, zero := l.ExtentAt(c.off); n != c.n || zero != c.zero {
			t.Errorf("ExtentAt(%d) = %d, %v; want %d, %v", c.off, n, zero, c.n, c.zero)
		}
	}
	// The runs tile the image.
	for off := int64(0); off < l.Size(); {
		n, _ := l.ExtentAt(off)
		if n <= 0 {
			t.Fatalf("ExtentAt(%d) = %d", off, n)
		}
		off += n
	}
}

// errBlobs fails every read with errDisk.
type errBlobs struct{}

var errDisk = errors.New("disk on fire")

func (errBlobs) ReadBlob(BlobID, []byte, int64) (int, error) { return 0, errDisk }

func TestLayoutBlobErrors(t *testing.T) {
	content := []byte(strings.Repeat("z", 1000))
	tree, blobs := memTree(t, []memFile{{Path: "dir/file.bin", Kind: KindFile, Data: content}}, "", testTime)
	id := tree.Entries[1].Blob
	l, _, err := BuildTar(tree, errBlobs{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, l.Size())
	n, err := l.ReadAt(p, 0)
	if !errors.Is(err, errDisk) || !strings.Contains(err.Error(), "dir/file.bin") || !strings.Contains(err.Error(), id.String()) {
		t.Errorf("ReadAt = %d, %v; want the reader's error naming dir/file.bin and %s", n, err, id)
	}
	if n != 2*tarBlockSize { // the two headers before the content
		t.Errorf("ReadAt returned %d bytes before the error, want %d", n, 2*tarBlockSize)
	}

	// A blob shorter than its listed size: ErrShortBlob, at every
	// truncation point.
	for _, keep := range []int{0, 1, 511, 512, 999} {
		short := memBlobs{id: blobs[id][:keep]}
		l, _, err := BuildTar(tree, short, Options{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = l.ReadAt(make([]byte, l.Size()), 0)
		if !errors.Is(err, ErrShortBlob) || !strings.Contains(err.Error(), "dir/file.bin") {
			t.Errorf("blob cut to %d bytes: %v; want ErrShortBlob naming the path", keep, err)
		}
		// Bytes before the missing part still read.
		if keep > 0 {
			p := make([]byte, keep)
			if _, err := l.ReadAt(p, 2*tarBlockSize); err != nil || !bytes.Equal(p, content[:keep]) {
				t.Errorf("blob cut to %d bytes: reading the part that exists: %v", keep, err)
			}
		}
	}
}

func TestLayoutSizeMultipleOf4096(t *testing.T) {
	for n := int64(0); n < 3*SectorAlign; n += 511 {
		var b Builder
		b.Data("d", make([]byte, n%700+1))
		b.Zeros("z", n)
		l := b.Layout(memBlobs{})
		if l.Size()%SectorAlign != 0 || l.Size() < n || l.Size()-(n+n%700+1) >= SectorAlign {
			t.Errorf("%d bytes: image size %d", n+n%700+1, l.Size())
		}
	}
	if l := (&Builder{}).Layout(memBlobs{}); l.Size() != 0 {
		t.Errorf("empty layout has size %d", l.Size())
	}
}

// TestTarSizeOverflow: sizes that add up past int64 (a corrupt repository's
// headers can claim anything) are an error, never a wrapped-around layout.
func TestTarSizeOverflow(t *testing.T) {
	tree := &Tree{Time: time.Unix(0, 0)}
	for i := 0; i < 4; i++ {
		tree.Entries = append(tree.Entries, Entry{Path: fmt.Sprintf("f%d", i), Kind: KindFile, Size: 1 << 62})
	}
	if l, _, err := BuildTar(tree, nil, Options{}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("BuildTar of 16 EiB: layout %v, err %v; want ErrTooLarge", l, err)
	}
}

// checkTable checks a layout against its own extent table: the extents
// tile the image in order, no two zero extents are adjacent (they are
// merged), ExtentAt at and around every boundary reports the run the table
// implies, and ReadAt across every boundary returns the bytes of a read of
// the whole image. It is the cross-check of the on-demand members (tar
// entries, FAT directories and files) against the regions they describe.
func checkTable(t *testing.T, l *Layout) {
	t.Helper()
	img := readImage(t, l)
	var exts []Extent
	for e := range l.Extents() {
		exts = append(exts, e)
	}
	var pos int64
	for i, e := range exts {
		if e.Off != pos || e.Len <= 0 {
			t.Fatalf("extent %d (%s) at %d, %d bytes: want contiguous from %d", i, e.Desc, e.Off, e.Len, pos)
		}
		if i > 0 && e.Kind == ExtentZero && exts[i-1].Kind == ExtentZero {
			t.Fatalf("extents %d and %d both zeros (%s, %s): not merged", i-1, i, exts[i-1].Desc, e.Desc)
		}
		if e.Kind == ExtentZero && !bytes.Equal(img[e.Off:e.Off+e.Len], make([]byte, e.Len)) {
			t.Fatalf("zero extent %d (%s) reads non-zero bytes", i, e.Desc)
		}
		pos += e.Len
	}
	if pos != l.Size() {
		t.Fatalf("extents end at %d, image size %d", pos, l.Size())
	}
	// runEnd is where the zero or data run holding extent i ends.
	runEnd := func(i int) int64 {
		zero := exts[i].Kind == ExtentZero
		for i < len(exts) && (exts[i].Kind == ExtentZero) == zero {
			i++
		}
		if i == len(exts) {
			return l.Size()
		}
		return exts[i].Off
	}
	for i, e := range exts {
		for _, off := range []int64{e.Off, e.Off + 1, e.Off + e.Len/2, e.Off + e.Len - 1} {
			if off >= e.Off+e.Len {
				continue
			}
			if n, zero := l.ExtentAt(off); n != runEnd(i)-off || zero != (e.Kind == ExtentZero) {
				t.Fatalf("ExtentAt(%d) in extent %d (%s) = %d, %v; want %d, %v", off, i, e.Desc, n, zero, runEnd(i)-off, e.Kind == ExtentZero)
			}
		}
		readsAcross(t, l, img, e, 1500)
	}
}

// TestLayoutMembersTable runs checkTable on tar and FAT layouts of random
// trees, and of trees whose files all fill whole blocks or clusters (long
// data runs across members without zeros, which ExtentAt skips through).
func TestLayoutMembersTable(t *testing.T) {
	for seed := int64(1); seed <= 4; seed++ {
		files := randomFiles(rand.New(rand.NewSource(seed)), 120)
		tree, blobs := memTree(t, files, "0123456789abcdef0123456789abcdef01234567", testTime)
		for _, opts := range []Options{{}, {Symlinks: SymlinksFollow}} {
			l, _, err := BuildTar(tree, blobs, opts)
			if err != nil {
				t.Fatal(err)
			}
			checkTable(t, l)
		}
		fs := fatSafeFiles(files)
		ftree, fblobs := memTree(t, fs, "0123456789abcdef0123456789abcdef01234567", testTime)
		for _, opts := range []Options{{}, {FATType: 32, SectorSize: 4096}} {
			l, _, err := BuildFAT(ftree, fblobs, opts)
			if err != nil {
				t.Fatal(err)
			}
			checkTable(t, l)
		}
	}
	var full []memFile
	for i := 0; i < 300; i++ {
		full = append(full, memFile{Path: fmt.Sprintf("d%d/f%03d", i%3, i), Kind: KindFile, Data: bytes.Repeat([]byte{byte(i)}, 512*(1+i%3))})
		if i%50 == 0 {
			full = append(full, memFile{Path: fmt.Sprintf("d%d/empty%03d", i%3, i), Kind: KindFile})
		}
	}
	tree, blobs := memTree(t, full, "", testTime)
	l, _, err := BuildTar(tree, blobs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	checkTable(t, l)
	if n, zero := l.ExtentAt(0); zero || n < 300*512 {
		t.Errorf("tar of whole-block files: ExtentAt(0) = %d, %v; want one data run over every member", n, zero)
	}
}

// TestLayoutMemoryPerFile bounds what a layout keeps per file, measured as
// the heap still allocated after a GC once the tree is dropped: the
// layouts of a tree shaped as issue 12's (directories of subdirectories of
// small files) must keep a few dozen bytes per file, not a header and
// extents (they kept over a kilobyte before they became tables).
func TestLayoutMemoryPerFile(t *testing.T) {
	const dirs, subs, files = 60, 10, 50
	build := func(opts Options) *Layout {
		tr := &Tree{CommitID: "0123456789abcdef0123456789abcdef01234567", Time: testTime}
		for d := 0; d < dirs; d++ {
			tr.Entries = append(tr.Entries, Entry{Path: fmt.Sprintf("d%03d", d), Kind: KindDir})
			for s := 0; s < subs; s++ {
				tr.Entries = append(tr.Entries, Entry{Path: fmt.Sprintf("d%03d/s%d", d, s), Kind: KindDir})
				for f := 0; f < files; f++ {
					var id BlobID
					id[0], id[1], id[2] = byte(d), byte(s), byte(f)
					tr.Entries = append(tr.Entries, Entry{Path: fmt.Sprintf("d%03d/s%d/f%02d.txt", d, s, f), Kind: KindFile, Size: 25, Blob: id})
				}
			}
		}
		l, _, err := Build(tr, nil, opts)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	for _, c := range []struct {
		opts   Options
		maxPer float64
	}{
		{Options{Format: FormatTar}, 80},
		{Options{Format: FormatFAT}, 100},
	} {
		h0 := heap()
		l := build(c.opts)
		h1 := heap()
		per := (float64(h1) - float64(h0)) / (dirs * subs * files)
		t.Logf("%s: %.0f bytes per file", c.opts.Format, per)
		if per > c.maxPer {
			t.Errorf("%s layout keeps %.0f bytes per file, want at most %.0f", c.opts.Format, per, c.maxPer)
		}
		runtime.KeepAlive(l)
	}
}

// fakeMembers is a memberTable of n members, member i being i+1 generated
// bytes of value i, then i%3 zeros.
type fakeMembers int

func (fakeMembers) pieces(i int) (ps pieces) {
	ps.add(piece{len: int64(i + 1), kind: ExtentData})
	if i%3 > 0 {
		ps.add(piece{len: int64(i % 3), kind: ExtentZero, part: 1})
	}
	return ps
}

func (fakeMembers) gen(i int, _ uint8, p []byte, _ int64) {
	for k := range p {
		p[k] = byte(i)
	}
}

func (fakeMembers) blob(int) BlobID               { return BlobID{} }
func (fakeMembers) hint(int) uint64               { return 0 }
func (fakeMembers) desc(i int, part uint8) string { return fmt.Sprintf("m%d.%d", i, part) }

// TestLayoutMembersAroundPlain: members between plain extents, none at
// all, and tails of several extents (zeros merged across the boundary with
// the members) read and report runs as their table says.
func TestLayoutMembersAroundPlain(t *testing.T) {
	for _, n := range []int{0, 1, 2, 7, 200} {
		var b Builder
		b.Data("head", []byte("HEAD"))
		b.Zeros("head zeros", 5)
		b.members(fakeMembers(n), n)
		b.Zeros("tail zeros", 3)
		b.Data("tail", []byte("TAIL"))
		b.Zeros("tail zeros 2", 2)
		b.Data("tail 2", []byte("T2"))
		l := b.Layout(memBlobs{})
		if err := b.Err(); err != nil {
			t.Fatal(err)
		}
		var want []byte
		want = append(want, "HEAD"...)
		want = append(want, make([]byte, 5)...)
		for i := 0; i < n; i++ {
			want = append(want, bytes.Repeat([]byte{byte(i)}, i+1)...)
			want = append(want, make([]byte, i%3)...)
		}
		want = append(want, make([]byte, 3)...)
		want = append(want, "TAIL"...)
		want = append(want, 0, 0)
		want = append(want, "T2"...)
		want = append(want, make([]byte, int(l.Size())-len(want))...)
		if got := readImage(t, l); !bytes.Equal(got, want) {
			t.Fatalf("%d members: image differs:\n got %v\nwant %v", n, got, want)
		}
		checkTable(t, l)
	}
}

// badMembers is a memberTable whose member 1 breaks the pieces' rules:
// too many pieces, an empty one, or two zeros in a row.
type badMembers struct {
	fakeMembers
	bad func(ps *pieces)
}

func (m badMembers) pieces(i int) pieces {
	ps := m.fakeMembers.pieces(i)
	if i == 1 {
		m.bad(&ps)
	}
	return ps
}

// TestLayoutMembersBadPieces: a table breaking the pieces' rules makes
// the Builder fail, naming the member, instead of laying out bad extents.
func TestLayoutMembersBadPieces(t *testing.T) {
	for name, bad := range map[string]func(ps *pieces){
		"too many": func(ps *pieces) {
			for ps.n <= maxPieces {
				ps.add(piece{len: 1, kind: ExtentData})
			}
		},
		"empty":     func(ps *pieces) { ps.add(piece{len: 0, kind: ExtentData}) },
		"two zeros": func(ps *pieces) { ps.add(piece{len: 1, kind: ExtentZero}); ps.add(piece{len: 1, kind: ExtentZero}) },
	} {
		var b Builder
		b.members(badMembers{fakeMembers(3), bad}, 3)
		if b.err == nil || !strings.Contains(b.err.Error(), "member 1") {
			t.Errorf("%s: err %v, want one naming member 1", name, b.err)
		}
	}
}
