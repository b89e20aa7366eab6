package odb

import (
	"errors"
	"fmt"
	"io"

	"github.com/gitblk/gitblk/internal/inflate"
	"github.com/go-git/go-git/v5/plumbing"
)

// Deltified blobs are rebuilt here rather than by go-git. go-git's
// streaming delta reader rereads its base from the start (copying through
// a bufio.Reader) whenever a copy instruction points backwards, which is
// quadratic in the blob's size. Here the delta instructions are read in
// order and every copy is served from the base through the caches, which
// serve it at random (a big base is spilled once); see deltaReader. The
// instruction format is git's (Documentation/gitformat-pack.txt,
// "Deltified representation"; patch-delta.c).
const (
	deltaBufSize = 64 << 10
	deltaCopyMax = 0x10000 // a copy instruction of size 0 means this
	basePage     = 4 << 10
	basePages    = 128
)

// deltaReader applies a git delta: instructions stream from zr, copies
// read the base blob through ReadBlob. Copies are often a few bytes, so
// they are served from a window of the base: the base's bytes in the
// memory cache when it is there (a small base is put back there), else
// cached pages of the base, not a pread per copy.
type deltaReader struct {
	db       *Store
	base     plumbing.Hash
	baseSize int64
	src      deltaSource    // the delta's data, inflated
	zr       inflate.Reader // streamed delta data, or nil
	buf      *[]byte        // or delta data inflated whole (from getBuf)

	win    []byte // bytes of the base from winOff; shared with the cache: never written
	winOff int64
	pages  []byte  // a big base: basePages pages of it, direct-mapped
	pageOf []int64 // which page each slot holds, or -1

	baseOK   bool  // the base was found to be baseSize bytes
	ended    bool  // the end of the delta data was checked
	left     int64 // target bytes still to produce
	copyOff  int64 // current copy instruction: base offset
	copyLeft int64 // and bytes left of it
	insLeft  int64 // current insert instruction: bytes left
}

var errBadDelta = errors.New("malformed delta")

func (d *deltaReader) varint() (int64, error) {
	var v int64
	for shift := uint(0); shift <= 56; shift += 7 {
		c, err := d.src.ReadByte()
		if err != nil {
			return 0, err
		}
		v |= int64(c&0x7f) << shift
		if c&0x80 == 0 {
			return v, nil
		}
	}
	return 0, errBadDelta
}

func (d *deltaReader) Read(p []byte) (int, error) {
	if d.src == nil {
		return 0, errors.New("delta reader is closed")
	}
	n := 0
	for n < len(p) {
		switch {
		case d.copyLeft > 0:
			k := min(int64(len(p)-n), d.copyLeft)
			got, err := d.readBase(p[n:n+int(k)], d.copyOff)
			n += got
			d.copyOff += int64(got)
			d.copyLeft -= int64(got)
			if int64(got) < k {
				if err == nil || errors.Is(err, io.EOF) {
					err = fmt.Errorf("delta base %s: %w", d.base, errBadDelta)
				}
				return n, err
			}
		case d.insLeft > 0:
			k := min(int64(len(p)-n), d.insLeft)
			got, err := io.ReadFull(d.src, p[n:n+int(k)])
			n += got
			d.insLeft -= int64(got)
			if err != nil {
				return n, deltaDataErr(err)
			}
		case d.left == 0:
			if !d.ended {
				// A delta that copied nothing still needs its base.
				if err := d.checkBase(); err != nil {
					return n, err
				}
				// Nothing may follow the last instruction; reading on
				// also has zlib check the stream's checksum.
				if _, err := d.src.ReadByte(); err == nil {
					return n, fmt.Errorf("%w: data after the delta's end", errBadDelta)
				} else if !errors.Is(err, io.EOF) {
					return n, deltaDataErr(err)
				}
				d.ended = true
			}
			if n > 0 {
				return n, nil
			}
			return 0, io.EOF
		default:
			if err := d.next(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// checkBase checks once that the base is baseSize bytes, as the delta's
// header says. A delta that lies about its base is corrupt (git: "delta
// base size mismatch"), and trusting it would put a cut-down copy of the
// base in the memory cache.
func (d *deltaReader) checkBase() error {
	if d.baseOK {
		return nil
	}
	if data, ok := d.db.blobs.getMem(d.base); ok && int64(len(data)) == d.baseSize {
		d.baseOK = true // held blobs are exactly their size
		return nil
	}
	size, err := d.db.headerSize(plumbing.Hash(d.base))
	if err != nil {
		// Not found by headers: ask ReadBlob where the base ends.
		var b [1]byte
		n, err := d.db.ReadBlob(d.base, b[:], max(d.baseSize-1, 0))
		switch {
		case d.baseSize == 0 && n == 0 && errors.Is(err, io.EOF):
			size = 0
		case n == 1:
			if n, _ := d.db.ReadBlob(d.base, b[:], d.baseSize); n == 0 {
				size = d.baseSize
			} else {
				size = -1 // longer
			}
		case err != nil && !errors.Is(err, io.EOF):
			return fmt.Errorf("delta base %s: %w", d.base, err)
		default:
			size = -1 // shorter
		}
	}
	if size != d.baseSize {
		return fmt.Errorf("%w: its base %s is not the %d bytes it says", errBadDelta, d.base, d.baseSize)
	}
	d.baseOK = true
	return nil
}

// readBase reads the base's bytes at off into p, through the window.
func (d *deltaReader) readBase(p []byte, off int64) (int, error) {
	if off >= d.winOff && off+int64(len(p)) <= d.winOff+int64(len(d.win)) {
		return copy(p, d.win[off-d.winOff:]), nil
	}
	if err := d.checkBase(); err != nil {
		return 0, err
	}
	c := d.db.blobs
	if data, ok := c.getMem(d.base); ok && int64(len(data)) == d.baseSize {
		d.win, d.winOff = data, 0
		return copy(p, data[off:]), nil
	}
	if d.baseSize <= c.smallMax {
		data, err := d.smallBase()
		if err != nil {
			return 0, err
		}
		d.win, d.winOff = data, 0
		return copy(p, data[off:]), nil
	}
	return d.readBigBase(p, off)
}

// readWhole builds the whole target of a delta whose data was inflated
// whole (d.buf) over a small base, with applyDelta: a loop over the
// instructions' bytes and the base's, where Read takes each instruction
// through interfaces and its window, which cost a small blob more than
// inflating it. ok is false, and nothing is read, when the delta is not
// such a one (Read serves it).
func (d *deltaReader) readWhole() (data []byte, ok bool, err error) {
	c := d.db.blobs
	if d.buf == nil || d.baseSize > c.smallMax || d.left > c.smallMax {
		return nil, false, nil
	}
	if err := d.checkBase(); err != nil {
		return nil, true, err
	}
	base, held := c.getMem(d.base)
	if !held || int64(len(base)) != d.baseSize {
		if base, err = d.smallBase(); err != nil {
			return nil, true, err
		}
	}
	data, _, err = applyDelta(base, *d.buf, d.left, blobBytes(d.left))
	return data, true, err
}

// smallBase reads a small base whole, once, and holds it in memory again:
// copies jump all over it, and other deltas share it.
func (d *deltaReader) smallBase() ([]byte, error) {
	data := blobBytes(d.baseSize)
	if n, err := d.db.ReadBlob(d.base, data, 0); int64(n) < d.baseSize {
		if err == nil || errors.Is(err, io.EOF) {
			err = fmt.Errorf("delta base %s: %w", d.base, errBadDelta)
		}
		return nil, err
	}
	d.db.blobs.putMem(d.base, data)
	return data, nil
}

// readBigBase serves copies from a base too big to hold: through a small
// direct-mapped cache of its pages, since copies are often a few bytes,
// often near each other, and sometimes anywhere in the base, which one
// sliding window would keep missing.
func (d *deltaReader) readBigBase(p []byte, off int64) (int, error) {
	if len(p) >= basePage {
		return d.db.ReadBlob(d.base, p, off)
	}
	if d.pages == nil {
		slots := int(max(1, min(basePages, (d.baseSize+basePage-1)/basePage)))
		d.pages = make([]byte, slots*basePage)
		d.pageOf = make([]int64, slots)
		for i := range d.pageOf {
			d.pageOf[i] = -1
		}
	}
	n := 0
	for n < len(p) {
		at := off + int64(n)
		page := at / basePage
		slot := int(page % int64(len(d.pageOf)))
		buf := d.pages[slot*basePage : (slot+1)*basePage]
		if d.pageOf[slot] != page {
			d.pageOf[slot] = -1
			want := min(basePage, d.baseSize-page*basePage)
			got, err := d.db.ReadBlob(d.base, buf[:want], page*basePage)
			if int64(got) < want {
				if err == nil || errors.Is(err, io.EOF) {
					err = fmt.Errorf("delta base %s: %w", d.base, errBadDelta)
				}
				return n, err
			}
			d.pageOf[slot] = page
		}
		n += copy(p[n:], buf[at-page*basePage:])
	}
	return n, nil
}

// deltaDataErr classifies an error reading the delta data: its end
// before the instructions are done is a malformed delta; anything else
// (a pack file closed under us, damaged zlib data) is kept as it is.
func deltaDataErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: delta data ends early", errBadDelta)
	}
	return fmt.Errorf("delta data: %w", err)
}

// next reads the next instruction.
func (d *deltaReader) next() error {
	cmd, err := d.src.ReadByte()
	if err != nil {
		return deltaDataErr(err)
	}
	if cmd&0x80 == 0 {
		if cmd == 0 || int64(cmd) > d.left {
			return errBadDelta
		}
		d.insLeft = int64(cmd)
		d.left -= d.insLeft
		return nil
	}
	// A copy: bits 0-3 of cmd say which bytes of the base offset follow,
	// bits 4-6 which bytes of the size (git's patch-delta.c).
	off, err := d.copyField(cmd, 4)
	if err != nil {
		return err
	}
	size, err := d.copyField(cmd>>4, 3)
	if err != nil {
		return err
	}
	if size == 0 {
		size = deltaCopyMax
	}
	if size > d.left || off+size > d.baseSize {
		return errBadDelta
	}
	d.copyOff, d.copyLeft = off, size
	d.left -= size
	return nil
}

// copyField reads a copy instruction's little-endian field of up to n
// bytes, byte i present when bit i of present is set.
func (d *deltaReader) copyField(present byte, n uint) (int64, error) {
	var v int64
	for i := uint(0); i < n; i++ {
		if present&(1<<i) != 0 {
			c, err := d.src.ReadByte()
			if err != nil {
				return 0, deltaDataErr(err)
			}
			v |= int64(c) << (8 * i)
		}
	}
	return v, nil
}

// deltaSource is what delta instructions are read from.
type deltaSource interface {
	io.Reader
	io.ByteReader
}

func (d *deltaReader) Close() error {
	if d.zr != nil {
		_ = d.zr.Close()
		d.zr = nil
	}
	if d.buf != nil {
		putBuf(d.buf)
		d.buf = nil
	}
	d.src = nil
	return nil
}

var _ io.ReadCloser = (*deltaReader)(nil)
