package imager

import (
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
)

// SectorAlign is the boundary every image is padded to: Mirage's blkfront
// reports 4096-byte sectors and cannot read a partial last one.
const SectorAlign = 4096

// ExtentKind says where an extent's bytes come from.
type ExtentKind uint8

// Extent kinds.
const (
	ExtentData ExtentKind = iota // bytes generated while laying out (headers, tables)
	ExtentBlob                   // a range of a blob
	ExtentZero                   // zeros (padding, free space): a hole for NBD block status
	ExtentGen                    // bytes produced on demand by a Generator (large tables)
)

func (k ExtentKind) String() string {
	switch k {
	case ExtentData:
		return "data"
	case ExtentBlob:
		return "blob"
	case ExtentZero:
		return "zero"
	case ExtentGen:
		return "gen"
	}
	return "unknown"
}

// Generator produces bytes of an ExtentGen extent; off is relative to the
// extent's start. It must be deterministic and safe for concurrent use.
type Generator interface {
	ReadAt(p []byte, off int64) (int, error)
}

// Extent is a contiguous run of image bytes with one source.
type Extent struct {
	Off     int64
	Len     int64
	Kind    ExtentKind
	Desc    string    // what it holds, for `gitblk ls` and error messages
	Data    []byte    // ExtentData: exactly Len bytes
	Blob    BlobID    // ExtentBlob: which blob
	BlobOff int64     // ExtentBlob: offset in the blob of the extent's first byte
	Gen     Generator // ExtentGen
}

// Sentinel errors.
var (
	ErrShortBlob = errors.New("imager: blob shorter than its listed size")
	ErrNegative  = errors.New("imager: negative offset")
)

// Layout is an immutable image: a sorted, contiguous extent table. It is
// safe for concurrent use and can be shared by every reader of one image.
type Layout struct {
	extents []Extent
	size    int64
	blobs   BlobReader
	runs    []run // alternating zero / data runs, for ExtentAt
}

// run is a maximal stretch of zero or of non-zero extents.
type run struct {
	off  int64
	zero bool
}

var _ Image = (*Layout)(nil)

// Size is the image size in bytes, a multiple of SectorAlign.
func (l *Layout) Size() int64 { return l.size }

// Extents returns the extent table (shared: do not modify).
func (l *Layout) Extents() []Extent { return l.extents }

// find returns the index of the extent holding off (0 <= off < size).
func (l *Layout) find(off int64) int {
	return sort.Search(len(l.extents), func(i int) bool {
		e := &l.extents[i]
		return e.Off+e.Len > off
	})
}

// ReadAt reads image bytes as io.ReaderAt does. An error reading a blob
// names the extent (path) and the blob id.
func (l *Layout) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, ErrNegative
	}
	if off >= l.size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	want := len(p)
	if rest := l.size - off; int64(want) > rest {
		want = int(rest)
	}
	n := 0
	for i := l.find(off); n < want; i++ {
		e := &l.extents[i]
		rel := off - e.Off
		chunk := p[n:want]
		if int64(len(chunk)) > e.Len-rel {
			chunk = chunk[:e.Len-rel]
		}
		if err := e.read(l.blobs, chunk, rel); err != nil {
			return n, err
		}
		n += len(chunk)
		off += int64(len(chunk))
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// read fills p with the extent's bytes starting at rel.
func (e *Extent) read(blobs BlobReader, p []byte, rel int64) error {
	switch e.Kind {
	case ExtentData:
		copy(p, e.Data[rel:])
	case ExtentZero:
		clear(p)
	case ExtentGen:
		if _, err := readFull(e.Gen.ReadAt, p, rel); err != nil {
			return fmt.Errorf("imager: %s: %w", e.Desc, err)
		}
	case ExtentBlob:
		if _, err := readFull(func(q []byte, o int64) (int, error) {
			return blobs.ReadBlob(e.Blob, q, o)
		}, p, e.BlobOff+rel); err != nil {
			return fmt.Errorf("imager: %s (blob %s): %w", e.Desc, e.Blob, err)
		}
	default:
		return fmt.Errorf("imager: %s: unknown extent kind %d", e.Desc, e.Kind)
	}
	return nil
}

// readFull calls readAt until p is full; a short read is ErrShortBlob.
func readFull(readAt func([]byte, int64) (int, error), p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		m, err := readAt(p[n:], off+int64(n))
		n += m
		if n == len(p) {
			return n, nil
		}
		if err == io.EOF || (err == nil && m == 0) {
			return n, ErrShortBlob
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// ExtentAt describes the run of bytes starting at off: its length up to the
// next change between zeros and data (adjacent extents of the same class
// merged) and whether it is all zeros. It is what NBD block status reports.
// Past the end it returns (0, false).
func (l *Layout) ExtentAt(off int64) (n int64, zero bool) {
	if off < 0 || off >= l.size {
		return 0, false
	}
	i := sort.Search(len(l.runs), func(i int) bool { return l.runs[i].off > off }) - 1
	end := l.size
	if i+1 < len(l.runs) {
		end = l.runs[i+1].off
	}
	return end - off, l.runs[i].zero
}

// makeRuns indexes the zero / data runs of the extent table.
func makeRuns(extents []Extent) []run {
	var runs []run
	for i := range extents {
		zero := extents[i].Kind == ExtentZero
		if len(runs) == 0 || runs[len(runs)-1].zero != zero {
			runs = append(runs, run{off: extents[i].Off, zero: zero})
		}
	}
	return runs
}

// Builder appends extents in order to make a Layout. Its invariants
// (contiguous, sorted, non-empty extents) hold by construction.
type Builder struct {
	extents []Extent
	pos     int64
	err     error // first overflow; the Layout is then not to be used
}

// ErrTooLarge reports an image whose size does not fit an int64 (sizes
// come from object headers, which a corrupt repository can inflate).
var ErrTooLarge = errors.New("imager: image larger than 8 EiB")

// Err reports whether the extents appended so far overflowed the image
// size; builders check it before returning a Layout.
func (b *Builder) Err() error { return b.err }

// Grow makes room for n more extents, to spare regrowing the table.
func (b *Builder) Grow(n int) { b.extents = slices.Grow(b.extents, n) }

// Pos is the offset the next extent starts at.
func (b *Builder) Pos() int64 { return b.pos }

func (b *Builder) add(e Extent) {
	if e.Len <= 0 || b.err != nil {
		return
	}
	if e.Len > math.MaxInt64-SectorAlign-b.pos {
		b.err = fmt.Errorf("%w: at %s", ErrTooLarge, e.Desc)
		return
	}
	e.Off = b.pos
	// Merge zeros with zeros, so holes are reported whole.
	if n := len(b.extents); n > 0 && e.Kind == ExtentZero && b.extents[n-1].Kind == ExtentZero {
		b.extents[n-1].Len += e.Len
	} else {
		b.extents = append(b.extents, e)
	}
	b.pos += e.Len
}

// Data appends generated bytes (kept by reference: do not modify p later).
func (b *Builder) Data(desc string, p []byte) {
	b.add(Extent{Len: int64(len(p)), Kind: ExtentData, Desc: desc, Data: p})
}

// Blob appends n bytes of blob id starting at blobOff.
func (b *Builder) Blob(desc string, id BlobID, blobOff, n int64) {
	b.add(Extent{Len: n, Kind: ExtentBlob, Desc: desc, Blob: id, BlobOff: blobOff})
}

// Zeros appends n zero bytes.
func (b *Builder) Zeros(desc string, n int64) {
	b.add(Extent{Len: n, Kind: ExtentZero, Desc: desc})
}

// Gen appends n bytes produced by g.
func (b *Builder) Gen(desc string, g Generator, n int64) {
	b.add(Extent{Len: n, Kind: ExtentGen, Desc: desc, Gen: g})
}

// PadTo appends zeros up to the next multiple of align (a power of two or
// any positive number).
func (b *Builder) PadTo(desc string, align int64) {
	if r := b.pos % align; r != 0 {
		b.Zeros(desc, align-r)
	}
}

// Layout finishes the image: zeros up to a multiple of SectorAlign, then
// the immutable Layout reading blobs through blobs.
func (b *Builder) Layout(blobs BlobReader) *Layout {
	b.PadTo("padding to 4 KiB", SectorAlign)
	l := &Layout{extents: b.extents, size: b.pos, blobs: blobs, runs: makeRuns(b.extents)}
	b.extents = nil
	return l
}
