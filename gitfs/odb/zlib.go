package odb

import (
	"bufio"
	"bytes"
	"compress/flate"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
)

// Inflating is most of the CPU time of a first read (70% of the server's
// CPU when reading the Go tree). Builds with cgo inflate streams with the
// system's C zlib and whole objects with libdeflate (zlib_cgo.go): for
// the 14,695 blobs (218 MB) of the Go tree's pack, one core, Go's
// compress/zlib takes 1.73 to 1.80 s, C zlib 0.78 to 0.92 s, libdeflate
// 0.37 to 0.38 s. Builds without cgo, or with the purego tag, use
// compress/zlib for both.

// zlibReader inflates one zlib stream read from src. Reset starts over on
// another stream, reusing the reader's buffers; Close releases the reader
// (not src). After the stream's end Read returns io.EOF; a stream that
// ends early is io.ErrUnexpectedEOF; a damaged one is an error wrapping
// errZlibData.
type zlibReader interface {
	io.ReadCloser
	Reset(src io.Reader) error
}

// errZlibData marks a damaged zlib stream (bad header, data or checksum).
var errZlibData = errors.New("corrupt zlib data")

// goZlib is compress/zlib reading src through a buffer of a chosen size.
type goZlib struct {
	br *bufio.Reader
	zr io.ReadCloser
}

// newGoZlib returns compress/zlib reading src in pieces of bufSize bytes.
func newGoZlib(src io.Reader, bufSize int) (zlibReader, error) {
	z := &goZlib{br: bufio.NewReaderSize(src, bufSize)}
	zr, err := zlib.NewReader(z.br)
	if err != nil {
		return nil, goZlibErr(err)
	}
	z.zr = zr
	return z, nil
}

func (z *goZlib) Read(p []byte) (int, error) {
	n, err := z.zr.Read(p)
	return n, goZlibErr(err)
}

func (z *goZlib) Reset(src io.Reader) error {
	z.br.Reset(src)
	return goZlibErr(z.zr.(zlib.Resetter).Reset(z.br, nil))
}

func (z *goZlib) Close() error { return nil }

// goZlibErr maps compress/zlib's errors on errZlibData.
func goZlibErr(err error) error {
	var ce flate.CorruptInputError
	switch {
	case err == nil, err == io.EOF, errors.Is(err, io.ErrUnexpectedEOF):
		return err
	case errors.Is(err, zlib.ErrHeader), errors.Is(err, zlib.ErrChecksum), errors.Is(err, zlib.ErrDictionary):
		return errors.Join(errZlibData, err)
	case errors.As(err, &ce):
		return errors.Join(errZlibData, err)
	}
	return err
}

// zlibPool keeps idle zlib readers of one input buffer size, so that
// inflating a small object allocates nothing. It holds at most
// zlibPoolMax readers; more are closed.
type zlibPool struct {
	bufSize int
	free    chan zlibReader
}

const zlibPoolMax = 16

func newZlibPool(bufSize int) *zlibPool {
	return &zlibPool{bufSize: bufSize, free: make(chan zlibReader, zlibPoolMax)}
}

// get returns a reader of src.
func (p *zlibPool) get(src io.Reader) (zlibReader, error) {
	select {
	case z := <-p.free:
		if err := z.Reset(src); err != nil {
			_ = z.Close()
			return nil, err
		}
		return z, nil
	default:
		return newZlibReader(src, p.bufSize)
	}
}

// put gives z back for reuse.
func (p *zlibPool) put(z zlibReader) {
	select {
	case p.free <- z:
	default:
		_ = z.Close()
	}
}

// inflateWhole inflates the zlib stream at the start of src into dst,
// which must be exactly its inflated size, and says how many bytes of src
// the stream took. A stream that is damaged, cut short by the end of src,
// or of another size is an error wrapping errZlibData (or
// io.ErrUnexpectedEOF for an empty src). It is the fast path for objects
// whose inflated size is known and small.
//
// var inflateWhole func(dst, src []byte) (int, error), per build.

// inflateGo is inflateWhole with compress/zlib.
func inflateGo(dst, src []byte) (int, error) {
	br := bytes.NewReader(src)
	zr, err := zlib.NewReader(br)
	if err != nil {
		return 0, goZlibErr(err)
	}
	if _, err := io.ReadFull(zr, dst); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, fmt.Errorf("%w: damaged or cut short: %w", errZlibData, err)
		}
		return 0, goZlibErr(err)
	}
	// The stream must end here, with its checksum.
	var one [1]byte
	if n, err := zr.Read(one[:]); n > 0 || err != io.EOF {
		if n > 0 {
			return 0, fmt.Errorf("%w: inflates to more than %d bytes", errZlibData, len(dst))
		}
		return 0, fmt.Errorf("%w: damaged or cut short: %w", errZlibData, err)
	}
	return len(src) - br.Len(), nil
}
